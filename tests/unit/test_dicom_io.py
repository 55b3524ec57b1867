import shutil

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLosslessSV1, RLELossless

from fate_components.core.errors import ScanReadError
from fate_components.core.imaging.dicom_io import dicom_series_in, read_dicom_series, write_dicom_series
from fate_components.core.imaging.metaimage_io import read_metaimage, write_metaimage

FEET_FIRST = np.diag([-1.0, 1.0, -1.0])   # IOP [-1,0,0, 0,1,0]: patient entered feet first


def _assert_same_volume(a, b):
    np.testing.assert_array_equal(a.array_hu, b.array_hu)
    np.testing.assert_allclose(a.spacing_mm, b.spacing_mm, atol=1e-6)
    np.testing.assert_allclose(a.origin_mm, b.origin_mm, atol=1e-6)
    np.testing.assert_allclose(a.direction, b.direction, atol=1e-6)


@pytest.mark.parametrize("direction", [np.eye(3), FEET_FIRST], ids=["head-first", "feet-first"])
def test_dicom_read_equals_metaimage_read_of_the_same_volume(tmp_path, make_volume, direction):
    # Prepare
    volume = make_volume(direction=direction)
    write_dicom_series(volume, tmp_path / "dicom", series_uid="1.2.3.4")
    write_metaimage(volume, tmp_path / "scan.mhd")

    # Execute
    from_dicom = read_dicom_series(tmp_path / "dicom")
    from_mhd = read_metaimage(tmp_path / "scan.mhd")

    # Assert
    _assert_same_volume(from_dicom, from_mhd)
    _assert_same_volume(from_dicom, volume)
    assert from_dicom.series_uid == "1.2.3.4"


def test_slices_are_ordered_by_position_not_by_file_name(tmp_path, make_volume, rng):
    # Prepare: numbered files, then renamed in reversed and shuffled order, without extension.
    volume = make_volume(shape_zyx=(10, 32, 36))
    paths = write_dicom_series(volume, tmp_path / "written", series_uid="1.2.3.5", file_names="numbered")
    target = tmp_path / "case_017"
    target.mkdir()
    names = [f"IM{n:04d}" for n in range(len(paths))]
    for name, path in zip(names, reversed(paths)):
        shutil.copy(path, target / name)
    for name in names[::2]:   # and every other one with a random name
        (target / name).rename(target / f"X{rng.integers(1e9)}")
    for path in sorted(target.iterdir()):   # instance numbers must not be trusted either
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = int(rng.integers(1, 1000))
        ds.save_as(path)

    # Execute
    result = read_dicom_series(target)

    # Assert
    assert all(not p.suffix for p in target.iterdir())
    _assert_same_volume(result, volume)


def test_left_handed_flipped_z_volume_reads_back_as_the_same_world_geometry(tmp_path, make_volume):
    # Prepare: k runs head -> feet (negative z direction), as in some MetaImage files.
    volume = make_volume(direction=np.diag([1.0, 1.0, -1.0]))
    write_dicom_series(volume, tmp_path / "s", series_uid="1.2.3.6")

    # Execute
    result = read_dicom_series(tmp_path / "s")

    # Assert: DICOM readers stack along row x column = +z, so the k axis comes back reversed.
    np.testing.assert_array_equal(result.array_hu, volume.array_hu[::-1])
    np.testing.assert_allclose(result.direction, np.eye(3), atol=1e-9)
    last = volume.array_hu.shape[0] - 1
    np.testing.assert_allclose(result.origin_mm, volume.voxel_to_world([0, 0, last]), atol=1e-6)
    ijk = np.array([[3, 7, 2], [30, 1, 5]])
    np.testing.assert_allclose(result.voxel_to_world(ijk * [1, 1, -1] + [0, 0, last]), volume.voxel_to_world(ijk),
                               atol=1e-6)


def test_several_series_in_one_folder_need_a_choice(tmp_path, make_volume):
    # Prepare
    first, second = make_volume(seed=1), make_volume(seed=2, origin_mm=(0.0, 0.0, 0.0))
    write_dicom_series(first, tmp_path / "a", series_uid="1.2.3.100")
    write_dicom_series(second, tmp_path / "b", series_uid="1.2.3.200")
    mixed = tmp_path / "case_017"
    mixed.mkdir()
    for folder in ("a", "b"):
        for path in (tmp_path / folder).iterdir():
            shutil.copy(path, mixed / f"{folder}_{path.name}")

    # Execute / Assert
    with pytest.raises(ScanReadError, match=r"^case_017/: 2 DICOM series found \(1\.2\.3\.100 \(8 slices\), "
                                            r"1\.2\.3\.200 \(8 slices\)\); choose one by writing its "
                                            r"SeriesInstanceUID \(not the folder name\) in the seriesuid column of "
                                            r"candidates\.csv and annotations\.csv; from Python, "
                                            r"read_dicom_series\(\.\.\., series_uid=\.\.\.\)$"):
        read_dicom_series(mixed)
    _assert_same_volume(read_dicom_series(mixed, series_uid="1.2.3.200"), second)
    assert sorted(dicom_series_in(mixed)) == ["1.2.3.100", "1.2.3.200"]
    with pytest.raises(ScanReadError, match=r"series 9\.9 not found \(found 1\.2\.3\.100 \(8 slices\), "
                                            r"1\.2\.3\.200 \(8 slices\)\)"):
        read_dicom_series(mixed, series_uid="9.9")


