"""The progress line, and `submit_and_follow`, the one way every caller runs a job (against a scripted FATE-Flow)."""
from __future__ import annotations

from pathlib import Path

import pytest

from fate_components.ops import runner
from fate_components.ops.jobs import Site

SITES = [Site("hospital_a", "guest", "9999", {}), Site("hospital_b", "host", "10000", {}),
         Site("coordinator", "arbiter", "9999", {})]


def _history(rounds: int, *, dp: bool) -> dict[str, dict[int, float]]:
    h = {"train_loss": {r: 0.5 - 0.1 * r for r in range(rounds)}, "val_auc": {r: 0.8 for r in range(rounds)},
         "bytes_sent": {r: 1.25e6 for r in range(rounds)}, "global_val_loss": {r: 0.4 for r in range(rounds)}}
    if dp:
        h["epsilon"] = {r: 0.5 * (r + 1) for r in range(rounds)}
    return h


def test_progress_prints_complete_rounds_with_auc_epsilon_and_bytes(monkeypatch):
    # Prepare: hospital_a has reported two rounds, hospital_b one (its second is not complete yet).
    reported = {"9999": _history(2, dp=True), "10000": _history(1, dp=False)}
    monkeypatch.setattr(runner, "step_metrics", lambda client, job, role, party, task: reported[party])
    lines: list[str] = []
    progress = runner.RoundProgress(runner.SiteEndpoints.standalone(None, None, SITES), "job", "trainer", SITES,
                                    rounds=2, printer=lines.append)
    # Execute
    progress.poll()
    # Assert: only round 1, with each site's loss, the validation AUCs, epsilon (or -) and MB sent.
    assert lines == ["[Round 1/2] hospital_a loss: 0.500 | hospital_b loss: 0.500 | global val loss: 0.400 "
                     "| val AUC: 0.80, 0.80 | epsilon: 0.50, - | MB sent: 1.25, 1.25"]
    reported["10000"] = _history(2, dp=False)
    progress.poll()
    assert len(lines) == 2 and lines[1].startswith("[Round 2/2] hospital_a loss: 0.400")


def test_progress_asks_each_site_its_own_fate_flow(monkeypatch):
    # Prepare: multi-site endpoints, one client per site; record which client each query went to
    asked = []

    def metrics(client, job, role, party, task):
        asked.append((client, party))
        return _history(1, dp=False)

    monkeypatch.setattr(runner, "step_metrics", metrics)
    endpoints = runner.SiteEndpoints(clients={"hospital_a": "flow_a", "hospital_b": "flow_b", "coordinator": "flow_a"},
                                     homes={"hospital_a": Path("/a"), "hospital_b": Path("/b"),
                                            "coordinator": Path("/a")}, initiator="hospital_a")
    # Execute
    runner.RoundProgress(endpoints, "job", "trainer", SITES, rounds=1, printer=lambda _: None).poll()
    # Assert: the arbiter has no round metrics to show; each hospital is asked at its own FATE-Flow
    assert asked == [("flow_a", "9999"), ("flow_b", "10000")]
    assert endpoints.client == "flow_a" and endpoints.home == Path("/a")


class _Flow:
    """A scripted FATE-Flow: accepts one job, answers `running` to the first `running_polls` status queries, then
    `final`; each site has reported one more round at each metric query (two at most)."""

    def __init__(self, final: str, running_polls: int = 1) -> None:
        self.final, self.running_polls = final, running_polls
        self.status_queries, self.metric_queries, self.submitted = 0, 0, []
        self.job, self.output = self, self
        self.task = _Tasks(self)

    def submit(self, dag):
        self.submitted.append(dag)
        return {"code": 0, "job_id": "j1", "data": {"model_id": "m1", "model_version": "0"}}

    def status(self) -> str:
        return "running" if self.status_queries <= self.running_polls else self.final

    def query(self, job_id):
        self.status_queries += 1
        return {"data": [{"job_id": job_id, "status": self.status()}]}

    def query_metric(self, job_id, role, party_id, task_name):
        self.metric_queries += 1
        done = min(self.metric_queries, 2)
        data = [{"name": name, "step_axis": "round", "data": [{"step": r, "metric": 0.5} for r in range(done)]}
                for name in ("train_loss", "global_val_loss")]
        return {"code": 0, "data": data}


class _Tasks:
    def __init__(self, flow: _Flow) -> None:
        self.flow = flow

    def query(self, job_id):
        return {"data": [{"task_name": "trainer", "role": "guest", "party_id": "9999", "status": self.flow.status()}]}


