"""Evaluate a LUNA16 submission against annotations: the FROC/CPM report as data and as text."""
from __future__ import annotations

import csv
from pathlib import Path

from .candidates import read_annotations
from .errors import CsvFormatError
from .froc import FP_RATES, Finding, Scored, bootstrap_froc, evaluate_froc

SUBMISSION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "probability")


def read_submission(path: Path, *, split: str | None = None) -> list[Scored]:
    """Scored candidates; with `split`, only rows whose patient_split column equals it (predictions.csv)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in SUBMISSION_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CsvFormatError(f"{path.name}: header {reader.fieldnames} lacks {missing}; expected "
                                 f"{','.join(SUBMISSION_COLUMNS)}")
        if split is not None and "patient_split" not in (reader.fieldnames or []):
            raise CsvFormatError(f"{path.name}: no patient_split column, so split={split!r} cannot be selected")
        out = []
        for line, row in enumerate(reader, start=2):
            if split is not None and row["patient_split"] != split:
                continue
            try:
                out.append(Scored(row["seriesuid"], (float(row["coordX"]), float(row["coordY"]),
                                                     float(row["coordZ"])), float(row["probability"])))
            except ValueError:
                raise CsvFormatError(f"{path.name} line {line}: non-numeric coordinate or probability") from None
    return out


def _findings(path: Path | None) -> list[Finding]:
    if path is None or not Path(path).exists():
        return []
    return [Finding(a.seriesuid, a.world_xyz_mm, a.diameter_mm) for a in read_annotations(Path(path))]


def evaluate_submission(submission: Path, annotations: Path, *, excluded: Path | None = None,
                        scans: list[str] | None = None, split: str | None = None, n_boot: int = 1000,
                        seed: int = 0) -> dict:
    """FROC points, CPM with a 95% bootstrap interval over scans, AUC; plain data for metrics and files."""
    scored = read_submission(submission, split=split)
    nodules = _findings(annotations)
    excl = _findings(excluded)
    if scans is None:
        scans = sorted({s.seriesuid for s in scored})
    result = evaluate_froc(scored, nodules, excluded=excl, scans=scans)
    boot = bootstrap_froc(scored, [n for n in nodules if n.seriesuid in set(scans)], excluded=excl, scans=scans,
                          n_boot=n_boot, seed=seed)
    return {"cpm": boot.cpm, "cpm_ci95": [boot.cpm_low, boot.cpm_high], "auc": result.auc,
            "sensitivity_at": {str(k): v for k, v in result.sensitivity_at.items()},
            "froc": {"fps_per_scan": result.fps_per_scan.tolist(), "sensitivity": result.sensitivity.tolist()},
            "froc_band": {"fps_per_scan": boot.fps_per_scan.tolist(), "sensitivity": boot.sensitivity.tolist(),
                          "low": boot.sensitivity_low.tolist(), "high": boot.sensitivity_high.tolist()},
            "n_scans": result.n_scans, "n_nodules": result.n_nodules,
            "n_false_positives": result.n_false_positives, "n_ignored": result.n_ignored, "bootstrap": n_boot}


def format_report(report: dict) -> str:
    lines = [f"scans {report['n_scans']}, nodules {report['n_nodules']}, false positives {report['n_false_positives']}, "
             f"ignored (excluded findings) {report['n_ignored']}"]
    lines.append("FP/scan    " + "".join(f"{r:>8g}" for r in FP_RATES))
    lines.append("sensitivity" + "".join(f"{report['sensitivity_at'][str(r)]:>8.3f}" for r in FP_RATES))
    low, high = report["cpm_ci95"]
    lines.append(f"CPM {report['cpm']:.3f} (95% CI {low:.3f}-{high:.3f}, {report['bootstrap']} bootstrap samples "
                 f"over scans)   AUC {report['auc']:.3f}")
    return "\n".join(lines)
