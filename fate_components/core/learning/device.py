"""Where a site trains and predicts: the `device` option (auto, cpu, cuda, cuda:N) and the CUDA batch feed.

On a CPU nothing here changes the training path: `training.py` keeps its own loop, batch for batch.
On CUDA the batches of one epoch come from a `DataLoader` over `EpochBatches` (the same rows, in
the same order, as the CPU loop reads them), read by worker processes from the memory-mapped patch
file into pinned memory, and the step runs under autocast (bfloat16 where the GPU supports it,
else float16 with a gradient scaler).

What is deterministic on CUDA: the batch order, augmentation draws and negative sampling (they
come from the site's CPU generator, as on a CPU). What is not: cuDNN may pick different
convolution algorithms run to run, and some backward kernels accumulate with atomics;
`torch.use_deterministic_algorithms` is not switched on (it is off by default in torch and costs
speed), so two CUDA runs of one seed agree closely but not bit for bit, and neither agrees bit for
bit with a CPU run. Dropout on CUDA draws from the CUDA generator (seeded by `torch.manual_seed`),
which checkpoints do not hold: a resume on a GPU is close to, not identical with, the uninterrupted run.
"""
from __future__ import annotations

import logging
import multiprocessing
import re
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from fate_components.core.errors import ConfigError

__all__ = ["DEVICE_CHOICES", "parse_device", "resolve_device", "site_device_problem", "model_device", "amp_dtype",
           "native_bf16_cpu", "to_cpu", "EpochBatches", "cuda_batches"]

logger = logging.getLogger(__name__)

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_SPEC = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")
# Worker processes reading the patch file ahead of the GPU. Not tuned on a GPU yet (none lent so far):
# a batch of 64 patches of 32^3 float16 is 4 MiB, which one reader serves in milliseconds from the page cache.
LOADER_WORKERS = 4


def parse_device(spec: str) -> str:
    """The normalised spelling of a `device` option ("cuda" stays "cuda"); ConfigError for anything else."""
    text = str(spec).strip().lower()
    match = _SPEC.match(text)
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise ConfigError(f"device {spec!r} is not one of {DEVICE_CHOICES}")
    return text


def resolve_device(spec: str) -> torch.device:
    """The device `spec` names on this machine; ConfigError when it asks for CUDA that is not there.

    "auto" is CUDA (device 0) when torch sees one, else the CPU, and logs which.
    """
    text = parse_device(spec)
    available = torch.cuda.is_available()
    if text == "auto":
        device = torch.device("cuda", 0) if available else torch.device("cpu")
        logger.info("device auto: %s", _describe(device) if available else "cpu (torch sees no CUDA device)")
        return device
    device = torch.device(text)
    if device.type == "cuda":
        if not available:
            raise ConfigError(f"device {spec!r}: torch sees no CUDA device here (torch {torch.__version__}, "
                              f"CUDA build {torch.version.cuda or 'none'}); install the CUDA build of torch "
                              f"(README, 'A site with a GPU') or set device to cpu or auto")
        if (device.index or 0) >= torch.cuda.device_count():
            raise ConfigError(f"device {spec!r}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                              f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return device


def site_device_problem(spec: str, dp_mode: str) -> tuple[torch.device | None, str | None]:
    """(the site's device, or None with the reason it cannot train there): what the pre-round check carries.

    Patient-level DP-SGD (dp.mode sample) stays on the CPU: Opacus' per-sample gradients are not
    run or tested on CUDA here, so a CUDA device with it is refused before round 1.
    """
    try:
        device = resolve_device(spec)
    except ConfigError as e:
        return None, str(e)
    if device.type == "cuda" and dp_mode == "sample":
        return None, (f"dp.mode 'sample' (patient-level DP-SGD) runs on the CPU only, but device is {spec!r} "
                      f"({device}); set device to cpu for this site")
    return device, None


def _describe(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device)
    precision = "bfloat16" if torch.cuda.is_bf16_supported() else "float16 with a gradient scaler"
    return f"{device} ({name}; mixed precision {precision})"


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's parameters are (the CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def amp_dtype() -> torch.dtype:
    """Autocast's dtype on this GPU: bfloat16 where supported (no loss scaling needed), else float16."""
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def native_bf16_cpu(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX-BF16), read from Linux's cpuinfo.

    torch's own `_is_mkldnn_bf16_supported` is true on any AVX512 CPU, where oneDNN emulates bfloat16
    and scoring gets slower, not faster. Elsewhere (no cpuinfo) the answer is no: float32 is the safe side.
    """
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def to_cpu(obj: Any) -> Any:
    """`obj` with every tensor inside (dicts, lists, tuples) on the CPU; `obj` itself when all already are.

    Returning the same object on a CPU keeps what a CPU run saves byte for byte as before
    (a state dict's `_metadata` included).
    """
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        moved = {k: to_cpu(v) for k, v in obj.items()}
        if all(moved[k] is obj[k] for k in obj):
            return obj
        out = OrderedDict(moved) if isinstance(obj, OrderedDict) else moved
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)):
        moved_items = [to_cpu(v) for v in obj]
        if all(a is b for a, b in zip(moved_items, obj)):
            return obj
        return type(obj)(moved_items)
    return obj


class EpochBatches(torch.utils.data.Dataset):
    """Batch i of one epoch: rows order[i*b:(i+1)*b], sorted (the CPU loop's reads), as float32 tensors.

    With `labels` None an item is the patches alone (prediction). Workers forked by the
    DataLoader inherit the memory map; nothing is copied but the batch read.
    """

    def __init__(self, patches: Any, labels: np.ndarray | None, order: np.ndarray, batch_size: int,
                 sort: bool = True) -> None:
        self.patches, self.labels, self.batch_size, self.sort = patches, labels, int(batch_size), sort
        self.order = np.asarray(order, dtype=np.int64)

    def __len__(self) -> int:
        return (len(self.order) + self.batch_size - 1) // self.batch_size

    def rows(self, i: int) -> np.ndarray:
        rows = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        return np.sort(rows) if self.sort else rows

    def __getitem__(self, i: int):
        idx = self.rows(i)
        x = torch.from_numpy(np.ascontiguousarray(self.patches[idx], dtype=np.float32))
        if self.labels is None:
            return x
        return x, torch.from_numpy(np.asarray(self.labels[idx], dtype=np.float32))


def cuda_batches(batches: EpochBatches, workers: int = LOADER_WORKERS) -> torch.utils.data.DataLoader:
    """A DataLoader yielding `batches` in order into pinned memory, `workers` processes reading two batches ahead."""
    workers = max(0, min(int(workers), len(batches)))
    # fork, not spawn or forkserver: a forked worker shares the memory map; the others would pickle it,
    # and pickling a numpy memmap copies the whole array. The workers never touch CUDA.
    context = "fork" if workers and "fork" in multiprocessing.get_all_start_methods() else None
    return torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False, num_workers=workers,
                                       pin_memory=True, prefetch_factor=2 if workers else None,
                                       multiprocessing_context=context)
