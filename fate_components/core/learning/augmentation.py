"""Training-time augmentation of candidate patches: flips, axial rotations, small shifts, intensity jitter.

Every draw comes from the caller's generator, in a fixed order, so a seeded run augments identically.
"""
from __future__ import annotations

import torch

__all__ = ["augment_3d", "shift_3d"]


def augment_3d(x: torch.Tensor, generator: torch.Generator, *, max_shift: int = 0,
               jitter: float = 0.0) -> torch.Tensor:
    """Random flips and axial 90-degree rotations (per batch), small shifts and mild intensity jitter.

    Patches are cut on a world-aligned grid, so flips and rotations map plausible anatomy to
    plausible anatomy, and a nodule stays a nodule under any of them. Shifts (up to `max_shift`
    voxels per axis, the vacated border read as air) keep the nodule near the centre;
    jitter (gain 1 +- `jitter`, offset +- jitter / 2, per patch) mimics scanner calibration.
    """
    flips = [d for d, f in zip((2, 3, 4), torch.rand(3, generator=generator) < 0.5) if f]
    if flips:
        x = torch.flip(x, dims=flips)
    k = int(torch.randint(0, 4, (1,), generator=generator))
    if k:
        x = torch.rot90(x, k, dims=(3, 4))
    if max_shift:
        x = shift_3d(x, torch.randint(-max_shift, max_shift + 1, (3,), generator=generator).tolist())
    if jitter:
        n = x.shape[0]
        gain = 1 + jitter * (2 * torch.rand((n, 1, 1, 1, 1), generator=generator) - 1)
        offset = 0.5 * jitter * (2 * torch.rand((n, 1, 1, 1, 1), generator=generator) - 1)
        x = x * gain.to(x.device) + offset.to(x.device)   # drawn on the CPU generator; no-ops on a CPU
    return x


def shift_3d(x: torch.Tensor, shifts: list[int]) -> torch.Tensor:
    """Move the content of [N, C, D, H, W] by `shifts` voxels along (D, H, W); the vacated border is air (0)."""
    out = torch.zeros_like(x)
    src, dst = [slice(None)] * 2, [slice(None)] * 2
    for s, n in zip(shifts, x.shape[2:]):
        s = max(-n, min(n, int(s)))
        src.append(slice(max(0, -s), n - max(0, s)))
        dst.append(slice(max(0, s), n - max(0, -s)))
    out[tuple(dst)] = x[tuple(src)]
    return out
