"""Local training, evaluation and prediction of the patch classifier (no FATE here)."""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from fate_components.core.data.negative_sampling import DEFAULT_NEGATIVES_PER_POSITIVE, EpochSampler, NegativeSampling
from fate_components.core.errors import ConfigError
from fate_components.core.evaluation.auc import candidate_auc
from fate_components.core.learning.augmentation import augment_3d
from fate_components.core.learning.device import (LOADER_WORKERS, EpochBatches, amp_dtype, cuda_batches, model_device,
                                                  native_bf16_cpu)

__all__ = ["INFERENCE_PRECISIONS", "CUDA_PREDICT_BATCH", "TrainConfig", "LocalResult", "train_local", "evaluate",
           "predict_proba", "resolve_inference_precision", "get_parameters", "set_parameters"]

_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of federated training, in the terms a hospital ML engineer uses."""

    rounds: int = 20
    local_epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 1e-4
    weight_decay: float = 1e-5
    optimizer: str = "adam"
    seed: int = 0
    use_3d_aug: bool = True   # flips, 90-degree axial rotations, shifts, intensity jitter; never at prediction
    # Off unless asked for: on the sample data both slowed learning (held-out AUC after 36 epochs:
    # 0.97 with flips and rotations only, 0.95 with jitter 0.05, 0.95 with shifts of +-1, 0.77 of +-2).
    aug_shift_voxels: int = 0
    aug_intensity_jitter: float = 0.0
    lr_schedule: str = "constant"   # or "cosine": anneal from learning_rate to min_learning_rate over the rounds
    min_learning_rate: float = 0.0
    fedprox_mu: float = 0.0   # FedProx: mu/2 * ||w - w_round_start||^2 keeps non-IID sites near the global model
    patience: int = 0         # stop after this many rounds without a better global validation loss; 0 = off
    # Each epoch: every positive plus this many fresh negatives per positive (0 = every negative); see
    # negative_sampling. hard_negative_fraction of them are those the round's model scores highest.
    negatives_per_positive: float = DEFAULT_NEGATIVES_PER_POSITIVE
    hard_negative_fraction: float = 0.0

    def __post_init__(self) -> None:
        for name in ("rounds", "local_epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be a positive integer, not {getattr(self, name)!r}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive, not {self.learning_rate!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, not {self.weight_decay!r}")
        if self.optimizer not in _OPTIMIZERS:
            raise ConfigError(f"optimizer {self.optimizer!r} is not one of {sorted(_OPTIMIZERS)}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"lr_schedule must be 'constant' or 'cosine', not {self.lr_schedule!r}")
        if not 0 <= self.min_learning_rate <= self.learning_rate:
            raise ConfigError(f"min_learning_rate must be in [0, learning_rate], not {self.min_learning_rate!r}")
        if self.fedprox_mu < 0:
            raise ConfigError(f"fedprox_mu must be >= 0, not {self.fedprox_mu!r}")
        if not 0 <= int(self.aug_shift_voxels) <= 4:
            raise ConfigError(f"aug_shift_voxels must be in [0, 4] (1.5 mm each), not {self.aug_shift_voxels!r}")
        if not 0 <= self.aug_intensity_jitter <= 0.5:
            raise ConfigError(f"aug_intensity_jitter must be in [0, 0.5], not {self.aug_intensity_jitter!r}")
        if self.patience < 0:
            raise ConfigError(f"patience must be >= 0 (0 turns early stopping off), not {self.patience!r}")
        self.negative_sampling   # validates both options

    @property
    def negative_sampling(self) -> NegativeSampling:
        return NegativeSampling(self.negatives_per_positive, self.hard_negative_fraction)

    def learning_rate_at(self, round_idx: int) -> float:
        if self.lr_schedule == "constant" or self.rounds == 1:
            return self.learning_rate
        progress = round_idx / (self.rounds - 1)
        return self.min_learning_rate + 0.5 * (self.learning_rate - self.min_learning_rate) * (
            1 + math.cos(math.pi * progress))

    def to_dict(self) -> dict:
        return asdict(self)

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        kwargs = {"lr": self.learning_rate, "weight_decay": self.weight_decay}
        if self.optimizer == "sgd":
            kwargs["momentum"] = 0.9
        return _OPTIMIZERS[self.optimizer](model.parameters(), **kwargs)


@dataclass(frozen=True)
class LocalResult:
    loss: float          # mean training loss over the local epochs' last epoch
    n_samples: int
    seconds: float
    score_seconds: float = 0.0   # scoring negatives for hard-negative mining before the epochs


def _as_tensor(patches: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(patches, dtype=np.float32))


def train_local(model: nn.Module, optimizer: torch.optim.Optimizer, patches: np.ndarray, labels: np.ndarray, *,
                epochs: int, batch_size: int, generator: torch.Generator, augment: bool = False,
                fedprox_mu: float = 0.0, aug_shift_voxels: int = 0, aug_intensity_jitter: float = 0.0,
                sampler: EpochSampler | None = None, amp: bool = True, channels_last: bool = False,
                loader_workers: int = LOADER_WORKERS) -> LocalResult:
    """Run `epochs` passes over the site's training patches ([N,1,D,H,W], labels {0,1}) on the model's device.

    `patches` may be a memory map or a `RowView`: only one batch is read into memory at a time.
    With `sampler`, each epoch trains on the rows it draws (every positive, fresh negatives).
    On CUDA (see `device`) the same batches in the same order come through a DataLoader with
    `loader_workers` readers, under autocast when `amp`, channels-last 3-D when `channels_last`;
    on a CPU those three options do nothing.
    """
    if len(patches) == 0:
        raise ConfigError("no training patches at this site: check the reader's output and val_fraction")
    start = time.perf_counter()
    model.train()
    loss_fn = nn.BCEWithLogitsLoss()
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.float32))
    last_epoch_loss = 0.0
    anchor = [p.detach().clone() for p in model.parameters()] if fedprox_mu > 0 else None
    n_samples = len(patches)
    device = model_device(model)
    cuda = _CudaSteps(model, optimizer, amp, channels_last, loader_workers) if device.type != "cpu" else None
    for _ in range(epochs):
        if sampler is None:
            order = torch.randperm(len(patches), generator=generator).numpy()
        else:
            rows = sampler.draw(generator)
            order = rows[torch.randperm(len(rows), generator=generator).numpy()]
            n_samples = len(rows)
        if cuda is not None:
            total, count = cuda.epoch(EpochBatches(patches, labels, order, batch_size), loss_fn, generator,
                                      augment=augment, max_shift=aug_shift_voxels, jitter=aug_intensity_jitter,
                                      anchor=anchor, fedprox_mu=fedprox_mu)
            last_epoch_loss = total / count
            continue
        total, count = 0.0, 0
        for lo in range(0, len(order), batch_size):
            idx = np.sort(order[lo:lo + batch_size])  # sorted reads are kinder to a memory-mapped array
            x, y = _as_tensor(patches[idx]), y_all[idx]
            if augment:
                x = augment_3d(x, generator, max_shift=aug_shift_voxels, jitter=aug_intensity_jitter)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            objective = loss if anchor is None else loss + _proximal_term(model, anchor, fedprox_mu)
            objective.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        last_epoch_loss = total / count
    return LocalResult(loss=last_epoch_loss, n_samples=n_samples, seconds=time.perf_counter() - start)


def _proximal_term(model: nn.Module, anchor: list[torch.Tensor], mu: float) -> torch.Tensor:
    """FedProx: mu/2 * ||w - w_round_start||^2 over every parameter."""
    return 0.5 * mu * sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor))


class _CudaSteps:
    """The training step on a GPU: batches through the DataLoader, autocast, a gradient scaler for float16."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, amp: bool, channels_last: bool,
                 loader_workers: int) -> None:
        self.model, self.optimizer, self.workers = model, optimizer, loader_workers
        self.device = model_device(model)
        self.dtype = amp_dtype() if amp else None
        # float16 needs loss scaling against underflowing gradients; bfloat16 has float32's range.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        self.memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
        if channels_last:
            model.to(memory_format=self.memory_format)

    def epoch(self, batches: EpochBatches, loss_fn: nn.Module, generator: torch.Generator, *, augment: bool,
              max_shift: int, jitter: float, anchor: list[torch.Tensor] | None,
              fedprox_mu: float) -> tuple[float, int]:
        """One pass over `batches`; (sum of batch losses x batch sizes, patches seen), synchronised once."""
        total = torch.zeros((), device=self.device)
        count = 0
        for x, y in cuda_batches(batches, self.workers):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if augment:   # the same draws from the CPU generator, in the same order, as the CPU loop
                x = augment_3d(x, generator, max_shift=max_shift, jitter=jitter)
            x = x.contiguous(memory_format=self.memory_format)
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
                loss = loss_fn(self.model(x), y)
            objective = loss.float()
            if anchor is not None:   # the proximal term in float32, outside autocast
                objective = objective + _proximal_term(self.model, anchor, fedprox_mu)
            self.scaler.scale(objective).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            total += loss.detach().float() * len(y)
            count += len(y)
        return float(total), count


