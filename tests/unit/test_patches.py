import time

import numba
import numpy as np
import pytest

from fate_components.core.errors import ConfigError, CoordinateOutOfVolumeError
from fate_components.core.imaging.patches import AIR_HU, PatchSpec, extract_patch, normalise_hu
from fate_components.core.imaging.volume import Volume

CENTRE = np.array([12.3, -40.7, -150.2])


def _rotation_z(degrees: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _centre_of_mass(patch: np.ndarray) -> np.ndarray:
    weights = patch - patch.min()
    grid = np.indices(patch.shape).reshape(3, -1)
    return (grid * weights.reshape(-1)).sum(axis=1) / weights.sum()


@pytest.mark.parametrize("direction, spacing_mm", [
    (np.eye(3), (1.0, 1.0, 1.0)),
    (np.diag([1.0, -1.0, -1.0]), (0.7, 0.9, 2.5)),                        # flipped y and z, anisotropic
    (_rotation_z(25) @ np.diag([-1.0, 1.0, 1.0]), (0.8, 0.8, 1.6)),       # rotated and mirrored
], ids=["identity", "flipped-anisotropic", "rotated-mirrored"])
def test_ball_at_known_world_position_is_at_patch_centre(sphere_volume, direction, spacing_mm):
    # Prepare
    volume = sphere_volume(CENTRE, radius_mm=5.0, shape_zyx=(40, 70, 70), spacing_mm=spacing_mm, direction=direction)
    spec = PatchSpec(size_mm=32.0, size_voxels=32)

    # Execute
    patch = extract_patch(volume, CENTRE, spec)

    # Assert
    assert patch.shape == (32, 32, 32) and patch.dtype == np.float32
    np.testing.assert_allclose(_centre_of_mass(patch), [15.5, 15.5, 15.5], atol=0.5)
    assert patch[15:17, 15:17, 15:17].min() == pytest.approx((100 + 1000) / 1400)
    assert patch[0, 0, 0] == 0.0


def test_patch_axes_follow_world_x_y_z_whatever_the_scan_direction(sphere_volume):
    # Prepare: ball 8 mm towards world +x (patient left) of the candidate
    ball = CENTRE + [8.0, 0.0, 0.0]
    spec = PatchSpec(size_mm=32.0, size_voxels=32)
    volumes = [sphere_volume(ball, radius_mm=3.0, shape_zyx=(40, 64, 64), spacing_mm=s, direction=d)
               for d, s in [(np.eye(3), (1.0, 1.0, 1.0)), (np.diag([-1.0, 1.0, -1.0]), (0.8, 0.8, 2.0)),
                            (_rotation_z(90), (1.0, 1.0, 1.0))]]

    # Execute
    patches = [extract_patch(v, CENTRE, spec) for v in volumes]

    # Assert: [z, y, x] layout; the ball is 8 voxels along +x (last axis) in every case
    for patch in patches:
        np.testing.assert_allclose(_centre_of_mass(patch), [15.5, 15.5, 23.5], atol=0.6)
    assert np.abs(patches[0] - patches[2]).mean() < 0.01


def test_voxels_outside_the_scan_read_as_air_and_the_window_is_applied():
    # Prepare: a scan of +1000 HU whose edge passes through the candidate
    volume = Volume(np.full((20, 20, 20), 1000.0, np.float32), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    spec = PatchSpec(size_mm=8.0, size_voxels=8)

    # Execute
    patch = extract_patch(volume, (19.0, 10.0, 10.0), spec)

    # Assert
    assert patch[:, :, :4].min() == 1.0         # inside: clipped at hu_max
    assert patch[:, :, -2:].max() == 0.0        # beyond the last voxel + half: air


def test_normalise_hu_clips_to_window_and_scales_to_unit_interval():
    spec = PatchSpec(hu_min=-1000.0, hu_max=400.0)
    np.testing.assert_allclose(normalise_hu(np.array([-3000.0, -1000.0, -300.0, 400.0, 2000.0]), spec),
                               [0.0, 0.0, 0.5, 1.0, 1.0])


def test_centre_outside_the_scan_names_seriesuid_row_coordinate_and_bounds(sphere_volume):
    # Prepare
    volume = sphere_volume(CENTRE, shape_zyx=(10, 20, 20), spacing_mm=(1.0, 1.0, 2.0), origin_mm=(0.0, 0.0, 0.0),
                           series_uid="1.3.6.1.4.1.999")

    # Execute / Assert
    expected = (r"^candidates\.csv line 17: candidate \(5\.0, 5\.0, 30\.0\) mm of seriesuid 1\.3\.6\.1\.4\.1\.999 "
                r"is outside the scan.*x \[-0\.5, 19\.5\], y \[-0\.5, 19\.5\], z \[-1\.0, 19\.0\] mm")
    with pytest.raises(CoordinateOutOfVolumeError, match=expected):
        extract_patch(volume, (5.0, 5.0, 30.0), PatchSpec(), row=17)


def test_patch_spec_round_trips_and_rejects_bad_values():
    spec = PatchSpec(size_mm=40, size_voxels=20, hu_min=-1200, hu_max=600)
    assert PatchSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict() == {"size_mm": 40.0, "size_voxels": 20, "hu_min": -1200.0, "hu_max": 600.0}
    assert spec.voxel_mm == 2.0
    with pytest.raises(ConfigError, match=r"HU window must have hu_min < hu_max"):
        PatchSpec(hu_min=100, hu_max=100)
    with pytest.raises(ConfigError, match=r"size_voxels must be a positive integer, not 0"):
        PatchSpec(size_voxels=0)
    with pytest.raises(ConfigError, match=r"size_mm must be a positive number"):
        PatchSpec(size_mm=-1.0)
    with pytest.raises(ConfigError, match=r"unknown patch spec key\(s\) spacing"):
        PatchSpec.from_dict({"spacing": 1.0})


def test_only_the_patch_is_resampled_on_a_full_size_scan(rng):
    # Prepare: 512 x 512 x 300 scan; resampling it whole would take seconds
    volume = Volume(np.zeros((300, 512, 512), np.float32), (0.7, 0.7, 1.0), (-180.0, -180.0, -300.0), np.eye(3))
    centres = volume.voxel_to_world(rng.uniform([100, 100, 50], [400, 400, 250], size=(20, 3)))
    extract_patch(volume, centres[0], PatchSpec())

    # Execute
    start = time.perf_counter()
    for centre in centres:
        extract_patch(volume, centre, PatchSpec())
    per_patch = (time.perf_counter() - start) / len(centres)

    # Assert
    assert per_patch < 0.05


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([1.0, 1.0, -1.0]),
                                       np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
                                       np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])])
