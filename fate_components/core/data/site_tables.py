"""A site's annotations.csv and annotations_excluded.csv, checked against its scans as candidates.csv is.

Rule: every row must name a seriesuid that has a scan under ``scans/`` (else MissingScanError) and a
centre inside that scan (else CoordinateOutOfVolumeError, with the scan's world bounds). The messages
name the file, the line and the seriesuid and say how to fix the row.

Who applies it: ``fate-lung check-site`` reads every scan any of the three tables names and lists each
bad row as a problem. The reader (`build_patch_dataset`) follows its ``on_bad_scan``: "raise" stops at
the first bad row, before anything is written; "skip" reports the row in ``annotations_skipped`` (the
reader only counts annotations, so nothing else changes). The reader checks the centres against the
scans it reads anyway (those with candidates); a scan named only by annotations is checked for
existence there and read by check-site.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fate_components.core.data.candidates import Annotation, read_annotations
from fate_components.core.errors import CoordinateOutOfVolumeError, MissingScanError, display_path
from fate_components.core.imaging.patches import outside_scan_error as patch_outside_scan_error
from fate_components.core.imaging.volume import Volume

__all__ = ["FINDING_FILES", "read_findings", "missing_scan_error", "outside_scan_error", "findings_without_scans",
           "findings_problems"]

# (file name, may hold LUNA16's -1 "size unknown" diameter, what one row is)
FINDING_FILES = (("annotations.csv", False, "nodule"), ("annotations_excluded.csv", True, "finding"))


def read_findings(site_root: Path) -> dict[str, list[Annotation]]:
    """{shown file name: its rows} for each of annotations.csv / annotations_excluded.csv the site has."""
    site_root = Path(site_root)
    found = {}
    for name, unknown_ok, _ in FINDING_FILES:
        path = site_root / name
        if path.is_file():
            found[display_path(path, site_root)] = read_annotations(path, shown=display_path(path, site_root),
                                                                    allow_unknown_diameter=unknown_ok)
    return found


def _what(shown: str) -> str:
    return next((what for name, _, what in FINDING_FILES if Path(shown).name == name), "finding")


def missing_scan_error(shown: str, finding: Annotation, n_scans: int) -> MissingScanError:
    return MissingScanError(f"{shown}: line {finding.row}: seriesuid {finding.seriesuid} has no scan under scans/ "
                            f"(found {n_scans} scans); add the scan, correct the seriesuid, or remove the row")


def outside_scan_error(shown: str, finding: Annotation, volume: Volume) -> CoordinateOutOfVolumeError:
    """The reader's message for a candidate outside its scan (imaging/patches.py), worded for this row."""
    return patch_outside_scan_error(volume, finding.world_xyz_mm, where=f"{shown}: line {finding.row}: ",
                                    what=_what(shown), hint=" and that the row names the right seriesuid")


def findings_without_scans(findings: dict[str, list[Annotation]],
                           index: dict[str, Path]) -> list[tuple[str, Annotation, MissingScanError]]:
    """(file, row, error) for the rows whose seriesuid has no scan in `index`, in file then line order."""
    n_scans = len(set(index.values()))
    return [(shown, a, missing_scan_error(shown, a, n_scans))
            for shown, rows in findings.items() for a in rows if a.seriesuid not in index]


def findings_problems(findings: dict[str, list[Annotation]], seriesuid: str,
                      volume: Volume) -> list[tuple[str, Annotation, CoordinateOutOfVolumeError]]:
    """(file, row, error) for the rows of `seriesuid` whose centre lies outside `volume`, in file then line order."""
    problems = []
    for shown, rows in findings.items():
        rows = [a for a in rows if a.seriesuid == seriesuid]
        if not rows:
            continue
        inside = np.atleast_1d(volume.contains_world(np.array([a.world_xyz_mm for a in rows])))
        problems += [(shown, a, outside_scan_error(shown, a, volume)) for a, ok in zip(rows, inside) if not ok]
    return problems
