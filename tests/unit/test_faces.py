"""Both sampling paths against SimpleITK's linear resampling at the six faces of a scan.

SimpleITK (measured here, ITK 5.4): along an index axis of n voxels a point at continuous index p is
inside when -0.5 <= p < n - 0.5 and reads the interpolation at p clamped to [0, n - 1]; else the
default value. Patch grids below are placed so that their points fall, in index units, inside the
outer voxel centre (< 0.5 voxel), exactly on it, between it and the outer voxel face, exactly on that
face, just beyond it and beyond.
"""
import numpy as np
import pytest
import SimpleITK as sitk

import fate_components.core.imaging.patches as patches
from fate_components.core.imaging.patches import AIR_HU, PatchSpec, extract_patch, extract_patches, normalise_hu
from fate_components.core.imaging.volume import Volume, volume_to_sitk

SHAPE_ZYX = (9, 11, 13)


def _sitk_patch(volume: Volume, centre: np.ndarray, spec: PatchSpec) -> np.ndarray:
    """The patch grid resampled by SimpleITK (sitkLinear, default value air), normalised, [z, y, x]."""
    reference = sitk.Image([spec.size_voxels] * 3, sitk.sitkFloat32)
    reference.SetSpacing([spec.voxel_mm] * 3)
    reference.SetOrigin(tuple(float(v) for v in centre + patches._grid_offsets(spec)[0]))
    resampled = sitk.Resample(volume_to_sitk(volume), reference, sitk.Transform(), sitk.sitkLinear, AIR_HU,
                              sitk.sitkFloat32)
    return normalise_hu(sitk.GetArrayFromImage(resampled), spec)


def _general_path(volume: Volume, centre: np.ndarray, spec: PatchSpec, monkeypatch) -> np.ndarray:
    with monkeypatch.context() as m:
        m.setattr(patches, "_world_axis_of_index_axes", lambda direction: None)   # force map_coordinates
        return extract_patch(volume, centre, spec)


def _corner_centre(volume: Volume, spec: PatchSpec, high: bool) -> np.ndarray:
    """A centre whose patch has a point exactly on the outer voxel face of every axis (index -0.5, or
    n - 0.5 when `high`), the centre itself half a grid step inside it."""
    step = np.abs(patches._index_steps(volume)).max(axis=0) * spec.voxel_mm    # index units per grid step, i, j, k
    size = np.asarray(volume.shape_xyz, dtype=np.float64)
    index = size - 0.5 - step / 2 if high else -0.5 + step / 2
    return volume.voxel_to_world(index)


def _index_positions(volume: Volume, centre: np.ndarray, spec: PatchSpec) -> list[np.ndarray]:
    steps = patches._index_steps(volume)
    axes = patches._world_axis_of_index_axes(volume.direction)
    centre_index = volume.world_to_voxel(centre)
    return [centre_index[a] + steps[axes[a], a] * patches._grid_offsets(spec) for a in range(3)]


# Spacings and voxel sizes are powers of two, so grid points land exactly on index -0.5 and n - 0.5.
@pytest.mark.parametrize("direction, spacing_mm", [
    (np.eye(3), (1.0, 1.0, 1.0)),
    (np.diag([1.0, -1.0, -1.0]), (0.5, 1.0, 2.0)),                                  # flipped y, z; anisotropic
    (np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), (1.0, 0.5, 2.0)),   # axes permuted
], ids=["identity", "flipped-anisotropic", "permuted"])
@pytest.mark.parametrize("high", [False, True], ids=["low-faces", "high-faces"])
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_both_paths_equal_simpleitk_at_every_face(direction, spacing_mm, high, dtype, monkeypatch):
    # Prepare: a random scan (values well inside the window, so every difference shows); a 4 mm patch of
    # 0.125 mm voxels at a corner spans the three faces there from 1 voxel beyond to 2 voxels inside.
    rng = np.random.default_rng(11)
    volume = Volume(rng.uniform(-900, 300, SHAPE_ZYX).astype(dtype), spacing_mm, (-7.0, 3.0, 20.0), direction)
    spec = PatchSpec(size_mm=4.0, size_voxels=32)
    centre = _corner_centre(volume, spec, high)
    positions = _index_positions(volume, centre, spec)

    # Execute
    reference = _sitk_patch(volume, centre, spec)
    fast = extract_patch(volume, centre, spec)
    batch = extract_patches(volume, centre[None], spec)[0]
    general = _general_path(volume, centre, spec, monkeypatch)

    # Assert: the grid has points in each class on each axis, and every path agrees with SimpleITK
    for p, n in zip(positions, volume.shape_xyz):
        distance_out = (-p if not high else p - (n - 1))      # voxels beyond the outer voxel centre
        assert np.any((distance_out > -0.5) & (distance_out < 0)), "inside by less than half a voxel"
        assert np.any(distance_out == 0) and np.any(distance_out == 0.5), "on the centre, on the face"
        assert np.any((distance_out > 0) & (distance_out < 0.5)) and np.any(distance_out > 0.5)
    assert np.count_nonzero(reference == 0) > 0 and np.count_nonzero(reference > 0) > 0
    np.testing.assert_allclose(fast, reference, rtol=0, atol=1e-6)
    np.testing.assert_allclose(general, reference, rtol=0, atol=1e-6)
    np.testing.assert_allclose(batch.astype(np.float32), reference, rtol=0, atol=np.spacing(np.float16(1)))


