"""The README's main job across three FATE sites (see `deploy.py`): bind, pre-check, submit at hospital_a, results."""
from __future__ import annotations

import time
from pathlib import Path

from fate_components.core.errors import LungError

from . import deploy, runner
from .jobs import compile_dag, parse_sites
from .site_data import table_bound


def site_clients(d: deploy.Deployment, conf: dict) -> dict:
    """Each site's own FATE-Flow client (the arbiter's is that of the site sharing its party id)."""
    return {s.name: d.client(d.site_of_party(s.party_id).name) for s in parse_sites(conf)}


def site_homes(d: deploy.Deployment, conf: dict) -> dict:
    return {s.name: Path(d.site_of_party(s.party_id).home) for s in parse_sites(conf)}


def bind(d: deploy.Deployment, conf: dict, data_root: Path) -> None:
    """Each hospital binds its own directory into its own FATE-Flow, and nowhere else."""
    from .site_data import bind_site, check_site

    for site in parse_sites(conf):
        if site.role == "arbiter":
            continue
        report = check_site(data_root / site.name)
        if not report.ok:
            raise LungError(f"{site.name}: {report.summary()}")
        table = site.tables["site"]
        bind_site(d.client(d.site_of_party(site.party_id).name), data_root / site.name,
                  namespace=table["namespace"], name=table["name"])


def preflight(d: deploy.Deployment, conf: dict) -> None:
    """Refuse before submitting: a party id no site serves, or a table not bound at its own site."""
    problems = []
    for site in parse_sites(conf):
        try:
            home = d.site_of_party(site.party_id)
        except deploy.DeployError as e:
            problems.append(f"{site.name} ({site.role}): {e}")
            continue
        for table in site.tables.values():
            if not table_bound(d.client(home.name), table["namespace"], table["name"]):
                problems.append(f"{site.name} ({site.role} {site.party_id}): table {table['namespace']}/"
                                f"{table['name']} is not bound in {home.name}'s FATE-Flow")
    if problems:
        raise runner.JobError("refused before submitting anything:\n  " + "\n  ".join(problems))


def submit(d: deploy.Deployment, conf: dict, dsl: dict, *, printer=print, timeout_s: float = 3600,
           model_job: dict | None = None) -> tuple[str, str]:
    """Submit at the guest's FATE-Flow and follow it round by round; returns (job id, final status)."""
    preflight(d, conf)
    sites = parse_sites(conf)
    guest = next(s for s in sites if s.role == "guest")
    client = d.client(d.site_of_party(guest.party_id).name)
    dag = compile_dag(dsl, conf, model_job=model_job)
    job = runner.submit(client, dag)
    trainer = dag["dag"]["tasks"].get("trainer", {})
    progress = None
    if trainer.get("stage") == "train":
        progress = runner.RoundProgress(client=client, job_id=job["job_id"], task="trainer", sites=sites,
                                        rounds=trainer["parameters"].get("rounds", 20), printer=printer,
                                        site_clients=site_clients(d, conf))
    status = runner.wait(client, job["job_id"], timeout_s=timeout_s, progress=progress, printer=printer)
    return job["job_id"], status


def run_demo(args) -> int:
    """`fate-lung deploy demo`: the standalone demo's data and job, across three FATE sites."""
    import json

    from fate_components.cli import PROJECT_HOME
    from fate_components.ops.demo import _demo_conf, collect_results, demo_patients, sample_data
    from fate_components.ops.jobs import load_json
    from fate_components.ops.report import collect, write_report

    t_start = time.perf_counter()
    conf = load_json(Path(args.conf))
    d = deploy.up(Path(args.root), conf)
    print(f"[1/5] three FATE sites up: RabbitMQ amqp :{d.amqp_port} (management :{d.mng_port}), nginx "
          f":{d.nginx_port}; " + ", ".join(f"{s.name} (party {s.party_id}) FATE-Flow :{s.http_port}"
                                           for s in d.sites.values()))
    data_root = sample_data(args.size, args.seed, demo_patients(args.size, args.patients))
    print(f"[2/5] sample data in {data_root}")
    bind(d, conf, data_root)
    print("[3/5] each hospital bound its own directory into its own FATE-Flow")
    conf = _demo_conf(conf, args.rounds)
    print(f"[4/5] training at hospital_a's FATE-Flow: {args.rounds} rounds, Paillier aggregation over RabbitMQ")
    t_job = time.perf_counter()
    job_id, status = submit(d, conf, load_json(Path(args.dsl)), timeout_s=args.timeout)
    job_seconds = time.perf_counter() - t_job
    clients, homes = site_clients(d, conf), site_homes(d, conf)
    guest = next(s for s in parse_sites(conf) if s.role == "guest")
    if status != "success":
        print(f"job {job_id}: {status}\n{runner.failure_reason(clients[guest.name], job_id, homes[guest.name])}")
        return 1
    results = (PROJECT_HOME / "results" / job_id).resolve()
    summary, metrics = collect_results(None, None, job_id, parse_sites(conf), results, site_clients=clients,
                                       site_homes=homes)
    summary["job_seconds"] = job_seconds
    (results / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"[5/5] job {job_id} succeeded: job {job_seconds:.0f} s, all {time.perf_counter() - t_start:.0f} s")
    for name, info in summary["sites"].items():
        print(f"      {name}: held-out AUC {info['heldout_auc']:.3f}, CPM {_or_nan(info['heldout_cpm']):.3f} "
              f"(outputs in its own FATE-Flow home {homes[name]})")
    page = write_report(collect(None, None, job_id, parse_sites(conf), metrics, site_clients=clients,
                                site_homes=homes), results / "report")
    print(f"      report: {page}\n      stop the three sites with: fate-lung deploy down")
    return 0


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value