def test_separable_fast_path_equals_general_resampling_inside_the_scan(direction, monkeypatch):
    # Prepare: anisotropic spacing, flipped and permuted axes; patches fully inside the scan.
    import fate_components.core.imaging.patches as patches

    rng = np.random.default_rng(1)
    volume = Volume(array_hu=rng.normal(-500, 300, (40, 50, 60)).astype(np.float32), spacing_mm=(0.8, 0.9, 1.7),
                    origin_mm=(10.0, -5.0, 3.0), direction=direction)
    spec = PatchSpec(size_mm=12, size_voxels=16)
    centres = [volume.voxel_to_world(rng.uniform([20, 20, 15], [40, 30, 25])) for _ in range(10)]
    # Execute
    fast = [patches.extract_patch(volume, c, spec) for c in centres]
    monkeypatch.setattr(patches, "_world_axis_of_index_axes", lambda d: None)
    general = [patches.extract_patch(volume, c, spec) for c in centres]
    # Assert
    for a, b in zip(fast, general):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([1.0, -1.0, -1.0]),
                                       np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])])
def test_patches_of_a_scan_in_one_call_equal_one_by_one(direction):
    from fate_components.core.imaging.patches import extract_patches

    rng = np.random.default_rng(5)
    volume = Volume(array_hu=rng.normal(-500, 300, (40, 50, 60)).astype(np.int16), spacing_mm=(0.8, 0.9, 1.7),
                    origin_mm=(-20.0, 10.0, -30.0), direction=direction)
    lo, hi = volume.world_bounds_mm()
    centers = rng.uniform(lo, hi, (25, 3))
    centers = centers[np.atleast_1d(volume.contains_world(centers))]
    spec = PatchSpec(size_mm=32.0, size_voxels=16)
    batch = extract_patches(volume, centers, spec)
    one_by_one = np.stack([extract_patch(volume, c, spec) for c in centers]).astype(np.float16)
    assert batch.shape == one_by_one.shape == (len(centers), 16, 16, 16) and len(centers) > 5
    np.testing.assert_array_equal(batch, one_by_one)


