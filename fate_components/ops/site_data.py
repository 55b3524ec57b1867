"""What a hospital operator runs before its data enter FATE: check the site directory, then bind it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fate_components.core.data.candidates import read_annotations, read_candidates
from fate_components.core.errors import CoordinateOutOfVolumeError, LungError
from fate_components.core.imaging.scans import index_scans, read_scan


@dataclass
class SiteCheck:
    site_root: Path
    scans: int = 0
    candidates: int = 0
    positives: int = 0
    annotations: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        head = (f"{self.site_root}: {self.scans} scans, {self.candidates} candidates "
                f"({self.positives} positive), {self.annotations} annotated nodules")
        if self.ok:
            return head + " - OK"
        shown = "\n  ".join(self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        return f"{head} - {len(self.problems)} problem(s):\n  {shown}{more}"


def check_site(site_root: Path) -> SiteCheck:
    """Every candidate's seriesuid has a readable scan and lies inside it; the csv files are well formed."""
    site_root = Path(site_root)
    report = SiteCheck(site_root=site_root)
    candidates_csv = site_root / "candidates.csv"
    if not candidates_csv.exists():
        report.problems.append("candidates.csv: missing (expected columns seriesuid,coordX,coordY,coordZ,class)")
        return report
    try:
        candidates = read_candidates(candidates_csv)
        if (site_root / "annotations.csv").exists():
            report.annotations = len(read_annotations(site_root / "annotations.csv"))
        index = index_scans(site_root)
    except LungError as e:
        report.problems.append(str(e))
        return report
    report.candidates = len(candidates)
    report.positives = sum(c.label == 1 for c in candidates)
    by_scan: dict[str, list] = {}
    for c in candidates:
        by_scan.setdefault(c.seriesuid, []).append(c)
    for seriesuid, cands in by_scan.items():
        try:
            volume = read_scan(site_root, seriesuid, index)
        except LungError as e:
            report.problems.append(str(e))
            continue
        report.scans += 1
        for c in cands:
            if not volume.contains_world(c.world_xyz_mm):
                report.problems.append(str(CoordinateOutOfVolumeError(
                    f"candidates.csv line {c.row}: candidate {c.world_xyz_mm} mm lies outside scan {seriesuid}")))
    return report


def bind_site(client, site_root: Path, *, namespace: str, name: str) -> None:
    """`flow table bind` for a data directory: FATE records the path; the data never move."""
    response = client.table.bind_path(namespace=namespace, name=name, path=str(Path(site_root).resolve()))
    if response.get("code") != 0:
        raise LungError(f"FATE refused to bind {site_root} as {namespace}/{name}: {response.get('message')}")


def table_bound(client, namespace: str, name: str) -> bool:
    response = client.table.query(namespace=namespace, name=name)
    return response.get("code") == 0
