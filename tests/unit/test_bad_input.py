"""Every kind of bad input gives its own error type and a message that says what and where."""
import shutil

import pydicom
import pytest

from fate_components.core.data.candidates import read_candidates
from fate_components.core.data.patch_dataset import EmptyDatasetError, build_patch_dataset
from fate_components.core.errors import (
    CoordinateOutOfVolumeError,
    CsvFormatError,
    LungError,
    MissingScanError,
    ScanReadError,
    WrongModalityError,
)
from fate_components.core.imaging.dicom_io import read_dicom_series, write_dicom_series
from fate_components.core.imaging.metaimage_io import write_metaimage
from fate_components.core.imaging.patches import PatchSpec, extract_patch
from fate_components.core.imaging.scans import index_scans, read_scan

SECRET_PATIENT = "PAT-SECRET-4711"


@pytest.fixture
def dicom_site(tmp_path, make_volume):
    """site/scans/case_017 with a 10-slice series at z = -130, -127.5, ..., -107.5 mm."""
    volume = make_volume(shape_zyx=(10, 32, 32), origin_mm=(-20.0, 15.0, -130.0))
    paths = write_dicom_series(volume, tmp_path / "site" / "scans" / "case_017", series_uid="1.2.3.17",
                               patient_id=SECRET_PATIENT, file_names="numbered")
    return tmp_path / "site", paths


@pytest.mark.bad_input('DICOM slice whose pixel data are cut short',
                       'corrupt DICOM slice (pixel data cannot be decoded')
def test_truncated_slice_is_a_corrupt_slice_naming_the_file(dicom_site):
    # Prepare
    site, paths = dicom_site
    paths[2].write_bytes(paths[2].read_bytes()[:-700])

    # Execute / Assert
    with pytest.raises(ScanReadError, match=r"^scans/case_017/IM0003: corrupt DICOM slice \(pixel data cannot be "
                                            r"decoded: .*\); re-export or remove the file") as info:
        read_dicom_series(paths[0].parent, site_root=site)
    assert SECRET_PATIENT not in str(info.value)


@pytest.mark.bad_input('DICOM slice cut inside its header', 'corrupt DICOM slice')
def test_slice_cut_in_its_header_is_corrupt_too(dicom_site):
    site, paths = dicom_site
    paths[4].write_bytes(paths[4].read_bytes()[:300])
    with pytest.raises(ScanReadError, match=r"^case_017/IM0005: corrupt DICOM slice"):
        read_dicom_series(paths[0].parent)


@pytest.mark.bad_input('a .dcm file that is not DICOM', 'extra.dcm: corrupt DICOM slice')
def test_dcm_file_that_is_not_dicom_is_an_error_not_skipped(dicom_site):
    site, paths = dicom_site
    (paths[0].parent / "extra.dcm").write_text("not an image")
    with pytest.raises(ScanReadError, match=r"case_017/extra\.dcm: corrupt DICOM slice"):
        read_dicom_series(paths[0].parent)


@pytest.mark.bad_input('DICOM series with a slice missing',
                       'missing slice between z=-122.5 mm and z=-117.5 mm (gap 5.0 mm, expected 2.5 mm)')
def test_missing_slice_reports_the_gap(dicom_site):
    # Prepare
    site, paths = dicom_site
    paths[4].unlink()   # z = -120.0 mm

    # Execute / Assert
    with pytest.raises(ScanReadError, match=r"^case_017/: missing slice between z=-122\.5 mm and z=-117\.5 mm "
                                            r"\(gap 5\.0 mm, expected 2\.5 mm\)"):
        read_dicom_series(paths[0].parent)


@pytest.mark.bad_input('two DICOM slices at one position', '; remove the duplicate file')
def test_duplicate_slice_position_names_both_files(dicom_site):
    site, paths = dicom_site
    shutil.copy(paths[3], paths[0].parent / "COPY")
    with pytest.raises(ScanReadError, match=r"case_017/: duplicate slice position z=-122\.5 mm in (IM0004 and COPY|"
                                            r"COPY and IM0004); remove the duplicate file"):
        read_dicom_series(paths[0].parent)


@pytest.mark.bad_input('DICOM series that is not CT', "modality is 'MR', expected 'CT'")
def test_non_ct_modality(dicom_site):
    # Prepare
    site, paths = dicom_site
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.Modality = "MR"
        ds.save_as(path)

    # Execute / Assert
    with pytest.raises(WrongModalityError, match=r"^case_017/IM0001: modality is 'MR', expected 'CT'"):
        read_dicom_series(paths[0].parent)


@pytest.mark.bad_input('DICOM slices of one series with different orientations',
                       'inconsistent series: case_017/IM0007 has ImageOrientationPatient')
