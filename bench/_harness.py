"""What the benchmarks share: a standalone FATE-Flow of their own with the sample hospitals bound, and jobs on it."""
from __future__ import annotations

import contextlib
import copy
import json
import shutil
import sys
import tempfile
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
def bench_work(prefix: str) -> Iterator[Path]:
    """A temporary work folder, removed at the end (a federation_pays run leaves about 11 GB of patches)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def standalone_federation(work: Path, size: str, seed: int = 0, n_patients: int | None = None) -> Iterator[Federation]:
    """Start FATE-Flow in `work/flow` (free ports), generate and bind the three sample hospitals; stop by pid after."""
    from fate_components.core.synthetic.sites import generate_federation
    from fate_components.ops import flow_server
    from fate_components.ops.jobs import load_json, parse_sites
    from fate_components.ops.site_data import bind_site

    server = flow_server.start(work / "flow")
    try:
        client = server.client()
        site_dirs = generate_federation(work / "data", size=size, seed=seed, n_patients=n_patients)
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
    conf = copy.deepcopy(fed.conf)
    conf["parameters"]["common"]["trainer"].update(trainer)
    return run_conf(fed, conf, timeout_s)


def run_conf(fed: Federation, conf: dict, timeout_s: float = 7200) -> str:
    """Run the main job (dsl/lung.json) of `conf` on the federation's FATE-Flow, silently; returns the job id."""
    from fate_components.ops.jobs import compile_dag, load_json, parse_sites
    from fate_components.ops.runner import SiteEndpoints, submit_and_follow

    sites = parse_sites(conf)
    outcome = submit_and_follow(SiteEndpoints.standalone(fed.client, Path(fed.server.home), sites),
                                compile_dag(load_json(ROOT / "dsl" / "lung.json"), conf), sites, timeout_s=timeout_s,
                                printer=None)
    if not outcome.ok:
        raise RuntimeError(f"job {outcome.job_id} {outcome.status}: {outcome.reason}")
    return outcome.job_id


def model_dir(fed: Federation, job_id: str, site) -> Path:
    """The trainer's saved model of one site, in the party's job directory."""
    return next((Path(fed.server.home) / "jobs" / job_id / site.role / site.party_id).glob(
        "trainer/*/output/output_model/model_directory"))


def history(fed: Federation, job_id: str, site) -> list[dict]:
    return json.loads((model_dir(fed, job_id, site) / "model_meta.json").read_text())["history"]


class KeepLocal:
    """The aggregator of a single party: the weighted mean over one site is its own update."""

    def weighted_mean(self, handle, tag, arrays, weight):
        return arrays


def reader_spec(conf: dict):
    from fate_components.core.imaging.patches import PatchSpec

    r = conf["parameters"]["common"]["reader_all"]
    return r, PatchSpec(size_mm=r["patch_size_mm"], size_voxels=r["patch_voxels"], hu_min=r["hu_min"],
                        hu_max=r["hu_max"])


def site_datasets(fed: Federation, work: Path, negative_ratio: float = 0.0) -> dict:
    """Each site's training patches, memory-mapped, cut with the conf's reader settings: {site: SiteData}.

    negative_ratio > 0: the read-time subsample (every positive, that many negatives each, drawn once).
    """
    from fate_components.components._trainer import load_site_data
    from fate_components.core.data.patch_dataset import build_patch_dataset

    reader, spec = reader_spec(fed.conf)
    out = {}
    for name, site_dir in fed.site_dirs.items():
        target = work / "patches" / (f"{name}_ratio{negative_ratio:g}" if negative_ratio else name)
        build_patch_dataset(site_dir, target, spec=spec, mode="train", negative_ratio=negative_ratio,
                            val_fraction=reader["val_fraction"], seed=reader["seed"])
        out[name] = load_site_data(target)[1]
    return out


