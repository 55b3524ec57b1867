import SimpleITK as sitk
import numpy as np
import pytest

from fate_components.core.errors import ScanReadError
from fate_components.core.imaging.metaimage_io import read_metaimage, write_metaimage
from fate_components.core.imaging.volume import Volume


def test_round_trip_keeps_hu_and_geometry_including_flipped_z(tmp_path, make_volume):
    # Prepare
    volume = make_volume(direction=np.diag([1.0, 1.0, -1.0]))

    # Execute
    path = write_metaimage(volume, tmp_path / "scans" / "1.2.3.mhd")
    result = read_metaimage(path, site_root=tmp_path)

    # Assert
    np.testing.assert_array_equal(result.array_hu, volume.array_hu)
    assert result.spacing_mm == pytest.approx(volume.spacing_mm)
    assert result.origin_mm == pytest.approx(volume.origin_mm)
    np.testing.assert_array_equal(result.direction, volume.direction)
    assert (result.series_uid, result.source) == ("1.2.3", "scans/1.2.3.mhd")


def test_writes_uncompressed_int16_like_luna16(tmp_path):
    # Prepare: fractional HU are rounded, out-of-range values clipped to int16
    volume = Volume(np.array([[[0.4, 1.6], [-1000.5, 40000.0]]], np.float32), (1.0, 1.0, 1.0), (0, 0, 0), np.eye(3))

    # Execute
    path = write_metaimage(volume, tmp_path / "a.mhd")

    # Assert
    header = path.read_text()
    assert "ElementType = MET_SHORT" in header and "CompressedData = False" in header
    assert "ElementDataFile = a.raw" in header
    assert (tmp_path / "a.raw").stat().st_size == 4 * 2
    # SimpleITK reads it back: read_metaimage would refuse these four voxels as not CT (hounsfield.py).
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))).ravel(), [0, 2, -1000, 32767])


def test_missing_raw_file_is_named(tmp_path, make_volume):
    # Prepare
    path = write_metaimage(make_volume(), tmp_path / "scans" / "1.2.3.mhd")
    (tmp_path / "scans" / "1.2.3.raw").unlink()

    # Execute / Assert
    with pytest.raises(ScanReadError, match=r"^scans/1\.2\.3\.mhd: voxel file scans/1\.2\.3\.raw is missing"):
        read_metaimage(path, site_root=tmp_path)


@pytest.mark.bad_input(".raw shorter than its header says", "is truncated: 500 bytes, expected 800")
def test_truncated_raw_file_is_reported_with_sizes(tmp_path, make_volume):
    # Prepare
    path = write_metaimage(make_volume(shape_zyx=(4, 10, 10)), tmp_path / "x.mhd")
    raw = tmp_path / "x.raw"
    raw.write_bytes(raw.read_bytes()[:500])

    # Execute / Assert
    with pytest.raises(ScanReadError, match=r"x\.raw is truncated: 500 bytes, expected 800 for DimSize 10 10 4"):
        read_metaimage(path)


def test_garbage_header_and_absent_file_are_scan_read_errors(tmp_path):
    # Prepare
    (tmp_path / "bad.mhd").write_text("this is not a header\n")

    # Execute / Assert
    with pytest.raises(ScanReadError, match=r"bad\.mhd: not a MetaImage header"):
        read_metaimage(tmp_path / "bad.mhd")
    with pytest.raises(ScanReadError, match=r"nothere\.mhd: file not found"):
        read_metaimage(tmp_path / "nothere.mhd")


def test_voxels_outlive_the_volume_and_the_image_they_came_from(tmp_path):
    import gc

    volume = Volume(array_hu=np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 1000, spacing_mm=(1, 1, 1),
                    origin_mm=(0, 0, 0), direction=np.eye(3))
    path = write_metaimage(volume, tmp_path / "b.mhd")
    array = read_metaimage(path).array_hu   # no copy of the image's buffer: the array must keep it alive
    gc.collect()
    [np.zeros(10_000) for _ in range(100)]  # reuse freed memory, if any was freed
    np.testing.assert_array_equal(array, np.arange(24).reshape(2, 3, 4) - 1000)