INFERENCE_PRECISIONS = ("auto", "float32", "bfloat16")


def resolve_inference_precision(precision: str, device: torch.device) -> str:
    """What "auto" scores in on `device`: bfloat16 where the hardware computes it natively, else float32.

    bfloat16 scoring is about 1.5x faster on CPUs with AVX512-BF16 or AMX (bench/luna16_scale.py), with
    scores within ~3e-3 of float32; training is never affected (it stays float32 on a CPU).
    """
    if precision not in INFERENCE_PRECISIONS:
        raise ConfigError(f"inference precision must be one of {INFERENCE_PRECISIONS}, not {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if native_bf16_cpu() else "float32"


@torch.inference_mode()
def predict_proba(model: nn.Module, patches: np.ndarray, batch_size: int | None = None,
                  precision: str = "float32") -> np.ndarray:
    """Probabilities of every patch, read one batch at a time (a site's patches are never loaded whole).

    Runs a channels-last copy of the model: oneDNN's 3D convolutions are about 1.3x faster on a CPU
    in that layout; the scores agree with the plain layout to ~1e-7. Batches of 16 score about
    1.4x faster than batches of 64 on one core (smaller activations; measured side by side), and
    the copy's ReLUs work in place, a few percent more (bench/luna16_scale.py measures the rate).
    precision="bfloat16" runs the convolutions in bfloat16 (CPU autocast): faster again on CPUs
    with AVX512-BF16 or AMX, scores within ~3e-3 of float32 (bench/luna16_scale.py); "auto" picks it
    where the hardware has it (`resolve_inference_precision`).
    On CUDA (the model's device) it scores there, in batches of `CUDA_PREDICT_BATCH` by default.
    """
    precision = resolve_inference_precision(precision, model_device(model))
    model.eval()
    if model_device(model).type != "cpu":
        return _predict_cuda(model, patches, batch_size or CUDA_PREDICT_BATCH, precision)
    batch_size = batch_size or 16
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last_3d)
    for module in fast.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = True  # safe: no autograd here, and no ReLU input is read again
    out = []
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        for lo in range(0, len(patches), batch_size):
            x = _as_tensor(patches[lo:lo + batch_size]).contiguous(memory_format=torch.channels_last_3d)
            out.append(torch.sigmoid(fast(x).float()).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


CUDA_PREDICT_BATCH = 256   # a GPU needs wide batches to be busy; 256 patches of 32^3 are small for its memory


def _predict_cuda(model: nn.Module, patches: np.ndarray, batch_size: int, precision: str) -> np.ndarray:
    """predict_proba on the model's GPU; "float32" there still lets cuDNN use TF32 (torch's default)."""
    device = model_device(model)
    batches = EpochBatches(patches, None, np.arange(len(patches)), batch_size, sort=False)
    out = []
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        for x in cuda_batches(batches):
            out.append(torch.sigmoid(model(x.to(device, non_blocking=True)).float()))
    return torch.cat(out).cpu().numpy() if out else np.zeros(0, dtype=np.float32)


def evaluate(model: nn.Module, patches: np.ndarray, labels: np.ndarray, batch_size: int | None = None) -> dict:
    """Loss, AUC and accuracy at 0.5 on a labelled patch set (on the model's device)."""
    if len(patches) == 0:
        return {"loss": float("nan"), "auc": float("nan"), "accuracy": float("nan"), "n": 0}
    prob = predict_proba(model, patches, batch_size)
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(prob.astype(np.float64), 1e-7, 1 - 1e-7)
    loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return {"loss": loss, "auc": candidate_auc(y, prob), "accuracy": float(np.mean((prob >= 0.5) == (y == 1))),
            "n": int(len(y))}


def get_parameters(model: nn.Module) -> list[np.ndarray]:
    """Every entry of the state dict in order (float32 copies): what a round exchanges."""
    return [v.detach().cpu().numpy().astype(np.float32, copy=True) for v in model.state_dict().values()]


def set_parameters(model: nn.Module, arrays: list[np.ndarray]) -> None:
    state = model.state_dict()
    if len(arrays) != len(state):
        raise ConfigError(f"expected {len(state)} parameter arrays, got {len(arrays)}")
    new_state = {}
    for (name, ref), arr in zip(state.items(), arrays):
        if tuple(arr.shape) != tuple(ref.shape):
            raise ConfigError(f"parameter {name!r}: shape {tuple(arr.shape)} does not match "
                              f"the model's {tuple(ref.shape)}")
        new_state[name] = torch.as_tensor(np.asarray(arr), dtype=ref.dtype)
    model.load_state_dict(new_state)
