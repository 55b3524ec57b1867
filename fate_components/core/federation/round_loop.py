"""The federated-averaging round loop, written against a small aggregation interface.

The loop knows nothing of FATE or of how the average is protected: a site hands its
parameters and its sample count to an `UpdateAggregator` and gets the weighted mean of
all sites back. FATE's mask-based secure aggregation implements it today; a Paillier
aggregator plugs in at the same seam.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

import numpy as np
import torch
from torch import nn

from fate_components.core.data.negative_sampling import EpochSampler
from fate_components.core.data.patch_file import RowView
from fate_components.core.errors import ConfigError
from fate_components.core.learning.training import (
    TrainConfig,
    augment_3d,
    evaluate,
    get_parameters,
    predict_proba,
    set_parameters,
    train_local,
)
from fate_components.core.privacy.dp import (
    DPConfig,
    PatientDPSGD,
    epsilon_for,
    privatize_update,
    secret_generator,
    train_local_dp,
)

__all__ = ["UpdateAggregator", "AggregationServer", "SiteData", "RoundReport", "run_site", "run_server"]


class UpdateAggregator(Protocol):
    """Client half of an aggregation scheme. `round_handle` is the transport's per-round context."""

    def weighted_mean(self, round_handle: Any, tag: str, arrays: list[np.ndarray], weight: float) -> list[np.ndarray]:
        """Return sum_s(w_s * x_s) / sum_s(w_s) over all sites, elementwise; `tag` names the exchange."""
        ...


class AggregationServer(Protocol):
    """Arbiter half: combines what the sites send for one `weighted_mean` call."""

    def aggregate(self, round_handle: Any, tag: str) -> list[np.ndarray] | None:
        """Combine one exchange; returns the mean only where the scheme lets the arbiter see it."""
        ...