def test_float16_rounding_of_the_compiled_sampler_matches_numpy():
    from fate_components.core.imaging.patches import float32_bits_to_half

    rng = np.random.default_rng(9)
    values = np.concatenate([
        rng.uniform(0, 1, 20000), rng.uniform(-70000, 70000, 2000), 10.0 ** rng.uniform(-9, -3, 5000),
        [0.0, -0.0, 1.0, 65504.0, 65520.0, 1e6, np.inf, -np.inf, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26,
         1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 2.0 ** -14 * (1 - 2.0 ** -11)]]).astype(np.float32)
    ours = float32_bits_to_half(values.view(np.uint32)).view(np.float16)
    np.testing.assert_array_equal(ours.view(np.uint16), values.astype(np.float16).view(np.uint16))


def test_float16_ties_and_subnormals_round_like_numpy():
    # Prepare: every float16 value, the float32 midpoints between neighbours (ties: round to even)
    # and a float32 step either side of them, over [0, 65504]; subnormals use the adder trick.
    from fate_components.core.imaging.patches import float32_bits_to_half

    halves = np.arange(0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)
    mids = ((halves[:-1] + halves[1:]) / 2).astype(np.float32)
    values = np.concatenate([halves.astype(np.float32), mids, np.nextafter(mids, np.float32(0)),
                             np.nextafter(mids, np.float32(np.inf))])

    # Execute
    ours = float32_bits_to_half(values.view(np.uint32))

    # Assert
    np.testing.assert_array_equal(ours, values.astype(np.float16).view(np.uint16))


def _floor_frac(p):
    lo = np.floor(p)
    return lo.astype(np.int64), (p - lo).astype(np.float32)


def _trilinear_reference(array, pk, pj, pi, order, air=np.float32(AIR_HU)):
    """float32 HU at index (pk[a], pj[b], pi[c]): numpy, 1-D passes lo + f * (hi - lo) along array axes `order`."""
    idx = [_floor_frac(p) for p in (pk, pj, pi)]
    corner = [int(i0.min()) for i0, _ in idx]
    block = np.full([int(i0.max()) + 2 - c for (i0, _), c in zip(idx, corner)], air, np.float32)   # air outside
    src = tuple(slice(max(c, 0), min(c + s, n)) for c, s, n in zip(corner, block.shape, array.shape))
    if all(s.stop > s.start for s in src):
        block[tuple(slice(s.start - c, s.stop - c) for s, c in zip(src, corner))] = array[src]
    for axis in order:
        i0, f = idx[axis]
        shape = [1, 1, 1]
        shape[axis] = -1
        lo = np.take(block, i0 - corner[axis], axis=axis)
        block = lo + f.reshape(shape) * (np.take(block, i0 + 1 - corner[axis], axis=axis) - lo)
    return block


