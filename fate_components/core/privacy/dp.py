"""Differential privacy of federated training, on Opacus (clipping, noise, accounting).

Two modes, both configured by `DPConfig`:
- ``sample``: patient-level DP-SGD at each site. A patient (one seriesuid) is the privacy
  unit: patients are Poisson-sampled, the gradients of one patient's patches are averaged
  into one per-patient gradient, that is clipped to `max_grad_norm` and Opacus adds
  Gaussian noise of std noise_multiplier * max_grad_norm to the batch sum. Epsilon is
  per site, for that site's training patients.
- ``client``: hospital-level DP-FedAvg. Each site clips its round update (local minus
  global model) to `max_grad_norm` in L2 and adds its share of Gaussian noise before the
  update is encrypted; the shares are sized so that the noise a single site does not know
  (the other sites' shares) already has std noise_multiplier * max_grad_norm in the sum.

Noise and sampling draw from a generator seeded from the OS's entropy, never from the
job's shared seed: anyone holding the job config could otherwise replay the noise. With
``secure_noise`` they come from Opacus' secure_mode instead: its CSPRNG (torchcsprng, reading
/dev/urandom) and its noise that resists floating-point attacks (2107.10138), in both modes.
"""
from __future__ import annotations

import math
import secrets
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from fate_components.core.errors import ConfigError, reject_unknown_options
from fate_components.core.learning.training import LocalResult

__all__ = ["DPConfig", "DP_MODES", "epsilon_for", "rounds_within_budget", "planned_rounds", "patient_sampling",
           "PatientDPSGD", "train_local_dp", "privatize_update", "noise_share_std", "check_secure_noise",
           "noise_generator_for"]

DP_MODES = ("none", "sample", "client")
ACCOUNTANTS = ("rdp", "prv", "gdp")
_NO_CLIP = 1e30   # "no clipping" (only with noise 0): a bound no gradient reaches; 0 * bound stays 0


@dataclass(frozen=True)
class DPConfig:
    """`dp` in the job conf: {mode, noise_multiplier, max_grad_norm, delta, max_epsilon, accountant, secure_noise}."""

    mode: str = "none"
    noise_multiplier: float = 1.0
    max_grad_norm: float | None = 1.0     # per patient (sample) or per site update (client); None = no clipping
    delta: float = 1e-5
    max_epsilon: float | None = None      # stop before a round would exceed it; None = no budget
    accountant: str = "rdp"               # Opacus accountant: rdp, prv or gdp
    secure_noise: bool = False            # Opacus' secure_mode for noise and sampling (needs torchcsprng)

    def __post_init__(self) -> None:
        if self.mode not in DP_MODES:
            raise ConfigError(f"dp.mode must be one of {DP_MODES}, not {self.mode!r}")
        if not (isinstance(self.noise_multiplier, (int, float)) and self.noise_multiplier >= 0):
            raise ConfigError(f"dp.noise_multiplier must be a number >= 0, not {self.noise_multiplier!r}")
        if self.max_grad_norm is None:
            if self.noise_multiplier:
                raise ConfigError("dp.max_grad_norm is required when noise is added: the noise is calibrated to it")
        elif not (isinstance(self.max_grad_norm, (int, float)) and self.max_grad_norm > 0):
            raise ConfigError(f"dp.max_grad_norm must be a positive number (or null for no clipping with noise 0), "
                              f"not {self.max_grad_norm!r}")
        if not (isinstance(self.delta, (int, float)) and 0 < self.delta < 1):
            raise ConfigError(f"dp.delta must be in (0, 1), not {self.delta!r}")
        if self.max_epsilon is not None and not (isinstance(self.max_epsilon, (int, float)) and self.max_epsilon > 0):
            raise ConfigError(f"dp.max_epsilon must be a positive number or null, not {self.max_epsilon!r}")
        if self.accountant not in ACCOUNTANTS:
            raise ConfigError(f"dp.accountant must be one of {ACCOUNTANTS}, not {self.accountant!r}")
        if not isinstance(self.secure_noise, bool):
            raise ConfigError(f"dp.secure_noise must be true or false, not {self.secure_noise!r}")
        if self.secure_noise and self.mode == "none":
            raise ConfigError("dp.secure_noise=true with dp.mode='none': there is no noise to draw; set dp.mode to "
                              "'sample' or 'client', or drop secure_noise")

    @classmethod
    def from_dict(cls, d: dict | None) -> "DPConfig":
        d = dict(d or {})
        reject_unknown_options(d, cls, "dp")
        return cls(**d)

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    @property
    def clip(self) -> float:
        return _NO_CLIP if self.max_grad_norm is None else float(self.max_grad_norm)

    def check_units(self, n_units: int, unit: str) -> None:
        """delta must be smaller than 1/n: a larger delta allows releasing one unit's data outright."""
        if n_units < 1:
            raise ConfigError(f"dp.mode={self.mode!r} needs at least one {unit[:-1]}, found none")
        if not self.delta < 1 / n_units:
            raise ConfigError(f"dp.delta={self.delta} must be smaller than 1/(number of {unit}) = 1/{n_units} = "
                              f"{1 / n_units:.3g}")

    def check_training(self, fedprox_mu: float, hard_negative_fraction: float = 0.0) -> None:
        if self.mode == "sample" and fedprox_mu:
            raise ConfigError("fedprox_mu must be 0 with dp.mode='sample': the proximal term is not a per-patient "
                              "gradient, so DP-SGD cannot clip it")
        if self.mode == "sample" and hard_negative_fraction:
            raise ConfigError("hard_negative_fraction must be 0 with dp.mode='sample': choosing one patient's "
                              "patches by a ranking over every patient would couple the patients' privacy")

    def to_dict(self) -> dict:
        return asdict(self)


