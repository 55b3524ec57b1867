"""Cutting a normalised, world-aligned cube around a candidate.

The cube's axes follow world x, y, z (LPS) whatever the scan's direction matrix, and its
voxel size is fixed in mm, so every site gives the same patch for the same anatomy. Only
the cube's points are interpolated, never the whole volume.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy.ndimage import map_coordinates

from .errors import ConfigError, CoordinateOutOfVolumeError
from .volume import Volume

__all__ = ["PatchSpec", "extract_patch", "normalise_hu", "AIR_HU"]

AIR_HU = -1000.0   # fill value outside the scan: air, as around the patient


@dataclass(frozen=True)
class PatchSpec:
    """Patch geometry and intensity normalisation; all sites must use identical values.

    HU are clipped to the lung window [hu_min, hu_max] and scaled linearly to [0, 1], so air
    maps to 0, lung parenchyma to ~0.1, soft tissue / solid nodules to ~0.75 and calcium to 1.
    """

    size_mm: float = 48.0       # edge of the cube in world mm
    size_voxels: int = 32       # output voxels per edge (voxel = size_mm / size_voxels mm)
    hu_min: float = -1000.0
    hu_max: float = 400.0

    def __post_init__(self) -> None:
        if not (isinstance(self.size_mm, (int, float)) and np.isfinite(self.size_mm) and self.size_mm > 0):
            raise ConfigError(f"size_mm must be a positive number of millimetres, not {self.size_mm!r}")
        if isinstance(self.size_voxels, bool) or not isinstance(self.size_voxels, (int, np.integer)) \
                or self.size_voxels < 1:
            raise ConfigError(f"size_voxels must be a positive integer, not {self.size_voxels!r}")
        if not (np.isfinite(self.hu_min) and np.isfinite(self.hu_max) and self.hu_max > self.hu_min):
            raise ConfigError(f"HU window must have hu_min < hu_max, not [{self.hu_min!r}, {self.hu_max!r}]")
        object.__setattr__(self, "size_mm", float(self.size_mm))
        object.__setattr__(self, "size_voxels", int(self.size_voxels))
        object.__setattr__(self, "hu_min", float(self.hu_min))
        object.__setattr__(self, "hu_max", float(self.hu_max))

    @property
    def voxel_mm(self) -> float:
        return self.size_mm / self.size_voxels

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PatchSpec":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown patch spec key(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")
        return cls(**d)


def normalise_hu(array_hu: np.ndarray, spec: PatchSpec) -> np.ndarray:
    """Clip HU to [hu_min, hu_max] and scale to [0, 1] (float32)."""
    array = np.clip(np.asarray(array_hu, dtype=np.float32), spec.hu_min, spec.hu_max)
    return (array - np.float32(spec.hu_min)) / np.float32(spec.hu_max - spec.hu_min)


def _grid_offsets(spec: PatchSpec) -> np.ndarray:
    # Voxel centres symmetric about the candidate: for an even size the centre falls between voxels.
    return (np.arange(spec.size_voxels, dtype=np.float64) - (spec.size_voxels - 1) / 2.0) * spec.voxel_mm


def extract_patch(volume: Volume, center_world_mm, spec: PatchSpec, *, row: int | None = None) -> np.ndarray:
    """float32 [D, H, W] = [z, y, x] world-aligned cube in [0, 1] centred on `center_world_mm`.

    Linear interpolation; points outside the scan read as air. A centre outside the scan
    raises CoordinateOutOfVolumeError (`row` is the candidates.csv line, for the message).
    """
    center = np.asarray(center_world_mm, dtype=np.float64).reshape(3)
    if not volume.contains_world(center):
        where = f"candidates.csv line {row}: " if row is not None else ""
        raise CoordinateOutOfVolumeError(
            f"{where}candidate ({center[0]:.1f}, {center[1]:.1f}, {center[2]:.1f}) mm of seriesuid "
            f"{volume.series_uid or '?'} is outside the scan {volume.source}, whose world bounds are "
            f"{volume.describe_bounds()}; check the coordinates are world mm (not voxel indices) in LPS")
    offsets = _grid_offsets(spec)
    # The index of a world point is affine in it, so the grid is the centre's index plus one
    # index step per world axis times the offsets; no 32^3 x 3 matrix product needed.
    centre_index = volume.world_to_voxel(center)                          # (i, j, k)
    step_x, step_y, step_z = volume.world_to_voxel(center + np.eye(3)) - centre_index
    axes = _world_axis_of_index_axes(volume.direction)
    if axes is not None:
        # Every index axis runs along one world axis (any scan without gantry tilt): trilinear
        # interpolation then separates into three 1-D passes over a small block, ~10x faster.
        steps = (step_x, step_y, step_z)
        positions = [centre_index[a] + steps[axes[a]][a] * offsets for a in range(3)]   # per index axis i, j, k
        sampled = _separable_linear(volume.array_hu, positions)                          # axes (k, j, i)
        world_of_array_axis = [axes[2], axes[1], axes[0]]
        # Output axes are world (z, y, x) = world axes (2, 1, 0).
        sampled = np.transpose(sampled, [world_of_array_axis.index(w) for w in (2, 1, 0)])
        return normalise_hu(sampled, spec)
    index = (centre_index[:, None, None, None]
             + step_z[:, None, None, None] * offsets[None, :, None, None]
             + step_y[:, None, None, None] * offsets[None, None, :, None]
             + step_x[:, None, None, None] * offsets[None, None, None, :])   # (3=ijk, D=z, H=y, W=x)
    coords = index[::-1]   # map_coordinates wants array axis order (k, j, i)
    sampled = map_coordinates(volume.array_hu, coords, order=1, mode="constant", cval=AIR_HU,
                              output=np.float32, prefilter=False)
    return normalise_hu(sampled, spec)


def _world_axis_of_index_axes(direction: np.ndarray) -> tuple[int, int, int] | None:
    """For each index axis (i, j, k), the world axis it runs along, if the direction is a signed permutation."""
    d = np.asarray(direction, dtype=np.float64)
    axes = tuple(int(np.argmax(np.abs(d[:, a]))) for a in range(3))
    if sorted(axes) != [0, 1, 2] or any(abs(abs(d[axes[a], a]) - 1.0) > 1e-6 for a in range(3)):
        return None
    return axes


def _separable_linear(array: np.ndarray, positions_ijk: list[np.ndarray]) -> np.ndarray:
    """Linear interpolation of `array` ([k, j, i]) on the grid positions_k x positions_j x positions_i.

    Outside the array reads as air, like map_coordinates' constant mode with grid semantics.
    """
    block_slices, passes = [], []
    for axis, pos in zip((0, 1, 2), (positions_ijk[2], positions_ijk[1], positions_ijk[0])):
        lo_idx = np.floor(pos).astype(np.int64)
        frac = (pos - lo_idx).astype(np.float32)
        start, stop = int(lo_idx.min()), int(lo_idx.max()) + 2
        block_slices.append((start, stop))
        passes.append((lo_idx - start, frac))
    shape = array.shape
    inner = tuple(slice(max(a, 0), min(b, n)) for (a, b), n in zip(block_slices, shape))
    block = np.array(array[inner], dtype=np.float32)   # a contiguous copy: gathers from a strided view are 4x slower
    pad = [(max(0, -a), max(0, b - n)) for (a, b), n in zip(block_slices, shape)]
    if any(p for pair in pad for p in pair):
        block = np.pad(block, pad, mode="constant", constant_values=AIR_HU)
    for axis, (idx, frac) in enumerate(passes):
        lower = np.take(block, idx, axis=axis)
        upper = np.take(block, idx + 1, axis=axis)
        shape_w = [1, 1, 1]
        shape_w[axis] = -1
        w = frac.reshape(shape_w)
        block = lower + (upper - lower) * w
    return block
