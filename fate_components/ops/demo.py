"""The README's one-command demo: standalone FATE, three sample hospitals, federated training, results."""
from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path

from fate_components.core.errors import LungError

DEMO_ROUNDS = 12         # the conf's default is 20; the demo trades rounds for a short wall time
DEMO_LEARNING_RATE = 1e-3
# At LUNA16 density (about 850 candidates a scan) 36 patients keep `make demo` within 15 minutes here.
DEMO_LUNA16_PATIENTS = 36


def run(args) -> int:
    from fate_components.cli import PROJECT_HOME, _flow_home
    from fate_components.ops import flow_server, runner
    from fate_components.ops.jobs import compile_dag, load_json, parse_sites
    from fate_components.ops.site_data import bind_site, check_site

    t_start = time.perf_counter()
    home = _flow_home(args)
    server = flow_server.start(home)
    print(f"[1/5] FATE-Flow standalone: {server.address} (pid {server.pid}, home {home})")

    data_root = sample_data(args.size, args.seed, demo_patients(args.size, args.patients))
    print(f"[2/5] sample data for three hospitals in {data_root}")

    conf = load_json(Path(args.conf))
    sites = parse_sites(conf)
    client = server.client()
    for site in sites:
        if site.role == "arbiter":
            continue
        site_dir = data_root / site.name
        report = check_site(site_dir)
        print(f"      {report.summary()}")
        if not report.ok:
            raise LungError(f"sample data for {site.name} failed its check")
        table = site.tables["site"]
        bind_site(client, site_dir, namespace=table["namespace"], name=table["name"])
    print("[3/5] each hospital's directory bound into FATE (flow table bind)")

    conf = _demo_conf(conf, args.rounds)
    rounds = conf["parameters"]["common"]["trainer"]["rounds"]
    print(f"[4/5] training: {rounds} rounds (the conf's default is 20; the demo runs fewer to finish quickly), "
          f"learning rate {conf['parameters']['common']['trainer']['learning_rate']}")
    dag = compile_dag(load_json(Path(args.dsl)), conf)
    job = runner.submit(client, dag)
    job_id = job["job_id"]
    print(f"      job {job_id}")
    progress = runner.RoundProgress(client=client, job_id=job_id, task="trainer", sites=sites, rounds=rounds)
    status = runner.wait(client, job_id, timeout_s=args.timeout, progress=progress)
    if status != "success":
        print(f"job {job_id}: {status}\n{runner.failure_reason(client, job_id, home)}")
        return 1

    results = (PROJECT_HOME / "results" / job_id).resolve()
    summary, metrics = collect_results(client, home, job_id, sites, results)
    print(f"[5/5] job {job_id} succeeded in {time.perf_counter() - t_start:.0f} s")
    for name, info in summary["sites"].items():
        cpm, low, high = (x if x is not None else float("nan") for x in (info["heldout_cpm"],
                                                                          *info["heldout_cpm_ci95"]))
        print(f"      {name}: held-out AUC {info['heldout_auc']:.3f} on {info['heldout_candidates']} candidates, "
              f"CPM {cpm:.3f} (95% CI {low:.2f}-{high:.2f}, LUNA16's official rules) of unseen patients; "
              f"predictions {info['predictions']}")
    print(f"      all sites, held-out AUC: {summary['heldout_auc']:.3f}")
    print(f"      models:  {results / 'models'}  (also: flow output download-model -j {job_id} -r guest -p "
          f"{sites[0].party_id} -tn trainer -o DIR)")
    print(f"      metrics: {results / 'metrics.json'}  (also: flow output query-metric -j {job_id} -r guest -p "
          f"{sites[0].party_id} -tn trainer)")
    print(f"      summary: {results / 'summary.json'}")
    from fate_components.ops.report import collect, write_report

    page = write_report(collect(client, home, job_id, sites, metrics), results / "report")
    print(f"      report:  {page}  (again with: fate-lung report {job_id})")
    if args.stop_after:
        flow_server.stop(home)
        print("      FATE-Flow stopped")
    else:
        print(f"      FATE-Flow keeps running at {server.address}; stop it with: fate-lung stop")
    return 0


