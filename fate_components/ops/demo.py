"""The README's one-command demo: sample hospitals, federated training, results, on one FATE-Flow or three sites.

`run` is the pipeline, written once: start the sites, generate the sample data, check and bind
each hospital, compile, submit and follow, collect results, write the report. What differs
between `fate-lung demo` (one standalone FATE-Flow, `Standalone` here) and `fate-lung deploy
demo` (three FATE sites, `multisite.ThreeSites`) is a `DemoSites`: how the sites start, the
check before submitting, and the lines that describe them.
"""
from __future__ import annotations

import copy
import json
import shutil
import time
from abc import ABC, abstractmethod
from argparse import Namespace
from pathlib import Path

from fate_components.core.errors import LungError

from . import flow_server, runner
from .jobs import Site, compile_dag, load_json, parse_sites
from .runner import SiteEndpoints
from .site_data import bind_site, check_site
from .workspace import Workspace

DEMO_ROUNDS = 12         # the conf's default is 20; the demo trades rounds for a short wall time
DEMO_LEARNING_RATE = 1e-3
# At LUNA16 density (about 850 candidates a scan) 36 patients keep `make demo` within 15 minutes here.
DEMO_LUNA16_PATIENTS = 36


class DemoSites(ABC):
    """Where the demo runs: starts the sites and describes them (step 1, 3 and 4 lines, the closing lines)."""

    bound_line = "each hospital's directory bound into FATE (flow table bind)"

    @abstractmethod
    def start(self, conf: dict) -> SiteEndpoints:
        """Start (or find running) every site's FATE-Flow, print step 1, return where each site answers."""

    @abstractmethod
    def training_line(self, trainer: dict) -> str:
        """Step 4's description of the training (`trainer`: the demo's trainer parameters)."""

    def preflight(self, conf: dict) -> None:
        """Refuse before submitting anything (nothing to check on one FATE-Flow that just bound every table)."""

    def report_again(self, job_id: str) -> str:
        """How to write the report again later, after the report line ("" where no command does it)."""
        return f"  (again with: fate-lung report {job_id})"

    def finish(self) -> None:
        """The closing lines: what keeps running and how to stop it."""


class Standalone(DemoSites):
    """Every party on one standalone FATE-Flow in `home`."""

    def __init__(self, home: Path, *, stop_after: bool = False) -> None:
        self.home = Path(home)
        self.stop_after = stop_after
        self.server: flow_server.FlowServer | None = None

    def start(self, conf: dict) -> SiteEndpoints:
        self.server = flow_server.start(self.home)
        print(f"[1/5] FATE-Flow standalone: {self.server.address} (pid {self.server.pid}, home {self.home})")
        return SiteEndpoints.standalone(self.server.client(), self.home, parse_sites(conf))

    def training_line(self, trainer: dict) -> str:
        return (f"training: {trainer['rounds']} rounds (the conf's default is 20; the demo runs fewer to finish "
                f"quickly), learning rate {trainer['learning_rate']}")

    def finish(self) -> None:
        if self.stop_after:
            flow_server.stop(self.home)
            print("      FATE-Flow stopped")
        else:
            print(f"      FATE-Flow keeps running at {self.server.address}; stop it with: fate-lung stop")


def run(args: Namespace, sites_at: DemoSites, workspace: Workspace) -> int:
    """The demo (`args`: the demo's command-line options); 0 when the job succeeded."""
    t_start = time.perf_counter()
    conf = load_json(Path(args.conf))
    endpoints = sites_at.start(conf)

    data_root = sample_data(workspace, args.size, args.seed, demo_patients(args.size, args.patients))
    print(f"[2/5] sample data for three hospitals in {data_root}")

    sites = parse_sites(conf)
    check_and_bind(endpoints, sites, data_root)
    print(f"[3/5] {sites_at.bound_line}")

    conf = _demo_conf(conf, args.rounds)
    print(f"[4/5] {sites_at.training_line(conf['parameters']['common']['trainer'])}")
    dag = compile_dag(load_json(Path(args.dsl)), conf)
    sites_at.preflight(conf)
    t_job = time.perf_counter()
    outcome = runner.submit_and_follow(endpoints, dag, sites, timeout_s=args.timeout,
                                       on_submitted=lambda job: print(f"      job {job['job_id']}"))
    job_seconds = time.perf_counter() - t_job
    job_id = outcome.job_id
    if not outcome.ok:
        print(f"job {job_id}: {outcome.status}\n{outcome.reason}")
        return 1

    results = workspace.results(job_id)
    summary, metrics = collect_results(endpoints, job_id, sites, results, job_seconds=job_seconds)
    print(f"[5/5] job {job_id} succeeded: job {job_seconds:.0f} s, all {time.perf_counter() - t_start:.0f} s")
    for name, info in summary["sites"].items():
        cpm, low, high = (x if x is not None else float("nan") for x in (info["heldout_cpm"],
                                                                          *info["heldout_cpm_ci95"]))
        print(f"      {name}: held-out candidate AUC {info['heldout_candidate_auc']:.3f} on "
              f"{info['heldout_candidates']} candidates, CPM {cpm:.3f} (95% CI {low:.2f}-{high:.2f}, LUNA16's "
              f"official rules) of unseen patients; predictions {info['predictions']}")
    print(f"      all sites, held-out candidate AUC: {summary['heldout_candidate_auc']:.3f}")
    guest = next(s for s in sites if s.role == "guest")
    print(f"      models:  {results / 'models'}  (also: flow output download-model -j {job_id} -r guest -p "
          f"{guest.party_id} -tn trainer -o DIR)")
    print(f"      metrics: {results / 'metrics.json'}  (also: flow output query-metric -j {job_id} -r guest -p "
          f"{guest.party_id} -tn trainer)")
    print(f"      summary: {results / 'summary.json'}")
    from .report import collect, write_report

    page = write_report(collect(endpoints, job_id, sites, metrics), results / "report")
    print(f"      report:  {page}{sites_at.report_again(job_id)}")
    sites_at.finish()
    return 0


