"""Run jobs: submit a compiled DAG (`jobs.py` compiles it) to FATE-Flow, follow it round by round, find its outputs.

`submit_and_follow` is the one way every caller runs a job (`fate-lung submit`, both demos, the
benchmarks, the end-to-end and deploy tests). `SiteEndpoints` says where each site's FATE-Flow
answers and keeps its outputs: one server for all sites standalone, one per site multi-site.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fate_components.core.errors import LungError

from .jobs import Site, parse_sites
from .site_data import table_bound

FINAL_STATES = {"success", "failed", "canceled", "timeout"}


class JobError(LungError):
    """A FATE job was refused, failed, or did not finish in time."""


@dataclass(frozen=True)
class SiteEndpoints:
    """Each site's FATE-Flow client and home, by site name; jobs are submitted and followed at the guest's.

    A home is None for a server known only by address (`--ip/--port`): its outputs cannot be read from disk.
    """

    clients: dict[str, Any]
    homes: dict[str, Path | None]
    initiator: str   # the guest's site name

    @classmethod
    def standalone(cls, client, home: Path | None, sites: list[Site]) -> SiteEndpoints:
        """Every site on one FATE-Flow."""
        guest = next(s for s in sites if s.role == "guest")
        home = Path(home) if home is not None else None
        return cls({s.name: client for s in sites}, {s.name: home for s in sites}, guest.name)

    @property
    def client(self):
        """The FATE-Flow that jobs are submitted at (the guest's)."""
        return self.clients[self.initiator]

    @property
    def home(self) -> Path | None:
        return self.homes[self.initiator]

    def client_of(self, site: str):
        return self.clients[site]

    def home_of(self, site: str) -> Path | None:
        return self.homes[site]


def check_tables(client, conf: dict) -> None:
    """Refuse to submit when a site's table is not bound in this FATE-Flow (nothing is submitted)."""
    missing = []
    for site in parse_sites(conf):
        for key, table in site.tables.items():
            if not table_bound(client, table["namespace"], table["name"]):
                missing.append(f"{site.name} ({site.role} {site.party_id}): table {table['namespace']}/{table['name']}")
    if missing:
        raise JobError("tables not bound, nothing submitted:\n  " + "\n  ".join(missing) +
                       "\nbind each site first: flow table bind -ns NAMESPACE -n NAME -o /path/to/site "
                       "(or fate-lung bind-site)")


def submit(client, dag: dict) -> dict:
    response = client.job.submit(dag)
    if response.get("code") != 0:
        raise JobError(f"FATE-Flow refused the job: {response.get('message')} (code {response.get('code')})")
    return {"job_id": response["job_id"], **response.get("data", {})}


def job_status(client, job_id: str) -> str:
    response = client.job.query(job_id=job_id)
    jobs = response.get("data") or []
    statuses = {j["status"] for j in jobs}
    if not statuses:
        return "unknown"
    for state in ("failed", "canceled", "timeout"):
        if state in statuses:
            return state
    return "success" if statuses == {"success"} else sorted(statuses - {"success"})[0]


def _metric_rows(client, job_id: str, role: str, party_id: str, task: str) -> list[dict]:
    response = client.output.query_metric(job_id=job_id, role=role, party_id=party_id, task_name=task)
    return response.get("data") or [] if response.get("code") == 0 else []


def step_metrics(client, job_id: str, role: str, party_id: str, task: str) -> dict[str, dict[int, float]]:
    """{metric name: {round: value}} for one party's task."""
    out: dict[str, dict[int, float]] = {}
    for metric in _metric_rows(client, job_id, role, party_id, task):
        if metric.get("step_axis") is None:
            continue
        for point in metric.get("data", []):
            out.setdefault(metric["name"], {})[int(point["step"])] = point["metric"]
    return out


def summaries(client, job_id: str, role: str, party_id: str, task: str) -> dict[str, dict]:
    """{table: data} of one party's task's one-time `summary` metrics (reader_summary, froc_summary,
    train_summary, predict_summary: the metric's type names the table; see components/_metrics.py)."""
    return {metric.get("type") or "summary": metric["data"]
            for metric in _metric_rows(client, job_id, role, party_id, task)
            if metric.get("name") == "summary" and metric.get("step_axis") is None}


def evaluation_metric(client, job_id: str, role: str, party_id: str, task: str) -> dict | None:
    """FATE's `evaluation` metric of a task ({upstream task: {dataset: [{metric, val}, ...]}}), if it logged one."""
    for metric in _metric_rows(client, job_id, role, party_id, task):
        if metric.get("name") == "evaluation" and metric.get("step_axis") is None:
            return metric["data"]
    return None


@dataclass
class RoundProgress:
    """Prints one line per finished round with every site's figures, as soon as all sites reported it."""

    endpoints: SiteEndpoints
    job_id: str
    task: str
    sites: list[Site]
    rounds: int
    printer: Callable[[str], None] = print
    shown: int = 0
    history: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)

    def poll(self) -> None:
        data_sites = [s for s in self.sites if s.role != "arbiter"]
        for site in data_sites:
            self.history[site.name] = step_metrics(self.endpoints.client_of(site.name), self.job_id, site.role,
                                                   site.party_id, self.task)
        while True:
            r = self.shown
            # global_val_loss is logged last in a round: once it is there, the round is complete.
            if not all(r in self.history[s.name].get("global_val_loss", {}) for s in data_sites):
                return
            parts = [f"{s.name} loss: {self.history[s.name]['train_loss'][r]:.3f}" for s in data_sites]
            global_val = self.history[data_sites[0].name].get("global_val_loss", {}).get(r)
            aucs = [self.history[s.name].get("val_auc", {}).get(r) for s in data_sites]
            aucs = [a for a in aucs if a is not None and a >= 0]
            tail = f" | global val loss: {global_val:.3f}" if global_val is not None else ""
            tail += f" | val AUC: {', '.join(f'{a:.2f}' for a in aucs)}" if aucs else ""
            # Figures only some jobs log (DP, Paillier): one column per site, "-" where a site has none.
            for metric, label, scale in (("epsilon", "epsilon", 1.0), ("bytes_sent", "MB sent", 1e-6)):
                values = [self.history[s.name].get(metric, {}).get(r) for s in data_sites]
                if any(v is not None for v in values):
                    tail += f" | {label}: " + ", ".join("-" if v is None else f"{v * scale:.2f}" for v in values)
            self.printer(f"[Round {r + 1}/{self.rounds}] " + " | ".join(parts) + tail)
            self.shown += 1