def epsilon_for(config: DPConfig, sample_rate: float, steps: int) -> float:
    """Epsilon at config.delta after `steps` steps of the sampled Gaussian mechanism (Opacus' accountant)."""
    from opacus.accountants import create_accountant

    if steps <= 0:
        return 0.0
    if config.noise_multiplier == 0:
        return math.inf
    accountant = create_accountant(config.accountant)
    accountant.history = [(float(config.noise_multiplier), float(sample_rate), int(steps))]
    return float(accountant.get_epsilon(delta=config.delta))


def rounds_within_budget(config: DPConfig, sample_rate: float, steps_per_round: int, rounds: int) -> int:
    """The most rounds (<= `rounds`) whose cumulative epsilon stays within max_epsilon."""
    if config.max_epsilon is None:
        return rounds
    lo, hi = 0, rounds   # epsilon grows with the steps: bisect on the round count
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if epsilon_for(config, sample_rate, mid * steps_per_round) <= config.max_epsilon:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        first = epsilon_for(config, sample_rate, steps_per_round)
        raise ConfigError(f"dp.max_epsilon={config.max_epsilon} is exceeded by the first round already "
                          f"(epsilon {first:.3g} at delta {config.delta}); raise dp.noise_multiplier or "
                          f"dp.max_epsilon, or train fewer local epochs")
    return lo


def patient_sampling(n_patients: int, expected_patients: int) -> tuple[float, int]:
    """(Poisson sampling rate, steps per epoch) for `expected_patients` per step, as Opacus' DPDataLoader."""
    rate = min(1.0, expected_patients / max(n_patients, 1))
    return rate, max(1, int(1 / rate))


def planned_rounds(config: DPConfig, *, rounds: int, local_epochs: int, batch_size: int, n_patients: int,
                   n_sites: int) -> int:
    """Validate the DP settings against this site and return the rounds its budget allows."""
    check_secure_noise(config)
    if config.mode == "sample":
        config.check_units(n_patients, "training patients")
        rate, steps_per_epoch = patient_sampling(n_patients, batch_size)
        return rounds_within_budget(config, rate, steps_per_epoch * local_epochs, rounds)
    if config.mode == "client":
        config.check_units(n_sites, "sites")
        noise_share_std(config, n_sites)
        return rounds_within_budget(config, 1.0, 1, rounds)   # every site takes part in every round
    return rounds


def secret_generator() -> torch.Generator:
    return torch.Generator().manual_seed(secrets.randbits(63))


def check_secure_noise(config: DPConfig) -> None:
    """With dp.secure_noise, refuse (before round 1: planned_rounds calls this) a site without torchcsprng."""
    if config.secure_noise:
        _secure_rng(config)


def noise_generator_for(config: DPConfig) -> torch.Generator:
    """The generator for DP noise and sampling: Opacus' secure_mode CSPRNG with secure_noise, else secret_generator."""
    return _secure_rng(config) if config.secure_noise else secret_generator()