def demo_patients(size: str, patients: int | None) -> int | None:
    """The demo's patient count: what was asked for, else DEMO_LUNA16_PATIENTS at luna16 density."""
    return patients if patients is not None else (DEMO_LUNA16_PATIENTS if size == "luna16" else None)


def sample_data(workspace: Workspace, size: str, seed: int, n_patients: int | None = None) -> Path:
    """The three sample hospitals of (size, seed, patients), generated once into the workspace and reused."""
    from fate_components.core.synthetic.sites import generate_federation

    name = f"{size}-seed{seed}" + (f"-{n_patients}patients" if n_patients is not None else "")
    data_root = workspace.data(name)
    if not (data_root / ".complete").exists():
        shutil.rmtree(data_root, ignore_errors=True)
        t0 = time.perf_counter()
        generate_federation(data_root, size=size, seed=seed, n_patients=n_patients)
        (data_root / ".complete").write_text("")
        print(f"      generated in {time.perf_counter() - t0:.0f} s")
    return data_root


def check_and_bind(endpoints: SiteEndpoints, sites: list[Site], data_root: Path) -> None:
    """Each hospital checks its directory `data_root/<site>` and binds it into its own FATE-Flow, and nowhere else."""
    for site in sites:
        if site.role == "arbiter":
            continue
        site_dir = data_root / site.name
        report = check_site(site_dir)
        print(f"      {report.summary()}")
        if not report.ok:
            raise LungError(f"sample data for {site.name} failed its check")
        table = site.tables["site"]
        bind_site(endpoints.client_of(site.name), site_dir, namespace=table["namespace"], name=table["name"])


def _demo_conf(conf: dict, rounds: int | None) -> dict:
    conf = copy.deepcopy(conf)
    trainer = conf["parameters"]["common"]["trainer"]
    trainer["rounds"] = rounds or DEMO_ROUNDS
    trainer["learning_rate"] = DEMO_LEARNING_RATE
    return conf


def collect_results(endpoints: SiteEndpoints, job_id: str, sites: list[Site], results: Path, *,
                    job_seconds: float | None = None) -> tuple[dict, dict]:
    """Download models and metrics from each site's FATE-Flow; score its held-out patients; returns (summary, metrics).

    The AUCs are candidate-level ROC AUCs (`heldout_candidate_auc`), not the FROC's detection AUC that
    `lung_evaluation` reports as `detection_auc`.
    """
    import numpy as np

    from fate_components.core.evaluation.auc import candidate_auc

    results.mkdir(parents=True, exist_ok=True)
    metrics, summary = {}, {"job_id": job_id, "sites": {}}
    all_y, all_p = [], []
    for site in sites:
        site_client, site_home = endpoints.client_of(site.name), endpoints.home_of(site.name)
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
                                       "heldout_candidates": len(held), "heldout_candidate_auc": candidate_auc(y, p),
                                       "final_train_loss": _last(metrics[site.name].get("train_loss"))}
    summary["heldout_candidate_auc"] = candidate_auc(np.concatenate(all_y), np.concatenate(all_p))
    if job_seconds is not None:
        summary["job_seconds"] = job_seconds
    (results / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (results / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary, metrics


def _last(series: dict | None):
    return series[max(series)] if series else None


def _read_predictions(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))
