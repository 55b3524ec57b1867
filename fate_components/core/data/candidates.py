"""LUNA16 candidates.csv and annotations.csv: reading with line-numbered errors, and writing."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from fate_components.core.errors import CsvFormatError

__all__ = ["Candidate", "Annotation", "read_candidates", "read_annotations", "write_candidates",
           "write_annotations", "csv_rows", "finite_number", "CANDIDATE_COLUMNS", "ANNOTATION_COLUMNS"]

CANDIDATE_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "class")
ANNOTATION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")


@dataclass(frozen=True)
class Candidate:
    seriesuid: str
    world_xyz_mm: tuple[float, float, float]   # LPS world coordinates of the candidate centre
    label: int                                 # 1 = nodule, 0 = not a nodule
    row: int                                   # line number in candidates.csv (header = line 1)


@dataclass(frozen=True)
class Annotation:
    seriesuid: str
    world_xyz_mm: tuple[float, float, float]
    diameter_mm: float
    # Line number in its csv (header = line 1), for messages; 0 when not read from a file. Not part of
    # equality: the same finding read from two files is the same finding.
    row: int = field(default=0, compare=False)


def csv_rows(path: Path, expected: tuple[str, ...], shown: str) -> Iterable[tuple[int, dict[str, str]]]:
    """(line number, row) for each non-blank data row, after checking the header."""
    path = Path(path)
    try:
        fh = open(path, newline="", encoding="utf-8-sig")   # utf-8-sig: spreadsheets add a BOM
    except FileNotFoundError as exc:
        raise CsvFormatError(f"{shown}: file not found; expected a CSV with columns {','.join(expected)}") from exc
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise CsvFormatError(f"{shown}: line 1: not a readable CSV file ({exc})") from exc
        if header is None:
            raise CsvFormatError(f"{shown}: file is empty; expected header {','.join(expected)}")
        header = [h.strip() for h in header]
        missing = [c for c in expected if c not in header]
        if missing:
            raise CsvFormatError(f"{shown}: header is {','.join(header)!r}, expected {','.join(expected)!r} "
                                 f"(missing {', '.join(missing)}); column names are case-sensitive")
        position = {c: header.index(c) for c in expected}
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                raise CsvFormatError(f"{shown}: line {reader.line_num}: not valid CSV ({exc})") from exc
            if not any(v.strip() for v in values):
                continue
            if len(values) < len(header):
                raise CsvFormatError(f"{shown}: line {reader.line_num}: {len(values)} values, expected "
                                     f"{len(header)} (one per header column)")
            yield reader.line_num, {c: values[i].strip() for c, i in position.items()}


def finite_number(row: dict[str, str], column: str, line: int, shown: str) -> float:
    """The finite number in `column` of a CSV row; else a CsvFormatError naming the file, line and column."""
    text = row[column]
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise CsvFormatError(f"{shown}: line {line}: {column} is {text!r}, expected a finite number")
    return value


def _seriesuid(row: dict[str, str], line: int, shown: str) -> str:
    if not row["seriesuid"]:
        raise CsvFormatError(f"{shown}: line {line}: seriesuid is empty")
    return row["seriesuid"]


def _xyz(row: dict[str, str], line: int, shown: str) -> tuple[float, float, float]:
    return tuple(finite_number(row, c, line, shown) for c in ("coordX", "coordY", "coordZ"))


def read_candidates(path: Path, *, shown: str | None = None) -> list[Candidate]:
    """Read a LUNA16 candidates.csv (extra columns allowed); `shown` names the file in errors.

    A table without rows is refused (CsvFormatError); an empty annotations.csv is fine (a site without nodules).
    """
    shown = shown or Path(path).name
    candidates = []
    for line, row in csv_rows(path, CANDIDATE_COLUMNS, shown):
        label = finite_number(row, "class", line, shown)
        if label not in (0.0, 1.0):
            raise CsvFormatError(f"{shown}: line {line}: class is {row['class']!r}, expected 0 or 1")
        candidates.append(Candidate(_seriesuid(row, line, shown), _xyz(row, line, shown), int(label), line))
    if not candidates:
        # A header-only table would build an empty dataset and pass as a success.
        raise CsvFormatError(f"{shown}: has a header but no candidate rows; expected one row per candidate "
                             f"({','.join(CANDIDATE_COLUMNS)}), e.g. LUNA16's candidates.csv; a site needs at "
                             f"least one candidate to train or predict on")
    return candidates


UNKNOWN_DIAMETER_MM = -1.0   # LUNA16's annotations_excluded.csv: size unknown (evaluated as 10 mm)


def read_annotations(path: Path, *, shown: str | None = None,
                     allow_unknown_diameter: bool = False) -> list[Annotation]:
    """Read a LUNA16 annotations.csv (extra columns allowed, CRLF or LF line endings).

    With `allow_unknown_diameter` (for annotations_excluded.csv) a diameter_mm of -1, LUNA16's "size unknown",
    is accepted and kept as -1.0; the evaluation counts it as 10 mm. Anywhere else a diameter must be positive.
    """
    shown = shown or Path(path).name
    annotations = []
    for line, row in csv_rows(path, ANNOTATION_COLUMNS, shown):
        diameter = finite_number(row, "diameter_mm", line, shown)
        if diameter <= 0 and not (allow_unknown_diameter and diameter == UNKNOWN_DIAMETER_MM):
            if allow_unknown_diameter:
                fix = "or -1 (size unknown, counted as 10 mm)"
            elif diameter == UNKNOWN_DIAMETER_MM:
                fix = ("(-1, size unknown, is allowed only in an excluded-findings file such as "
                       "annotations_excluded.csv; give that file as the excluded findings, or the nodule's size)")
            else:
                fix = "(the nodule's diameter in mm)"
            raise CsvFormatError(f"{shown}: line {line}: diameter_mm is {row['diameter_mm']!r}, expected a "
                                 f"positive number {fix}")
        annotations.append(Annotation(_seriesuid(row, line, shown), _xyz(row, line, shown), diameter, line))
    return annotations


def _write(path: Path, header: tuple[str, ...], rows: Iterable[list]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _float_text(x: float) -> str:
    return repr(float(x))   # shortest text that reads back to the same float


def write_candidates(path: Path, candidates: Iterable[Candidate]) -> None:
    _write(path, CANDIDATE_COLUMNS, ([c.seriesuid, *map(_float_text, c.world_xyz_mm), int(c.label)]
                                     for c in candidates))


def write_annotations(path: Path, annotations: Iterable[Annotation]) -> None:
    _write(path, ANNOTATION_COLUMNS, ([a.seriesuid, *map(_float_text, a.world_xyz_mm), _float_text(a.diameter_mm)]
                                      for a in annotations))
