"""What a hospital operator runs before its data enter FATE: check the site directory, then bind it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fate_components.core.data.candidates import read_candidates
from fate_components.core.data.site_tables import findings_problems, findings_without_scans, read_findings
from fate_components.core.errors import LungError
from fate_components.core.imaging.patches import outside_scan_error
from fate_components.core.imaging.scans import index_scans, read_scan


@dataclass
class SiteCheck:
    site_root: Path
    scans: int = 0
    candidates: int = 0
    positives: int = 0
    annotations: int = 0
    excluded: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        head = (f"{self.site_root}: {self.scans} scans, {self.candidates} candidates "
                f"({self.positives} positive), {self.annotations} annotated nodules"
                + (f", {self.excluded} excluded findings" if self.excluded else ""))
        if self.ok:
            return head + " - OK"
        shown = "\n  ".join(self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        return f"{head} - {len(self.problems)} problem(s):\n  {shown}{more}"


def check_site(site_root: Path) -> SiteCheck:
    """Every candidate's and annotation's seriesuid has a readable scan and its centre lies inside it.

    The csv files must be well formed, and candidates.csv must have rows. annotations.csv and
    annotations_excluded.csv are optional; their rows are checked by `site_tables`' rule.
    """
    site_root = Path(site_root)
    report = SiteCheck(site_root=site_root)
    candidates_csv = site_root / "candidates.csv"
    if not candidates_csv.exists():
        report.problems.append("candidates.csv: missing (expected columns seriesuid,coordX,coordY,coordZ,class)")
        return report
    try:
        candidates = read_candidates(candidates_csv)
        findings = read_findings(site_root)
        index = index_scans(site_root)
    except LungError as e:
        report.problems.append(str(e))
        return report
    report.candidates = len(candidates)
    report.positives = sum(c.label == 1 for c in candidates)
    report.annotations = len(findings.get("annotations.csv", []))
    report.excluded = len(findings.get("annotations_excluded.csv", []))
    by_scan: dict[str, list] = {}
    for c in candidates:
        by_scan.setdefault(c.seriesuid, []).append(c)
    report.problems += [str(error) for _, _, error in findings_without_scans(findings, index)]
    for rows in findings.values():   # a scan named only by annotations is read (and checked) too
        for a in rows:
            if a.seriesuid in index:
                by_scan.setdefault(a.seriesuid, [])
    for seriesuid, cands in by_scan.items():
        try:
            volume = read_scan(site_root, seriesuid, index)
        except LungError as e:
            report.problems.append(str(e))
            continue
        report.scans += 1
        for c in cands:
            if not volume.contains_world(c.world_xyz_mm):
                report.problems.append(str(outside_scan_error(volume, c.world_xyz_mm, c.row)))
        report.problems += [str(error) for _, _, error in findings_problems(findings, seriesuid, volume)]
    return report


def bind_site(client, site_root: Path, *, namespace: str, name: str) -> None:
    """`flow table bind` for a data directory: FATE records the path; the data never move."""
    response = client.table.bind_path(namespace=namespace, name=name, path=str(Path(site_root).resolve()))
    if response.get("code") != 0:
        raise LungError(f"FATE refused to bind {site_root} as {namespace}/{name}: {response.get('message')}")


def table_bound(client, namespace: str, name: str) -> bool:
    response = client.table.query(namespace=namespace, name=name)
    return response.get("code") == 0