def _scan_and_centres(dtype, direction, rng):
    volume = Volume(array_hu=rng.normal(-600, 400, (30, 60, 50)).astype(dtype), spacing_mm=(0.7, 0.8, 1.25),
                    origin_mm=(-20.0, 10.0, -30.0), direction=direction)
    lo, hi = volume.world_bounds_mm()
    centres = np.concatenate([rng.uniform(lo, hi, (40, 3)),                              # many cut by an edge
                              [lo + 0.01, hi - 0.01, (lo + hi) / 2, (lo + hi) / 2]])     # corners, a duplicate
    return volume, centres[np.atleast_1d(volume.contains_world(centres))]


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
@pytest.mark.parametrize("direction", [np.eye(3), np.diag([1.0, -1.0, -1.0])], ids=["identity", "flipped"])
def test_compiled_sampler_is_the_numpy_reference_bit_for_bit(dtype, direction):
    # Prepare: the kernel's arithmetic order is j, then i, then k (array axes 1, 2, 0); flipped
    # axes give descending positions. Both directions keep array axes = world axes (no transpose).
    import fate_components.core.imaging.patches as patches

    volume, centres = _scan_and_centres(dtype, direction, np.random.default_rng(3))
    spec = PatchSpec(size_mm=24.0, size_voxels=16)
    pk, pj, pi = patches._axis_aligned_positions(volume, centres, (0, 1, 2), patches._grid_offsets(spec))
    reference = np.stack([_trilinear_reference(volume.array_hu, pk[n], pj[n], pi[n], (1, 2, 0))
                          for n in range(len(centres))])

    # Execute
    alone = np.stack([extract_patch(volume, c, spec) for c in centres])
    batch = patches.extract_patches(volume, centres, spec)

    # Assert
    assert len(centres) > 20
    np.testing.assert_array_equal(alone, normalise_hu(reference, spec))
    np.testing.assert_array_equal(batch, normalise_hu(reference, spec).astype(np.float16))


@numba.njit(fastmath=True)
def _trilinear_grid_before(array, pk, pj, pi, air, out):  # pragma: no cover - compiled
    # The kernel as of commit 5a7ad77 (i, then j, then k; fastmath), to compare outputs with.
    nk, nj, ni = array.shape
    k0, fk = np.floor(pk).astype(np.int64), (pk - np.floor(pk)).astype(np.float32)
    j0, fj = np.floor(pj).astype(np.int64), (pj - np.floor(pj)).astype(np.float32)
    i0, fi = np.floor(pi).astype(np.int64), (pi - np.floor(pi)).astype(np.float32)
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
                    at0 = float(array[k, j, i0[c]]) if 0 <= i0[c] < ni else float(air)
                    at1 = float(array[k, j, i0[c] + 1]) if 0 <= i0[c] + 1 < ni else float(air)
                    rows[kk, jj, c] = (1.0 - fi[c]) * at0 + fi[c] * at1
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


def test_patches_agree_with_the_kernel_before_the_sweep_within_one_float16_ulp():
    # Prepare: interpolating along j before i rounds float32 HU differently (by ~1e-4 HU). After
    # the window that is ~1e-7, under one float16 step except for values below 2**-11 (HU within
    # 0.7 of hu_min), whose steps are finer than float32 HU noise: there, 2**-21 absolute.
    import fate_components.core.imaging.patches as patches

    volume, centres = _scan_and_centres(np.int16, np.eye(3), np.random.default_rng(4))
    spec = PatchSpec()
    pk, pj, pi = patches._axis_aligned_positions(volume, centres, (0, 1, 2), patches._grid_offsets(spec))
    before = np.empty((len(centres),) + (spec.size_voxels,) * 3, np.float32)
    for n in range(len(centres)):
        _trilinear_grid_before(volume.array_hu, pk[n], pj[n], pi[n], np.float32(AIR_HU), before[n])
    before = normalise_hu(before, spec).astype(np.float16)

    # Execute
    now = patches.extract_patches(volume, centres, spec)

    # Assert
    difference = np.abs(now.astype(np.float64) - before.astype(np.float64))
    step = np.spacing(np.maximum(now, before)).astype(np.float64)
    assert np.all(difference <= np.maximum(step, 2.0 ** -21))
    assert np.all(difference[np.maximum(now, before) >= 2.0 ** -11] <= step[np.maximum(now, before) >= 2.0 ** -11])
    assert 0 < np.count_nonzero(difference) < 0.01 * difference.size
