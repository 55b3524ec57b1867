import numpy as np
import pytest
import SimpleITK as sitk

from fate_components.core.errors import ScanReadError
from fate_components.core.imaging.volume import Volume, volume_from_sitk, volume_to_sitk


def rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


ROTATED_FLIPPED = rotation("z", 30) @ rotation("x", -20) @ np.diag([1.0, -1.0, 1.0])


def _sitk_image(direction, spacing=(0.7, 1.3, 2.5), origin=(-120.5, 33.0, -301.25), size_xyz=(20, 16, 9)):
    image = sitk.Image(list(size_xyz), sitk.sitkInt16)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(tuple(np.asarray(direction, dtype=float).reshape(-1)))
    return image


def test_world_voxel_round_trip_with_rotated_flipped_direction(rng):
    # Prepare
    volume = Volume(np.zeros((9, 16, 20), np.float32), (0.7, 1.3, 2.5), (-120.5, 33.0, -301.25), ROTATED_FLIPPED)
    world = rng.uniform(-300, 300, size=(50, 3))

    # Execute
    back = volume.voxel_to_world(volume.world_to_voxel(world))

    # Assert
    np.testing.assert_allclose(back, world, atol=1e-9)
    np.testing.assert_allclose(volume.world_to_voxel(volume.origin_mm), [0, 0, 0], atol=1e-12)


def test_voxel_to_world_matches_simpleitk(rng):
    # Prepare
    image = _sitk_image(ROTATED_FLIPPED)
    volume = volume_from_sitk(image)
    indices = rng.uniform(-2, 20, size=(20, 3))

    # Execute
    ours = volume.voxel_to_world(indices)
    theirs = np.array([image.TransformContinuousIndexToPhysicalPoint(tuple(ix)) for ix in indices])
    back = np.array([image.TransformPhysicalPointToContinuousIndex(tuple(p)) for p in ours])

    # Assert
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
    np.testing.assert_allclose(volume.world_to_voxel(ours), back, atol=1e-9)


def test_volume_from_sitk_keeps_geometry_and_array_order():
    # Prepare
    image = _sitk_image(np.diag([1.0, 1.0, -1.0]), size_xyz=(5, 4, 3))
    image.SetPixel(4, 1, 2, 77)   # (i, j, k)

    # Execute
    volume = volume_from_sitk(image, source="scans/x.mhd")

    # Assert
    assert volume.shape_xyz == (5, 4, 3)
    assert volume.array_hu.shape == (3, 4, 5) and volume.array_hu.dtype in (np.float32, np.int16)
    assert volume.array_hu[2, 1, 4] == 77
    assert volume.spacing_mm == pytest.approx((0.7, 1.3, 2.5))
    np.testing.assert_array_equal(volume.direction, np.diag([1.0, 1.0, -1.0]))
    round_trip = volume_to_sitk(volume, "int16")
    assert round_trip.GetDirection() == image.GetDirection() and round_trip.GetOrigin() == image.GetOrigin()


def test_contains_world_uses_half_voxel_borders_and_margin():
    # Prepare
    volume = Volume(np.zeros((4, 5, 6), np.float32), (2.0, 1.0, 3.0), (10.0, 20.0, 30.0), np.diag([-1.0, 1.0, 1.0]))
    last_x = 10.0 - 2.0 * 5   # world x of index i = 5 (x axis flipped)

    # Execute / Assert
    assert volume.contains_world([last_x - 0.99, 20.0, 30.0])          # i = 5.495
    assert not volume.contains_world([last_x - 1.01, 20.0, 30.0])      # i = 5.505
    assert volume.contains_world([10.0, 19.51, 28.51])
    assert not volume.contains_world([10.0, 20.0, 30.0 - 1.6])         # k = -0.53
    assert not volume.contains_world([10.0, 20.0, 30.0], margin_voxels=1.0)
    np.testing.assert_array_equal(volume.contains_world([[10.0, 21.0, 33.0], [100.0, 0.0, 0.0]]), [True, False])
    lo, hi = volume.world_bounds_mm()
    np.testing.assert_allclose(lo, [-1.0, 19.5, 28.5])
    np.testing.assert_allclose(hi, [11.0, 24.5, 40.5])


@pytest.mark.parametrize("kwargs, message", [
    ({"direction": np.eye(3)[:, :2]}, r"Direction must be a 3x3 matrix, not \(3, 2\)"),
    ({"direction": np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]], float)}, r"Direction matrix is singular"),
    ({"spacing_mm": (1.0, 0.0, 1.0)}, r"spacing must be 3 positive numbers"),
    ({"spacing_mm": (1.0, 1.0)}, r"spacing must be 3 positive numbers"),
    ({"array_hu": np.zeros((4, 4), np.float32)}, r"must be a 3-D array, not 2-D"),
    ({"origin_mm": (0.0, float("nan"), 0.0)}, r"origin must be 3 finite numbers"),
])
def test_invalid_geometry_is_rejected_with_a_clear_message(kwargs, message):
    # Prepare
    args = {"array_hu": np.zeros((2, 3, 4), np.float32), "spacing_mm": (1.0, 1.0, 1.0),
            "origin_mm": (0.0, 0.0, 0.0), "direction": np.eye(3), "source": "scans/case_001/"}
    args.update(kwargs)

    # Execute / Assert
    with pytest.raises(ScanReadError, match=message) as info:
        Volume(**args)
    assert str(info.value).startswith("scans/case_001/: ")


def test_volume_keeps_int16_and_converts_other_arrays_to_float32():
    assert Volume(np.ones((2, 2, 2), np.uint16), (1, 1, 1), (0, 0, 0), np.eye(3)).array_hu.dtype == np.float32
    assert Volume(np.ones((2, 2, 2), np.float64), (1, 1, 1), (0, 0, 0), np.eye(3)).array_hu.dtype == np.float32
    volume = Volume(np.ones((2, 2, 2), np.int16), (1, 1, 1), (0, 0, 0), np.eye(3))
    assert volume.array_hu.dtype == np.int16
    assert volume.spacing_mm == (1.0, 1.0, 1.0)
