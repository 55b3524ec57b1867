"""Scans that used to pass as good or fail unclearly (issue 15): each gets an error naming the file and the fix."""
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from fate_components.core.data.patch_dataset import build_patch_dataset
from fate_components.core.errors import MissingScanError, ScanReadError
from fate_components.core.imaging.dicom_io import ENHANCED_CT_IMAGE_STORAGE, read_dicom_series, write_dicom_series
from fate_components.core.imaging.hounsfield import check_hounsfield
from fate_components.core.imaging.metaimage_io import read_metaimage, write_metaimage
from fate_components.core.imaging.scans import index_scans, read_scan
from fate_components.core.imaging.volume import Volume
from fate_components.ops.site_data import check_site


def _chest(shape_zyx=(12, 48, 48), padding=-3024.0, seed=0) -> Volume:
    """A chest-like scan: padding outside a circular field of view, air, lungs, soft tissue, bone, a little metal."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape_zyx
    j, i = np.mgrid[0:ny, 0:nx]
    r = np.hypot(j - (ny - 1) / 2, i - (nx - 1) / 2) / (nx / 2)
    plane = np.where(r > 1.0, padding, np.where(r > 0.8, -1000.0, np.where(r > 0.6, 40.0, -850.0)))
    plane[ny // 2 - 2:ny // 2 + 2, nx // 2 - 2:nx // 2 + 2] = 1500.0   # spine
    array = np.repeat(plane[np.newaxis], nz, axis=0) + np.where(plane > -1500, rng.integers(-20, 20, shape_zyx), 0)
    array[nz // 2, 3, nx // 2] = 8000.0   # a metal clip
    return Volume(array.astype(np.float32), (0.7, 0.7, 2.5), (-16.8, -16.8, -100.0), np.eye(3), series_uid="1.2.3.5")


def _site_with_candidate(site, seriesuid: str) -> None:
    (site / "candidates.csv").write_text(f"seriesuid,coordX,coordY,coordZ,class\n{seriesuid},0,0,-90,1\n")


def _assert_build_fails_leaving_nothing(site, match: str) -> None:
    out = site.parent / "out"
    with pytest.raises(ScanReadError, match=match):
        build_patch_dataset(site, out, on_bad_scan="raise")
    assert not out.exists() and not any(p.name.startswith("out") for p in site.parent.iterdir() if p != site)


# -- plausible Hounsfield units -------------------------------------------------------------------------------

@pytest.mark.parametrize("padding", [-3024.0, -2048.0, -1000.0], ids=["pad-3024", "pad-2048", "no-padding"])
def test_real_looking_ct_with_padding_and_metal_passes_the_hu_check(padding):
    check_hounsfield(_chest(padding=padding).array_hu, "scans/x.mhd", "fix")   # no error


@pytest.mark.bad_input("MetaImage stored as unsigned 16-bit (air reads 64,536)",
                       "ElementType is MET_USHORT (unsigned), so HU below 0 wrapped around")
def test_unsigned_metaimage_is_refused_naming_the_file_and_the_element_type(tmp_path):
    # Prepare: the same bytes declared unsigned, as a converter that drops the sign writes them
    site = tmp_path / "site"
    path = write_metaimage(_chest(), site / "scans" / "1.2.3.5.mhd")
    path.write_text(path.read_text().replace("MET_SHORT", "MET_USHORT"))
    _site_with_candidate(site, "1.2.3.5")

    # Execute / Assert
    with pytest.raises(ScanReadError, match=r"^scans/1\.2\.3\.5\.mhd: not CT in Hounsfield units: 0\.0% of "
                                            r"sampled voxels are at or below -500 HU .* ElementType is MET_USHORT "
                                            r"\(unsigned\), so HU below 0 wrapped around \(air -1000 reads as "
                                            r"64536\); convert the scan to signed HU \(ElementType MET_SHORT, "
                                            r"air -1000\)"):
        read_metaimage(path, site_root=site)
    _assert_build_fails_leaving_nothing(site, r"MET_USHORT")
    report = check_site(site)
    assert not report.ok and "not CT in Hounsfield units" in report.problems[0]


@pytest.mark.bad_input("MetaImage of raw scanner values (HU + 1024)", "if air reads near 0 the scanner offset")
def test_unrescaled_metaimage_is_refused(tmp_path):
    volume = _chest()
    raw = Volume(volume.array_hu + 1024, volume.spacing_mm, volume.origin_mm, volume.direction)
    path = write_metaimage(raw, tmp_path / "x.mhd")
    with pytest.raises(ScanReadError, match=r"^x\.mhd: not CT in Hounsfield units: 0\.0% .*ElementType "
                                            r"MET_SHORT\) must be HU, air -1000 and water 0; if air reads near 0"):
        read_metaimage(path, site_root=tmp_path)


@pytest.mark.bad_input("DICOM series without its RescaleIntercept (raw stored values)",
                       "HU = stored value x RescaleSlope + RescaleIntercept")
def test_dicom_series_without_rescale_is_refused_naming_the_tags_found(tmp_path):
    # Prepare: the writer stores HU + 1024 with RescaleIntercept -1024; drop the tag
    site = tmp_path / "site"
    paths = write_dicom_series(_chest(), site / "scans" / "case_005", series_uid="1.2.3.5")
    for path in paths:
        ds = pydicom.dcmread(path)
        del ds.RescaleIntercept
        ds.save_as(path)
    _site_with_candidate(site, "1.2.3.5")

    # Execute / Assert
    with pytest.raises(ScanReadError, match=r"^scans/case_005/: not CT in Hounsfield units: .*; HU = stored "
                                            r"value x RescaleSlope \+ RescaleIntercept, and these slices have "
                                            r"RescaleSlope 1\.0, RescaleIntercept 0\.0 \(a missing tag counts as 1 "
                                            r"and 0\)"):
        read_scan(site, "1.2.3.5")
    _assert_build_fails_leaving_nothing(site, r"RescaleIntercept 0\.0")


def test_the_hu_check_costs_little_on_a_full_scan():
    import time

    array = np.full((300, 512, 512), -1000, np.int16)
    start = time.perf_counter()
    check_hounsfield(array, "x", "fix")
    assert time.perf_counter() - start < 0.5   # reading such a scan takes about a second


# -- voxel files of the wrong size ----------------------------------------------------------------------------

@pytest.mark.bad_input(".raw longer than its header says", "is too long:")
def test_oversized_raw_file_is_refused_with_both_sizes(tmp_path):
    site = tmp_path / "site"
    path = write_metaimage(_chest(shape_zyx=(4, 10, 10)), site / "scans" / "1.2.3.5.mhd")
    raw = path.with_suffix(".raw")
    raw.write_bytes(raw.read_bytes() + bytes(200))
    _site_with_candidate(site, "1.2.3.5")
    with pytest.raises(ScanReadError, match=r"^scans/1\.2\.3\.5\.mhd: voxel file scans/1\.2\.3\.5\.raw is too long: "
                                            r"1000 bytes, expected 800 for DimSize 10 10 4, ElementType MET_SHORT; the "
                                            r"header does not describe this file"):
        read_metaimage(path, site_root=site)
    _assert_build_fails_leaving_nothing(site, r"is too long")


def test_mha_with_local_voxels_is_checked_too(tmp_path):
    volume = _chest(shape_zyx=(4, 10, 10))
    path = tmp_path / "x.mha"
    sitk.WriteImage(sitk.Cast(sitk.GetImageFromArray(volume.array_hu), sitk.sitkInt16), str(path))
    assert read_metaimage(path).array_hu.shape == (4, 10, 10)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ScanReadError, match=r"x\.mha: the voxels after the header is truncated: 790 bytes, "
                                            r"expected 800"):
        read_metaimage(path)


# -- truncated DICOM slices -----------------------------------------------------------------------------------

@pytest.mark.bad_input("DICOM slice without extension truncated to a few bytes", "truncated DICOM slice (")
def test_slice_truncated_to_a_few_bytes_is_refused_not_skipped(tmp_path):
    site = tmp_path / "site"
    paths = write_dicom_series(_chest(), site / "scans" / "case_005", series_uid="1.2.3.5", file_names="numbered")
    paths[3].write_bytes(paths[3].read_bytes()[:10])
    _site_with_candidate(site, "1.2.3.5")
    with pytest.raises(ScanReadError, match=r"^scans/case_005/IM0004: truncated DICOM slice \(10 bytes, too short to "
                                            r"be DICOM: .*\); copy the file again from the source"):
        read_scan(site, "1.2.3.5")
    _assert_build_fails_leaving_nothing(site, r"IM0004: truncated DICOM slice")


def test_empty_slice_file_is_refused_but_a_short_note_is_still_skipped(tmp_path):
    folder = tmp_path / "case_005"
    volume = _chest()
    paths = write_dicom_series(volume, folder, series_uid="1.2.3.5", file_names="numbered")
    (folder / "notes").write_text("exported by the PACS\n")
    np.testing.assert_array_equal(read_dicom_series(folder).array_hu, volume.array_hu)
    paths[0].write_bytes(b"")
    with pytest.raises(ScanReadError, match=r"case_005/IM0001: truncated DICOM slice \(0 bytes"):
        read_dicom_series(folder)


# -- enhanced (multi-frame) CT --------------------------------------------------------------------------------

def _item(**attributes) -> Dataset:
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return item


def _write_enhanced_ct(volume: Volume, path, series_uid: str) -> None:
    """One Enhanced CT Image Storage file with a frame per k slice, geometry in the functional groups."""
    stored = np.clip(np.rint(volume.array_hu) + 1024, -32768, 32767).astype(np.int16)
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENHANCED_CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_CT_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "CT", series_uid, generate_uid()
    ds.FrameOfReferenceUID, ds.ImageType = generate_uid(), ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.NumberOfFrames, (ds.Rows, ds.Columns) = stored.shape[0], stored.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    d, (sx, sy, sz) = volume.direction, volume.spacing_mm
    ds.SharedFunctionalGroupsSequence = Sequence([_item(
        PixelMeasuresSequence=Sequence([_item(PixelSpacing=[sy, sx], SliceThickness=sz, SpacingBetweenSlices=sz)]),
        PlaneOrientationSequence=Sequence([_item(ImageOrientationPatient=list(np.concatenate([d[:, 0], d[:, 1]])))]),
        PixelValueTransformationSequence=Sequence([_item(RescaleIntercept=-1024, RescaleSlope=1,
                                                         RescaleType="HU")]))])
    ds.PerFrameFunctionalGroupsSequence = Sequence([_item(
        FrameContentSequence=Sequence([_item(InStackPositionNumber=k + 1)]),
        PlanePositionSequence=Sequence([_item(ImagePositionPatient=list(np.asarray(volume.origin_mm)
                                                                        + d[:, 2] * sz * k))]))
        for k in range(stored.shape[0])])
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_enhanced_multiframe_ct_reads_voxel_for_voxel_like_simpleitk(tmp_path):
    # Prepare: frames stored in reverse order, so the reader must sort them by position
    volume = _chest(shape_zyx=(9, 40, 44))
    folder = tmp_path / "scans" / "case_009"
    folder.mkdir(parents=True)
    flipped = Volume(volume.array_hu[::-1].copy(), volume.spacing_mm,
                     tuple(volume.voxel_to_world([0, 0, 8])), volume.direction @ np.diag([1, 1, -1]))
    _write_enhanced_ct(flipped, folder / "enhanced.dcm", "1.2.3.9")

    # Execute
    ours = read_dicom_series(folder)
    theirs = sitk.ReadImage(str(folder / "enhanced.dcm"))

    # Assert: same voxels and geometry as SimpleITK, and as the volume written
    assert ours.series_uid == "1.2.3.9" and index_scans(tmp_path) == {"1.2.3.9": folder}
    np.testing.assert_array_equal(ours.array_hu, volume.array_hu)
    theirs_volume = np.asarray(sitk.GetArrayFromImage(theirs), np.float32)
    theirs_direction = np.asarray(theirs.GetDirection()).reshape(3, 3)
    if theirs_direction[2, 2] < 0:   # SimpleITK keeps the file's frame order; compare in one world frame
        theirs_volume = theirs_volume[::-1]
    np.testing.assert_array_equal(ours.array_hu, theirs_volume)
    np.testing.assert_allclose(ours.spacing_mm, theirs.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(ours.origin_mm, volume.origin_mm, atol=1e-6)
    np.testing.assert_allclose(ours.direction, volume.direction, atol=1e-6)


def test_enhanced_ct_with_a_missing_frame_reports_the_gap(tmp_path):
    volume = _chest(shape_zyx=(6, 40, 44))
    folder = tmp_path / "case_009"
    folder.mkdir()
    keep = [0, 1, 2, 4, 5]
    gapped = Volume(volume.array_hu[keep], volume.spacing_mm, volume.origin_mm, volume.direction)
    _write_enhanced_ct(gapped, folder / "e.dcm", "1.2.3.9")
    ds = pydicom.dcmread(folder / "e.dcm")
    for n, k in enumerate(keep):   # positions of frames 0, 1, 2, 4, 5
        ds.PerFrameFunctionalGroupsSequence[n].PlanePositionSequence[0].ImagePositionPatient = list(
            volume.voxel_to_world([0, 0, k]))
    ds.save_as(folder / "e.dcm")
    with pytest.raises(ScanReadError, match=r"^case_009/: missing slice between z=-95\.0 mm and z=-90\.0 mm"):
        read_dicom_series(folder)


# -- several series in a folder; each scan counted once ---------------------------------------------------------

@pytest.fixture
def two_series_site(tmp_path):
    site = tmp_path / "site"
    first, second = _chest(shape_zyx=(12, 48, 48), seed=1), _chest(shape_zyx=(5, 48, 48), seed=2)
    folder = site / "scans" / "case_017"
    write_dicom_series(first, folder, series_uid="1.2.3.100", file_names="dcm")
    for path in write_dicom_series(second, site / "tmp", series_uid="1.2.3.200", file_names="numbered"):
        path.rename(folder / path.name)
    (site / "tmp").rmdir()
    return site, first, second


@pytest.mark.bad_input("two DICOM series in one folder, named by the folder",
                       "write the SeriesInstanceUID of the series to use in the seriesuid column")
def test_two_series_in_a_folder_are_two_scans_chosen_by_uid_in_candidates_csv(two_series_site):
    site, first, second = two_series_site

    # Execute / Assert: the folder name is not a seriesuid; the message lists the series and says how to choose
    assert index_scans(site) == {"1.2.3.100": site / "scans" / "case_017", "1.2.3.200": site / "scans" / "case_017"}
    with pytest.raises(MissingScanError, match=r"^candidates\.csv: seriesuid case_017 is the name of the DICOM folder "
                                               r"scans/case_017/, not a seriesuid; that folder holds 1\.2\.3\.100 "
                                               r"\(12 slices\), 1\.2\.3\.200 \(5 slices\); write the SeriesInstanceUID "
                                               r"of the series to use in the seriesuid column of candidates\.csv"):
        read_scan(site, "case_017")
    np.testing.assert_array_equal(read_scan(site, "1.2.3.200").array_hu, second.array_hu)
    np.testing.assert_array_equal(read_scan(site, "1.2.3.100").array_hu, first.array_hu)
    _site_with_candidate(site, "1.2.3.200")
    report = check_site(site)
    assert report.ok and report.scans == 1, report.summary()


@pytest.mark.bad_input("one DICOM folder counted by folder name and by uid",
                       "is the name of the DICOM folder scans/case_005/, not a seriesuid")
def test_a_series_folder_is_one_scan_with_one_key(tmp_path):
    site = tmp_path / "site"
    write_dicom_series(_chest(), site / "scans" / "case_005", series_uid="1.2.3.5")
    (site / "candidates.csv").write_text("seriesuid,coordX,coordY,coordZ,class\n1.2.3.5,0,0,-90,1\n"
                                         "case_005,0,0,-90,0\n")
    assert index_scans(site) == {"1.2.3.5": site / "scans" / "case_005"}
    report = check_site(site)
    assert report.scans == 1
    assert report.problems == ["candidates.csv: seriesuid case_005 is the name of the DICOM folder scans/case_005/, "
                               "not a seriesuid; that folder holds 1.2.3.5 (12 slices); write the SeriesInstanceUID "
                               "of the series to use in the seriesuid column of candidates.csv and annotations.csv"]