def wait(client, job_id: str, *, timeout_s: float, progress: RoundProgress | None = None,
         poll_s: float = 3.0, printer: Callable[[str], None] = print) -> str:
    """Block until the job ends; returns its final status. Raises JobError on timeout."""
    deadline = time.monotonic() + timeout_s
    last_tasks = ""
    while time.monotonic() < deadline:
        status = job_status(client, job_id)
        if progress is not None:
            try:
                progress.poll()
            except Exception as e:  # the display must never kill the wait
                printer(f"(progress display: {e})")
        tasks = _task_summary(client, job_id)
        if tasks != last_tasks:
            printer(f"  tasks: {tasks}")
            last_tasks = tasks
        if status in FINAL_STATES:
            if progress is not None:
                progress.poll()
            return status
        time.sleep(poll_s)
    raise JobError(f"job {job_id} did not finish within {timeout_s:.0f} s; it is still running in FATE-Flow "
                   f"(stop it with: flow job stop -j {job_id})")


@dataclass(frozen=True)
class JobOutcome:
    """How a followed job ended: FATE-Flow's submit answer (job_id, model_id, model_version), the final
    status, and on failure the failed tasks with their error lines."""

    job: dict
    status: str
    reason: str = ""

    @property
    def job_id(self) -> str:
        return self.job["job_id"]

    @property
    def ok(self) -> bool:
        return self.status == "success"


