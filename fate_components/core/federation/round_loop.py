"""The federated-averaging round loop, written against a small aggregation interface.

The loop knows nothing of FATE or of how the average is protected: a site hands its
parameters and its sample count to an `UpdateAggregator` and gets the weighted mean of
all sites back. The FATE adapters implement it: Paillier (the default, `secure_agg/`), FATE's
mask-based secure aggregation, and plaintext for debugging.

What varies between jobs is composed, not branched on, inside the loop: the local step
(`local_steps`: plain, FedProx, patient-level DP-SGD), a filter around the aggregator
(`core.privacy.dp_fedavg`: hospital-level DP-FedAvg, or none), `EarlyStopping`, and the
`TrainingState` that checkpoints capture and a resume restores.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from fate_components.core.federation.early_stopping import EarlyStopping
from fate_components.core.federation.local_steps import make_local_step
from fate_components.core.federation.state import TrainingState
from fate_components.core.learning.training import TrainConfig, evaluate, get_parameters, set_parameters
from fate_components.core.privacy.dp import DPConfig
from fate_components.core.privacy.dp_fedavg import MODEL_TAG, site_aggregation

__all__ = ["UpdateAggregator", "AggregationServer", "SiteData", "RoundReport", "RoundObserver", "run_site",
           "run_server"]


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


@dataclass(frozen=True)
class RoundReport:
    """What one site measured in one round (seconds are wall time at this site)."""

    round: int
    train_loss: float
    n_train: int                  # the site's weight in the average: what one local epoch trains on
    val: dict                     # evaluate() on the site's validation patches
    global_val_loss: float
    train_seconds: float          # local epochs plus the hard-negative scoring before them
    aggregate_seconds: float
    learning_rate: float
    score_seconds: float          # hard-negative scoring alone
    best_round: int               # lowest global validation loss so far (-1 before any)
    stopped: bool                 # early stopping or the privacy budget ends training after this round
    budget_spent: bool            # the privacy budget's rounds (max_rounds) are used up
    update_norm: float | None = None   # DP-FedAvg: this site's update norm before clipping
    epsilon: float | None = None       # with DP: privacy spent after this round


class RoundObserver(Protocol):
    """Told after every completed round, in the order given to `run_site` (metrics, checkpoint, arbiter)."""

    def round_done(self, report: RoundReport, state: Callable[[], TrainingState], round_handle: Any) -> None:
        """`state()` captures the full training state (deep copies): call it only when it is needed."""
        ...


def run_site(model: nn.Module, data: SiteData, config: TrainConfig, rounds: Iterable[tuple[int, Any]],
             aggregator: UpdateAggregator, *, privacy: DPConfig | None = None, n_sites: int = 1,
             max_rounds: int | None = None, observers: Sequence[RoundObserver] = (),
             resume: TrainingState | None = None, device: torch.device | str = "cpu") -> list[RoundReport]:
    """Train locally, average with the other sites, evaluate; once per round.

    Early stopping: every site holds the same global validation loss after each round, so
    every site reaches the same decision (an observer tells the arbiter, a yes/no, no loss
    value), and the sites keep the best round's model. `max_rounds` (the rounds every site's
    privacy budget allows, agreed before round 1) ends training after that round. `privacy`
    chooses patient-level DP-SGD (mode sample, a local step) or hospital-level DP-FedAvg
    (client, a filter around `aggregator`). `resume` (a state an observer captured) continues
    after its round exactly as the uninterrupted run would have. The model moves to `device` and
    trains, is evaluated and stays there (a CPU is today's path, bit for bit; see `learning.device`);
    the exchange with the other sites is float32 numpy on the CPU either way.
    """
    privacy = privacy or DPConfig()
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)  # dropout draws from the global generator: make reruns repeatable
    model.to(device)   # before the optimizer, so that its state is created on the device
    optimizer = config.make_optimizer(model)
    step = make_local_step(model, optimizer, data, config, privacy, generator)
    aggregation = site_aggregation(aggregator, privacy, n_sites)
    stopping = EarlyStopping(config.patience)
    # A site's weight in the average is what one local epoch trains on.
    n_train = step.sampler.epoch_size
    try:
        start_after = -1
        if resume is not None:
            # A checkpoint holds CPU tensors: load_state_dict copies them onto the model's device, and
            # torch's Optimizer.load_state_dict casts the optimizer state to each parameter's device.
            resume.restore(model=model, optimizer=optimizer, generator=generator, stopping=stopping)
            step.dp_steps = resume.dp_steps
            start_after = resume.round
        reports = []
        for round_idx, handle in rounds:
            if round_idx <= start_after:
                continue
            lr = config.learning_rate_at(round_idx)
            for group in optimizer.param_groups:
                group["lr"] = lr
            aggregation.begin_round(round_idx, model)
            local = step.run()
            t0 = time.perf_counter()
            set_parameters(model, aggregation.weighted_mean(handle, MODEL_TAG, get_parameters(model), float(n_train)))
            epsilon = aggregation.epsilon if aggregation.epsilon is not None else step.epsilon()
            val = evaluate(model, data.val_x, data.val_y)
            # Validation loss weighted by validation size. A site without validation patients gets a
            # negligible weight (still >= one unit of Paillier's 1/1000 weight resolution), so the total
            # weight is never zero even when no site holds validation data.
            n_val = max(val["n"], 1e-3)
            global_val = aggregation.weighted_mean(handle, "val_loss", [np.array([val["loss"] if val["n"] else 0.0])],
                                                   n_val)
            global_loss = float(global_val[0][0])
            stop = stopping.update(round_idx, global_loss, model)
            budget_spent = max_rounds is not None and round_idx + 1 >= max_rounds
            report = RoundReport(round=round_idx, train_loss=local.loss, n_train=n_train, val=val,
                                 global_val_loss=global_loss, train_seconds=local.seconds + local.score_seconds,
                                 aggregate_seconds=time.perf_counter() - t0, learning_rate=lr,
                                 score_seconds=local.score_seconds, best_round=stopping.best_round,
                                 stopped=stop or budget_spent, budget_spent=budget_spent,
                                 update_norm=aggregation.update_norm, epsilon=epsilon)
            reports.append(report)

            def state(round_idx: int = round_idx) -> TrainingState:
                return TrainingState.capture(round_idx, model=model, optimizer=optimizer, generator=generator,
                                             stopping=stopping, dp_steps=step.dp_steps)

            for observer in observers:
                observer.round_done(report, state, handle)
            if report.stopped:
                break
    finally:
        step.close()
    stopping.restore_best(model)
    return reports


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
