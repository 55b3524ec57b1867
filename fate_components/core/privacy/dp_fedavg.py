"""Hospital-level DP-FedAvg as a filter around the aggregator (as Flower's client-side fixed clipping).

`DPFedAvg` wraps any `UpdateAggregator`: at the start of a round it takes the model the
round starts from; when the round loop averages the model it clips this site's update (local
minus start) to max_grad_norm, adds the site's noise share (`privatize_update`), averages the
noised updates with equal weights (every hospital counts the same) and returns start + mean.
The noise is drawn here, at the site, before encryption (the aggregator never sees an un-noised
update), so dp.secure_noise applies to it as to DP-SGD's.
Every other exchange (the validation loss) passes through unchanged. It reports the update's
norm before clipping and the epsilon spent after the round.

`PlainAggregation` is the same seam without privacy: the loop holds one or the other.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from fate_components.core.errors import ConfigError
from fate_components.core.learning.training import get_parameters
from fate_components.core.privacy.dp import DPConfig, epsilon_for, noise_generator_for, privatize_update

if TYPE_CHECKING:
    from fate_components.core.federation.round_loop import UpdateAggregator

__all__ = ["MODEL_TAG", "PlainAggregation", "DPFedAvg", "site_aggregation"]

MODEL_TAG = "model"   # the exchange of model parameters; the round loop's other exchange is "val_loss"


class PlainAggregation:
    """The aggregator as it is: sample-weighted mean of the parameters, nothing measured."""

    update_norm: float | None = None
    epsilon: float | None = None

    def __init__(self, inner: UpdateAggregator) -> None:
        self._inner = inner

    def begin_round(self, round_idx: int, model: nn.Module) -> None:
        pass

    def weighted_mean(self, round_handle: Any, tag: str, arrays: list[np.ndarray], weight: float) -> list[np.ndarray]:
        return self._inner.weighted_mean(round_handle, tag, arrays, weight)


class DPFedAvg:
    """Clip and noise this site's round update before it is averaged; equal weights for every site."""

    def __init__(self, inner: UpdateAggregator, privacy: DPConfig, *, n_sites: int,
                 noise: torch.Generator | None = None) -> None:
        if privacy.mode != "client":
            raise ConfigError(f"DP-FedAvg is dp.mode='client', not {privacy.mode!r}")
        if privacy.secure_noise and noise is not None:
            raise ConfigError("dp.secure_noise=true draws the noise share from the CSPRNG only; a seeded generator "
                              "was passed")
        self._inner, self._privacy, self._n_sites = inner, privacy, n_sites
        # Seeded from the OS (or Opacus' CSPRNG with secure_noise), never from the job's seed: the job config must
        # not replay the noise.
        self._noise = noise if noise is not None else noise_generator_for(privacy)
        self._round = -1
        self._start: list[np.ndarray] | None = None
        self.update_norm: float | None = None   # of this round's update, before clipping
        self.epsilon: float | None = None       # after this round (every site takes part in every round)

    def begin_round(self, round_idx: int, model: nn.Module) -> None:
        self._round, self._start = round_idx, get_parameters(model)
        self.update_norm = self.epsilon = None

    def weighted_mean(self, round_handle: Any, tag: str, arrays: list[np.ndarray], weight: float) -> list[np.ndarray]:
        if tag != MODEL_TAG:
            return self._inner.weighted_mean(round_handle, tag, arrays, weight)
        if self._start is None:
            raise ConfigError("DP-FedAvg: the model was averaged before begin_round gave the round's start")
        start = self._start
        update = [w - s for w, s in zip(arrays, start)]
        noised, self.update_norm = privatize_update(update, self._privacy, self._n_sites, self._noise)
        mean = self._inner.weighted_mean(round_handle, tag, noised, 1.0)
        self.epsilon = epsilon_for(self._privacy, 1.0, self._round + 1)
        return [s + m for s, m in zip(start, mean)]


def site_aggregation(inner: UpdateAggregator, privacy: DPConfig, n_sites: int) -> PlainAggregation | DPFedAvg:
    """The aggregation a site's round loop uses: DP-FedAvg around `inner` in dp.mode='client', else `inner`."""
    if privacy.mode == "client":
        return DPFedAvg(inner, privacy, n_sites=n_sites)
    return PlainAggregation(inner)
