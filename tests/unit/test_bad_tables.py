"""Bad tables and empty datasets: clear errors naming the file, line and seriesuid; nothing half-written."""
import shutil
import sys
from pathlib import Path

import pytest

from fate_components.core.data.candidates import (
    Annotation,
    read_annotations,
    read_candidates,
    write_annotations,
    write_candidates,
)
from fate_components.core.data.patch_dataset import EmptyDatasetError, PatchDataset, build_patch_dataset
from fate_components.core.errors import CoordinateOutOfVolumeError, CsvFormatError, MissingScanError
from fate_components.core.imaging.patches import PatchSpec
from fate_components.ops.site_data import check_site

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))  # a development tool, not part of the installed package
import bad_input_table  # noqa: E402

pytest_plugins = ["pytester"]

SPEC = PatchSpec(size_mm=24.0, size_voxels=12)


def _annotate(site, centres, name="annotations.csv", extra=()):
    """annotations.csv (or another findings file) with one nodule per ball, then `extra` rows (lines 5, 6, ...)."""
    rows = [Annotation(uid, centre, 10.0) for uid, centre in centres.items()] + list(extra)
    write_annotations(site / name, rows)


def _left_behind(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


# --- annotations.csv / annotations_excluded.csv against the scans ----------------------------------------------

@pytest.mark.bad_input("annotations.csv row for a scan the site does not have",
                       "annotations.csv: line 5: seriesuid 9.9.9 has no scan under scans/ (found 3 scans); add the "
                       "scan, correct the seriesuid, or remove the row")
def test_annotation_of_a_missing_scan_is_a_site_problem_and_raises_before_writing(small_site, tmp_path):
    # Prepare
    site, centres = small_site
    _annotate(site, centres, extra=[Annotation("9.9.9", (0.0, 0.0, 0.0), 6.0)])
    out = tmp_path / "out" / "patches"

    # Execute
    report = check_site(site)
    with pytest.raises(MissingScanError) as info:
        build_patch_dataset(site, out, spec=SPEC, on_bad_scan="raise")

    # Assert
    expected = ("annotations.csv: line 5: seriesuid 9.9.9 has no scan under scans/ (found 3 scans); add the scan, "
                "correct the seriesuid, or remove the row")
    assert report.problems == [expected] and not report.ok and report.annotations == 4
    assert str(info.value) == expected
    assert not (tmp_path / "out").exists() or _left_behind(tmp_path / "out") == []


@pytest.mark.bad_input("annotations.csv nodule 900 mm outside its scan",
                       "annotations.csv: line 3: nodule (-5.0, 908.0, 30.0) mm of seriesuid 1.2.840.1.2 is outside "
                       "the scan scans/1.2.840.1.2.mhd")
def test_annotation_outside_its_scan_is_a_site_problem_and_raises_leaving_nothing(small_site, tmp_path):
    # Prepare: line 3 (the second scan's nodule) moved 900 mm along y
    site, centres = small_site
    centres = dict(centres, **{"1.2.840.1.2": (-5.0, 908.0, 30.0)})
    _annotate(site, centres)
    out = tmp_path / "out" / "patches"

    # Execute
    report = check_site(site)
    with pytest.raises(CoordinateOutOfVolumeError) as info:
        build_patch_dataset(site, out, spec=SPEC, on_bad_scan="raise")

    # Assert
    assert len(report.problems) == 1 and report.problems[0] == str(info.value)
    message = str(info.value)
    assert message.startswith("annotations.csv: line 3: nodule (-5.0, 908.0, 30.0) mm of seriesuid 1.2.840.1.2 is "
                              "outside the scan scans/1.2.840.1.2.mhd, whose world bounds are x [")
    assert message.endswith("check the coordinates are world mm (not voxel indices) in LPS and that the row names "
                            "the right seriesuid")
    assert _left_behind(tmp_path / "out") == []


def test_skip_mode_reports_bad_annotation_rows_and_builds_the_dataset(small_site, tmp_path):
    # Prepare: one annotation of a missing scan (line 5), one far outside its scan (line 6)
    site, centres = small_site
    _annotate(site, centres, extra=[Annotation("9.9.9", (0.0, 0.0, 0.0), 6.0),
                                    Annotation("1.2.840.1.1", (10.0, -20.0, 850.0), 6.0)])

    # Execute
    report = build_patch_dataset(site, tmp_path / "p", spec=SPEC, mode="predict", on_bad_scan="skip")

    # Assert: the rows are reported, the patches are all there
    skipped = [(a["file"], a["row"], a["seriesuid"], a["reason"]) for a in report.annotations_skipped]
    assert skipped == [("annotations.csv", 5, "9.9.9", "missing scan"),
                       ("annotations.csv", 6, "1.2.840.1.1", "outside scan")]
    assert report.annotations_skipped[1]["message"].startswith("annotations.csv: line 6: nodule (10.0, -20.0, 850.0)")
    assert len(PatchDataset(tmp_path / "p")) == 18


@pytest.mark.bad_input("annotations_excluded.csv finding outside its scan",
                       "annotations_excluded.csv: line 3: finding (0.0, 0.0, -900.0) mm of seriesuid 1.2.840.1.3 is "
                       "outside the scan scans/case_003")
def test_excluded_findings_are_checked_too_and_luna16_crlf_with_unknown_diameters_passes(small_site, tmp_path):
    # Prepare: LUNA16's layout (CRLF, -1 = size unknown); line 3 is 900 mm below the DICOM scan
    site, centres = small_site
    (site / "annotations_excluded.csv").write_bytes(
        b"seriesuid,coordX,coordY,coordZ,diameter_mm\r\n"
        b"1.2.840.1.1,10.0,-20.0,-50.0,-1\r\n"
        b"1.2.840.1.3,0.0,0.0,-900.0,2.5\r\n")

    # Execute
    report = check_site(site)
    with pytest.raises(CoordinateOutOfVolumeError) as info:
        build_patch_dataset(site, tmp_path / "p", spec=SPEC, on_bad_scan="raise")

    # Assert
    assert report.excluded == 2 and len(report.problems) == 1
    assert report.problems[0].startswith("annotations_excluded.csv: line 3: finding (0.0, 0.0, -900.0) mm of "
                                         "seriesuid 1.2.840.1.3 is outside the scan scans/case_003")
    assert str(info.value) == report.problems[0]
    assert not (tmp_path / "p").exists() and _left_behind(tmp_path) == ["site"]


def test_luna16_tables_with_crlf_and_unknown_diameters_pass_check_and_build(small_site, tmp_path):
    # Prepare: the site's three tables rewritten as LUNA16 publishes them (CRLF line ends, -1 diameters excluded)
    site, centres = small_site
    text = (site / "candidates.csv").read_text()
    (site / "candidates.csv").write_bytes(text.replace("\n", "\r\n").encode())
    lines = ["seriesuid,coordX,coordY,coordZ,diameter_mm"] + [f"{u},{x},{y},{z},10" for u, (x, y, z) in
                                                               centres.items()]
    (site / "annotations.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    excluded = ["seriesuid,coordX,coordY,coordZ,diameter_mm"] + [f"{u},{x + 3},{y},{z},-1" for u, (x, y, z) in
                                                                  centres.items()]
    (site / "annotations_excluded.csv").write_bytes(("\r\n".join(excluded) + "\r\n").encode())

    # Execute
    report = check_site(site)
    built = build_patch_dataset(site, tmp_path / "p", spec=SPEC, mode="predict", on_bad_scan="raise")

    # Assert
    assert report.ok, report.summary()
    assert (report.scans, report.candidates, report.annotations, report.excluded) == (3, 18, 3, 3)
    assert report.summary().endswith("3 annotated nodules, 3 excluded findings - OK")
    assert built.annotations_skipped == [] and len(PatchDataset(tmp_path / "p")) == 18
    assert [a.diameter_mm for a in read_annotations(site / "annotations_excluded.csv",
                                                    allow_unknown_diameter=True)] == [-1.0] * 3


# --- empty candidate tables and empty datasets -------------------------------------------------------------------

@pytest.mark.bad_input("candidates.csv with only a header",
                       "candidates.csv: has a header but no candidate rows; expected one row per candidate")
def test_header_only_candidates_csv_is_refused_by_reader_check_and_build(small_site, tmp_path):
    # Prepare
    site, _ = small_site
    (site / "candidates.csv").write_bytes(b"seriesuid,coordX,coordY,coordZ,class\r\n\r\n")
    expected = ("candidates.csv: has a header but no candidate rows; expected one row per candidate "
                "(seriesuid,coordX,coordY,coordZ,class), e.g. LUNA16's candidates.csv; a site needs at least one "
                "candidate to train or predict on")

    # Execute / Assert
    with pytest.raises(CsvFormatError) as info:
        read_candidates(site / "candidates.csv")
    assert str(info.value) == expected
    assert check_site(site).problems == [expected]
    with pytest.raises(CsvFormatError, match="has a header but no candidate rows"):
        build_patch_dataset(site, tmp_path / "out" / "p", spec=SPEC)
    assert not (tmp_path / "out").exists()


def _break_every_scan(site):
    for raw in (site / "scans").glob("*.raw"):
        raw.write_bytes(raw.read_bytes()[:100])
    for dicom in (site / "scans" / "case_003").iterdir():
        dicom.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")


@pytest.mark.bad_input("site where every scan is unreadable", "no patches to write: all 3 scans were skipped: ")
def test_a_site_whose_scans_are_all_unreadable_is_an_error_and_keeps_the_previous_dataset(small_site, tmp_path):
    # Prepare: a good dataset first, then every scan broken
    site, _ = small_site
    out = tmp_path / "p"
    build_patch_dataset(site, out, spec=SPEC, mode="predict")
    before = (out / "patches.npy").read_bytes()
    _break_every_scan(site)

    # Execute
    with pytest.raises(EmptyDatasetError) as info:
        build_patch_dataset(site, out, spec=SPEC, mode="predict", on_bad_scan="skip")

    # Assert: the reasons of the first two scans, the count of the rest, the fix; the old dataset untouched
    message = str(info.value)
    assert message.startswith("no patches to write: all 3 scans were skipped: scans/1.2.840.1.1.mhd")
    assert "; scans/1.2.840.1.2.mhd" in message and "; and 1 more; nothing was written to p/. " in message
    assert message.endswith("`fate-lung check-site site` lists every problem of the site")
    assert (out / "patches.npy").read_bytes() == before and _left_behind(tmp_path) == ["p", "site"]


@pytest.mark.bad_input("every candidate outside its scan", "no patches to write: all 18 candidates lie outside "
                                                           "their scans: candidates.csv line 2: candidate")
def test_every_candidate_outside_its_scan_is_an_error_naming_the_first_rows(small_site, tmp_path):
    # Prepare: every candidate moved 800 mm along z
    site, _ = small_site
    moved = [c.__class__(c.seriesuid, (c.world_xyz_mm[0], c.world_xyz_mm[1], c.world_xyz_mm[2] + 800.0), c.label, 0)
             for c in read_candidates(site / "candidates.csv")]
    write_candidates(site / "candidates.csv", moved)

    # Execute
    with pytest.raises(EmptyDatasetError) as info:
        build_patch_dataset(site, tmp_path / "out" / "p", spec=SPEC, mode="predict")

    # Assert
    assert str(info.value).startswith("no patches to write: all 18 candidates lie outside their scans: "
                                      "candidates.csv line 2: candidate (10.0, -20.0, 750.0) mm of seriesuid "
                                      "1.2.840.1.1 is outside the scan")
    assert "; and 16 more; nothing was written to p/" in str(info.value)
    assert _left_behind(tmp_path / "out") == []


def test_some_scans_skipped_and_the_rest_outside_says_both(small_site, tmp_path):
    # Prepare: the DICOM scan gone; the MetaImage scans' candidates moved far away
    site, _ = small_site
    shutil.rmtree(site / "scans" / "case_003")
    moved = [c.__class__(c.seriesuid, (c.world_xyz_mm[0] + 900.0, *c.world_xyz_mm[1:]), c.label, 0)
             for c in read_candidates(site / "candidates.csv")]
    write_candidates(site / "candidates.csv", moved)

    # Execute
    with pytest.raises(EmptyDatasetError) as info:
        build_patch_dataset(site, tmp_path / "p", spec=SPEC, mode="predict")

    # Assert
    assert str(info.value).startswith("no patches to write: 1 of 3 scans were skipped (candidates.csv: seriesuid "
                                      "1.2.840.1.3 has no scan under scans/")
    assert ") and every candidate of the other 2 lies outside its scan: candidates.csv line 2:" in str(info.value)
    assert _left_behind(tmp_path) == ["site"]


def test_a_scan_whose_every_candidate_is_outside_is_skipped_not_a_crash(small_site, tmp_path):
    # Prepare: the DICOM scan's six candidates moved 900 mm (an empty write once failed in memoryview.cast)
    site, _ = small_site
    moved = [c.__class__(c.seriesuid, (c.world_xyz_mm[0] + 900.0 * (c.seriesuid == "1.2.840.1.3"),
                                       *c.world_xyz_mm[1:]), c.label, 0)
             for c in read_candidates(site / "candidates.csv")]
    write_candidates(site / "candidates.csv", moved)

    # Execute
    report = build_patch_dataset(site, tmp_path / "p", spec=SPEC, mode="predict")

    # Assert
    assert [c["reason"] for c in report.candidates_skipped] == ["outside scan"] * 6
    assert len(PatchDataset(tmp_path / "p")) == 12 and report.scans_read == 3


@pytest.mark.bad_input("negative_ratio > 0 on a site without positives",
                       "candidates.csv has no positive (class 1) row, so no candidate is kept")
def test_train_sampling_that_keeps_nothing_is_an_error(small_site, tmp_path):
    # Prepare: every candidate a negative
    site, _ = small_site
    write_candidates(site / "candidates.csv", [c.__class__(c.seriesuid, c.world_xyz_mm, 0, 0)
                                               for c in read_candidates(site / "candidates.csv")])

    # Execute / Assert
    with pytest.raises(EmptyDatasetError, match=r"^no patches to write: mode 'train' with negative_ratio=1\.0 keeps "
                                                r"that many negatives per positive and candidates\.csv has no "
                                                r"positive \(class 1\) row, so no candidate is kept; use "
                                                r"negative_ratio=0 or add the positives"):
        build_patch_dataset(site, tmp_path / "p", spec=SPEC, mode="train", negative_ratio=1.0)
    assert _left_behind(tmp_path) == ["site"]


# --- the README's table of bad inputs ------------------------------------------------------------------------------

def test_readme_bad_input_table_matches_the_marked_tests():
    # Execute
    problems = bad_input_table.check()

    # Assert: each problem names README.md and the command that regenerates the table
    assert not problems, "\n".join(problems)


def test_marked_tests_are_collected_in_file_order_with_param_marks(tmp_path):
    # Prepare
    tests = tmp_path / "unit"
    tests.mkdir()
    (tests / "test_b.py").write_text(
        "import pytest\n"
        "@pytest.mark.bad_input('a | b', 'run `x`')\n"
        "def test_one(): pass\n"
        "@pytest.mark.parametrize('x', [pytest.param(1, marks=pytest.mark.bad_input('p1', 'm1')), 2])\n"
        "def test_two(x): pass\n")
    (tests / "test_a.py").write_text("import pytest\n@pytest.mark.bad_input('first', 'msg a')\ndef test_x(): pass\n")

    # Execute
    cases, problems = bad_input_table.collect(tests)
    table = bad_input_table.render(cases)

    # Assert
    assert problems == []
    assert [(c.case, c.excerpt, c.test) for c in cases] == [("first", "msg a", "test_a.py::test_x"),
                                                           ("a | b", "run `x`", "test_b.py::test_one"),
                                                           ("p1", "m1", "test_b.py::test_two")]
    assert table.splitlines()[:3] == ["| Bad input | Message (excerpt) | Test |", "|---|---|---|",
                                      "| first | `msg a` | `test_a.py::test_x` |"]
    assert "| a \\| b | `` run `x` `` |" in table


def test_a_stale_missing_or_malformed_table_is_reported_with_the_command(tmp_path):
    # Prepare
    tests = tmp_path / "unit"
    tests.mkdir()
    (tests / "test_a.py").write_text("import pytest\n@pytest.mark.bad_input('case', 'excerpt')\ndef test_x(): pass\n")
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{bad_input_table.BEGIN}\n| old |\n{bad_input_table.END}\n\nafter\n")

    # Execute
    stale = bad_input_table.check(readme, tests)
    rewritten = bad_input_table.check(readme, tests, write=True)
    after = bad_input_table.check(readme, tests)
    (tmp_path / "bare.md").write_text("# no table\n")
    missing = bad_input_table.check(tmp_path / "bare.md", tests)
    (tests / "test_b.py").write_text("import pytest\nX = 'c'\n@pytest.mark.bad_input(X, 'e')\ndef test_y(): pass\n")
    malformed = bad_input_table.check(readme, tests)

    # Assert
    assert len(stale) == 1 and bad_input_table.COMMAND in stale[0] and "-| old |" in stale[0]
    assert rewritten == [] and after == []
    assert readme.read_text().startswith("# Title\n\n<!-- bad-input-table -->\n| Bad input |")
    assert readme.read_text().endswith("| case | `excerpt` | `test_a.py::test_x` |\n<!-- /bad-input-table -->\n\n"
                                       "after\n")
    assert missing == [f"bare.md: no bad-input table; put the lines {bad_input_table.BEGIN} and "
                       f"{bad_input_table.END} where it goes, then run `{bad_input_table.COMMAND}`"]
    assert malformed == ["test_b.py:3: @pytest.mark.bad_input takes two non-empty string literals (case, message "
                         "excerpt)"]


def test_the_hook_fails_a_marked_test_whose_message_lacks_the_excerpt(pytester):
    # Prepare: the hook as tests/unit/conftest.py installs it, and three marked tests
    pytester.makeini("[pytest]\nmarkers =\n    bad_input(case, excerpt): test\n")
    pytester.makeconftest(f"import sys\nsys.path.insert(0, {str(ROOT / 'tools')!r})\n"
                          "from bad_input_table import pytest_runtest_call\n")
    pytester.makepyfile(test_marked=(
        "import pytest\n"
        "from fate_components.core.errors import CsvFormatError\n"
        "@pytest.mark.bad_input('good', 'line 7: bad')\n"
        "def test_holds_it():\n"
        "    with pytest.raises(CsvFormatError):\n"
        "        raise CsvFormatError('x.csv: line 7: bad value')\n"
        "@pytest.mark.bad_input('wrong', 'line 8')\n"
        "def test_other_message():\n"
        "    with pytest.raises(CsvFormatError):\n"
        "        raise CsvFormatError('x.csv: line 7: bad value')\n"
        "@pytest.mark.bad_input('none', 'anything')\n"
        "def test_no_error():\n"
        "    pass\n"))

    # Execute
    result = pytester.runpytest("-p", "no:cacheprovider")

    # Assert
    result.assert_outcomes(passed=1, failed=2)
    output = result.stdout.str()
    assert "test_other_message _" in output and "test_no_error _" in output
    assert ("@pytest.mark.bad_input: no fate-lung error message contained ['line 8']; messages seen:\n"
            "  x.csv: line 7: bad value") in output
    assert "no fate-lung error message contained ['anything']; messages seen:\n  (none)" in output