def training_task(dag: dict) -> str | None:
    """The DAG's train-stage `homo_lung_nn` task, whose rounds the progress line follows (None: no training)."""
    tasks = dag["dag"]["tasks"]
    return next((name for name, t in tasks.items()
                 if t["component_ref"] == "homo_lung_nn" and t.get("stage") == "train"), None)


def submit_and_follow(endpoints: SiteEndpoints, dag: dict, sites: list[Site], *, timeout_s: float,
                      printer: Callable[[str], None] | None = print,
                      on_submitted: Callable[[dict], None] | None = None) -> JobOutcome:
    """Submit `dag` at the guest's FATE-Flow and block until it ends, printing the task states and one
    progress line per finished round (`printer=None`: follow silently, without polling round metrics).

    `on_submitted` sees FATE-Flow's answer as soon as the job is accepted. Raises JobError if FATE-Flow
    refuses the job or it does not end within `timeout_s`.
    """
    job = submit(endpoints.client, dag)
    if on_submitted is not None:
        on_submitted(job)
    progress = None
    trainer = training_task(dag) if printer is not None else None
    if trainer is not None:
        rounds = dag["dag"]["tasks"][trainer]["parameters"].get("rounds", 20)   # homo_lung_nn's default
        progress = RoundProgress(endpoints=endpoints, job_id=job["job_id"], task=trainer, sites=sites, rounds=rounds,
                                 printer=printer)
    status = wait(endpoints.client, job["job_id"], timeout_s=timeout_s, progress=progress,
                  printer=printer if printer is not None else _silent)
    reason = "" if status == "success" else failure_reason(endpoints.client, job["job_id"], endpoints.home)
    return JobOutcome(job=job, status=status, reason=reason)


def _silent(_: str) -> None:
    pass


def _task_summary(client, job_id: str) -> str:
    response = client.task.query(job_id=job_id)
    tasks: dict[str, set] = {}
    for t in response.get("data") or []:
        tasks.setdefault(t["task_name"], set()).add(t["status"])
    return ", ".join(f"{name}={'/'.join(sorted(st))}" for name, st in sorted(tasks.items()))


def failure_reason(client, job_id: str, home: Path | None = None) -> str:
    """The failed tasks and the tail of their error log, so the user sees why without digging."""
    response = client.task.query(job_id=job_id)
    lines = []
    for t in response.get("data") or []:
        if t["status"] in ("failed", "timeout", "canceled"):
            lines.append(f"task {t['task_name']} {t['role']} {t['party_id']}: {t['status']}")
            if home is not None:
                lines.extend(_task_error_tail(Path(home), job_id, t))
    return "\n".join(lines) or "no failed task recorded"


def _task_error_tail(home: Path, job_id: str, task: dict) -> list[str]:
    """The exception line of a failed task, from FATE-Flow's per-task component ERROR log."""
    path = home / "logs" / job_id / task["role"] / task["party_id"] / task["task_name"] / "component" / "ERROR"
    if not path.is_file():
        return [f"    (no error log at {path})"]
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    # The last line of a traceback is "ExceptionType: message".
    exc = [line for line in lines if not line.startswith((" ", "[", "Traceback"))]
    return ["    " + line[:500] for line in exc[-1:]] + [f"    log: {path}"]


def data_output_dir(home: Path, job_id: str, role: str, party_id: str, task: str, key: str) -> Path:
    """Where a standalone FATE-Flow keeps a task's data-directory output (on that party's own machine).

    FATE 2.2 tracks directory outputs under the generic name `output_data/data_directory`, so
    `flow output download-data` cannot tell them apart; the task directory is unambiguous.
    """
    base = Path(home) / "jobs" / job_id / role / str(party_id) / task
    found = sorted(base.glob(f"*/output/{key}/data_directory"), key=lambda p: int(p.parts[-4]))
    if not found:
        raise JobError(f"no output {key!r} of task {task} for {role} {party_id} under {base}")
    return found[-1]
