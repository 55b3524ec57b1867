"""Glue between the `homo_lung_nn` component and the core: artifacts in, core calls, artifacts and metrics out."""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from fate_components.core.data.patch_dataset import PatchDataset
from fate_components.core.data.patch_file import RowView
from fate_components.core.errors import ConfigError, LungError
from fate_components.core.federation.checkpoints import CheckpointStore
from fate_components.core.federation.round_loop import RoundReport, SiteData, run_server, run_site
from fate_components.core.federation.state import TrainingState
from fate_components.core.imaging.patch_presets import check_same_patch_spec
from fate_components.core.learning.device import model_device, resolve_device, site_device_problem
from fate_components.core.learning.model import ModelConfig, build_model, count_parameters
from fate_components.core.learning.model_io import load_model, replace_file, save_model
from fate_components.core.learning.signature import model_signature
from fate_components.core.learning.training import TrainConfig, predict_proba, resolve_inference_precision
from fate_components.core.privacy.dp import DPConfig, planned_rounds

from . import _metrics
from ._artifacts import publish_directory
from ._federation import agree_min, arbiter_check, check_aggregation, make_client, make_server, site_check

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainJob:
    """One party's training settings, as `homo_lung_nn` received them (the same at every party but site_name)."""

    site_name: str
    config: TrainConfig
    privacy: DPConfig
    model: ModelConfig
    aggregation: str
    agg_options: dict = field(default_factory=dict)   # paillier, allow_plaintext, strict_check
    checkpoint_dir: str = ""
    resume: bool = False
    inference_precision: str = "auto"   # auto, float32, bfloat16 (training.resolve_inference_precision)
    device: str = "auto"   # auto, cpu, cuda, cuda:N (learning.device); checked before round 1 by the arbiter

    @property
    def allow_plaintext(self) -> bool:
        return bool(self.agg_options.get("allow_plaintext", False))


@dataclass(frozen=True)
class SiteArtifacts:
    """A site's FATE inputs and outputs of the train stage (None where the DSL does not connect one)."""

    train_data: Any
    test_data: Any = None
    warm_start_model: Any = None
    output_model: Any = None
    predictions: Any = None


def limit_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # only settable before the first parallel op; harmless if already set
        pass


def load_site_data(directory: Path) -> tuple[PatchDataset, SiteData]:
    dataset = PatchDataset(Path(directory))
    labels = dataset.labels
    train_idx, val_idx = dataset.split("train"), dataset.split("val")
    patches = dataset.patches   # read from disk batch by batch, as training draws them
    patient_of = [row.seriesuid for row in dataset.table]   # one seriesuid = one patient
    return dataset, SiteData(train_x=RowView(patches, train_idx), train_y=labels[train_idx],
                             val_x=RowView(patches, val_idx), val_y=labels[val_idx],
                             train_groups=np.asarray([patient_of[i] for i in train_idx], dtype=object))


def _dp_plan(privacy: DPConfig, config: TrainConfig, data: SiteData, n_sites: int) -> tuple[int, str | None]:
    """(rounds this site's privacy budget allows, or the reason its DP settings do not fit it)."""
    try:
        groups = data.train_groups if data.train_groups is not None else []
        return planned_rounds(privacy, rounds=config.rounds, local_epochs=config.local_epochs,
                              batch_size=config.batch_size, n_patients=len(set(groups)), n_sites=n_sites), None
    except LungError as e:
        return 0, str(e)


