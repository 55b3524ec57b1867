import time

import numpy as np
import pytest

from fate_components.core.errors import ConfigError, CoordinateOutOfVolumeError
from fate_components.core.patches import PatchSpec, extract_patch, normalise_hu
from fate_components.core.volume import Volume

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
    import fate_components.core.patches as patches

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
    from fate_components.core.patches import extract_patches

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
    from fate_components.core.patches import float32_bits_to_half

    rng = np.random.default_rng(9)
    values = np.concatenate([
        rng.uniform(0, 1, 20000), rng.uniform(-70000, 70000, 2000), 10.0 ** rng.uniform(-9, -3, 5000),
        [0.0, -0.0, 1.0, 65504.0, 65520.0, 1e6, np.inf, -np.inf, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26,
         1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 2.0 ** -14 * (1 - 2.0 ** -11)]]).astype(np.float32)
    ours = float32_bits_to_half(values.view(np.uint32)).view(np.float16)
    np.testing.assert_array_equal(ours.view(np.uint16), values.astype(np.float16).view(np.uint16))
