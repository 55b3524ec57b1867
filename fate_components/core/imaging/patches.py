"""Cutting a normalised, world-aligned cube around a candidate.

The cube's axes follow world x, y, z (LPS) whatever the scan's direction matrix, and its
voxel size is fixed in mm, so every site gives the same patch for the same anatomy. Only
the cube's points are interpolated, never the whole volume.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numba
import numpy as np
from llvmlite import ir as llvm_ir
from numba import types
from numba.extending import intrinsic
from scipy.ndimage import map_coordinates

from fate_components.core.errors import ConfigError, CoordinateOutOfVolumeError
from fate_components.core.imaging.volume import Volume

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


def outside_scan_error(volume: Volume, center_world_mm, row: int | None = None, *, where: str | None = None,
                       what: str = "candidate", hint: str = "") -> CoordinateOutOfVolumeError:
    """The error for a centre outside the scan: by default a candidate's (`row` is its candidates.csv line);
    `where` (e.g. "annotations.csv: line 3: "), `what` and `hint` word it for the rows of other tables."""
    center = np.asarray(center_world_mm, dtype=np.float64).reshape(3)
    if where is None:
        where = f"candidates.csv line {row}: " if row is not None else ""
    return CoordinateOutOfVolumeError(
        f"{where}{what} ({center[0]:.1f}, {center[1]:.1f}, {center[2]:.1f}) mm of seriesuid "
        f"{volume.series_uid or '?'} is outside the scan {volume.source}, whose world bounds are "
        f"{volume.describe_bounds()}; check the coordinates are world mm (not voxel indices) in LPS{hint}")


# The rule at the scan's faces, for both sampling paths, as SimpleITK's sitkLinear resampling does
# it (measured with SimpleITK 2.5 / ITK 5.4: tests/unit/test_faces.py): along each index axis of n
# voxels a continuous index p is inside when -0.5 <= p < n - 0.5 (ITK's IsInsideBuffer, half-open),
# and there reads the linear interpolation at p clamped to [0, n - 1], i.e. the outer voxels' values
# extend half a voxel out to the outer voxel faces; a point outside on any axis reads air (AIR_HU,
# SimpleITK's default value). Positions inside [0, n - 1] are unchanged, so interior patches are too.
def _apply_face_rule(position: np.ndarray, n: int) -> np.ndarray:
    """Positions along an index axis of n voxels, rewritten so that plain interpolation with air outside
    the array follows the face rule: clamped to [0, n - 1] inside, else -2 or n + 1, whose two
    neighbours are both outside the array (air). Monotonic positions stay monotonic."""
    position = np.asarray(position, dtype=np.float64)
    if position.size == 0 or (position.min() >= 0.0 and position.max() <= n - 1.0):
        return position                                  # the usual case, away from the faces: unchanged
    inside = (position >= -0.5) & (position < n - 0.5)
    return np.where(inside, np.clip(position, 0.0, n - 1.0), np.where(position < 0.0, -2.0, n + 1.0))


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
    size = volume.shape_xyz
    return [np.ascontiguousarray(_apply_face_rule(centre_index[:, a, None] + steps[axes[a], a] * offsets[None, :],
                                                  size[a]))
            for a in (2, 1, 0)]


def _world_order(axes: tuple[int, int, int]) -> list[int]:
    """The transpose taking array axes (k, j, i) to world axes (z, y, x)."""
    world_of_array_axis = [axes[2], axes[1], axes[0]]
    return [world_of_array_axis.index(w) for w in (2, 1, 0)]


def extract_patch(volume: Volume, center_world_mm, spec: PatchSpec, *, row: int | None = None) -> np.ndarray:
    """float32 [D, H, W] = [z, y, x] world-aligned cube in [0, 1] centred on `center_world_mm`.

    Linear interpolation with SimpleITK's rule at the faces (see _apply_face_rule); air outside the
    scan. A centre outside the scan raises CoordinateOutOfVolumeError (`row` is its candidates.csv line).
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
    size = volume.shape_xyz
    coords = np.stack([_apply_face_rule(index[a], size[a]) for a in (2, 1, 0)])   # map_coordinates: axes k, j, i
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
                       np.float32(AIR_HU), np.float32(spec.hu_min), np.float32(spec.hu_max),
                       np.float32(spec.hu_max - spec.hu_min), out)
    return np.transpose(out.view(np.float16), [0] + [o + 1 for o in _world_order(axes)])


# Separable trilinear sampling on axis-aligned scans. For each scan slice k the patch needs, a
# plane [j, i] is interpolated along j (two rows, contiguous runs of i, straight from the int16
# or float32 scan), then along i; output planes are then interpolated along k between two
# slice planes. Every value is lo + f * (hi - lo) in float32 with air outside the scan, in that
# order, whether a patch is cut alone (_trilinear_grid) or with the others of its scan
# (_sample_normalised), so both give the same bits. No fastmath: the float16 rounding below
# relies on exact IEEE additions, and a contracted multiply-add would round differently.