class RoundMetrics:
    """Round observer: the site's per-round FATE metrics, its log line, and the history kept in the model's meta.

    One loss-typed series (train_loss) per task, the rest non-loss types: see _metrics' docstring.
    global_val_loss stays last: the progress line takes it as "this round is complete".
    """

    def __init__(self, ctx, site_name: str, paillier_stats: Callable[[], Any] | None) -> None:
        self._ctx, self._site_name, self._paillier_stats = ctx, site_name, paillier_stats
        self.history: list[dict] = []

    def round_done(self, report: RoundReport, state: Callable[[], TrainingState], round_handle: Any) -> None:
        round_ctx = self._ctx.on_iterations.indexed_ctx(report.round)
        _metrics.log_round_loss(round_ctx, "train_loss", report.train_loss)
        _metrics.log_round(round_ctx, "val_loss", _metrics.non_finite_to_minus_one(report.val["loss"]))
        _metrics.log_round(round_ctx, "val_auc", _metrics.non_finite_to_minus_one(report.val["auc"]), type="auc")
        stats = self._paillier_stats() if self._paillier_stats is not None else None
        if stats is not None:
            _metrics.log_round(round_ctx, "paillier_encrypt_seconds", stats.encrypt_seconds)
            _metrics.log_round(round_ctx, "paillier_decrypt_seconds", stats.decrypt_seconds)
            _metrics.log_round(round_ctx, "bytes_sent", float(stats.bytes_sent))
            _metrics.log_round(round_ctx, "clipped_values", float(stats.clipped))
        _metrics.log_round(round_ctx, "learning_rate", report.learning_rate)
        epsilon = report.epsilon
        if epsilon is not None and math.isfinite(epsilon):
            _metrics.log_round(round_ctx, "epsilon", epsilon)
        if report.update_norm is not None:
            _metrics.log_round(round_ctx, "update_norm", report.update_norm)
        _metrics.log_round(round_ctx, "global_val_loss", report.global_val_loss)
        self.history.append({"round": report.round, "train_loss": report.train_loss, "val": report.val,
                             "learning_rate": report.learning_rate, "best_round": report.best_round,
                             "global_val_loss": report.global_val_loss, "train_seconds": report.train_seconds,
                             "aggregate_seconds": report.aggregate_seconds, "epsilon": epsilon,
                             "budget_spent": report.budget_spent})
        logger.info("[Round %d] %s loss: %.4f | val loss %.4f auc %.3f | global val loss %.4f%s", report.round + 1,
                    self._site_name, report.train_loss, report.val["loss"], report.val["auc"],
                    report.global_val_loss, f" | epsilon {epsilon:.3g}" if epsilon is not None else "")


class ContinueSignal:
    """Round observer of the guest: tells the arbiter whether the sites continue (every site decided the same)."""

    def round_done(self, report: RoundReport, state: Callable[[], TrainingState], round_handle: Any) -> None:
        round_handle.sub_ctx("control").arbiter.put("continue", not report.stopped)


def train_site(ctx, job: TrainJob, artifacts: SiteArtifacts) -> None:
    config, privacy = job.config, job.privacy
    check_aggregation(job.aggregation, job.allow_plaintext)
    dataset, data = load_site_data(artifacts.train_data.get_directory())
    test_set = None
    if artifacts.test_data is not None:   # before round 1: the model pools any patch size, so nothing else would
        test_set = PatchDataset(Path(artifacts.test_data.get_directory()))
        check_same_patch_spec(test_set.summary["patch_spec"], dataset.summary["patch_spec"])
    model = build_model(job.model, seed=config.seed)
    if artifacts.warm_start_model is not None:
        warm, _ = load_model(Path(artifacts.warm_start_model.get_directory()))
        model.load_state_dict(warm.state_dict())
    logger.info("%s: %d train / %d val patches, model with %d parameters", job.site_name, len(data.train_x),
                len(data.val_x), count_parameters(model))
    n_sites = 1 + len(ctx.hosts)
    budget_rounds, dp_error = _dp_plan(privacy, config, data, n_sites)
    # A device this site cannot use fails every party before round 1, naming the site (the arbiter's verdict).
    device, device_error = site_device_problem(job.device, privacy.mode)
    site_check(ctx, job.site_name, {"signature": model_signature(model), "patch_spec": dataset.summary["patch_spec"],
                                    "schedule": {"rounds": config.rounds, "aggregation": job.aggregation,
                                                 "patience": config.patience, "dp": privacy.to_dict()},
                                    "dp_error": dp_error, "device_error": device_error})
    if device is None:   # the verdict names it; this only guards a check that let it through
        raise ConfigError(f"{job.site_name}: {device_error}")
    logger.info("%s: training on %s", job.site_name, device)
    # The sites (not the arbiter) agree on the rounds every site's budget allows.
    max_rounds = agree_min(ctx, "dp_rounds", budget_rounds) if privacy.max_epsilon is not None else None
    if max_rounds is not None and max_rounds < config.rounds:
        logger.info("%s: the privacy budget (max_epsilon %s) allows %d of %d rounds", job.site_name,
                    privacy.max_epsilon, max_rounds, config.rounds)
    store, resume_state = _checkpoints(ctx, job, model)
    aggregator = make_client(job.aggregation, job.agg_options).setup(ctx)
    # Paillier's client measures each exchange (encryption, bytes); the other schemes have no such figures.
    metrics = RoundMetrics(ctx, job.site_name,
                           (lambda: aggregator.last.get("model")) if job.aggregation == "paillier" else None)
    observers = [metrics, *([store] if store else []), *([ContinueSignal()] if ctx.is_on_guest else [])]
    try:
        run_site(model, data, config, ctx.on_iterations.ctxs_range(config.rounds), aggregator, privacy=privacy,
                 n_sites=n_sites, max_rounds=max_rounds, observers=observers, resume=resume_state, device=device)
    finally:
        aggregator.close()
    history = metrics.history
    meta = {"model_config": job.model.to_dict(), "train_config": config.to_dict(), "aggregation": job.aggregation,
            "patch_spec": dataset.summary["patch_spec"], "torch": str(torch.__version__), "site_name": job.site_name,
            "n_train": len(data.train_x), "n_val": len(data.val_x), "history": history,
            "dp": {**privacy.to_dict(), "epsilon": history[-1]["epsilon"] if history else None,
                   "rounds_trained": len(history)}}
    if artifacts.output_model is not None:
        save_model(Path(artifacts.output_model.get_directory()), model, meta)
        artifacts.output_model.write_metadata({"model_config": meta["model_config"], "rounds": config.rounds})
    scored = None
    if test_set is not None and artifacts.predictions is not None:
        scored = _write_predictions(model, test_set, artifacts.predictions, job.inference_precision)
    _metrics.log_summary(ctx, "train_summary", site_train_summary(job.site_name, job.aggregation, meta, scored))


