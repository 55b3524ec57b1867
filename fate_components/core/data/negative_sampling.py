"""Which training patches an epoch sees: every positive, and a fresh draw of the negatives.

A LUNA16-density site holds about 850 candidates per scan, 0.2% of them positive. The reader
keeps every candidate (memory-mapped, see `patch_dataset`); each local epoch then trains on
every positive plus `negatives_per_positive` negatives per positive, drawn anew from all of
the site's training negatives with the training generator, so over the rounds the model sees
every negative, and a run (or a resumed run) is repeatable for its seed.

Hard-negative mining (`hard_negative_fraction` f > 0): at the start of every round the site
scores a fresh random pool of HARD_POOL_FACTOR * k of its training negatives (all of them at a
small site) with the model it received, and that share of each epoch's negatives is the f * k
of the pool scored highest; the other (1 - f) * k are drawn at random from the rest. The pool
keeps the rescoring cost proportional to an epoch, not to the site: scoring all ~14,000
negatives of a 20-scan LUNA16-density site every round would cost more than the training.
Pools and scores come from the training generator and the current global model, so a resume
recomputes them.

With patient-level DP-SGD, the privacy unit is a patient, so one patient's selection must not
depend on another patient's data: each training negative is then kept independently with
probability k / (number of negatives) (the counts are treated as public, as the number of
training patients already is by DP-SGD's sampling rate), and hard-negative mining is refused.
The sampled patients' kept patches form the batch; per-patient clipping bounds every patient's
contribution whatever was kept, so Opacus' accounting of the patient sampling is unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from fate_components.core.errors import ConfigError

__all__ = ["NegativeSampling", "EpochSampler", "DEFAULT_NEGATIVES_PER_POSITIVE", "HARD_POOL_FACTOR"]

# Chosen by measurement on LUNA16-density sites (README, "Choosing negatives").
DEFAULT_NEGATIVES_PER_POSITIVE = 10.0
HARD_POOL_FACTOR = 10


@dataclass(frozen=True)
class NegativeSampling:
    """negatives_per_positive: negatives drawn per positive each epoch (0: every negative, every epoch)."""

    negatives_per_positive: float = DEFAULT_NEGATIVES_PER_POSITIVE
    hard_negative_fraction: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.negatives_per_positive, (int, float)) and self.negatives_per_positive >= 0):
            raise ConfigError(f"negatives_per_positive must be a number >= 0 (0 trains on every negative each "
                              f"epoch), not {self.negatives_per_positive!r}")
        if not (isinstance(self.hard_negative_fraction, (int, float)) and 0 <= self.hard_negative_fraction <= 1):
            raise ConfigError(f"hard_negative_fraction must be in [0, 1], not {self.hard_negative_fraction!r}")


class EpochSampler:
    """Draws the rows (of the site's training set) that one epoch trains on, sorted."""

    def __init__(self, labels: np.ndarray, sampling: NegativeSampling, *, independent: bool = False) -> None:
        labels = np.asarray(labels)
        self.sampling = sampling
        self.positives = np.flatnonzero(labels == 1)
        self.negatives = np.flatnonzero(labels != 1)
        ratio = sampling.negatives_per_positive
        # A site without positives still trains on some negatives: one positive's worth.
        wanted = len(self.negatives) if ratio == 0 else int(round(ratio * max(len(self.positives), 1)))
        self.negatives_per_epoch = min(len(self.negatives), wanted)
        self.independent = independent
        if independent and sampling.hard_negative_fraction > 0:
            raise ConfigError("hard-negative mining ranks every patient's negatives together, so it cannot be "
                              "combined with independent (patient-level DP) sampling")
        self._hard_order: np.ndarray | None = None   # negatives (positions in self.negatives), hardest first

    @property
    def epoch_size(self) -> int:
        """Patches per epoch (expected, when negatives are kept independently)."""
        return len(self.positives) + self.negatives_per_epoch

    @property
    def wants_scores(self) -> bool:
        return self.sampling.hard_negative_fraction > 0 and 0 < self.negatives_per_epoch < len(self.negatives)

    def hard_pool(self, generator: torch.Generator) -> np.ndarray:
        """Positions in `self.negatives` to score this round: a fresh random pool, sorted."""
        n = min(len(self.negatives), HARD_POOL_FACTOR * self.negatives_per_epoch)
        if n == len(self.negatives):
            return np.arange(n)
        return np.sort(torch.randperm(len(self.negatives), generator=generator)[:n].numpy())

    def refresh_hard_negatives(self, generator: torch.Generator, score: Callable[[np.ndarray], np.ndarray]) -> None:
        """Rank a fresh pool of negatives by `score(rows)` (the round's model); nothing without hard negatives."""
        if self.wants_scores:
            pool = self.hard_pool(generator)
            self.rescore(pool, score(self.negatives[pool]))

    def rescore(self, pool: np.ndarray, scores: np.ndarray) -> None:
        """The current model's `scores` of the negatives at positions `pool`; hardest first, ties by row."""
        pool, scores = np.asarray(pool), np.asarray(scores, dtype=np.float64)
        if scores.shape != pool.shape:
            raise ValueError(f"expected {len(pool)} negative scores, got {scores.shape}")
        self._hard_order = pool[np.lexsort((pool, -scores))]

    def draw(self, generator: torch.Generator) -> np.ndarray:
        n_neg, k = len(self.negatives), self.negatives_per_epoch
        if k >= n_neg:
            picked = self.negatives
        elif self.independent:
            picked = self.negatives[(torch.rand(n_neg, generator=generator) < k / n_neg).numpy()]
        else:
            n_hard = int(round(self.sampling.hard_negative_fraction * k)) if self._hard_order is not None else 0
            hard = self._hard_order[:n_hard] if n_hard else np.zeros(0, dtype=np.int64)
            rest = np.setdiff1d(np.arange(n_neg), hard, assume_unique=True)
            chosen = rest[torch.randperm(len(rest), generator=generator)[: k - n_hard].numpy()]
            picked = self.negatives[np.concatenate([hard, chosen])]
        return np.sort(np.concatenate([self.positives, picked]))