@pytest.mark.parametrize("blank", ["delete", "empty"])
def test_missing_series_uid_falls_back_to_the_folder_name(tmp_path, make_volume, blank):
    # Prepare
    volume = make_volume()
    folder = tmp_path / "case_042"
    for path in write_dicom_series(volume, folder, series_uid="1.2.3.7"):
        ds = pydicom.dcmread(path)
        if blank == "delete":
            del ds.SeriesInstanceUID
        else:
            ds.SeriesInstanceUID = ""
        ds.save_as(path)

    # Execute
    result = read_dicom_series(folder)

    # Assert
    assert result.series_uid == "case_042"
    assert list(dicom_series_in(folder)) == ["case_042"]
    _assert_same_volume(result, volume)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless, JPEGLosslessSV1],
                         ids=["rle", "jpeg2000-lossless", "jpeg-lossless-sv1"])
def test_compressed_series_decode_equal_to_uncompressed(tmp_path, make_volume, syntax):
    # Prepare: J2K needs at least 32 pixels a side at the encoder's default resolution levels.
    volume = make_volume(shape_zyx=(5, 40, 48))
    write_dicom_series(volume, tmp_path / "plain", series_uid="1.2.3.8")
    paths = write_dicom_series(volume, tmp_path / "packed", series_uid="1.2.3.8", transfer_syntax=syntax)

    # Execute
    plain = read_dicom_series(tmp_path / "plain")
    packed = read_dicom_series(tmp_path / "packed")

    # Assert: really compressed, decoded to the same HU.
    assert {pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID for p in paths} == {syntax}
    assert pydicom.dcmread(tmp_path / "plain" / paths[0].name).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    _assert_same_volume(packed, plain)
    _assert_same_volume(packed, volume)


def test_hu_rescale_uses_each_slices_slope_and_intercept(tmp_path, make_volume):
    # Prepare: store raw values, then declare slope 2 / intercept -1024 (and no rescale on one slice).
    volume = make_volume(shape_zyx=(4, 32, 32))
    paths = write_dicom_series(volume, tmp_path / "s", series_uid="1.2.3.9")
    stored = []
    for n, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        stored.append(ds.pixel_array.astype(np.float32))
        if n == 3:
            del ds.RescaleSlope, ds.RescaleIntercept
        else:
            ds.RescaleSlope, ds.RescaleIntercept = "2", "-1024"
        ds.save_as(path)

    # Execute
    result = read_dicom_series(tmp_path / "s")

    # Assert
    np.testing.assert_array_equal(result.array_hu[:3], np.stack(stored[:3]) * 2 - 1024)
    np.testing.assert_array_equal(result.array_hu[3], stored[3])
    assert result.array_hu.dtype == np.float32


def test_non_dicom_files_and_localizers_are_skipped(tmp_path, make_volume):
    # Prepare
    volume = make_volume()
    folder = tmp_path / "case_001"
    paths = write_dicom_series(volume, folder, series_uid="1.2.3.10", file_names="numbered")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(100))
    (folder / "notes").write_text("exported by the PACS, not a slice\n")
    (folder / "DICOMDIR").write_bytes(bytes(200))
    scout = pydicom.dcmread(paths[0])
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    scout.save_as(folder / "SCOUT")

    # Execute
    result = read_dicom_series(folder)

    # Assert
    _assert_same_volume(result, volume)


def test_writer_produces_ct_image_storage_with_deterministic_uids(tmp_path, make_volume):
    # Prepare
    volume = make_volume(shape_zyx=(3, 32, 32))

    # Execute
    first = write_dicom_series(volume, tmp_path / "one", series_uid="1.2.3.11", patient_id="P1", file_names="random",
                               rng=np.random.default_rng(5))
    second = write_dicom_series(volume, tmp_path / "two", series_uid="1.2.3.11", patient_id="P1", file_names="random",
                                rng=np.random.default_rng(5))

    # Assert
    assert [p.name for p in first] == [p.name for p in second]
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(first, second))
    ds = pydicom.dcmread(first[1])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and ds.Modality == "CT"
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, 16, 15)
    assert (ds.PixelRepresentation, ds.SamplesPerPixel) == (1, 1)
    assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.InstanceNumber == 2
    assert float(ds.RescaleIntercept) == -1024 and float(ds.RescaleSlope) == 1
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx([0.7, 0.8])   # [row, column] spacing
    assert float(ds.SliceThickness) == pytest.approx(2.5)
    assert [float(v) for v in ds.ImagePositionPatient] == pytest.approx([-20.0, 15.0, -97.5])
    assert len({ds.SOPInstanceUID, ds.StudyInstanceUID, ds.FrameOfReferenceUID, ds.SeriesInstanceUID}) == 4
    assert ds.preamble is not None
