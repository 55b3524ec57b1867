"""Cutting a normalised, world-aligned cube around a candidate.

The cube's axes follow world x, y, z (LPS) whatever the scan's direction matrix, and its
voxel size is fixed in mm, so every site gives the same patch for the same anatomy. Only
the cube's points are interpolated, never the whole volume.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numba
import numpy as np
from scipy.ndimage import map_coordinates

from .errors import ConfigError, CoordinateOutOfVolumeError
from .volume import Volume

__all__ = ["PatchSpec", "extract_patch", "extract_patches", "outside_scan_error", "normalise_hu", "AIR_HU"]

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


def outside_scan_error(volume: Volume, center_world_mm, row: int | None = None) -> CoordinateOutOfVolumeError:
    """The error for a candidate centre outside the scan (`row` is its candidates.csv line)."""
    center = np.asarray(center_world_mm, dtype=np.float64).reshape(3)
    where = f"candidates.csv line {row}: " if row is not None else ""
    return CoordinateOutOfVolumeError(
        f"{where}candidate ({center[0]:.1f}, {center[1]:.1f}, {center[2]:.1f}) mm of seriesuid "
        f"{volume.series_uid or '?'} is outside the scan {volume.source}, whose world bounds are "
        f"{volume.describe_bounds()}; check the coordinates are world mm (not voxel indices) in LPS")


def _index_steps(volume: Volume) -> np.ndarray:
    """Row w: the change of the continuous index (i, j, k) per mm along world axis w (the map is affine)."""
    return volume.world_to_voxel(np.eye(3)) - volume.world_to_voxel(np.zeros(3))


def _axis_aligned_positions(volume: Volume, centers: np.ndarray, axes: tuple[int, int, int],
                            offsets: np.ndarray) -> list[np.ndarray]:
    """Sample positions along index axes k, j, i, each (n, size), for n centres of an axis-aligned scan.

    Index axis a runs along world axis axes[a], so its positions move with that axis's offsets only.
    """
    centre_index = volume.world_to_voxel(centers)                                    # (n, 3) = i, j, k
    steps = _index_steps(volume)
    return [np.ascontiguousarray(centre_index[:, a, None] + steps[axes[a], a] * offsets[None, :])
            for a in (2, 1, 0)]


def _world_order(axes: tuple[int, int, int]) -> list[int]:
    """The transpose taking array axes (k, j, i) to world axes (z, y, x)."""
    world_of_array_axis = [axes[2], axes[1], axes[0]]
    return [world_of_array_axis.index(w) for w in (2, 1, 0)]


def extract_patch(volume: Volume, center_world_mm, spec: PatchSpec, *, row: int | None = None) -> np.ndarray:
    """float32 [D, H, W] = [z, y, x] world-aligned cube in [0, 1] centred on `center_world_mm`.

    Linear interpolation; points outside the scan read as air. A centre outside the scan
    raises CoordinateOutOfVolumeError (`row` is the candidates.csv line, for the message).
    """
    center = np.asarray(center_world_mm, dtype=np.float64).reshape(3)
    if not volume.contains_world(center):
        raise outside_scan_error(volume, center, row)
    offsets = _grid_offsets(spec)
    axes = _world_axis_of_index_axes(volume.direction)
    if axes is not None:
        # Every index axis runs along one world axis (any scan without gantry tilt): trilinear
        # interpolation then separates into three 1-D passes over a small block, ~10x faster.
        pk, pj, pi = (p[0] for p in _axis_aligned_positions(volume, center[None], axes, offsets))
        sampled = np.empty((len(pk), len(pj), len(pi)), dtype=np.float32)
        _trilinear_grid(volume.array_hu, pk, pj, pi, np.float32(AIR_HU), sampled)
        return normalise_hu(np.transpose(sampled, _world_order(axes)), spec)
    # The index of a world point is affine in it, so the grid is the centre's index plus one
    # index step per world axis times the offsets; no 32^3 x 3 matrix product needed.
    centre_index = volume.world_to_voxel(center)                          # (i, j, k)
    step_x, step_y, step_z = _index_steps(volume)
    index = (centre_index[:, None, None, None]
             + step_z[:, None, None, None] * offsets[None, :, None, None]
             + step_y[:, None, None, None] * offsets[None, None, :, None]
             + step_x[:, None, None, None] * offsets[None, None, None, :])   # (3=ijk, D=z, H=y, W=x)
    coords = index[::-1]   # map_coordinates wants array axis order (k, j, i)
    sampled = map_coordinates(volume.array_hu, coords, order=1, mode="constant", cval=AIR_HU,
                              output=np.float32, prefilter=False)
    return normalise_hu(sampled, spec)


def extract_patches(volume: Volume, centers_world_mm, spec: PatchSpec) -> np.ndarray:
    """float16 [n, D, H, W] patches for n centres, the same values as `extract_patch`.

    One call per scan: the positions of all patches are computed at once and, on axis-aligned
    scans, one compiled loop samples and normalises them all. A centre outside the scan raises
    CoordinateOutOfVolumeError (filter with `volume.contains_world` first).
    """
    centers = np.asarray(centers_world_mm, dtype=np.float64).reshape(-1, 3)
    size = spec.size_voxels
    axes = _world_axis_of_index_axes(volume.direction)
    if axes is None or len(centers) == 0:
        patches = [extract_patch(volume, c, spec) for c in centers]
        return np.stack(patches).astype(np.float16) if patches else np.zeros((0,) + (size,) * 3, np.float16)
    outside = ~np.atleast_1d(volume.contains_world(centers))
    if outside.any():
        raise outside_scan_error(volume, centers[np.argmax(outside)])
    out = np.empty((len(centers), size, size, size), dtype=np.uint16)   # float16 bit patterns
    _sample_normalised(volume.array_hu, *_axis_aligned_positions(volume, centers, axes, _grid_offsets(spec)),
                       np.float32(AIR_HU), np.float32(spec.hu_min), np.float32(spec.hu_max), out)
    return np.transpose(out.view(np.float16), [0] + [o + 1 for o in _world_order(axes)])


@numba.njit(cache=True, nogil=True)
def _sample_normalised(array, pk, pj, pi, air, hu_min, hu_max, out):  # pragma: no cover - compiled
    # Samples, normalises as normalise_hu does (bit for bit) and stores float16 bit patterns
    # (numba has no float16; numpy's own conversion cost as much as the sampling).
    width = hu_max - hu_min
    patch = np.empty(out.shape[1:], dtype=np.float32)
    flat = patch.reshape(-1)
    bits = flat.view(np.uint32)
    for n in range(pk.shape[0]):
        _trilinear_grid(array, pk[n], pj[n], pi[n], air, patch)
        target = out[n].reshape(-1)
        for idx in range(flat.shape[0]):
            flat[idx] = (min(max(flat[idx], hu_min), hu_max) - hu_min) / width
            target[idx] = _half_bits(np.int64(bits[idx]))


@numba.njit(cache=True, nogil=True)
def float32_bits_to_half(bits):  # pragma: no cover - compiled
    """float16 bit patterns of float32 bit patterns (uint32 array), rounding to nearest even like numpy."""
    out = np.empty(bits.shape[0], dtype=np.uint16)
    for idx in range(bits.shape[0]):
        out[idx] = _half_bits(np.int64(bits[idx]))
    return out


@numba.njit(cache=True, nogil=True)
def _half_bits(x):  # pragma: no cover - compiled
    sign = (x >> 16) & 0x8000
    exp = (x >> 23) & 0xFF
    mant = x & 0x7FFFFF
    if exp == 0xFF:                      # inf, nan
        return sign | 0x7C00 | (0x200 if mant else 0)
    e = exp - 112                        # rebias 127 -> 15
    if e >= 31:                          # overflow
        return sign | 0x7C00
    if e <= 0:                           # half subnormal (or zero)
        if e < -10:
            return sign
        m = mant | 0x800000
        shift = 14 - e
        h = m >> shift
        rem = m & ((1 << shift) - 1)
        halfway = 1 << (shift - 1)
        if rem > halfway or (rem == halfway and (h & 1)):
            h += 1
        return sign | h
    h = (e << 10) | (mant >> 13)
    rem = mant & 0x1FFF
    if rem > 0x1000 or (rem == 0x1000 and (h & 1)):
        h += 1                           # a carry into the exponent is still right
    return sign | h


def _world_axis_of_index_axes(direction: np.ndarray) -> tuple[int, int, int] | None:
    """For each index axis (i, j, k), the world axis it runs along, if the direction is a signed permutation."""
    d = np.asarray(direction, dtype=np.float64)
    axes = tuple(int(np.argmax(np.abs(d[:, a]))) for a in range(3))
    if sorted(axes) != [0, 1, 2] or any(abs(abs(d[axes[a], a]) - 1.0) > 1e-6 for a in range(3)):
        return None
    return axes


@numba.njit(cache=True, nogil=True, fastmath=True)
def _trilinear_grid(array, pk, pj, pi, air, out):  # pragma: no cover - compiled
    # Compiled and separable: numpy's per-axis gathers cost ~0.5 ms per patch in temporaries.
    # Pass 1 interpolates along i on every row of the block under the patch (contiguous reads
    # straight from the int16 or float32 scan), pass 2 along j, pass 3 along k.
    nk, nj, ni = array.shape
    k0, fk = _floor_frac(pk)
    j0, fj = _floor_frac(pj)
    i0, fi = _floor_frac(pi)
    kmin, jmin = k0.min(), j0.min()
    nbk, nbj = k0.max() + 2 - kmin, j0.max() + 2 - jmin
    inside_i = i0.min() >= 0 and i0.max() + 1 < ni
    rows = np.empty((nbk, nbj, pi.shape[0]), dtype=np.float32)
    for kk in range(nbk):
        k = kmin + kk
        for jj in range(nbj):
            j = jmin + jj
            if k < 0 or k >= nk or j < 0 or j >= nj:
                rows[kk, jj, :] = air
            elif inside_i:
                for c in range(pi.shape[0]):
                    lo = np.float32(array[k, j, i0[c]])
                    rows[kk, jj, c] = lo + fi[c] * (np.float32(array[k, j, i0[c] + 1]) - lo)
            else:
                for c in range(pi.shape[0]):
                    rows[kk, jj, c] = ((1.0 - fi[c]) * _at(array, k, j, i0[c], air)
                                       + fi[c] * _at(array, k, j, i0[c] + 1, air))
    plane = np.empty((nbk, pj.shape[0], pi.shape[0]), dtype=np.float32)
    for kk in range(nbk):
        for b in range(pj.shape[0]):
            jj = j0[b] - jmin
            for c in range(pi.shape[0]):
                plane[kk, b, c] = rows[kk, jj, c] + fj[b] * (rows[kk, jj + 1, c] - rows[kk, jj, c])
    for a in range(pk.shape[0]):
        kk = k0[a] - kmin
        for b in range(pj.shape[0]):
            for c in range(pi.shape[0]):
                out[a, b, c] = plane[kk, b, c] + fk[a] * (plane[kk + 1, b, c] - plane[kk, b, c])


@numba.njit(cache=True, nogil=True)
def _floor_frac(p):  # pragma: no cover - compiled
    lo = np.floor(p)
    return lo.astype(np.int64), (p - lo).astype(np.float32)


@numba.njit(cache=True, nogil=True)
def _at(array, k, j, i, air):  # pragma: no cover - compiled
    nk, nj, ni = array.shape
    if 0 <= k < nk and 0 <= j < nj and 0 <= i < ni:
        return float(array[k, j, i])
    return float(air)
