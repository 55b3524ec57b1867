"""Training and prediction patches/s of the default model on a CPU and a GPU, side by side.

    PYTHONPATH=. python bench/gpu_training.py [--seconds 1.0] [--batches 16,64,256]

Rows: the CPU with one thread, the CPU with every core, the GPU in float32 (cuDNN may use
TF32, torch's default), the GPU with mixed precision (bfloat16 autocast where supported, else
float16 with a gradient scaler), and mixed precision with channels-last 3-D tensors (whether
that layout pays is what the last row measures). Rows it cannot run say "no CUDA device". Each
cell trains (`train_local`: the DataLoader feed on the GPU) and predicts (`predict_proba`) on
random 32^3 float16 patches for about `--seconds` (at least one batch; one warm-up per row),
on `ModelConfig()`; a GPU row trains epochs of up to 16 of the largest batch.
Ratios are to the CPU one-thread cell of the same batch size. The target: GPU training at batch
64 >= 20x one CPU thread. Imports only torch, numpy and fate_components.core (no FATE, no sklearn).
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from fate_components.core.learning.model import ModelConfig, build_model
from fate_components.core.learning.training import TrainConfig, predict_proba, train_local

TARGET_BATCH, TARGET_RATIO = 64, 20.0


@dataclass(frozen=True)
class Row:
    name: str
    device: str
    threads: int
    amp: bool = False
    channels_last: bool = False


def _patches(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.3, 0.05, (n, 1, 32, 32, 32)).astype(np.float16)   # the patch file's dtype
    y = (rng.random(n) < 0.2).astype(np.float32)
    return x, y


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(row: Row, run, n: int) -> float:
    _sync(row.device)
    t0 = time.perf_counter()
    run(n)
    _sync(row.device)
    return time.perf_counter() - t0


def _rates(row: Row, batches: list[int], seconds: float) -> dict[tuple[str, int], float]:
    """Patches/s per (train or predict, batch); one warm-up at the smallest batch sizes the later runs."""
    model = build_model(ModelConfig(), seed=0).to(row.device)
    optimizer = TrainConfig().make_optimizer(model)
    precision = "bfloat16" if row.amp else "float32"
    x, y = _patches(max(batches) * (16 if row.device == "cuda" else 2))   # a GPU epoch: enough batches to amortise
    rates = {}
    for kind in ("train", "predict"):
        def run(n: int, batch: int = min(batches)) -> None:
            if kind == "train":
                train_local(model, optimizer, x[:n], y[:n], epochs=1, batch_size=batch, augment=True,
                            generator=torch.Generator().manual_seed(0), amp=row.amp, channels_last=row.channels_last)
            else:
                predict_proba(model, x[:n], batch_size=batch, precision=precision)

        warm = min(batches)   # first calls pick kernels (oneDNN, cuDNN) and start the loader's workers
        hint = warm / _timed(row, run, warm)
        for b in batches:
            n_batches = max(1, min(len(x) // b, int(seconds * hint / b)))
            rates[(kind, b)] = b * n_batches / _timed(row, lambda n, b=b: run(n, b), b * n_batches)
    return rates


def _rows() -> list[Row]:
    cores = os.cpu_count() or 1
    amp = ("bfloat16" if torch.cuda.is_bf16_supported() else "float16") if torch.cuda.is_available() else "autocast"
    return [Row("CPU 1 thread", "cpu", 1), Row(f"CPU all cores ({cores})", "cpu", cores),
            Row("GPU fp32", "cuda", cores), Row(f"GPU AMP ({amp})", "cuda", cores, amp=True),
            Row(f"GPU AMP ({amp}), channels-last", "cuda", cores, amp=True, channels_last=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="measured seconds per cell, after a warm-up")
    parser.add_argument("--batches", default="16,64,256")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    print(f"# torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}, "
          f"GPU {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}, "
          f"{os.cpu_count()} CPU cores; model ModelConfig() (widths {ModelConfig().widths}), 32^3 patches")
    header = ["row", *(f"train b{b}" for b in batches), *(f"predict b{b}" for b in batches)]
    print(" | ".join(f"{h:>28}" if i == 0 else f"{h:>18}" for i, h in enumerate(header)))
    base: dict[tuple[str, int], float] = {}
    measured: dict[tuple[str, str, int], float] = {}
    for row in _rows():
        cells = [f"{row.name:>28}"]
        if row.device == "cuda" and not torch.cuda.is_available():
            print(" | ".join([*cells, f"{'no CUDA device':>18}"]))
            continue
        torch.set_num_threads(row.threads)
        rates = _rates(row, batches, args.seconds)
        for kind in ("train", "predict"):
            for b in batches:
                rate = rates[(kind, b)]
                measured[(row.name, kind, b)] = rate
                if row.name == "CPU 1 thread":
                    base[(kind, b)] = rate
                cells.append(f"{rate:>8.0f}/s {rate / base[(kind, b)]:>6.1f}x")
        print(" | ".join(cells), flush=True)
    gpu = [v for (name, kind, b), v in measured.items() if name.startswith("GPU") and kind == "train"
           and b == TARGET_BATCH]
    if TARGET_BATCH not in batches:
        print(f"target: GPU training at batch {TARGET_BATCH} >= {TARGET_RATIO:.0f}x one CPU thread: not measured "
              f"(batch {TARGET_BATCH} not in --batches)")
    elif not gpu:
        print(f"target: GPU training at batch {TARGET_BATCH} >= {TARGET_RATIO:.0f}x one CPU thread: missed "
              f"(no CUDA device)")
    else:
        ratio = max(gpu) / base[("train", TARGET_BATCH)]
        print(f"target: GPU training at batch {TARGET_BATCH} >= {TARGET_RATIO:.0f}x one CPU thread: "
              f"{'met' if ratio >= TARGET_RATIO else 'missed'} ({ratio:.1f}x, best GPU row)")


if __name__ == "__main__":
    main()
