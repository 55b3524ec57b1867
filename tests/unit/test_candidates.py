import pytest

from fate_components.core.data.candidates import (
    Annotation,
    Candidate,
    read_annotations,
    read_candidates,
    write_annotations,
    write_candidates,
)
from fate_components.core.errors import CsvFormatError

UID = "1.3.6.1.4.1.14519.5.2.1.6279.6001.100225287222365663678666836860"


def test_reads_luna16_candidates_with_extra_columns_bom_and_blank_lines(tmp_path):
    # Prepare
    path = tmp_path / "candidates.csv"
    path.write_text("\ufeffseriesuid,coordX,coordY,coordZ,class,note\n"
                    f"{UID},-56.08,-67.85,-311.92,0,vessel\n"
                    "\n"
                    f"{UID},53.21,-244.41,-245.17,1,\n", encoding="utf-8")

    # Execute
    candidates = read_candidates(path)

    # Assert
    assert candidates == [Candidate(UID, (-56.08, -67.85, -311.92), 0, 2),
                          Candidate(UID, (53.21, -244.41, -245.17), 1, 4)]


def test_columns_may_come_in_any_order(tmp_path):
    path = tmp_path / "candidates.csv"
    path.write_text("class,coordZ,coordY,coordX,seriesuid\n1,3,2,1,u\n")
    assert read_candidates(path) == [Candidate("u", (1.0, 2.0, 3.0), 1, 2)]


@pytest.mark.bad_input("CSV with wrong column names", "header is 'seriesuid,x,y,z,label', expected "
                                                       "'seriesuid,coordX,coordY,coordZ,class' (missing coordX")
def test_wrong_header_names_file_found_and_expected_columns(tmp_path):
    # Prepare
    path = tmp_path / "candidates.csv"
    path.write_text("seriesuid,x,y,z,label\nu,1,2,3,0\n")

    # Execute / Assert
    with pytest.raises(CsvFormatError, match=r"^candidates\.csv: header is 'seriesuid,x,y,z,label', expected "
                                             r"'seriesuid,coordX,coordY,coordZ,class' \(missing coordX, coordY, "
                                             r"coordZ, class\)"):
        read_candidates(path)


@pytest.mark.parametrize("row, message", [
    pytest.param("u,1.5,abc,3,0", r"line 3: coordY is 'abc', expected a finite number",
                 marks=pytest.mark.bad_input("CSV coordinate that is not a number", "line 3: coordY is 'abc', "
                                                                                      "expected a finite number")),
    ("u,1.5,2,nan,0", r"line 3: coordZ is 'nan', expected a finite number"),
    pytest.param("u,1,2,3,2", r"line 3: class is '2', expected 0 or 1",
                 marks=pytest.mark.bad_input("candidates.csv class other than 0 or 1",
                                             "line 3: class is '2', expected 0 or 1")),
    pytest.param(",1,2,3,1", r"line 3: seriesuid is empty",
                 marks=pytest.mark.bad_input("CSV row without a seriesuid", "line 3: seriesuid is empty")),
    pytest.param("u,1,2", r"line 3: 3 values, expected 5",
                 marks=pytest.mark.bad_input("CSV row with values missing", "line 3: 3 values, expected 5 (one "
                                                                              "per header column)")),
])
def test_bad_values_are_reported_with_line_number(tmp_path, row, message):
    # Prepare
    path = tmp_path / "candidates.csv"
    path.write_text(f"seriesuid,coordX,coordY,coordZ,class\nu,0,0,0,1\n{row}\n")

    # Execute / Assert
    with pytest.raises(CsvFormatError, match=rf"^candidates\.csv: {message}"):
        read_candidates(path)


@pytest.mark.bad_input("empty CSV file", "empty.csv: file is empty; expected header seriesuid,coordX")
@pytest.mark.bad_input("missing CSV file", "annotations.csv: file not found; expected a CSV with columns")
def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(CsvFormatError, match=r"empty\.csv: file is empty; expected header seriesuid,coordX"):
        read_candidates(tmp_path / "empty.csv")
    with pytest.raises(CsvFormatError, match=r"annotations\.csv: file not found"):
        read_annotations(tmp_path / "annotations.csv")


def test_write_then_read_round_trips_exact_floats(tmp_path):
    # Prepare
    candidates = [Candidate(UID, (-56.08000000000001, 0.1 + 0.2, -311.9), 1, 2), Candidate("u2", (1.0, 2.0, 3.0), 0, 3)]
    annotations = [Annotation(UID, (1.25, -2.5, 1e-3), 5.651)]

    # Execute
    write_candidates(tmp_path / "c.csv", candidates)
    write_annotations(tmp_path / "a.csv", annotations)

    # Assert
    assert read_candidates(tmp_path / "c.csv") == candidates
    assert read_annotations(tmp_path / "a.csv") == annotations
    assert (tmp_path / "c.csv").read_text().splitlines()[0] == "seriesuid,coordX,coordY,coordZ,class"


@pytest.mark.bad_input("nodule diameter not positive", "line 2: diameter_mm is '-4', expected a positive number")
def test_annotation_diameter_must_be_positive(tmp_path):
    path = tmp_path / "annotations.csv"
    path.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\nu,1,2,3,-4\n")
    with pytest.raises(CsvFormatError, match=r"line 2: diameter_mm is '-4', expected a positive number"):
        read_annotations(path)


def test_excluded_file_with_crlf_extra_columns_and_unknown_diameter(tmp_path):
    # Prepare: annotations_excluded.csv as LUNA16 publishes it (CRLF, -1 = size unknown).
    path = tmp_path / "annotations_excluded.csv"
    path.write_bytes(b"seriesuid,coordX,coordY,coordZ,diameter_mm,note\r\n"
                     + f"{UID},-128.94,-175.32,-298.39,-1,a\r\n".encode()
                     + b"\r\n"
                     + f"{UID},103.78,-211.93,-227.12,4.2,b\r\n".encode())

    # Execute
    annotations = read_annotations(path, allow_unknown_diameter=True)

    # Assert
    assert annotations == [Annotation(UID, (-128.94, -175.32, -298.39), -1.0),
                           Annotation(UID, (103.78, -211.93, -227.12), 4.2)]


@pytest.mark.bad_input("diameter -1 (size unknown) in annotations.csv",
                       "-1, size unknown, is allowed only in an excluded-findings file such as "
                       "annotations_excluded.csv")
def test_unknown_diameter_is_refused_in_annotations_csv_with_the_fix(tmp_path):
    path = tmp_path / "annotations.csv"
    path.write_bytes(b"seriesuid,coordX,coordY,coordZ,diameter_mm\r\nu,1,2,3,5\r\nu,1,2,3,-1\r\n")
    with pytest.raises(CsvFormatError, match=r"^annotations\.csv: line 3: diameter_mm is '-1', expected a positive "
                                             r"number \(-1, size unknown, is allowed only in an excluded-findings "
                                             r"file"):
        read_annotations(path)


@pytest.mark.parametrize("value", ["-4", "0", "-1.5"])
def test_excluded_file_still_refuses_other_non_positive_diameters(tmp_path, value):
    path = tmp_path / "annotations_excluded.csv"
    path.write_text(f"seriesuid,coordX,coordY,coordZ,diameter_mm\nu,1,2,3,{value}\n")
    with pytest.raises(CsvFormatError, match=rf"line 2: diameter_mm is '{value}', expected a positive number or -1 "
                                             r"\(size unknown, counted as 10 mm\)"):
        read_annotations(path, allow_unknown_diameter=True)