def _dag(rounds: int = 2) -> dict:
    return {"dag": {"tasks": {"reader_all": {"component_ref": "luna16_reader", "stage": "default", "parameters": {}},
                              "trainer": {"component_ref": "homo_lung_nn", "stage": "train",
                                          "parameters": {"rounds": rounds}}}}}


def test_submit_and_follow_announces_follows_every_round_and_returns_success(monkeypatch):
    # Prepare: sleeping between polls is skipped
    monkeypatch.setattr(runner.time, "sleep", lambda s: None)
    flow = _Flow("success", running_polls=2)
    lines, announced = [], []
    endpoints = runner.SiteEndpoints.standalone(flow, None, SITES)
    # Execute
    outcome = runner.submit_and_follow(endpoints, _dag(), SITES, timeout_s=5, printer=lines.append,
                                       on_submitted=announced.append)
    # Assert: the DAG went to FATE-Flow as given; the caller saw the job at once; both rounds were shown
    assert flow.submitted == [_dag()]
    assert announced == [{"job_id": "j1", "model_id": "m1", "model_version": "0"}]
    assert outcome == runner.JobOutcome(job=announced[0], status="success", reason="") and outcome.ok
    rounds = [line for line in lines if line.startswith("[Round")]
    assert [line[:11] for line in rounds] == ["[Round 1/2]", "[Round 2/2]"]
    assert rounds[-1] == "[Round 2/2] hospital_a loss: 0.500 | hospital_b loss: 0.500 | global val loss: 0.500"
    assert "  tasks: trainer=running" in lines and lines[-1] == "  tasks: trainer=success"


def test_submit_and_follow_returns_the_failed_tasks_and_follows_silently_without_a_printer(monkeypatch):
    # Prepare: a job that fails; sleeping is skipped
    monkeypatch.setattr(runner.time, "sleep", lambda s: None)
    flow = _Flow("failed", running_polls=3)
    # Execute
    outcome = runner.submit_and_follow(runner.SiteEndpoints.standalone(flow, None, SITES), _dag(), SITES,
                                       timeout_s=5, printer=None)
    # Assert: the failed task is named; no round metrics were asked for without a printer
    assert outcome.status == "failed" and not outcome.ok
    assert outcome.reason == "task trainer guest 9999: failed"
    assert flow.metric_queries == 0 and flow.status_queries == 4


def test_refused_job_raises_and_training_task_is_found_by_component_and_stage():
    class Refusing(_Flow):
        def submit(self, dag):
            return {"code": 100, "message": "bad dag"}

    with pytest.raises(runner.JobError, match=r"FATE-Flow refused the job: bad dag \(code 100\)"):
        runner.submit_and_follow(runner.SiteEndpoints.standalone(Refusing("success"), None, SITES), _dag(), SITES,
                                 timeout_s=5)
    assert runner.training_task(_dag()) == "trainer"
    predict = _dag()
    predict["dag"]["tasks"]["trainer"]["stage"] = "predict"
    assert runner.training_task(predict) is None


def test_three_site_endpoints_serve_the_coordinator_from_the_site_sharing_its_party_id(tmp_path):
    from fate_components.ops import deploy, multisite
    from fate_components.ops.jobs import load_json

    # Prepare: a deployment record of three sites (nothing started: clients are only addresses)
    d = deploy.Deployment(root=str(tmp_path), amqp_port=1, mng_port=2, dist_port=3, epmd_port=4, nginx_port=5,
                          sites={name: deploy.DeployedSite(name, party, str(tmp_path / name), http_port=port)
                                 for name, party, port in (("hospital_a", "9999", 9380), ("hospital_b", "10000", 9381),
                                                           ("hospital_c", "10001", 9382))})
    conf = load_json(Path(__file__).resolve().parents[2] / "conf" / "lung_conf.json")
    # Execute
    endpoints = multisite.endpoints(d, conf)
    # Assert: the job is submitted at hospital_a's FATE-Flow; the coordinator's outputs are in hospital_a's home
    assert endpoints.initiator == "hospital_a" and endpoints.home == tmp_path / "hospital_a"
    assert endpoints.home_of("coordinator") == tmp_path / "hospital_a"
    assert endpoints.home_of("hospital_c") == tmp_path / "hospital_c"
    assert {name: endpoints.client_of(name).port for name in ("hospital_b", "coordinator")} == {
        "hospital_b": 9381, "coordinator": 9380}