def test_inconsistent_orientation_within_a_series(dicom_site):
    site, paths = dicom_site
    ds = pydicom.dcmread(paths[6])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.save_as(paths[6])
    with pytest.raises(ScanReadError, match=r"case_017/: inconsistent series: case_017/IM0007 has "
                                            r"ImageOrientationPatient"):
        read_dicom_series(paths[0].parent)


@pytest.mark.bad_input('scan folder without DICOM slices', 'no DICOM slices found (1 non-DICOM file(s) skipped')
def test_empty_folder(tmp_path):
    (tmp_path / "case_001").mkdir()
    (tmp_path / "case_001" / "readme.txt").write_text("nothing here")
    with pytest.raises(ScanReadError, match=r"^case_001/: no DICOM slices found \(1 non-DICOM file\(s\) skipped"):
        read_dicom_series(tmp_path / "case_001")


@pytest.mark.bad_input('seriesuid in candidates.csv without a scan', 'has no scan under scans/')
def test_seriesuid_without_scan(dicom_site):
    site, _ = dicom_site
    with pytest.raises(MissingScanError, match=r"^candidates\.csv: seriesuid 1\.3\.6\.1\.9 has no scan under scans/ "
                                               r"\(found 1 scans\)"):
        read_scan(site, "1.3.6.1.9")


@pytest.mark.bad_input('candidate outside its scan', 'is outside the scan scans/case_017/, whose world bounds are')
def test_candidate_outside_the_volume(dicom_site):
    # Prepare
    site, _ = dicom_site
    volume = read_scan(site, "1.2.3.17")

    # Execute / Assert
    with pytest.raises(CoordinateOutOfVolumeError, match=r"candidates\.csv line 5: candidate \(0\.0, 0\.0, 50\.0\) mm "
                                                         r"of seriesuid 1\.2\.3\.17 is outside the scan "
                                                         r"scans/case_017/, whose world bounds are .*z \[-131\.2, "
                                                         r"-106\.2\] mm"):
        extract_patch(volume, (0.0, 0.0, 50.0), PatchSpec(), row=5)


def test_wrong_csv_header(tmp_path):
    (tmp_path / "candidates.csv").write_text("uid,coordX,coordY,coordZ,class\n1.2,0,0,0,1\n")
    with pytest.raises(CsvFormatError, match=r"^candidates\.csv: header is 'uid,coordX,coordY,coordZ,class', "
                                             r"expected 'seriesuid,coordX,coordY,coordZ,class' \(missing seriesuid\)"):
        read_candidates(tmp_path / "candidates.csv")


@pytest.mark.bad_input('two scans with one seriesuid', 'two scans with seriesuid 1.2.3.17')
def test_two_scans_with_the_same_seriesuid(dicom_site, make_volume):
    site, _ = dicom_site
    write_metaimage(make_volume(), site / "scans" / "1.2.3.17.mhd")
    with pytest.raises(LungError, match=r"two scans with seriesuid 1\.2\.3\.17: scans/(1\.2\.3\.17\.mhd and "
                                        r"scans/case_017|case_017 and scans/1\.2\.3\.17\.mhd); remove the duplicate"):
        index_scans(site)


@pytest.mark.bad_input('site directory without scans/', 'scans/: folder not found in the site directory')
def test_no_scans_folder(tmp_path):
    with pytest.raises(LungError, match=r"^scans/: folder not found in the site directory"):
        index_scans(tmp_path)


def test_build_in_raise_mode_leaves_no_partial_directory(dicom_site):
    # Prepare: a site whose only scan misses a slice
    site, paths = dicom_site
    paths[4].unlink()
    (site / "candidates.csv").write_text("seriesuid,coordX,coordY,coordZ,class\n1.2.3.17,0,20,-120,1\n")
    out = site.parent / "datasets" / "hospital_a"

    # Execute
    with pytest.raises(ScanReadError, match=r"missing slice"):
        build_patch_dataset(site, out, on_bad_scan="raise")

    # Assert
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir()] == []


def test_build_in_skip_mode_keeps_the_message_without_patient_ids(dicom_site):
    # Prepare
    site, paths = dicom_site
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.Modality = "PT"
        ds.save_as(path)
    (site / "candidates.csv").write_text("seriesuid,coordX,coordY,coordZ,class\n1.2.3.17,0,20,-120,1\n")

    # Execute: the only scan is skipped, so the dataset would be empty (EmptyDatasetError, nothing written)
    with pytest.raises(EmptyDatasetError) as info:
        build_patch_dataset(site, site.parent / "out")

    # Assert
    assert ("scans/case_017/IM0001: modality is 'PT', expected 'CT'; only CT series can be read"
            in str(info.value))
    assert SECRET_PATIENT not in str(info.value)
    assert not (site.parent / "out").exists()