@numba.njit(cache=True, nogil=True)
def _sample_normalised(array, pk, pj, pi, air, hu_min, hu_max, width, out):  # pragma: no cover - compiled
    # All patches of a scan in one sweep over its slices (patches ordered by their first slice):
    # each slice is cut for every patch over it while it is still in cache, instead of patch after
    # patch, each re-reading ~40 slices from memory. A patch keeps its last two slice planes; an
    # output plane is interpolated along k, normalised as normalise_hu does (bit for bit) and
    # stored as float16 bit patterns (numba has no float16) once its second slice is done.
    # Returns a checksum of the rows touched ahead (see _touch_rows); the caller ignores it.
    n, na = pk.shape
    nb, nc = pj.shape[1], pi.shape[1]
    k0, fk = _floor_frac(pk)
    j0, fj = _floor_frac(pj)
    i0, fi = _floor_frac(pi)
    first = np.empty(n, dtype=np.int64)
    last = np.empty(n, dtype=np.int64)
    row_len = 2
    for p in range(n):
        first[p] = min(k0[p, 0], k0[p, na - 1])
        last[p] = max(k0[p, 0], k0[p, na - 1]) + 1
        row_len = max(row_len, abs(i0[p, nc - 1] - i0[p, 0]) + 2)
    order = np.argsort(first)
    planes = np.empty((n, 2, nb, nc), dtype=np.float32)   # slice planes k and k - 1, by parity of k
    row = np.empty(row_len, dtype=np.float32)
    active = np.empty(n, dtype=np.int64)
    n_active, entered, checksum = 0, 0, 0
    k = first[order[0]] if n else 0
    while entered < n or n_active:
        if n_active == 0:
            k = first[order[entered]]
        while entered < n and first[order[entered]] == k:
            active[n_active] = order[entered]
            n_active += 1
            entered += 1
        kept = 0
        for s in range(n_active):
            p = active[s]
            if _slice_needed(k0[p], k):
                if s + 1 < n_active:
                    # Load the next patch's rows now: these misses then overlap this patch's arithmetic.
                    checksum += _touch_rows(array, k, j0[active[s + 1]], i0[active[s + 1]])
                cur, prev = planes[p, k & 1], planes[p, (k + 1) & 1]
                _plane(array, k, j0[p], fj[p], i0[p], fi[p], air, row, cur)
                for a in range(na):
                    if k0[p, a] + 1 == k:
                        _emit_normalised(prev, cur, fk[p, a], hu_min, hu_max, width, out[p, a])
            if k < last[p]:
                active[kept] = p
                kept += 1
        n_active = kept
        k += 1
    return checksum


@numba.njit(cache=True, nogil=True)
def _trilinear_grid(array, pk, pj, pi, air, out):  # pragma: no cover - compiled
    """out[a, b, c]: the scan at index (pk[a], pj[b], pi[c]), one patch, float32 HU; the same
    arithmetic as _sample_normalised."""
    k0, fk = _floor_frac(pk)
    j0, fj = _floor_frac(pj)
    i0, fi = _floor_frac(pi)
    kmin = min(k0[0], k0[-1])
    planes = np.empty((abs(k0[-1] - k0[0]) + 2, pj.shape[0], pi.shape[0]), dtype=np.float32)
    row = np.empty(abs(i0[-1] - i0[0]) + 2, dtype=np.float32)
    for kk in range(planes.shape[0]):
        if _slice_needed(k0, kmin + kk):
            _plane(array, kmin + kk, j0, fj, i0, fi, air, row, planes[kk])
    for a in range(pk.shape[0]):
        lo, hi, f = planes[k0[a] - kmin], planes[k0[a] + 1 - kmin], fk[a]
        for b in range(pj.shape[0]):
            for c in range(pi.shape[0]):
                out[a, b, c] = lo[b, c] + f * (hi[b, c] - lo[b, c])


@numba.njit(cache=True, nogil=True)
def _slice_needed(k0, k):  # pragma: no cover - compiled
    for a in range(k0.shape[0]):
        if k0[a] == k or k0[a] + 1 == k:
            return True
    return False


@numba.njit(cache=True, nogil=True)
def _plane(array, k, j0, fj, i0, fi, air, row, dst):  # pragma: no cover - compiled
    # dst[b, c]: slice k at rows j0[b] + fj[b], columns i0[c] + fi[c]; j and i ascend or descend.
    nk, nj, ni = array.shape
    nb, nc = j0.shape[0], i0.shape[0]
    if k < 0 or k >= nk:
        dst[:, :] = air
        return
    imin = min(i0[0], i0[nc - 1])
    n_i = max(i0[0], i0[nc - 1]) + 2 - imin
    inside = (imin >= 0 and imin + n_i <= ni and min(j0[0], j0[nb - 1]) >= 0
              and max(j0[0], j0[nb - 1]) + 1 < nj)
    for b in range(nb):
        j, f = j0[b], fj[b]
        if inside:
            lo_row, hi_row = array[k, j, imin:imin + n_i], array[k, j + 1, imin:imin + n_i]
            for ii in range(n_i):
                lo = np.float32(lo_row[ii])
                row[ii] = lo + f * (np.float32(hi_row[ii]) - lo)
        else:
            for ii in range(n_i):
                lo = _at(array, k, j, imin + ii, air)
                row[ii] = lo + f * (_at(array, k, j + 1, imin + ii, air) - lo)
        out_row = dst[b]
        for c in range(nc):
            ic = np.uint64(i0[c] - imin)   # unsigned: no negative-index wraparound in the loop
            lo = row[ic]
            out_row[c] = lo + fi[c] * (row[ic + np.uint64(1)] - lo)