def _secure_rng(config: DPConfig) -> torch.Generator:
    # PrivacyEngine(secure_mode=True) builds torchcsprng's /dev/urandom generator (this project's DP-SGD wraps the
    # optimizer itself, for per-patient gradients, so it takes only that generator from the engine), and raises
    # ImportError without torchcsprng. Its last release (0.2.1, March 2021) predates torch 2: pip finds no wheel of
    # it for Python 3.11, and Opacus 1.6 skips its own secure_mode tests ("requires torchcsprng compatible with new
    # pytorch versions"), so it is not in the project's requirements.
    from opacus import PrivacyEngine

    try:
        return PrivacyEngine(accountant=config.accountant, secure_mode=True).secure_rng
    except ImportError as e:
        raise ConfigError(f"dp.secure_noise=true needs the torchcsprng package, which Opacus' secure_mode uses to "
                          f"draw noise and samples from /dev/urandom; it is not installed. Install a torchcsprng "
                          f"built for torch {torch.__version__.split('+')[0]} (github.com/pytorch/csprng, "
                          f"'Installation') on every site, or set dp.secure_noise to false") from e


class PatientDPSGD:
    """Patient-level DP-SGD: Poisson-sampled patients, per-patient clipping, Gaussian noise (Opacus).

    `groups[i]` is the patient of training patch i. The expected batch is `expected_patients`
    patients; every patch of a sampled patient is in the batch.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, groups: np.ndarray, config: DPConfig,
                 expected_patients: int, *, noise_generator: torch.Generator | None = None,
                 sample_generator: torch.Generator | None = None) -> None:
        """noise_generator and sample_generator (tests only) are refused with secure_noise, as Opacus does."""
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

        codes, self._rows_of = np.unique(np.asarray(groups), return_inverse=True)
        self.n_patients = len(codes)
        config.check_units(self.n_patients, "training patients")
        self.config = config
        if config.secure_noise and (noise_generator is not None or sample_generator is not None):
            raise ConfigError("dp.secure_noise=true draws noise and samples from the CSPRNG only; a seeded "
                              "generator was passed (Opacus refuses a seed in secure mode too)")
        self.sample_rate, self.steps_per_epoch = patient_sampling(self.n_patients, expected_patients)
        self._patient_rows = [np.flatnonzero(self._rows_of == p) for p in range(self.n_patients)]
        self.model = model
        # functorch per-sample gradients: 2x a plain step for this 3D ResNet on a CPU; Opacus' hooks take 4x.
        self._gsm = GradSampleModule(model, batch_first=True, loss_reduction="sum", force_functorch=True)
        self.optimizer = DPOptimizer(optimizer, noise_multiplier=float(config.noise_multiplier),
                                     max_grad_norm=config.clip, expected_batch_size=expected_patients,
                                     loss_reduction="mean", generator=noise_generator or noise_generator_for(config),
                                     secure_mode=config.secure_noise)
        self.steps = 0
        self.max_patches_per_pass = 32
        self._sample_generator = sample_generator or noise_generator_for(config)

    def epsilon(self, extra_steps: int = 0) -> float:
        return epsilon_for(self.config, self.sample_rate, self.steps + extra_steps)

    def sample_patients(self) -> np.ndarray:
        """Poisson sampling: each patient independently with probability sample_rate."""
        draw = torch.rand(self.n_patients, generator=self._sample_generator)
        return np.flatnonzero((draw < self.sample_rate).numpy())

    def step(self, patches: np.ndarray, labels: np.ndarray, patients: np.ndarray, augment,
             active: np.ndarray | None = None) -> tuple[float, int]:
        """One noisy step on the given patients' patches; returns (sum of patch losses, patches used).

        `active` (a boolean mask over the training patches, optional) keeps only this epoch's
        drawn patches of the sampled patients; a sampled patient with none contributes nothing.
        """
        rows = np.sort(np.concatenate([self._patient_rows[p] for p in patients])) if len(patients) else \
            np.zeros(0, dtype=np.int64)
        if active is not None:
            rows = rows[active[rows]]
            patients = np.unique(self._rows_of[rows])
        # Rows grouped by patient (in row order within one): each chunk below must hold whole patients, yet a
        # patient's rows need not be contiguous, nor codes sort in row order (seriesuid 1.2.10 sorts before 1.2.9).
        rows = rows[np.argsort(self._rows_of[rows], kind="stable")]
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        if len(rows):
            x = augment(torch.from_numpy(np.ascontiguousarray(patches[rows], dtype=np.float32)))
            y = torch.from_numpy(np.asarray(labels[rows], dtype=np.float32))
            owner = np.searchsorted(np.sort(patients), self._rows_of[rows])   # non-decreasing: rows are by patient
            counts = np.bincount(owner, minlength=len(patients))
            per_patient: dict[int, list[torch.Tensor]] = {}
            # Per-sample gradients cost memory per patch; whole patients at a time keep it bounded.
            for chunk in _patient_chunks(owner, self.max_patches_per_pass):
                first = int(owner[chunk[0]])
                local = torch.from_numpy(owner[chunk] - first)
                per_patch = nn.functional.binary_cross_entropy_with_logits(self._gsm(x[chunk]), y[chunk],
                                                                           reduction="none")
                # Each patient's loss is the mean over their patches, so a patient's gradient is one bounded row.
                weight = torch.from_numpy(1.0 / counts[owner[chunk]]).to(per_patch.dtype)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)   # torch: full backward hooks without input grads
                    (per_patch * weight).sum().backward()
                loss_sum += float(per_patch.detach().sum())
                n_local = int(local.max()) + 1
                for i, p in enumerate(self.model.parameters()):
                    rows_of_chunk = p.grad_sample[-1] if isinstance(p.grad_sample, list) else p.grad_sample
                    grouped = torch.zeros((n_local, *p.shape), dtype=rows_of_chunk.dtype).index_add_(
                        0, local, rows_of_chunk)
                    per_patient.setdefault(i, []).append(grouped)
                    p.grad_sample = None
            for i, p in enumerate(self.model.parameters()):
                p.grad_sample = torch.cat(per_patient[i])
        else:   # nobody sampled: the step still adds noise, and the accountant counts it
            for p in self.model.parameters():
                p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype)
        self.optimizer.step()
        self.steps += 1
        return loss_sum, len(rows)

    def close(self) -> None:
        self._gsm._close()


def noise_share_std(config: DPConfig, n_sites: int) -> float:
    """Std of one site's noise share in client mode.

    A site knows its own share, so what protects another site from it is the other n-1
    shares: each gets variance (sigma*S)^2/(n-1), which makes that remainder (sigma*S)^2.
    """
    if n_sites < 2:
        raise ConfigError("dp.mode='client' needs at least two sites")
    return config.noise_multiplier * config.clip / math.sqrt(n_sites - 1) if config.noise_multiplier else 0.0


def privatize_update(delta: list[np.ndarray], config: DPConfig, n_sites: int,
                     generator: torch.Generator) -> tuple[list[np.ndarray], float]:
    """Clip a site's round update to max_grad_norm (L2 over all parameters) and add its noise share.

    Returns the noised update and the norm before clipping.
    """
    norm = float(math.sqrt(sum(float(np.sum(np.square(d, dtype=np.float64))) for d in delta)))
    scale = min(1.0, config.clip / (norm + 1e-12))
    std = noise_share_std(config, n_sites)
    out = []
    for d in delta:
        clipped = np.asarray(d, dtype=np.float64) * scale
        if std and config.secure_noise:
            # Opacus' secure_mode noise (the sum of four draws, halved: no floating-point attack recovers it).
            from opacus.optimizers.optimizer import _generate_noise

            clipped = clipped + _generate_noise(std, torch.zeros(d.shape, dtype=torch.float64), generator,
                                                secure_mode=True).numpy()
        elif std:
            clipped = clipped + std * torch.randn(d.shape, generator=generator, dtype=torch.float64).numpy()
        out.append(clipped.astype(np.float32))
    return out, norm


def _patient_chunks(owner: np.ndarray, max_rows: int) -> list[np.ndarray]:
    """Consecutive row ranges holding whole patients, about `max_rows` rows each (a larger patient alone)."""
    chunks, start = [], 0
    bounds = np.flatnonzero(np.diff(owner)) + 1   # where the next patient starts
    for end in [*bounds, len(owner)]:
        if end - start >= max_rows or end == len(owner):
            chunks.append(np.arange(start, end))
            start = end
    return chunks


def train_local_dp(trainer: PatientDPSGD, patches: np.ndarray, labels: np.ndarray, *, epochs: int,
                   augment: Callable[[torch.Tensor], torch.Tensor],
                   epoch_rows: Callable[[], np.ndarray] | None = None) -> LocalResult:
    """`epochs` passes of patient-level DP-SGD; an epoch is 1/sample_rate Poisson-sampled steps.

    `epoch_rows()` (optional) gives the patches an epoch may use (see negative_sampling); the
    patients are Poisson-sampled over every training patient as before.
    """
    start = time.perf_counter()
    trainer.model.train()
    last_epoch_loss = 0.0
    for _ in range(epochs):
        total, count = 0.0, 0
        active = None
        if epoch_rows is not None:
            active = np.zeros(len(patches), dtype=bool)
            active[epoch_rows()] = True
        for _ in range(trainer.steps_per_epoch):
            loss_sum, used = trainer.step(patches, labels, trainer.sample_patients(), augment, active)
            total, count = total + loss_sum, count + used
        last_epoch_loss = total / max(count, 1)
    return LocalResult(loss=last_epoch_loss, n_samples=len(patches), seconds=time.perf_counter() - start)
