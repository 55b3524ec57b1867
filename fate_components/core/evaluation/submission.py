"""Evaluate a LUNA16 submission against annotations: the FROC/CPM report as data and as text.

Files are read as LUNA16 publishes them: CRLF or LF line endings, a byte-order mark tolerated, extra columns
ignored, -1 as the diameter of an excluded finding (10 mm). The rules of the evaluation are in `froc`.
"""
from __future__ import annotations

import csv
from pathlib import Path

from fate_components.core.data.candidates import csv_rows, finite_number, read_annotations
from fate_components.core.errors import CsvFormatError
from fate_components.core.evaluation.froc import (
    FP_RATES,
    MAX_MARKS_PER_SCAN,
    Finding,
    Scored,
    bootstrap_from_match,
    froc_from_match,
    match_scans,
)

SUBMISSION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "probability")

__all__ = ["SUBMISSION_COLUMNS", "read_submission", "read_seriesuids", "load_findings", "evaluate_submission",
           "format_report"]


def read_submission(path: Path, *, split: str | None = None) -> list[Scored]:
    """Scored marks; with `split`, only rows whose patient_split column equals it (predictions.csv).

    Read as the other LUNA16 tables are (`candidates.csv_rows`): header checked, extra columns
    ignored, blank lines skipped, CRLF or LF, a byte-order mark tolerated.
    """
    shown = Path(path).name
    columns = SUBMISSION_COLUMNS + (("patient_split",) if split is not None else ())
    out = []
    for line, row in csv_rows(path, columns, shown):
        if split is not None and row["patient_split"] != split:
            continue
        if not row["seriesuid"]:
            raise CsvFormatError(f"{shown}: line {line}: seriesuid is empty")
        xyz = tuple(finite_number(row, c, line, shown) for c in ("coordX", "coordY", "coordZ"))
        out.append(Scored(row["seriesuid"], xyz, finite_number(row, "probability", line, shown)))
    return out


def read_seriesuids(path: Path, *, shown: str | None = None) -> list[str]:
    """LUNA16's seriesuids.csv: one seriesuid per line, no header (the first field of a line; others ignored).

    CRLF or LF, blank lines skipped. A scan listed twice, or a header line, is an error.
    """
    path = Path(path)
    shown = shown or path.name
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise CsvFormatError(f"{shown}: file not found; expected one seriesuid per line, no header") from exc
    uids: list[str] = []
    seen: dict[str, int] = {}
    with fh:
        reader = csv.reader(fh)
        for values in reader:
            uid = values[0].strip() if values else ""
            if not uid:
                continue
            line = reader.line_num
            if uid.lower() == "seriesuid":
                raise CsvFormatError(f"{shown}: line {line}: {uid!r} looks like a header; the file has none "
                                     f"(one seriesuid per line, as LUNA16's seriesuids.csv): delete that line")
            if uid in seen:
                raise CsvFormatError(f"{shown}: line {line}: seriesuid {uid} is already listed on line {seen[uid]}; "
                                     f"list each scan once")
            seen[uid] = line
            uids.append(uid)
    if not uids:
        raise CsvFormatError(f"{shown}: no seriesuid found; expected one seriesuid per line, no header")
    return uids


def load_findings(path: Path | None, *, excluded: bool) -> list[Finding]:
    """The nodules (annotations.csv) or, with `excluded`, the excluded findings (-1 diameters allowed) of a file."""
    if path is None:
        return []
    return [Finding(a.seriesuid, a.world_xyz_mm, a.diameter_mm)
            for a in read_annotations(Path(path), allow_unknown_diameter=excluded)]


def evaluate_submission(submission: Path, annotations: Path | None, *, excluded: Path | None = None,
                        scans: list[str] | None = None, split: str | None = None, n_boot: int = 1000,
                        seed: int = 0, max_marks_per_scan: int = MAX_MARKS_PER_SCAN) -> dict:
    """FROC points, CPM with a 95% bootstrap interval over scans, AUC; plain data for metrics and files.

    `scans` fixes the evaluated scans (LUNA16's seriesuids.csv, see `read_seriesuids`); default: the scans that
    have a mark in the submission. `annotations` None means no nodule (every sensitivity then NaN).
    """
    scored = read_submission(submission, split=split)
    nodules = load_findings(annotations, excluded=False)
    excl = load_findings(excluded, excluded=True)
    if scans is None:
        scans = sorted({s.seriesuid for s in scored})
    matched = match_scans(scored, nodules, excluded=excl, scans=scans, max_marks_per_scan=max_marks_per_scan)
    result = froc_from_match(matched)
    boot = bootstrap_from_match(matched, n_boot=n_boot, seed=seed, full=result)
    return {"cpm": boot.cpm, "cpm_ci95": [boot.cpm_low, boot.cpm_high], "auc": result.auc,
            "sensitivity_at": {str(k): v for k, v in result.sensitivity_at.items()},
            "froc": {"fps_per_scan": result.fps_per_scan.tolist(), "sensitivity": result.sensitivity.tolist()},
            "froc_band": {"fps_per_scan": boot.fps_per_scan.tolist(), "sensitivity": boot.sensitivity.tolist(),
                          "low": boot.sensitivity_low.tolist(), "high": boot.sensitivity_high.tolist()},
            "n_scans": result.n_scans, "n_nodules": result.n_nodules, "n_detected": result.n_detected,
            "n_false_positives": result.n_false_positives, "n_ignored": result.n_ignored,
            "n_double_hits": result.n_double_hits, "n_marks": result.n_marks,
            "n_marks_unlisted": result.n_marks_unlisted, "n_marks_dropped": result.n_marks_dropped,
            "max_marks_per_scan": result.max_marks_per_scan, "bootstrap": n_boot,
            "bootstrap_used": boot.n_boot_used}


def format_report(report: dict) -> str:
    limit = report.get("max_marks_per_scan", MAX_MARKS_PER_SCAN)
    lines = [f"scans {report['n_scans']}, nodules {report['n_nodules']} (detected {report.get('n_detected', '?')}), "
             f"false positives {report['n_false_positives']}, ignored (excluded findings) {report['n_ignored']}"]
    if "n_marks" in report:
        kept = (f"{report['n_marks_dropped']} beyond the {limit} most probable of a scan (dropped)" if limit
                else "no limit per scan")
        lines.append(f"marks {report['n_marks']}: {report['n_marks_unlisted']} on scans not evaluated (ignored), "
                     f"{kept}")
    lines.append("FP/scan    " + "".join(f"{r:>8g}" for r in FP_RATES))
    lines.append("sensitivity" + "".join(f"{report['sensitivity_at'][str(r)]:>8.3f}" for r in FP_RATES))
    low, high = report["cpm_ci95"]
    lines.append(f"CPM {report['cpm']:.3f} (95% CI {low:.3f}-{high:.3f}, {report['bootstrap']} bootstrap samples "
                 f"over scans)   AUC {report['auc']:.3f}")
    return "\n".join(lines)
