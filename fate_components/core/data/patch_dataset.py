"""A site's patch dataset: patches cut from its scans, built once and kept at the hospital.

Layout of the dataset directory:
- ``patches.npy``: float16 [N, 1, D, H, W], normalised to [0, 1] (see PatchSpec);
- ``candidates.csv``: index,seriesuid,coordX,coordY,coordZ,label,patient_split — row `index`
  of patches.npy; patient_split (train/val) is decided per seriesuid (one seriesuid = one
  patient), so no patient has patches on both sides;
- ``summary.json``: counts, skip reasons, patch spec, parameters and per-scan spacing.

A build that would hold no patch at all (every scan skipped, every candidate outside its scan, or
sampling keeping nothing) raises EmptyDatasetError naming why, and writes nothing.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from fate_components.core.data.candidates import Annotation, Candidate, read_candidates
from fate_components.core.data.patch_file import PatchFile
from fate_components.core.data.site_tables import findings_problems, findings_without_scans, read_findings
from fate_components.core.errors import ConfigError, LungError, MissingScanError, ScanReadError, display_path
from fate_components.core.imaging.patches import PatchSpec, extract_patches, outside_scan_error
from fate_components.core.imaging.scans import index_scans, read_scan

__all__ = ["ReadReport", "PatchRecord", "PatchDataset", "build_patch_dataset", "patient_split",
           "EmptyDatasetError", "FORMAT_VERSION"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_TABLE_COLUMNS = ("index", "seriesuid", "coordX", "coordY", "coordZ", "label", "patient_split")
_SPLITS = ("train", "val")


class EmptyDatasetError(LungError):
    """A site whose patch dataset would hold no patch; the message says why (first reasons) and how to fix it."""


@dataclass
class ReadReport:
    scans_read: int = 0
    scans_skipped: list[dict] = field(default_factory=list)       # {seriesuid, path?, reason, message}
    candidates_total: int = 0
    positives: int = 0                                            # positive patches written
    negatives_kept: int = 0                                       # negative patches written
    negatives_dropped: int = 0                                    # left out by sampling (train mode)
    candidates_skipped: list[dict] = field(default_factory=list)  # {seriesuid, row, reason, message}
    spacings_mm: list[tuple] = field(default_factory=list)        # (x, y, z) of every scan read
    annotations_skipped: list[dict] = field(default_factory=list)  # {file, row, seriesuid, reason, message}

    def to_dict(self) -> dict:
        return asdict(self)


def patient_split(seriesuids, val_fraction: float, seed: int) -> dict[str, str]:
    """seriesuid -> "train" | "val", deterministic for (set of uids, val_fraction, seed).

    At least one patient goes to each side when val_fraction > 0 and there are two or more.
    """
    uids = sorted(set(seriesuids))
    n_val = int(round(val_fraction * len(uids)))
    if val_fraction > 0 and len(uids) >= 2:
        n_val = min(max(n_val, 1), len(uids) - 1)
    order = np.random.default_rng([seed, 0x5B11]).permutation(len(uids))
    val = {uids[i] for i in order[:n_val]}
    return {u: ("val" if u in val else "train") for u in uids}


def _check_parameters(mode: str, negative_ratio: float, val_fraction: float, on_bad_scan: str) -> None:
    if mode not in ("train", "predict"):
        raise ConfigError(f"mode must be 'train' or 'predict', not {mode!r}")
    if not (isinstance(negative_ratio, (int, float)) and negative_ratio >= 0):
        raise ConfigError(f"negative_ratio must be a number >= 0 (negatives kept per positive), not {negative_ratio!r}")
    if not (isinstance(val_fraction, (int, float)) and 0 <= val_fraction < 1):
        raise ConfigError(f"val_fraction must be in [0, 1), not {val_fraction!r}")
    if on_bad_scan not in ("skip", "raise"):
        raise ConfigError(f"on_bad_scan must be 'skip' or 'raise', not {on_bad_scan!r}")


def _select(candidates: list[Candidate], mode: str, negative_ratio: float, seed: int) -> tuple[list[Candidate], int]:
    """Candidates to cut (in csv order) and the number of negatives dropped by sampling."""
    if mode == "predict" or negative_ratio == 0:
        return list(candidates), 0
    negatives = [n for n, c in enumerate(candidates) if c.label == 0]
    positives = len(candidates) - len(negatives)
    n_keep = min(len(negatives), int(round(negative_ratio * positives)))
    keep = set(np.random.default_rng([seed, 0xCA4D]).choice(negatives, size=n_keep, replace=False).tolist()
               if n_keep else [])
    selected = [c for n, c in enumerate(candidates) if c.label == 1 or n in keep]
    return selected, len(negatives) - n_keep


def _prepare_out_dir(out_dir: Path) -> Path:
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and
                                                      not (out_dir / "summary.json").is_file())):
        raise ConfigError(f"{out_dir}: exists and is not a patch dataset; refusing to overwrite it, "
                          f"choose an empty or new output directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = out_dir.parent / f"{out_dir.name}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    return partial


def _publish(partial: Path, out_dir: Path) -> None:
    """Replace out_dir by the finished dataset; readers see the old or the new one, never half."""
    old = None
    if out_dir.exists():
        old = out_dir.parent / f"{out_dir.name}.old-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(out_dir, old)
    os.replace(partial, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_patch_dataset(site_root: Path, out_dir: Path, *, spec: PatchSpec = PatchSpec(), mode: str = "train",
                        negative_ratio: float = 0.0, val_fraction: float = 0.2, seed: int = 0,
                        on_bad_scan: str = "skip",
                        progress: Callable[[int, int], None] | None = None) -> ReadReport:
    """Cut the patches of a site (``candidates.csv``, optional ``annotations.csv``, ``scans/``).

    Every candidate is cut, so the trainer can draw fresh negatives each epoch
    (`negative_sampling`); only mode "train" with `negative_ratio` > 0 keeps every positive and a
    fixed, seeded sample of `negative_ratio` negatives per positive, drawn from the csv before
    scans are read (the read-time subsample of earlier versions, kept for comparison). With
    on_bad_scan="skip", an unreadable or missing scan skips its candidates and a candidate outside
    its scan is skipped, each with its reason in the report; "raise" raises. Rows of annotations.csv and
    annotations_excluded.csv naming a missing scan, or lying outside their scan, follow the same switch
    (`site_tables`; reported in ``annotations_skipped``). A dataset that would hold no patch raises
    EmptyDatasetError with the first reasons, whatever on_bad_scan says.
    Each scan is read once. The output appears atomically; on error nothing is left behind (a previous
    dataset in out_dir stays as it was).
    `progress(done, total)` is called after each scan.
    """
    _check_parameters(mode, negative_ratio, val_fraction, on_bad_scan)
    site_root, out_dir = Path(site_root), Path(out_dir)
    candidates_csv = site_root / "candidates.csv"
    candidates = read_candidates(candidates_csv, shown=display_path(candidates_csv, site_root))
    findings = read_findings(site_root)
    n_annotations = len(findings["annotations.csv"]) if "annotations.csv" in findings else None
    index = index_scans(site_root)
    selected, dropped = _select(candidates, mode, negative_ratio, seed)
    splits = patient_split((c.seriesuid for c in candidates), val_fraction, seed)
    report = ReadReport(candidates_total=len(candidates), negatives_dropped=dropped)
    _check_findings_have_scans(findings, index, on_bad_scan, report)   # before anything is written

    partial = _prepare_out_dir(out_dir)
    try:
        n_written, records, scans = _cut_patches(site_root, partial, selected, index, spec, on_bad_scan,
                                                 report, progress, findings)
        if n_written == 0:
            raise EmptyDatasetError(f"no patches to write: {_why_empty(report, selected, mode, negative_ratio)}; "
                                    f"nothing was written to {out_dir.name}/. `fate-lung check-site "
                                    f"{site_root.name}` lists every problem of the site")
        _write_table(partial / "candidates.csv", records, splits)
        summary = {
            "format_version": FORMAT_VERSION, "mode": mode, "negative_ratio": negative_ratio,
            "val_fraction": val_fraction, "seed": seed, "on_bad_scan": on_bad_scan,
            "patch_spec": spec.to_dict(), "patches_shape": [n_written, 1] + [spec.size_voxels] * 3,
            "patches_dtype": "float16", "annotations": n_annotations,
            "annotations_excluded": (len(findings["annotations_excluded.csv"])
                                     if "annotations_excluded.csv" in findings else None),
            "patients_per_split": {s: len({r.seriesuid for r in records if splits[r.seriesuid] == s})
                                   for s in _SPLITS},
            "patches_per_split": {s: sum(splits[r.seriesuid] == s for r in records) for s in _SPLITS},
            "scans": scans, **report.to_dict(),
        }
        (partial / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        _publish(partial, out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return report


@dataclass(frozen=True)
class PatchRecord:
    index: int
    seriesuid: str
    world_xyz_mm: tuple[float, float, float]
    label: int
    patient_split: str


def _skip_finding(report: ReadReport, error: LungError, shown: str, finding: Annotation, reason: str) -> None:
    report.annotations_skipped.append({"file": shown, "row": finding.row, "seriesuid": finding.seriesuid,
                                       "reason": reason, "message": str(error)})
    logger.warning("%s", error)


def _check_findings_have_scans(findings: dict[str, list[Annotation]], index: dict[str, Path], on_bad_scan: str,
                               report: ReadReport) -> None:
    """Annotation rows whose seriesuid has no scan: raise the first, or report each (site_tables' rule)."""
    for shown, finding, error in findings_without_scans(findings, index):
        if on_bad_scan == "raise":
            raise error
        _skip_finding(report, error, shown, finding, "missing scan")


def _why_empty(report: ReadReport, selected: list[Candidate], mode: str, negative_ratio: float) -> str:
    """Why no patch was written, with the first reasons (the report holds them all)."""
    if not selected:
        return (f"mode {mode!r} with negative_ratio={negative_ratio} keeps that many negatives per positive and "
                f"candidates.csv has no positive (class 1) row, so no candidate is kept; use negative_ratio=0 "
                f"or add the positives")

    def first(entries: list[dict]) -> str:
        shown = "; ".join(e["message"] for e in entries[:2])
        return shown + (f"; and {len(entries) - 2} more" if len(entries) > 2 else "")

    n_scans = len({c.seriesuid for c in selected})
    skipped = report.scans_skipped
    outside = [c for c in report.candidates_skipped if c["reason"] == "outside scan"]
    if len(skipped) == n_scans:
        return f"all {n_scans} scans were skipped: {first(skipped)}"
    others = f"every candidate of the other {n_scans - len(skipped)} lies outside its scan: {first(outside)}"
    if skipped:
        return f"{len(skipped)} of {n_scans} scans were skipped ({first(skipped)}) and {others}"
    return f"all {len(outside)} candidates lie outside their scans: {first(outside)}"


def _cut_patches(site_root: Path, out: Path, selected: list[Candidate], index: dict[str, Path], spec: PatchSpec,
                 on_bad_scan: str, report: ReadReport, progress: Callable[[int, int], None] | None,
                 findings: dict[str, list[Annotation]]) -> tuple[int, list[Candidate], list[dict]]:
    by_scan: dict[str, list[Candidate]] = defaultdict(list)
    for c in selected:
        by_scan[c.seriesuid].append(c)
    shape = (len(selected), 1) + (spec.size_voxels,) * 3
    # The .npy grows on disk, not in RAM (predict mode on a full site is large): each scan's
    # patches are written with one file write, cheaper than filling a memory map page by page.
    staging_path = out / "patches.staging.npy"
    staging = np.lib.format.open_memmap(staging_path, mode="w+", dtype=np.float16, shape=shape)
    data_offset, patch_bytes = staging.offset, int(np.prod(shape[1:])) * 2
    del staging
    staging_file = open(staging_path, "r+b")
    records, scans, n = [], [], 0

    def skip_candidates(cs: list[Candidate], reason: str, message: str) -> None:
        for c in cs:
            report.candidates_skipped.append({"seriesuid": c.seriesuid, "row": c.row, "reason": reason,
                                              "message": message})

    try:
        for done, (uid, cs) in enumerate(sorted(by_scan.items()), start=1):
            try:
                volume = read_scan(site_root, uid, index)
            except (MissingScanError, ScanReadError) as exc:
                if on_bad_scan == "raise":
                    raise
                reason = "missing scan" if isinstance(exc, MissingScanError) else "unreadable scan"
                location = index.get(uid)
                entry = {"seriesuid": uid, "reason": reason, "message": str(exc)}
                if location is not None:
                    entry["path"] = display_path(location, site_root)
                report.scans_skipped.append(entry)
                skip_candidates(cs, reason, str(exc))
                logger.warning("skipping %s: %s", uid, exc)
            else:
                report.scans_read += 1
                report.spacings_mm.append(tuple(round(s, 6) for s in volume.spacing_mm))
                scans.append({"seriesuid": uid, "source": volume.source, "spacing_mm": list(volume.spacing_mm),
                              "shape_xyz": list(volume.shape_xyz)})
                inside = np.atleast_1d(volume.contains_world(np.array([c.world_xyz_mm for c in cs])))
                for c in (c for c, ok in zip(cs, inside) if not ok):
                    error = outside_scan_error(volume, c.world_xyz_mm, c.row)
                    if on_bad_scan == "raise":
                        raise error
                    skip_candidates([c], "outside scan", str(error))
                for shown, finding, error in findings_problems(findings, uid, volume):
                    if on_bad_scan == "raise":
                        raise error
                    _skip_finding(report, error, shown, finding, "outside scan")
                kept = [c for c, ok in zip(cs, inside) if ok]
                patches = extract_patches(volume, [c.world_xyz_mm for c in kept], spec)
                if kept:   # memoryview cannot cast an empty array (every candidate of the scan outside it)
                    staging_file.seek(data_offset + n * patch_bytes)
                    staging_file.write(memoryview(np.ascontiguousarray(patches)).cast("B"))
                n += len(kept)
                records += kept
                report.positives += sum(c.label == 1 for c in kept)
                report.negatives_kept += sum(c.label != 1 for c in kept)
                del volume, patches   # one scan in memory at a time
            if progress is not None:
                progress(done, len(by_scan))
    finally:
        staging_file.close()
    if n == shape[0]:
        os.replace(out / "patches.staging.npy", out / "patches.npy")   # nothing skipped: no copy needed
    else:
        staging = np.load(out / "patches.staging.npy", mmap_mode="r")
        final = np.lib.format.open_memmap(out / "patches.npy", mode="w+", dtype=np.float16, shape=(n,) + shape[1:])
        for start in range(0, n, 256):
            stop = min(start + 256, n)
            final[start:stop] = staging[start:stop]
        final.flush()
        del final, staging
        (out / "patches.staging.npy").unlink()
    return n, records, scans


def _write_table(path: Path, records: list[Candidate], splits: dict[str, str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(_TABLE_COLUMNS)
        for n, c in enumerate(records):
            writer.writerow([n, c.seriesuid, *(repr(float(v)) for v in c.world_xyz_mm), c.label, splits[c.seriesuid]])


class PatchDataset:
    """A built patch dataset: `patches` (float16 [N, 1, D, H, W], read from disk as indexed), `table`, `summary`."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        shown = self.directory.name + "/"
        for name in ("patches.npy", "candidates.csv", "summary.json"):
            if not (self.directory / name).is_file():
                raise LungError(f"{shown}: {name} is missing; this is not a patch dataset (build one with "
                                f"build_patch_dataset)")
        self.summary: dict = json.loads((self.directory / "summary.json").read_text())
        self.patches = PatchFile(self.directory / "patches.npy")
        self.table: list[PatchRecord] = []
        with open(self.directory / "candidates.csv", newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                self.table.append(PatchRecord(int(row["index"]), row["seriesuid"],
                                              (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"])),
                                              int(row["label"]), row["patient_split"]))
        if len(self.table) != self.patches.shape[0] or any(r.index != n for n, r in enumerate(self.table)):
            raise LungError(f"{shown}: candidates.csv has {len(self.table)} rows for {self.patches.shape[0]} "
                            f"patches; rebuild the patch dataset")

    def __len__(self) -> int:
        return len(self.table)

    @property
    def labels(self) -> np.ndarray:
        return np.asarray([r.label for r in self.table], dtype=np.int64)

    @property
    def spec(self) -> PatchSpec:
        return PatchSpec.from_dict(self.summary["patch_spec"])

    def split(self, which: str) -> np.ndarray:
        """Indices (int64) of the patches of patients in split `which` ("train", "val" or "all")."""
        if which == "all":
            return np.arange(len(self.table), dtype=np.int64)
        if which not in _SPLITS:
            raise ConfigError(f"split must be 'train', 'val' or 'all', not {which!r}")
        return np.asarray([r.index for r in self.table if r.patient_split == which], dtype=np.int64)