@dataclass
class SiteData:
    """A site's training and validation patches: arrays, or `RowView`s of a patch dataset's file."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    train_groups: np.ndarray | None = None   # patient of each training patch (needed by patient-level DP)


@dataclass
class RoundReport:
    round: int
    train_loss: float
    n_train: int
    val: dict
    global_val_loss: float
    train_seconds: float
    aggregate_seconds: float
    extra: dict = field(default_factory=dict)


def run_site(model: nn.Module, data: SiteData, config: TrainConfig, rounds: Iterable[tuple[int, Any]],
             aggregator: UpdateAggregator, on_round: Callable[[RoundReport], None] | None = None,
             signal_continue: Callable[[Any, bool], None] | None = None, *, privacy: DPConfig | None = None,
             n_sites: int = 1, max_rounds: int | None = None, checkpoint: Callable[[dict], None] | None = None,
             resume_state: dict | None = None) -> list[RoundReport]:
    """Train locally, average with the other sites, evaluate; once per round.

    Early stopping: every site holds the same global validation loss after each round, so
    every site reaches the same decision; `signal_continue` tells the arbiter (a yes/no, no
    loss value), and the sites keep the best round's model. `max_rounds` (the rounds every
    site's privacy budget allows, agreed before round 1) ends training after that round.
    `privacy` turns on patient-level DP-SGD (mode sample) or hospital-level DP-FedAvg (client).
    `checkpoint` receives the full training state after every completed round; `resume_state`
    (such a state) continues after its round exactly as the uninterrupted run would have.
    """
    privacy = privacy or DPConfig()
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)  # dropout draws from the global generator: make reruns repeatable
    optimizer = config.make_optimizer(model)
    dp_sgd = _patient_dp_sgd(model, optimizer, data, config, privacy)
    sampler = EpochSampler(data.train_y, config.negative_sampling, independent=dp_sgd is not None)
    noise = secret_generator() if privacy.mode == "client" else None
    reports = []
    # A site's weight in the average is what one local epoch trains on.
    n_train = sampler.epoch_size
    best_loss, best_round, best_state = float("inf"), -1, None
    start_after = -1
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        generator.set_state(resume_state["generator"])
        torch.set_rng_state(resume_state["torch_rng"])
        best_loss, best_round = resume_state["best_loss"], resume_state["best_round"]
        best_state = resume_state.get("best_state")
        if dp_sgd is not None:
            dp_sgd.steps = resume_state["dp_steps"]
        start_after = resume_state["round"]
    try:
        for round_idx, handle in rounds:
            if round_idx <= start_after:
                continue
            lr = config.learning_rate_at(round_idx)
            for group in optimizer.param_groups:
                group["lr"] = lr
            start = get_parameters(model) if privacy.mode == "client" else None
            t_score = time.perf_counter()
            if sampler.wants_scores:   # hard negatives: rank this round's negatives by the model just received
                pool = sampler.hard_pool(generator)
                sampler.rescore(pool, predict_proba(model, RowView(data.train_x, sampler.negatives[pool])))
            score_seconds = time.perf_counter() - t_score
            if dp_sgd is not None:
                local = train_local_dp(dp_sgd, data.train_x, data.train_y, epochs=config.local_epochs,
                                       augment=lambda x: _augment(x, config, generator),
                                       epoch_rows=lambda: sampler.draw(generator))
            else:
                local = train_local(model, optimizer, data.train_x, data.train_y, epochs=config.local_epochs,
                                    batch_size=config.batch_size, generator=generator, augment=config.use_3d_aug,
                                    fedprox_mu=config.fedprox_mu, aug_shift_voxels=config.aug_shift_voxels,
                                    aug_intensity_jitter=config.aug_intensity_jitter, sampler=sampler)
            t0 = time.perf_counter()
            extra = {"learning_rate": lr, "score_seconds": score_seconds}
            if start is not None:
                # DP-FedAvg: every hospital counts equally; its clipped, noised update is what is averaged.
                update = [w - s for w, s in zip(get_parameters(model), start)]
                noised, extra["update_norm"] = privatize_update(update, privacy, n_sites, noise)
                mean = aggregator.weighted_mean(handle, "model", noised, 1.0)
                set_parameters(model, [s + m for s, m in zip(start, mean)])
                extra["epsilon"] = epsilon_for(privacy, 1.0, round_idx + 1)
            else:
                set_parameters(model, aggregator.weighted_mean(handle, "model", get_parameters(model), float(n_train)))
                if dp_sgd is not None:
                    extra["epsilon"] = dp_sgd.epsilon()
            val = evaluate(model, data.val_x, data.val_y)
            # Validation loss weighted by validation size. A site without validation patients gets a
            # negligible weight (still >= one unit of Paillier's 1/1000 weight resolution), so the total
            # weight is never zero even when no site holds validation data.
            n_val = max(val["n"], 1e-3)
            global_val = aggregator.weighted_mean(handle, "val_loss", [np.array([val["loss"] if val["n"] else 0.0])],
                                                  n_val)
            global_loss = float(global_val[0][0])
            if global_loss < best_loss:
                best_loss, best_round = global_loss, round_idx
                if config.patience:
                    best_state = copy.deepcopy(model.state_dict())
            stop = bool(config.patience) and round_idx - best_round >= config.patience
            budget_spent = max_rounds is not None and round_idx + 1 >= max_rounds
            extra.update(best_round=best_round, stopped=stop or budget_spent, budget_spent=budget_spent)
            report = RoundReport(round=round_idx, train_loss=local.loss, n_train=n_train, val=val,
                                 global_val_loss=global_loss, train_seconds=local.seconds + score_seconds,
                                 aggregate_seconds=time.perf_counter() - t0, extra=extra)
            reports.append(report)
            if on_round is not None:
                on_round(report)
            if checkpoint is not None:
                checkpoint({"round": round_idx, "model": copy.deepcopy(model.state_dict()),
                            "optimizer": copy.deepcopy(optimizer.state_dict()), "generator": generator.get_state(),
                            "torch_rng": torch.get_rng_state(), "best_loss": best_loss, "best_round": best_round,
                            "best_state": best_state, "dp_steps": dp_sgd.steps if dp_sgd is not None else 0})
            if signal_continue is not None:
                signal_continue(handle, not (stop or budget_spent))
            if stop or budget_spent:
                break
    finally:
        if dp_sgd is not None:
            dp_sgd.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return reports


def _augment(x: torch.Tensor, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    if not config.use_3d_aug:
        return x
    return augment_3d(x, generator, max_shift=config.aug_shift_voxels, jitter=config.aug_intensity_jitter)


def _patient_dp_sgd(model: nn.Module, optimizer: torch.optim.Optimizer, data: SiteData, config: TrainConfig,
                    privacy: DPConfig) -> PatientDPSGD | None:
    if privacy.mode != "sample":
        return None
    privacy.check_training(config.fedprox_mu, config.hard_negative_fraction)
    if data.train_groups is None:
        raise ConfigError("dp.mode='sample' needs the patient of every training patch")
    # batch_size is the expected number of patients per step under patient-level DP.
    return PatientDPSGD(model, optimizer, data.train_groups, privacy, config.batch_size)


def run_server(rounds: Iterable[tuple[int, Any]], server: AggregationServer,
               on_round: Callable[[int, float | None, float], None] | None = None,
               should_continue: Callable[[Any], bool] | None = None, start_after: int = -1) -> None:
    """The arbiter's side of `run_site`: per round, the model exchange then the validation loss."""
    for round_idx, handle in rounds:
        if round_idx <= start_after:   # rounds the sites completed before a resume
            continue
        t0 = time.perf_counter()
        server.aggregate(handle, "model")
        val = server.aggregate(handle, "val_loss")
        if on_round is not None:
            on_round(round_idx, None if val is None else float(np.ravel(val[0])[0]), time.perf_counter() - t0)
        if should_continue is not None and not should_continue(handle):
            break