def site_train_summary(site_name: str, aggregation: str, meta: dict, candidates_scored: int | None) -> dict:
    """The site's one-time training table (flat keys): what the last round ended with."""
    history = meta["history"]
    last = history[-1] if history else None
    summary = {"site_name": site_name, "aggregation": aggregation, "rounds_planned": meta["train_config"]["rounds"],
               "rounds_trained": len(history), "n_train": meta["n_train"], "n_val": meta["n_val"]}
    if last is not None:
        best = last.get("best_round")
        summary.update(best_round=best + 1 if best is not None and best >= 0 else None,
                       final_train_loss=last["train_loss"], final_val_loss=last["val"]["loss"],
                       final_val_auc=last["val"]["auc"], final_global_val_loss=last["global_val_loss"],
                       train_seconds=sum(h["train_seconds"] for h in history),
                       aggregate_seconds=sum(h["aggregate_seconds"] for h in history))
    if meta["dp"].get("mode", "none") != "none":
        summary.update(dp_mode=meta["dp"]["mode"], epsilon=meta["dp"]["epsilon"])
    if candidates_scored is not None:
        summary["candidates_scored"] = candidates_scored
    return summary


def _checkpoints(ctx, job: TrainJob, model: torch.nn.Module) -> tuple[CheckpointStore | None, TrainingState | None]:
    """The site's checkpoint store and, on resume, the state after the last round every site completed.

    The sites agree on that round among themselves; the guest tells the arbiter where to continue.
    """
    fingerprint = hashlib.sha256(json.dumps({"model": model_signature(model)["hash"], "train": job.config.to_dict(),
                                             "aggregation": job.aggregation, "dp": job.privacy.to_dict()},
                                            sort_keys=True, default=str).encode()).hexdigest()
    store = CheckpointStore(Path(job.checkpoint_dir), fingerprint) if job.checkpoint_dir else None
    if not job.resume:
        if store is not None:
            store.clear()   # a fresh job: earlier checkpoints in this directory are not its rounds
        return store, None
    if store is None:
        raise ConfigError(f"{job.site_name}: resume needs checkpoint_dir (set it for every site under "
                          f"parameters.sites)")
    agreed = agree_min(ctx, "resume_round", store.last_round())
    if ctx.is_on_guest:
        ctx.sub_ctx("resume").arbiter.put("round", agreed)
    if agreed < 0:
        logger.warning("%s: resume asked, but not every site holds a checkpoint: training starts at round 1",
                       job.site_name)
        return store, None
    logger.info("%s: resuming after round %d, the last round every site completed", job.site_name, agreed + 1)
    return store, store.load(agreed)