@numba.njit(cache=True, nogil=True)
def _touch_rows(array, k, j0, i0):  # pragma: no cover - compiled
    # One load per cache line of the rows _plane will read for slice k (a software prefetch).
    nk, nj, ni = array.shape
    nb, nc = j0.shape[0], i0.shape[0]
    if k < 0 or k >= nk:
        return 0
    imin = max(min(i0[0], i0[nc - 1]), 0)
    imax = min(max(i0[0], i0[nc - 1]) + 1, ni - 1)
    total = 0
    for b in range(nb):
        j = j0[b]
        if 0 <= j and j + 1 < nj:
            for i in range(imin, imax, 32):
                total += array[k, j, i] + array[k, j + 1, i]
            total += array[k, j, imax] + array[k, j + 1, imax]
    return total


@numba.njit(cache=True, nogil=True)
def _emit_normalised(lo, hi, f, hu_min, hu_max, width, dst):  # pragma: no cover - compiled
    # dst[b, c]: float16 bits of normalise_hu(lo + f * (hi - lo)), branch-free for values in
    # [0, 65536) (always, after the window, unless the scan holds nan), which lets it vectorise.
    for b in range(lo.shape[0]):
        lo_row, hi_row, out_row = lo[b], hi[b], dst[b]
        unusual = False
        for c in range(lo.shape[1]):
            x = (min(max(lo_row[c] + f * (hi_row[c] - lo_row[c]), hu_min), hu_max) - hu_min) / width
            out_row[c] = _half_bits_small(x)
            unusual |= _float32_bits(x) >= _HALF_FAST_LIMIT
        if unusual:
            for c in range(lo.shape[1]):
                x = (min(max(lo_row[c] + f * (hi_row[c] - lo_row[c]), hu_min), hu_max) - hu_min) / width
                if _float32_bits(x) >= _HALF_FAST_LIMIT:
                    out_row[c] = _half_bits(np.int64(_float32_bits(x)))


@intrinsic
def _float32_bits(typingctx, x):
    """The bit pattern of a float32 as uint32 (numba has no scalar view)."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_ir.IntType(32))

    return types.uint32(types.float32), codegen


_HALF_FAST_LIMIT = np.uint32(143 << 23)   # float32 bits of 65536.0; negative, inf and nan are above
_HALF_MIN_NORMAL = np.uint32(113 << 23)   # float32 bits of 2**-14, the smallest normal float16
_HALF_MAGIC = np.float32(0.5)             # float32 spacing at 0.5 is 2**-24, float16's subnormal step


@numba.njit(cache=True, nogil=True)
def _half_bits_small(x):  # pragma: no cover - compiled
    # float16 bits of float32 x, rounding to nearest even like numpy, for 0 <= x < 65536 (any result
    # otherwise; _half_bits handles those). Normal: rebias the exponent, round the 13 dropped
    # mantissa bits. Subnormal: adding 0.5 makes the float32 adder round x to a multiple of 2**-24.
    u = _float32_bits(x)
    normal = (u - np.uint32(112 << 23) + np.uint32(0xFFF) + ((u >> np.uint32(13)) & np.uint32(1))) >> np.uint32(13)
    subnormal = _float32_bits(x + _HALF_MAGIC) - _float32_bits(_HALF_MAGIC)
    return np.uint16(subnormal if u < _HALF_MIN_NORMAL else normal)


@numba.njit(cache=True, nogil=True)
def float32_bits_to_half(bits):  # pragma: no cover - compiled
    """float16 bit patterns of float32 bit patterns (uint32 array), rounding to nearest even like numpy."""
    values = bits.view(np.float32)
    out = np.empty(bits.shape[0], dtype=np.uint16)
    for idx in range(bits.shape[0]):
        if bits[idx] < _HALF_FAST_LIMIT:
            out[idx] = _half_bits_small(values[idx])
        else:
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


@numba.njit(cache=True, nogil=True)
def _floor_frac(p):  # pragma: no cover - compiled
    lo = np.floor(p)
    return lo.astype(np.int64), (p - lo).astype(np.float32)


@numba.njit(cache=True, nogil=True)
def _at(array, k, j, i, air):  # pragma: no cover - compiled
    nk, nj, ni = array.shape
    if 0 <= k < nk and 0 <= j < nj and 0 <= i < ni:
        return np.float32(array[k, j, i])
    return air
