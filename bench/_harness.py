"""What the benchmarks share: a standalone FATE-Flow of their own with the sample hospitals bound, and jobs on it."""
from __future__ import annotations

import contextlib
import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass
class Federation:
    server: object          # fate_components.ops.flow_server.FlowServer
    client: object          # fate_client FlowClient
    conf: dict              # conf/lung_conf.json
    sites: list             # parsed sites, arbiter included
    site_dirs: dict[str, Path]


@contextlib.contextmanager
def standalone_federation(work: Path, size: str, seed: int = 0) -> Iterator[Federation]:
    """Start FATE-Flow in `work/flow` (free ports), generate and bind the three sample hospitals; stop by pid after."""
    from fate_components.core.sample_data import generate_federation
    from fate_components.ops import flow_server
    from fate_components.ops.jobs import load_json, parse_sites
    from fate_components.ops.site_data import bind_site

    server = flow_server.start(work / "flow")
    try:
        client = server.client()
        site_dirs = generate_federation(work / "data", size=size, seed=seed)
        conf = load_json(ROOT / "conf" / "lung_conf.json")
        sites = parse_sites(conf)
        for site in sites:
            if site.role != "arbiter":
                table = site.tables["site"]
                bind_site(client, site_dirs[site.name], namespace=table["namespace"], name=table["name"])
        yield Federation(server, client, conf, sites, site_dirs)
    finally:
        flow_server.stop(work / "flow")


def run_job(fed: Federation, trainer: dict, timeout_s: float = 7200) -> str:
    """Run the main job (dsl/lung.json) with these trainer parameters on top of the conf's; returns the job id."""
    from fate_components.ops import runner
    from fate_components.ops.jobs import compile_dag, load_json

    conf = copy.deepcopy(fed.conf)
    conf["parameters"]["common"]["trainer"].update(trainer)
    job = runner.submit(fed.client, compile_dag(load_json(ROOT / "dsl" / "lung.json"), conf))
    status = runner.wait(fed.client, job["job_id"], timeout_s=timeout_s, printer=lambda _: None)
    if status != "success":
        raise RuntimeError(f"job {job['job_id']} {status}: "
                           f"{runner.failure_reason(fed.client, job['job_id'], Path(fed.server.home))}")
    return job["job_id"]


def model_dir(fed: Federation, job_id: str, site) -> Path:
    """The trainer's saved model of one site, in the party's job directory."""
    return next((Path(fed.server.home) / "jobs" / job_id / site.role / site.party_id).glob(
        "trainer/*/output/output_model/model_directory"))


def history(fed: Federation, job_id: str, site) -> list[dict]:
    return json.loads((model_dir(fed, job_id, site) / "model_meta.json").read_text())["history"]