def train_arbiter(ctx, job: TrainJob, output_model) -> None:
    config, aggregation = job.config, job.aggregation
    check_aggregation(aggregation, job.allow_plaintext)
    arbiter_check(ctx, check_torch_version=job.agg_options.get("strict_check", True))
    start_after = int(ctx.sub_ctx("resume").guest.get("round")) if job.resume else -1
    server = make_server(aggregation, job.agg_options, ctx)
    rounds = []

    def on_round(round_idx: int, global_val_loss: float | None, seconds: float) -> None:
        round_ctx = ctx.on_iterations.indexed_ctx(round_idx)
        _metrics.log_round(round_ctx, "round_seconds", seconds)
        if global_val_loss is not None:   # its one loss series (no training loss); None under Paillier
            _metrics.log_round_loss(round_ctx, "global_val_loss", global_val_loss)
        rounds.append({"round": round_idx, "round_seconds": seconds})

    run_server(ctx.on_iterations.ctxs_range(config.rounds), server, on_round,
               should_continue=lambda handle: bool(handle.sub_ctx("control").guest.get("continue")),
               start_after=start_after)
    if output_model is not None:
        directory = Path(output_model.get_directory())
        summary = {"aggregation": aggregation, "rounds": rounds}
        if aggregation == "paillier":   # what the arbiter received, for the privacy audit
            summary["audit"] = server.audit()
        replace_file(directory / "arbiter_summary.json", lambda p: p.write_text(json.dumps(summary, indent=2)))
        output_model.write_metadata({"aggregation": aggregation, "rounds": config.rounds})
    seconds = [r["round_seconds"] for r in rounds]
    _metrics.log_summary(ctx, "train_summary", {"aggregation": aggregation, "rounds_planned": config.rounds,
                                                "rounds_run": len(rounds), "round_seconds_total": sum(seconds),
                                                "round_seconds_mean": sum(seconds) / len(seconds) if seconds
                                                else None})


def _write_predictions(model: torch.nn.Module, dataset: PatchDataset, predictions,
                       precision: str = "auto") -> int:
    """predictions.csv (with class and patient split) and a LUNA16 submission.csv, then register the output."""
    precision = resolve_inference_precision(precision, model_device(model))
    logger.info("scoring %d candidates in %s", len(dataset), precision)
    probabilities = predict_proba(model, dataset.patches, precision=precision)
    out_dir = Path(predictions.get_directory())
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = dataset.table

    def writer(with_labels: bool):
        def write(path: Path) -> None:
            with open(path, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["seriesuid", "coordX", "coordY", "coordZ",
                            *(["class", "patient_split"] if with_labels else []), "probability"])
                for row, p in zip(rows, probabilities):
                    w.writerow([row.seriesuid, *row.world_xyz_mm,
                                *([row.label, row.patient_split] if with_labels else []), f"{p:.6f}"])
        return write

    replace_file(out_dir / "predictions.csv", writer(with_labels=True))
    replace_file(out_dir / "submission.csv", writer(with_labels=False))
    publish_directory(predictions, {"candidates_scored": len(rows)})
    return len(rows)


def predict_site(ctx, test_data, input_model, predictions, inference_precision: str = "auto",
                 device: str = "auto") -> None:
    model, meta = load_model(Path(input_model.get_directory()))
    model.to(resolve_device(device))   # no federation in predict: a device that is not there fails here
    dataset = PatchDataset(Path(test_data.get_directory()))
    check_same_patch_spec(dataset.summary["patch_spec"], meta["patch_spec"])
    precision = resolve_inference_precision(inference_precision, model_device(model))   # what "auto" means here
    n = _write_predictions(model, dataset, predictions, precision)
    _metrics.log_summary(ctx, "predict_summary", {"candidates_scored": n, "model_site_name": meta.get("site_name"),
                                                  "model_rounds_trained": len(meta.get("history", [])),
                                                  "inference_precision": precision})


def require_predict_io(test_data, predictions) -> None:
    """The predict stage declares test_data and predictions optional (as the train stage does, so that
    FATE can describe the component); it cannot run without them."""
    missing = [name for name, value in (("test_data", test_data), ("predictions", predictions)) if value is None]
    if missing:
        raise ConfigError(f"homo_lung_nn (stage predict): no {' and no '.join(missing)}; the predict task needs "
                          f'"inputs": {{"test_data": {{"task": "<a luna16_reader task with mode predict>", '
                          f'"output": "output_data"}}}} in its DSL, as dsl/lung_predict.json has')
