"""`fate-lung`: the operator's command line (demo, server, data, jobs)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fate_components.core.errors import LungError
from fate_components.ops.workspace import Workspace


def _flow_home(args) -> Path:
    return Workspace.from_env().flow_home(args.home)


def _client(args):
    """A FlowClient for --ip/--port, or for the server recorded in --home (started by `fate-lung server start`)."""
    from fate_client.flow_sdk import FlowClient

    from fate_components.ops import flow_server

    if getattr(args, "port", None):
        return FlowClient(ip=args.ip, port=args.port, version="v2"), None
    home = _flow_home(args)
    server = flow_server.recorded_server(home)
    if server is None or not server.is_alive():
        raise LungError(f"no FATE-Flow running in {home}; start one with `fate-lung server start --home {home}` "
                        f"or pass --ip/--port of an existing server")
    return server.client(), home


def cmd_server(args) -> int:
    from fate_components.ops import flow_server

    home = _flow_home(args)
    if args.action == "start":
        server = flow_server.start(home)
        print(f"FATE-Flow running: {server.address} (pid {server.pid}, home {home})")
        print(f"  use the stock client with: flow init --ip {server.host} --port {server.http_port}")
    elif args.action == "stop":
        print("stopped" if flow_server.stop(home) else f"no FATE-Flow was running in {home}")
    else:
        server = flow_server.recorded_server(home)
        alive = server is not None and server.is_alive()
        print(f"running: {server.address} (pid {server.pid})" if alive else f"not running (home {home})")
        return 0 if alive else 1
    return 0


def cmd_generate(args) -> int:
    from fate_components.core.synthetic.sites import generate_federation

    hospitals = [h.strip() for h in args.hospitals.split(",") if h.strip()] if args.hospitals else None
    split = [float(f) for f in args.split.split(",")] if args.split else None
    if hospitals and split is None and len(hospitals) != 3:
        split = [1.0 / len(hospitals)] * len(hospitals)
    t0 = time.perf_counter()
    extra = {k: v for k, v in (("hospitals", hospitals), ("split", split)) if v is not None}
    sites = generate_federation(Path(args.out), size=args.size, seed=args.seed, n_patients=args.patients, **extra)
    for name, path in sites.items():
        print(f"{name}: {path}")
    print(f"generated in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_check_site(args) -> int:
    from fate_components.ops.site_data import check_site

    report = check_site(Path(args.site))
    print(report.summary())
    return 0 if report.ok else 1


def cmd_bind_site(args) -> int:
    from fate_components.ops.site_data import bind_site, check_site

    report = check_site(Path(args.site))
    print(report.summary())
    if not report.ok and not args.force:
        print("not bound: fix the problems above (or pass --force to bind anyway)", file=sys.stderr)
        return 1
    client, _ = _client(args)
    bind_site(client, Path(args.site), namespace=args.namespace, name=args.name)
    print(f"bound {Path(args.site).resolve()} as table {args.namespace}/{args.name}")
    return 0


def _compile(args) -> tuple[dict, dict]:
    from fate_components.ops.jobs import compile_dag, load_json

    conf = load_json(Path(args.conf))
    model_job = None
    if args.model_job:
        model_job = {"model_id": args.model_job, "model_version": args.model_version}
    dag = compile_dag(load_json(Path(args.dsl)), conf, model_job=model_job)
    return dag, conf


def cmd_compile(args) -> int:
    dag, _ = _compile(args)
    text = json.dumps(dag, indent=2)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}; submit it with: flow job submit -c {args.output}")
    else:
        print(text)
    return 0


def _print_submitted(job: dict) -> None:
    print(f"submitted job {job['job_id']} (model_id {job.get('model_id')}, model_version {job.get('model_version')})")


def cmd_submit(args) -> int:
    from fate_components.ops import runner
    from fate_components.ops.jobs import parse_sites

    dag, conf = _compile(args)
    client, home = _client(args)
    runner.check_tables(client, conf)
    if args.no_wait:
        _print_submitted(runner.submit(client, dag))
        return 0
    sites = parse_sites(conf)
    outcome = runner.submit_and_follow(runner.SiteEndpoints.standalone(client, home, sites), dag, sites,
                                       timeout_s=args.timeout, on_submitted=_print_submitted)
    print(f"job {outcome.job_id}: {outcome.status}")
    if not outcome.ok:
        print(outcome.reason, file=sys.stderr)
        return 1
    return 0


def cmd_report(args) -> int:
    from fate_components.ops.jobs import load_json, parse_sites
    from fate_components.ops.report import collect, write_report
    from fate_components.ops.runner import SiteEndpoints

    client, home = _client(args)
    if home is None:
        raise LungError("report reads each site's job outputs from a FATE-Flow home: pass --home, not --ip/--port")
    out = Path(args.out) if args.out else Workspace.from_env().results(args.job_id) / "report"
    sites = parse_sites(load_json(Path(args.conf)))
    page = write_report(collect(SiteEndpoints.standalone(client, home, sites), args.job_id, sites), out)
    print(f"report: {page.resolve()}")
    return 0


def cmd_evaluate(args) -> int:
    from fate_components.core.evaluation.submission import evaluate_submission, format_report, read_seriesuids

    scans = read_seriesuids(Path(args.seriesuids)) if args.seriesuids else None
    report = evaluate_submission(Path(args.submission), Path(args.annotations),
                                 excluded=Path(args.excluded) if args.excluded else None, scans=scans,
                                 n_boot=args.bootstrap, seed=args.seed, max_marks_per_scan=args.max_marks_per_scan)
    print(format_report(report))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.output}")
    return 0


def cmd_board_assets(args) -> int:
    from fate_components.ops.board_assets import write_board_assets

    for path in write_board_assets(Path(args.out)):
        print(path)
    return 0


def cmd_verify_model(args) -> int:
    from fate_components.ops.verify_model import main as verify

    return verify(Path(args.a), Path(args.b), atol=args.atol)


def cmd_demo(args) -> int:
    from fate_components.ops import demo

    workspace = Workspace.from_env()
    return demo.run(args, demo.Standalone(workspace.flow_home(args.home), stop_after=args.stop_after), workspace)


def cmd_stop(args) -> int:
    from fate_components.ops import flow_server

    home = _flow_home(args)
    print("stopped FATE-Flow" if flow_server.stop(home) else f"no FATE-Flow was running in {home}")
    return 0


def cmd_deploy(args) -> int:
    from fate_components.ops import demo, deploy, multisite
    from fate_components.ops.jobs import load_json

    root = Path(args.root).resolve()
    if args.action == "up":
        d = deploy.up(root, load_json(Path(args.conf)))
        print(f"RabbitMQ pid {d.rabbitmq_pid} (amqp :{d.amqp_port}, management :{d.mng_port}); "
              f"nginx pid {d.nginx_pid} (:{d.nginx_port})")
        for s in d.sites.values():
            print(f"{s.name}: party {s.party_id}, FATE-Flow pid {s.pid} at http://127.0.0.1:{s.http_port}, "
                  f"home {s.home}")
        return 0
    if args.action == "down":
        print("stopped the three sites, nginx and RabbitMQ" if deploy.down(root) else f"nothing running in {root}")
        return 0
    if args.action == "status":
        d = deploy.Deployment.load(root)
        if d is None:
            print(f"no deployment in {root}")
            return 1
        print(json.dumps({"up": deploy.is_up(d), **{k: v for k, v in d.__dict__.items() if k != "sites"},
                          "sites": {n: s.__dict__ for n, s in d.sites.items()}}, indent=2))
        return 0 if deploy.is_up(d) else 1
    return demo.run(args, multisite.ThreeSites(root), Workspace.from_env())


def _add_server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", help="FATE-Flow home started by fate-lung (default .fate-lung/flow)")
    p.add_argument("--ip", default="127.0.0.1", help="address of an existing FATE-Flow (with --port)")
    p.add_argument("--port", type=int, help="HTTP port of an existing FATE-Flow (instead of --home)")


SAMPLE_SIZES = ["tiny", "small", "bench", "patients", "luna16"]   # core.sample_data.SIZES, without importing it


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fate-lung", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run_commands(sub)
    _add_data_commands(sub)
    _add_result_commands(sub)
    _add_site_commands(sub)
    _add_job_commands(sub)
    return parser


def _add_run_commands(sub) -> None:
    """Demo, deploy, stop, server: FATE-Flow and the main job."""
    p = sub.add_parser("demo", help="set up standalone FATE, sample data for three hospitals, train, predict")
    p.add_argument("--home", help="FATE-Flow home (default .fate-lung/flow)")
    p.add_argument("--size", default="luna16", choices=SAMPLE_SIZES,
                   help="sample data size (luna16: LUNA16's density of about 850 candidates per scan, the default)")
    p.add_argument("--patients", type=int, default=None,
                   help="patients over the three hospitals (default: the demo's 36 for luna16, else the size's own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=None, help="rounds for the demo (default: the demo's short run)")
    p.add_argument("--conf", default="conf/lung_conf.json")
    p.add_argument("--dsl", default="dsl/lung.json")
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument("--stop-after", action="store_true", help="stop the FATE-Flow server when the demo ends")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("deploy", help="three FATE sites on this machine (own FATE-Flow each, RabbitMQ federation, "
                                      "nginx proxy): up, down, status, or demo (the main job across them)")
    p.add_argument("action", choices=["up", "down", "status", "demo"])
    p.add_argument("--root", default=str(Workspace.from_env().deploy_root),
                   help="where the sites, broker and proxy live")
    p.add_argument("--conf", default="conf/lung_conf.json")
    p.add_argument("--dsl", default="dsl/lung.json")
    p.add_argument("--size", default="bench", choices=SAMPLE_SIZES)
    p.add_argument("--patients", type=int, default=None, help="patients over the three hospitals")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--timeout", type=float, default=3600.0)
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("stop", help="stop the FATE-Flow server that the demo started")
    p.add_argument("--home")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("server", help="start/stop/status of a standalone FATE-Flow in a home of its own")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--home")
    p.set_defaults(func=cmd_server)


def _add_data_commands(sub) -> None:
    """Generate-data: sample sites."""
    p = sub.add_parser("generate-data", help="write synthetic LUNA16-style sites (DICOM and MetaImage)")
    p.add_argument("--out", required=True)
    p.add_argument("--size", default="tiny", choices=SAMPLE_SIZES,
                   help="luna16: LUNA16's scan geometry, ~850 candidates per scan, annotations_excluded.csv")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patients", type=int, metavar="N", help="number of patients over all sites (default: the size's)")
    p.add_argument("--hospitals", help="comma-separated hospitals (default: hospital_a,hospital_b,hospital_c)")
    p.add_argument("--split", help="comma-separated patient fractions per hospital (default 0.4,0.3,0.3, or equal "
                                   "shares for other than three hospitals)")
    p.set_defaults(func=cmd_generate)


def _add_result_commands(sub) -> None:
    """Report, evaluate, board-assets, verify-model: after a job."""
    p = sub.add_parser("report", help="after a job: an HTML page with loss, validation and FROC plots and a per-site "
                                      "data summary")
    p.add_argument("job_id")
    p.add_argument("-c", "--conf", default="conf/lung_conf.json", help="the job's conf (names the sites)")
    p.add_argument("-o", "--out", help="output folder (default .fate-lung/results/JOB/report)")
    _add_server_args(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("evaluate", help="FROC/CPM (LUNA16 rules), AUC and bootstrap CI of a submission.csv")
    p.add_argument("submission", help="seriesuid,coordX,coordY,coordZ,probability")
    p.add_argument("annotations", help="annotations.csv (seriesuid,coordX,coordY,coordZ,diameter_mm)")
    p.add_argument("--excluded", help="annotations_excluded.csv: hits on these findings are ignored "
                                      "(a diameter_mm of -1 counts as 10 mm)")
    p.add_argument("--seriesuids", help="the evaluated scans, one seriesuid per line, no header (LUNA16's "
                                        "seriesuids.csv); default: the scans in the submission")
    p.add_argument("--max-marks-per-scan", type=int, default=100,
                   help="keep the N most probable marks of each scan, as LUNA16 (default 100; 0 keeps all)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap samples over scans")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", help="write the full report (incl. the FROC curve) as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "board-assets", help="write the component descriptions FATE-Board needs to draw a job graph",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write luna16_reader.yaml, homo_lung_nn.yaml and lung_evaluation.yaml into DIR: FATE's own\n"
                    "component descriptions (what `python -m fate.components component desc --name NAME --save\n"
                    "NAME.yaml` writes).\n\n"
                    "FATE-Board 2.x reads <component name>.yaml from the dag/ folder of its working directory\n"
                    "(its install folder, beside fateboard-*.jar, where FATE's own descriptions are); without\n"
                    "them it cannot draw the ports of fate-lung's tasks. Copy the three files there, e.g.\n"
                    "  fate-lung board-assets --out /data/projects/fate/fateboard/dag\n"
                    "Run it again after upgrading fate-lung.")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the three yaml files into "
                                                               "(FATE-Board's dag/ folder)")
    p.set_defaults(func=cmd_board_assets)

    p = sub.add_parser("verify-model", help="compare two saved models layer by layer (exit 2 on architecture "
                                            "mismatch, 1 if weights differ, 0 if equal)")
    p.add_argument("a", help="model.pt, or a directory with one (e.g. from flow output download-model)")
    p.add_argument("b")
    p.add_argument("--atol", type=float, default=0.0, help="differences up to this are treated as equal")
    p.set_defaults(func=cmd_verify_model)


def _add_site_commands(sub) -> None:
    """Check-site, bind-site: a hospital's data into FATE."""
    p = sub.add_parser("check-site", help="validate a site directory (scans, candidates.csv, annotations.csv)")
    p.add_argument("site")
    p.set_defaults(func=cmd_check_site)

    p = sub.add_parser("bind-site", help="validate a site directory, then `flow table bind` it")
    p.add_argument("site")
    p.add_argument("--namespace", "-ns", required=True)
    p.add_argument("--name", "-n", required=True)
    p.add_argument("--force", action="store_true", help="bind even if the check finds problems")
    _add_server_args(p)
    p.set_defaults(func=cmd_bind_site)


def _add_job_commands(sub) -> None:
    """Compile, submit: a DSL and conf as a FATE job."""
    for name, func, help_ in (("compile", cmd_compile,
                               "compile a DSL + conf into a FATE 2.2 DAG (for flow job submit -c)"),
                              ("submit", cmd_submit, "compile, check tables, submit and follow a job")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("-d", "--dsl", required=True)
        p.add_argument("-c", "--conf", required=True)
        p.add_argument("--model-job", help="job id whose model a predict DSL loads")
        p.add_argument("--model-version", default="0")
        if name == "compile":
            p.add_argument("-o", "--output")
        else:
            _add_server_args(p)
            p.add_argument("--no-wait", action="store_true")
            p.add_argument("--timeout", type=float, default=3600.0)
        p.set_defaults(func=func)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LungError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