def demo_patients(size: str, patients: int | None) -> int | None:
    """The demo's patient count: what was asked for, else DEMO_LUNA16_PATIENTS at luna16 density."""
    return patients if patients is not None else (DEMO_LUNA16_PATIENTS if size == "luna16" else None)


def sample_data(size: str, seed: int, n_patients: int | None = None) -> Path:
    """The three sample hospitals of (size, seed, patients), generated once and reused."""
    from fate_components.cli import PROJECT_HOME
    from fate_components.core.synthetic.sites import generate_federation

    name = f"{size}-seed{seed}" + (f"-{n_patients}patients" if n_patients is not None else "")
    data_root = (PROJECT_HOME / "data" / name).resolve()
    if not (data_root / ".complete").exists():
        shutil.rmtree(data_root, ignore_errors=True)
        t0 = time.perf_counter()
        generate_federation(data_root, size=size, seed=seed, n_patients=n_patients)
        (data_root / ".complete").write_text("")
        print(f"      generated in {time.perf_counter() - t0:.0f} s")
    return data_root


def _demo_conf(conf: dict, rounds: int | None) -> dict:
    conf = copy.deepcopy(conf)
    trainer = conf["parameters"]["common"]["trainer"]
    trainer["rounds"] = rounds or DEMO_ROUNDS
    trainer["learning_rate"] = DEMO_LEARNING_RATE
    return conf


def collect_results(client, home: Path, job_id: str, sites, results: Path, *, site_clients: dict | None = None,
                    site_homes: dict | None = None) -> tuple[dict, dict]:
    """Download models and metrics through FATE-Flow; score held-out patients; returns (summary, metrics).

    Multi-site, each site's outputs live in its own FATE-Flow: `site_clients` and `site_homes` by site name.
    """
    import numpy as np

    from fate_components.core.evaluation.auc import candidate_auc
    from fate_components.ops import runner

    results.mkdir(parents=True, exist_ok=True)
    metrics, summary = {}, {"job_id": job_id, "sites": {}}
    all_y, all_p = [], []
    for site in sites:
        site_client = (site_clients or {}).get(site.name, client)
        site_home = (site_homes or {}).get(site.name, home)
        metrics[site.name] = runner.step_metrics(site_client, job_id, site.role, site.party_id, "trainer")
        if site.role == "arbiter":
            continue
        model_dir = results / "models"
        model_dir.mkdir(exist_ok=True)
        site_client.output.download_model(job_id=job_id, role=site.role, party_id=site.party_id, task_name="trainer",
                                     path=str(model_dir / site.name))
        pred_dir = runner.data_output_dir(site_home, job_id, site.role, site.party_id, "trainer", "predictions")
        preds = _read_predictions(pred_dir / "predictions.csv")
        held = [r for r in preds if r["patient_split"] == "val"]
        y = np.array([int(r["class"]) for r in held])
        p = np.array([float(r["probability"]) for r in held])
        all_y.append(y)
        all_p.append(p)
        evaluation_dir = runner.data_output_dir(site_home, job_id, site.role, site.party_id, "evaluation", "report")
        evaluation = json.loads((evaluation_dir / "evaluation.json").read_text())
        summary["sites"][site.name] = {"predictions": str(pred_dir / "submission.csv"),
                                       "heldout_cpm": evaluation["cpm"], "heldout_cpm_ci95": evaluation["cpm_ci95"],
                                       "heldout_candidates": len(held), "heldout_auc": candidate_auc(y, p),
                                       "final_train_loss": _last(metrics[site.name].get("train_loss"))}
    summary["heldout_auc"] = candidate_auc(np.concatenate(all_y), np.concatenate(all_p))
    (results / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (results / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary, metrics


def _last(series: dict | None):
    return series[max(series)] if series else None


def _read_predictions(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))