class Stacked:
    """Several (memory-mapped) patch arrays read as one, a batch at a time: pooling without copying."""

    def __init__(self, parts) -> None:
        import numpy as np

        self.parts = list(parts)
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])
        self.shape = (int(self.starts[-1]), *self.parts[0].shape[1:])
        self.dtype = self.parts[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        import numpy as np

        wanted = np.arange(len(self))[key]
        part = np.searchsorted(self.starts, wanted, side="right") - 1
        out = np.empty((len(wanted), *self.shape[1:]), dtype=self.dtype)
        for k in np.unique(part):
            mine = part == k
            out[mine] = self.parts[k][wanted[mine] - self.starts[k]]
        return out


def pool(parts):
    """The sites' data in one place (the centralized baseline), still read from each site's memory map."""
    import numpy as np

    from fate_components.core.federation.round_loop import SiteData

    parts = list(parts)
    return SiteData(Stacked(p.train_x for p in parts), np.concatenate([p.train_y for p in parts]),
                    Stacked(p.val_x for p in parts), np.concatenate([p.val_y for p in parts]),
                    train_groups=np.concatenate([p.train_groups for p in parts]))


def train_alone(data, conf: dict, trainer: dict, threads: int, model=None):
    """`run_site` on one party's data with the conf's trainer settings updated by `trainer`."""
    import torch

    from fate_components.core.federation.round_loop import run_site
    from fate_components.core.learning.model import build_model
    from fate_components.core.learning.training import TrainConfig

    torch.set_num_threads(threads)
    fields = TrainConfig.__dataclass_fields__
    config = TrainConfig(**{k: v for k, v in {**conf["parameters"]["common"]["trainer"], **trainer}.items()
                            if k in fields})
    if model is None:
        model = build_model(conf["parameters"]["common"]["trainer"]["model"], seed=config.seed)
    run_site(model, data, config, ((r, None) for r in range(config.rounds)), KeepLocal())
    return model


@dataclass
class HeldOut:
    """A common test set no site trains on, and LUNA16 scoring of a model on it (the official rules)."""

    x: object
    y: object
    scored_at: list
    nodules: list
    scans: list
    excluded: list

    def score(self, model, n_boot: int = 1000) -> tuple[float, float, float, float]:
        """(CPM, CI low, CI high, AUC)."""
        from fate_components.core.evaluation.auc import candidate_auc
        from fate_components.core.evaluation.froc import Scored, bootstrap_cpm
        from fate_components.core.learning.training import predict_proba

        p = predict_proba(model, self.x)
        scored = [Scored(uid, xyz, float(prob)) for (uid, xyz), prob in zip(self.scored_at, p)]
        cpm, low, high = bootstrap_cpm(scored, self.nodules, excluded=self.excluded, scans=self.scans,
                                       n_boot=n_boot, seed=0)
        return cpm, low, high, candidate_auc(self.y, p)


def held_out(work: Path, size: str, conf: dict, seed: int = 1, n_patients: int | None = None) -> HeldOut:
    """Patients of a new seed, dealt equally to the three scanner profiles, every candidate cut."""
    import numpy as np

    from fate_components.core.data.patch_dataset import PatchDataset, build_patch_dataset
    from fate_components.core.evaluation.submission import load_findings
    from fate_components.core.synthetic.sites import generate_federation

    reader, spec = reader_spec(conf)
    dirs = generate_federation(work / "heldout", size=size, seed=seed, split=(1 / 3, 1 / 3, 1 / 3),
                               n_patients=n_patients)
    xs, ys, scored_at, nodules, excluded, scans = [], [], [], [], [], []
    for name, site_dir in dirs.items():
        out = work / "patches" / f"heldout_{name}"
        build_patch_dataset(site_dir, out, spec=spec, mode="predict", seed=reader["seed"])
        dataset = PatchDataset(out)
        xs.append(dataset.patches)
        ys.append(dataset.labels)
        scored_at += [(r.seriesuid, r.world_xyz_mm) for r in dataset.table]
        nodules += load_findings(site_dir / "annotations.csv", excluded=False)
        if (site_dir / "annotations_excluded.csv").is_file():
            excluded += load_findings(site_dir / "annotations_excluded.csv", excluded=True)
        scans += sorted({r.seriesuid for r in dataset.table})
    return HeldOut(Stacked(xs), np.concatenate(ys), scored_at, nodules, scans, excluded)