def test_oblique_scan_equals_simpleitk_near_its_faces(monkeypatch):
    # Prepare: a scan tilted about two axes (the general path); patches at two opposite corners, whose
    # points fall at all distances from the faces (not exactly on them: rounding decides there).
    rng = np.random.default_rng(12)
    cz, sz, cx, sx = np.cos(0.3), np.sin(0.3), np.cos(0.2), np.sin(0.2)
    direction = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    volume = Volume(rng.uniform(-900, 300, SHAPE_ZYX).astype(np.int16), (0.8, 0.9, 1.7), (5.0, -3.0, 1.0), direction)
    spec = PatchSpec(size_mm=6.0, size_voxels=24)
    assert patches._world_axis_of_index_axes(volume.direction) is None
    size = np.asarray(volume.shape_xyz, dtype=np.float64)

    for corner in (np.full(3, -0.3), size - 0.7):
        centre = volume.voxel_to_world(corner)
        reference = _sitk_patch(volume, centre, spec)
        # Execute
        ours = extract_patch(volume, centre, spec)
        # Assert
        assert 0.2 < np.mean(reference == 0) < 0.9
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6)


def test_one_voxel_beyond_the_last_centre_reads_air_and_half_a_voxel_the_edge_value(monkeypatch):
    # Prepare: a constant +100 HU scan of 1 mm voxels, index = world mm; a 1-voxel-thick line of points
    # along x through both faces at x = -0.5 and x = 9.5 (n = 10).
    volume = Volume(np.full((10, 10, 10), 100, np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    spec = PatchSpec(size_mm=16.0, size_voxels=64)                # 0.25 mm steps: x = -3.375 .. 12.375
    centre = np.array([4.5 - 0.125, 4.0, 4.0])
    x = centre[0] + patches._grid_offsets(spec)

    # Execute
    for patch in (extract_patch(volume, centre, spec), _general_path(volume, centre, spec, monkeypatch)):
        line = patch[32, 32, :]
        # Assert: the edge value up to the outer voxel face (-0.5 included, 9.5 not), air beyond
        expected = np.where((x >= -0.5) & (x < 9.5), normalise_hu(np.float32(100), spec), 0.0)
        np.testing.assert_array_equal(line, expected.astype(np.float32))


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([-1.0, 1.0, -1.0])], ids=["identity", "flipped"])
def test_patches_away_from_the_faces_are_the_plain_kernel_bit_for_bit(direction):
    # Prepare: random interior patches; their positions lie in [0, n - 1], where the face rule is the identity.
    rng = np.random.default_rng(13)
    volume = Volume(rng.normal(-500, 300, (40, 50, 60)).astype(np.int16), (0.8, 0.9, 1.7), (1.0, 2.0, 3.0), direction)
    spec = PatchSpec(size_mm=12.0, size_voxels=16)
    centres = volume.voxel_to_world(rng.uniform([10, 10, 6], [50, 40, 34], (12, 3)))
    axes = patches._world_axis_of_index_axes(volume.direction)
    offsets = patches._grid_offsets(spec)
    centre_index = volume.world_to_voxel(centres)
    steps = patches._index_steps(volume)
    raw = [centre_index[:, a, None] + steps[axes[a], a] * offsets[None, :] for a in (2, 1, 0)]   # no face rule
    assert all(p.min() >= 0 and p.max() <= n - 1 for p, n in zip(raw, volume.array_hu.shape))

    # Execute
    plain = np.empty((len(centres),) + (16,) * 3, np.float32)
    for c in range(len(centres)):
        patches._trilinear_grid(volume.array_hu, raw[0][c], raw[1][c], raw[2][c], np.float32(AIR_HU), plain[c])

    # Assert
    np.testing.assert_array_equal(np.stack([extract_patch(volume, c, spec) for c in centres]),
                                  normalise_hu(plain, spec))
