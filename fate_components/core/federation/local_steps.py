"""A site's local training in one round, chosen once per job: plain, FedProx or patient-level DP-SGD.

`make_local_step` picks the step from the training and DP settings; the round loop calls
`run()` every round without knowing which one it holds. Every step draws from the site's
training generator in the same order as the others would at the same point, so a run (and a
resumed run) is repeatable for its seed.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

from fate_components.core.data.negative_sampling import EpochSampler
from fate_components.core.data.patch_file import RowView
from fate_components.core.errors import ConfigError
from fate_components.core.learning.augmentation import augment_3d
from fate_components.core.learning.device import model_device
from fate_components.core.learning.training import LocalResult, TrainConfig, predict_proba, train_local
from fate_components.core.privacy.dp import DPConfig, PatientDPSGD, train_local_dp

if TYPE_CHECKING:
    from fate_components.core.federation.round_loop import SiteData

__all__ = ["LocalStep", "PlainStep", "FedProxStep", "PatientDPStep", "make_local_step"]


class LocalStep(Protocol):
    """One round of local epochs on the site's training patches, from the model the round started with."""

    sampler: EpochSampler   # which patches an epoch trains on; its epoch size is the site's weight
    dp_steps: int           # noisy steps taken so far (0 without patient-level DP); a checkpoint keeps it

    def run(self) -> LocalResult:
        ...

    def epsilon(self) -> float | None:
        """This site's privacy spent so far, where the step accounts for it; None otherwise."""
        ...

    def close(self) -> None:
        ...


class PlainStep:
    """Minibatch epochs with the job's optimizer (Adam, AdamW or SGD) and, if asked for, hard negatives."""

    proximal_mu = 0.0

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, data: SiteData, config: TrainConfig,
                 generator: torch.Generator) -> None:
        self.model, self.optimizer, self.data, self.config, self.generator = model, optimizer, data, config, generator
        self.sampler = EpochSampler(data.train_y, config.negative_sampling)
        self.dp_steps = 0

    def run(self) -> LocalResult:
        t_score = time.perf_counter()
        # Hard negatives: rank this round's negatives by the model just received.
        self.sampler.refresh_hard_negatives(
            self.generator, lambda rows: predict_proba(self.model, RowView(self.data.train_x, rows)))
        score_seconds = time.perf_counter() - t_score
        c = self.config
        local = train_local(self.model, self.optimizer, self.data.train_x, self.data.train_y, epochs=c.local_epochs,
                            batch_size=c.batch_size, generator=self.generator, augment=c.use_3d_aug,
                            fedprox_mu=self.proximal_mu, aug_shift_voxels=c.aug_shift_voxels,
                            aug_intensity_jitter=c.aug_intensity_jitter, sampler=self.sampler)
        return replace(local, score_seconds=score_seconds)

    def epsilon(self) -> float | None:
        return None

    def close(self) -> None:
        pass


class FedProxStep(PlainStep):
    """FedProx: the plain step plus mu/2 * ||w - w_round_start||^2, keeping non-IID sites near the global model."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, data: SiteData, config: TrainConfig,
                 generator: torch.Generator) -> None:
        super().__init__(model, optimizer, data, config, generator)
        self.proximal_mu = config.fedprox_mu


class PatientDPStep:
    """Patient-level DP-SGD (Opacus): Poisson-sampled patients, per-patient clipping, Gaussian noise."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, data: SiteData, config: TrainConfig,
                 privacy: DPConfig, generator: torch.Generator) -> None:
        privacy.check_training(config.fedprox_mu, config.hard_negative_fraction)
        if model_device(model).type != "cpu":   # the pre-round check refuses this first (site_device_problem)
            raise ConfigError(f"dp.mode='sample' (patient-level DP-SGD) runs on the CPU only, not on "
                              f"{model_device(model)}; set device to cpu")
        if data.train_groups is None:
            raise ConfigError("dp.mode='sample' needs the patient of every training patch")
        self.data, self.config, self.generator = data, config, generator
        # batch_size is the expected number of patients per step under patient-level DP.
        self.trainer = PatientDPSGD(model, optimizer, data.train_groups, privacy, config.batch_size)
        self.sampler = EpochSampler(data.train_y, config.negative_sampling, independent=True)

    @property
    def dp_steps(self) -> int:
        return self.trainer.steps

    @dp_steps.setter
    def dp_steps(self, steps: int) -> None:
        self.trainer.steps = steps

    def run(self) -> LocalResult:
        c = self.config
        return train_local_dp(self.trainer, self.data.train_x, self.data.train_y, epochs=c.local_epochs,
                              augment=self._augment, epoch_rows=lambda: self.sampler.draw(self.generator))

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        if not c.use_3d_aug:
            return x
        return augment_3d(x, self.generator, max_shift=c.aug_shift_voxels, jitter=c.aug_intensity_jitter)

    def epsilon(self) -> float | None:
        return self.trainer.epsilon()

    def close(self) -> None:
        self.trainer.close()


def make_local_step(model: nn.Module, optimizer: torch.optim.Optimizer, data: SiteData, config: TrainConfig,
                    privacy: DPConfig, generator: torch.Generator) -> LocalStep:
    """The step these settings ask for."""
    if privacy.mode == "sample":
        return PatientDPStep(model, optimizer, data, config, privacy, generator)
    if config.fedprox_mu > 0:
        return FedProxStep(model, optimizer, data, config, generator)
    return PlainStep(model, optimizer, data, config, generator)
