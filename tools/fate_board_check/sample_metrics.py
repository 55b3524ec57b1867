"""FATE metric records as `flow output query-metric` prints them, made without FATE-Flow.

    python tools/fate_board_check/sample_metrics.py [OUT_DIR] [--rounds N]

writes OUT_DIR/{today,board_ready}/{train_job,predict_job}/TASK.ROLE.PARTY.json (default OUT_DIR:
tools/fate_board_check/samples). `today` holds the metrics fate_components logged at commit 4af33e6 (names
and types from components/luna16_reader.py, _trainer.py, lung_evaluation.py, with the default conf:
paillier aggregation, no DP); `board_ready` the shapes FATE-Board 2.1 draws. The values are made up (seeded).

The path of a metric in a FATE-Flow 2.2 job, and what runs here:

1. The component calls ctx.metrics.log_loss / log_metrics (fate/arch/context/_metrics.py). Run here.
2. FATE-Flow gives the task an http metric URI (fate_flow/hub/components_wraps/fate/_wraps.py,
   `_output_artifacts`: mlmd.get_metric_save_url), so execute_cli installs
   ComponentMetricsRestfulHandler (fate/components/core/_load_metric_handler.py): every log call is
   POSTed at once by JsonMetricRestfulWriter as {"data": [record]} (one record per call, even per
   round). Run here: FATE's handler and writer; only requests.post is caught, and the body is
   the one requests itself prepares.
3. FATE-Flow's worker route /worker/metric/save/<execution_id> (fate_flow/apps/worker/worker_app.py)
   -> OutputMetric.save_output_metrics (fate_flow/manager/outputs/metric.py): one row per record in
   t_tracking_metric_<date>, fields name, type, groups, step_axis, data (JSONField: json_dumps /
   json_loads of fate_flow/utils/base_utils.py). Imitated here: a list of rows, the same fields
   and FATE-Flow's own json_dumps/json_loads. (Importing fate_flow.db would connect to the
   configured FATE-Flow database; this script never does.)
4. `flow output query-metric` -> GET /v2/output/metric/query (fate_flow/apps/client/output_app.py)
   -> OutputMetric.read_metrics: select name, type, groups, step_axis, data with no ORDER BY (rows
   in insertion order on sqlite and MySQL for this query) -> API.Output.json(code=0,
   message="success", data=...) -> flask.jsonify. Imitated here: the same dict through a bare
   Flask app's jsonify (FATE-Flow's app sets `json_provider_class` after Flask() is built, which
   has no effect, so it is Flask's default provider: keys sorted).
5. The flow CLI (fate_client/flow_cli/commands/output.py, utils/cli_utils.prettify) prints
   json.dumps(response.json(), indent=4, ensure_ascii=False) and a blank line. Run here.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FP_RATES = ("0.125", "0.25", "0.5", "1", "2", "4", "8")   # LUNA16's FROC operating points
PARTIES = {"guest": "9999", "host": "10000", "arbiter": "9999"}   # conf/lung_conf.json (hospital_a, _b, coordinator)


class FlowTaskMetrics:
    """FATE-Flow's side for one party's task: the save route, the metric table, the query route."""

    def __init__(self):
        import flask

        self._flask = flask
        self._app = flask.Flask("fate_flow")
        self._rows: list[dict] = []

    def post(self, url, json=None, **_):
        """requests.post as JsonMetricRestfulWriter.write calls it: the body requests would send, then the route."""
        import requests

        prepared = requests.Request("POST", url, json=json).prepare()
        with self._app.test_request_context(data=prepared.body, content_type="application/json"):
            data = self._flask.request.get_json(force=True)["data"]   # worker_app: data=fields.List(fields.Dict())
        self._insert(data)
        response = requests.models.Response()
        response.status_code = 200
        return response

    def _insert(self, data_list: list[dict]) -> None:
        # OutputMetric._insert_metrics_into_db; JSONField.db_value (None becomes {})
        from fate_flow.utils.base_utils import json_dumps

        for data in data_list:
            self._rows.append({"f_name": data.get("name"), "f_type": data.get("type"),
                               "f_groups": json_dumps(data.get("groups") if data.get("groups") is not None else {}),
                               "f_step_axis": data.get("step_axis"),
                               "f_data": json_dumps(data.get("data") if data.get("data") is not None else {})})

    def query_metric_printed(self) -> str:
        """What `flow output query-metric -j .. -r .. -p .. -tn ..` prints for this task."""
        import requests
        from fate_flow.utils.base_utils import json_loads

        def python_value(value):   # JSONField.python_value
            return json_loads(value) if value else {}

        metrics = [{"name": r["f_name"], "type": r["f_type"], "groups": python_value(r["f_groups"]),
                    "step_axis": r["f_step_axis"], "data": python_value(r["f_data"])} for r in self._rows]
        result = {"code": 0, "message": "success", "data": metrics}   # API.Output.json drops None values
        with self._app.app_context():
            body = self._flask.jsonify({k: v for k, v in result.items() if v is not None}).get_data()
        response = requests.models.Response()
        response._content = body
        response.status_code = 200
        return json.dumps(response.json(), indent=4, ensure_ascii=False) + "\n" + "\n"


class _FixedClock:
    """Stands in for the time module in fate/arch/context/_metrics.py (it only calls time.time())."""

    def __init__(self, start: float = 1_767_225_600.0):   # 2026-01-01T00:00:00Z
        self._now = start

    def time(self) -> float:
        self._now += 0.5
        return self._now


def task_context(flow: FlowTaskMetrics):
    """A component's ctx as execute_cli builds it, with FATE-Flow's (restful) metric handler."""
    import fate.arch.context._metrics as metrics_module
    import fate.components.core.component_desc.artifacts.metric._json as metric_json
    from fate.arch import URI, Context
    from fate.components.core import load_metric_handler
    from fate.components.core.component_desc.artifacts._base_type import _ArtifactType
    from fate.components.core.spec.artifact import MetricOutputMetadata

    metric_json.requests = flow   # JsonMetricRestfulWriter.write calls requests.post(url=..., json=...)
    metrics_module.time = _FixedClock()   # step timestamps: reruns write identical files
    ctx = Context()
    uri = URI.from_string("http://127.0.0.1:9380/v2/worker/metric/save/sample_execution_id")
    writer = metric_json.JsonMetricRestfulWriter(ctx, _ArtifactType(uri=uri, metadata=MetricOutputMetadata(),
                                                                    type_name="metrics_json"))
    handler = load_metric_handler(writer)
    ctx.set_metric_handler(handler)
    return ctx, handler


# ---------------------------------------------------------------------------------------------
# Made-up figures, the same for both shapes.

def figures(rounds: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    sites = {}
    for i, role in enumerate(("guest", "host")):
        train = [round(0.69 * 0.8 ** r + 0.02 * rng.random(), 6) for r in range(rounds)]
        val = [round(0.70 * 0.85 ** r + 0.03 * rng.random(), 6) for r in range(rounds)]
        sites[role] = {
            "train_loss": train, "val_loss": val,
            "val_auc": [round(min(0.99, 0.6 + 0.08 * r + 0.02 * rng.random()), 6) for r in range(rounds)],
            "paillier_encrypt_seconds": [round(3 + rng.random(), 3) for _ in range(rounds)],
            "paillier_decrypt_seconds": [round(1 + rng.random(), 3) for _ in range(rounds)],
            "bytes_sent": [float(5_300_000 + rng.randrange(1000)) for _ in range(rounds)],
            "clipped_values": [float(rng.randrange(5)) for _ in range(rounds)],
            "learning_rate": [1e-4] * rounds,
            "reader": {"scans_read": 12 - i, "scans_skipped": i, "candidates_total": 10200 - 850 * i,
                       "positives": 14 - i, "negatives_kept": 10186 - 849 * i, "negatives_dropped": 0,
                       "candidates_skipped": 0},
            "skipped": {"scans": [{"path": "scans/1.3.6.1.4.1.14519.5.2.1.6279.6001.0000.mhd",
                                   "reason": "unreadable: truncated raw file"}] if i else [], "candidates": []},
            "evaluation": {"cpm": round(0.55 + 0.1 * rng.random(), 6), "cpm_ci95": [0.41, 0.72],
                           "auc": round(0.85 + 0.1 * rng.random(), 6), "n_scans": 3, "n_nodules": 4,
                           "n_false_positives": 310, "n_marks_dropped": 0, "max_marks_per_scan": 100,
                           "sensitivity_at": {r: round(min(1.0, 0.3 + 0.1 * k), 6) for k, r in enumerate(FP_RATES)},
                           "froc": [[0.0, 0.0], [0.33, 0.25], [1.0, 0.5], [3.67, 0.75], [103.3, 1.0]]},
            "candidates_scored": 3100 - 200 * i,
        }
    global_val = [round((sites["guest"]["val_loss"][r] + sites["host"]["val_loss"][r]) / 2, 6) for r in range(rounds)]
    return {"sites": sites, "global_val_loss": global_val, "round_seconds": [round(40 + 5 * rng.random(), 3)
                                                                             for _ in range(rounds)]}


# ---------------------------------------------------------------------------------------------
# Today: the calls fate_components makes, in its order.

def today_reader(ctx, f):   # luna16_reader.py
    ctx.metrics.log_metrics(f["reader"], name="reader_summary", type="summary")
    if f["skipped"]["scans"] or f["skipped"]["candidates"]:
        ctx.metrics.log_metrics(f["skipped"], name="reader_skipped", type="skipped")


def today_trainer_site(ctx, f, global_val, rounds):   # _trainer.py RoundMetrics.round_done (paillier, no DP)
    for r in range(rounds):
        round_ctx = ctx.on_iterations.indexed_ctx(r)
        round_ctx.metrics.log_loss("train_loss", f["train_loss"][r])
        round_ctx.metrics.log_loss("val_loss", f["val_loss"][r])
        round_ctx.metrics.log_auc("val_auc", f["val_auc"][r])
        round_ctx.metrics.log_loss("global_val_loss", global_val[r])
        for name in ("paillier_encrypt_seconds", "paillier_decrypt_seconds", "bytes_sent", "clipped_values"):
            round_ctx.metrics.log_scalar(name, f[name][r])
        round_ctx.metrics.log_scalar("learning_rate", f["learning_rate"][r])


def today_trainer_arbiter(ctx, fig, rounds):   # _trainer.py train_arbiter (its on_round)
    for r in range(rounds):
        round_ctx = ctx.on_iterations.indexed_ctx(r)
        round_ctx.metrics.log_scalar("round_seconds", fig["round_seconds"][r])
        round_ctx.metrics.log_loss("global_val_loss", fig["global_val_loss"][r])


def today_evaluation(ctx, f):   # lung_evaluation.py
    e = f["evaluation"]
    summary = {k: e[k] for k in ("cpm", "cpm_ci95", "auc", "n_scans", "n_nodules", "n_false_positives",
                                 "n_marks_dropped", "max_marks_per_scan")}
    ctx.metrics.log_metrics({**summary, "sensitivity_at": e["sensitivity_at"], "split": "val"},
                            name="froc_summary", type="froc")
    ctx.metrics.log_metrics(e["froc"], name="froc_curve", type="curve")


def today_predict(ctx, f):   # _trainer.py predict_site
    ctx.metrics.log_metrics({"candidates_scored": f["candidates_scored"]}, name="predict_summary", type="summary")


# ---------------------------------------------------------------------------------------------
# Board-ready: what FATE-Board 2.1's metric/index.ts dispatches (see README): one loss-typed metric
# per task, name="summary" tables of flat keys (each in its own sub-context), name="evaluation"
# as FATE's evaluation component logs it ({task: {split: [{metric, val}]}}).

def ready_reader(ctx, f):
    ctx.sub_ctx("reader").metrics.log_metrics(f["reader"], name="summary", type="summary")
    if f["skipped"]["scans"] or f["skipped"]["candidates"]:
        ctx.metrics.log_metrics(f["skipped"], name="reader_skipped", type="skipped")   # a list: for flow only


def ready_trainer_site(ctx, f, global_val, rounds):
    for r in range(rounds):
        round_ctx = ctx.on_iterations.indexed_ctx(r)
        round_ctx.metrics.log_loss("train_loss", f["train_loss"][r])            # the one loss-typed metric
        round_ctx.metrics.log_scalar("val_loss", f["val_loss"][r])              # kept for flow, not drawn
        round_ctx.metrics.log_auc("val_auc", f["val_auc"][r])
        round_ctx.metrics.log_scalar("global_val_loss", global_val[r])
        round_ctx.metrics.log_scalar("learning_rate", f["learning_rate"][r])
    best = min(range(rounds), key=lambda r: global_val[r])
    ctx.sub_ctx("train_summary").metrics.log_metrics(
        {"rounds_trained": rounds, "best_round": best + 1, "best_global_val_loss": global_val[best],
         "final_train_loss": f["train_loss"][-1], "final_val_loss": f["val_loss"][-1],
         "final_val_auc": f["val_auc"][-1],
         "paillier_encrypt_seconds_total": round(sum(f["paillier_encrypt_seconds"]), 3),
         "bytes_sent_total": sum(f["bytes_sent"]), "learning_rate": f["learning_rate"][-1]},
        name="summary", type="summary")


def ready_trainer_arbiter(ctx, fig, rounds):
    for r in range(rounds):
        round_ctx = ctx.on_iterations.indexed_ctx(r)
        round_ctx.metrics.log_scalar("round_seconds", fig["round_seconds"][r])
        round_ctx.metrics.log_loss("global_val_loss", fig["global_val_loss"][r])   # the one loss-typed metric


def ready_evaluation(ctx, f, predictions_task="trainer"):
    e = f["evaluation"]
    # FATE's evaluation component: {upstream task: {split: [{"metric": .., "val": ..}, ...]}}.
    # "cpm" is logged too, to show what the board's evaluation table does with a name it does not know.
    ctx.metrics.log_metrics({predictions_task: {"val": [{"metric": "auc", "val": e["auc"]},
                                                        {"metric": "cpm", "val": e["cpm"]}]}},
                            name="evaluation", type="evaluation")
    flat = {"split": "val", "cpm": e["cpm"], "cpm_ci95_low": e["cpm_ci95"][0], "cpm_ci95_high": e["cpm_ci95"][1],
            "auc": e["auc"], **{f"sensitivity_at_{r}_fp": v for r, v in e["sensitivity_at"].items()},
            **{k: e[k] for k in ("n_scans", "n_nodules", "n_false_positives", "n_marks_dropped",
                                 "max_marks_per_scan")}}
    ctx.sub_ctx("froc_summary").metrics.log_metrics(flat, name="summary", type="summary")
    ctx.metrics.log_metrics(e["froc"], name="froc_curve", type="curve")   # no board transform draws a curve


def ready_predict(ctx, f):
    ctx.sub_ctx("predict_summary").metrics.log_metrics({"candidates_scored": f["candidates_scored"]},
                                                       name="summary", type="summary")


# ---------------------------------------------------------------------------------------------

def write_task(out_dir: Path, task: str, role: str, log) -> Path:
    flow = FlowTaskMetrics()
    ctx, handler = task_context(flow)
    log(ctx)
    handler.finalize()
    path = out_dir / f"{task}.{role}.{PARTIES[role]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(flow.query_metric_printed())
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", nargs="?", default=str(HERE / "samples"))
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    out, rounds = Path(args.out_dir), args.rounds
    fig = figures(rounds)
    shapes = {
        "today": (today_reader, today_trainer_site, today_trainer_arbiter, today_evaluation, today_predict),
        "board_ready": (ready_reader, ready_trainer_site, ready_trainer_arbiter, ready_evaluation, ready_predict),
    }
    written = []
    for shape, (reader, site, arbiter, evaluation, predict) in shapes.items():
        train, pred = out / shape / "train_job", out / shape / "predict_job"
        for role in ("guest", "host"):
            f = fig["sites"][role]
            written.append(write_task(train, "reader_all", role, lambda ctx: reader(ctx, f)))
            written.append(write_task(train, "trainer", role, lambda ctx: site(ctx, f, fig["global_val_loss"], rounds)))
            written.append(write_task(train, "evaluation", role, lambda ctx: evaluation(ctx, f)))
            written.append(write_task(pred, "trainer", role, lambda ctx: predict(ctx, f)))
        written.append(write_task(train, "trainer", "arbiter", lambda ctx: arbiter(ctx, fig, rounds)))
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
