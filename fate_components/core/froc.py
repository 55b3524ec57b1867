"""FROC and CPM the LUNA16 way, AUC, and bootstrap confidence intervals over scans.

Rules (LUNA16 evaluation):
- a candidate hits a nodule when its centre lies within the nodule's radius (diameter_mm / 2)
  in world millimetres; a diameter of -1 (as in annotations_excluded.csv) counts as 10 mm;
- per nodule only the highest-scoring hit counts; other hits on the same nodule are ignored
  (neither true nor false positives); a candidate may hit several nodules;
- candidates that hit no nodule but lie within an excluded finding are ignored;
- every other candidate is a false positive; false positives per scan are counted over all
  scans of the evaluated set, including scans without nodules;
- CPM is the mean sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false positives per scan. The
  sensitivity at a rate f is the highest sensitivity the detector reaches with at most f false
  positives per scan (thresholds taken between distinct scores, so tied scores move together).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from .errors import ConfigError

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
EXCLUDED_UNKNOWN_DIAMETER_MM = 10.0

__all__ = ["Scored", "Finding", "FrocResult", "BootstrapFroc", "evaluate_froc", "bootstrap_cpm",
           "bootstrap_froc", "FP_RATES"]


@dataclass(frozen=True)
class Scored:
    seriesuid: str
    world_xyz_mm: tuple[float, float, float]
    probability: float


@dataclass(frozen=True)
class Finding:
    seriesuid: str
    world_xyz_mm: tuple[float, float, float]
    diameter_mm: float

    @property
    def radius_mm(self) -> float:
        return (EXCLUDED_UNKNOWN_DIAMETER_MM if self.diameter_mm < 0 else self.diameter_mm) / 2.0


@dataclass
class FrocResult:
    fps_per_scan: np.ndarray          # FROC curve, x
    sensitivity: np.ndarray           # FROC curve, y
    sensitivity_at: dict[float, float]
    cpm: float
    auc: float                        # candidate-level ROC AUC, ignored candidates left out
    n_scans: int
    n_nodules: int
    n_false_positives: int
    n_ignored: int
    per_nodule_best: list[float] = field(default_factory=list)   # -inf where a nodule was missed


def _by_scan(items: Iterable) -> dict[str, list]:
    out: dict[str, list] = {}
    for item in items:
        out.setdefault(item.seriesuid, []).append(item)
    return out


def _hits(point: np.ndarray, findings: list[Finding]) -> list[int]:
    return [i for i, f in enumerate(findings)
            if np.linalg.norm(point - np.asarray(f.world_xyz_mm)) <= f.radius_mm]


def _match(candidates: Sequence[Scored], nodules: Sequence[Finding], excluded: Sequence[Finding],
           scans: Sequence[str]) -> tuple[dict, list[float], list[float], int]:
    """Per scan: best score per nodule, false-positive scores, count of ignored candidates."""
    cands, nods, excl = _by_scan(candidates), _by_scan(nodules), _by_scan(excluded)
    best: dict[tuple[str, int], float] = {}
    fps: list[float] = []
    tp_scores: list[float] = []
    ignored = 0
    for scan in scans:
        scan_nodules, scan_excluded = nods.get(scan, []), excl.get(scan, [])
        for i in range(len(scan_nodules)):
            best[(scan, i)] = -np.inf
        for c in cands.get(scan, []):
            point = np.asarray(c.world_xyz_mm, dtype=np.float64)
            hits = _hits(point, scan_nodules)
            if hits:
                for i in hits:
                    best[(scan, i)] = max(best[(scan, i)], c.probability)
            elif _hits(point, scan_excluded):
                ignored += 1
            else:
                fps.append(c.probability)
    tp_scores = [v for v in best.values() if np.isfinite(v)]
    return best, fps, tp_scores, ignored


def _froc_from(best: dict, fps: list[float], n_scans: int) -> tuple[np.ndarray, np.ndarray]:
    nodule_scores = np.array(list(best.values()), dtype=np.float64)
    fp_scores = np.sort(np.asarray(fps, dtype=np.float64))[::-1]
    thresholds = np.unique(np.concatenate([nodule_scores[np.isfinite(nodule_scores)], fp_scores]))[::-1]
    n_nodules = len(nodule_scores)
    fp_counts = np.searchsorted(-fp_scores, -thresholds, side="right")      # scores >= threshold
    found = np.sort(nodule_scores[np.isfinite(nodule_scores)])[::-1]
    tp_counts = np.searchsorted(-found, -thresholds, side="right")
    fps_per_scan = np.concatenate([[0.0], fp_counts / max(n_scans, 1)])
    sensitivity = np.concatenate([[0.0], tp_counts / n_nodules if n_nodules else np.zeros(len(thresholds))])
    return fps_per_scan, sensitivity


def _sensitivity_at(fps_per_scan: np.ndarray, sensitivity: np.ndarray, rate: float) -> float:
    ok = fps_per_scan <= rate + 1e-12
    return float(sensitivity[ok].max()) if ok.any() else 0.0


def evaluate_froc(candidates: Sequence[Scored], nodules: Sequence[Finding], *, excluded: Sequence[Finding] = (),
                  scans: Sequence[str] | None = None) -> FrocResult:
    """FROC/CPM over `scans` (default: every scan that has a candidate or a nodule)."""
    from .training import binary_auc

    if scans is None:
        scans = sorted({c.seriesuid for c in candidates} | {n.seriesuid for n in nodules})
    scans = list(scans)
    if not scans:
        raise ConfigError("FROC needs at least one scan")
    best, fps, tp_scores, ignored = _match(candidates, nodules, excluded, scans)
    fps_per_scan, sensitivity = _froc_from(best, fps, len(scans))
    at = {rate: _sensitivity_at(fps_per_scan, sensitivity, rate) for rate in FP_RATES}
    labels = np.concatenate([np.ones(len(tp_scores)), np.zeros(len(fps))])
    scores = np.concatenate([tp_scores, fps]) if len(labels) else np.zeros(0)
    return FrocResult(fps_per_scan=fps_per_scan, sensitivity=sensitivity, sensitivity_at=at,
                      cpm=float(np.mean(list(at.values()))), auc=binary_auc(labels, scores), n_scans=len(scans),
                      n_nodules=len(best), n_false_positives=len(fps), n_ignored=ignored,
                      per_nodule_best=[float(v) for v in best.values()])


def bootstrap_cpm(candidates: Sequence[Scored], nodules: Sequence[Finding], *, excluded: Sequence[Finding] = (),
                  scans: Sequence[str] | None = None, n_boot: int = 1000, seed: int = 0,
                  level: float = 0.95) -> tuple[float, float, float]:
    """CPM with a percentile bootstrap interval, resampling scans with replacement (deterministic for a seed)."""
    result = bootstrap_froc(candidates, nodules, excluded=excluded, scans=scans, n_boot=n_boot, seed=seed,
                            level=level)
    return result.cpm, result.cpm_low, result.cpm_high


@dataclass
class BootstrapFroc:
    cpm: float
    cpm_low: float
    cpm_high: float
    fps_per_scan: np.ndarray          # the band's grid: log-spaced from 1/8 to 8 false positives per scan
    sensitivity: np.ndarray           # on the grid, from all scans
    sensitivity_low: np.ndarray
    sensitivity_high: np.ndarray


BAND_GRID = np.geomspace(FP_RATES[0], FP_RATES[-1], 25)   # includes the seven FROC points


def bootstrap_froc(candidates: Sequence[Scored], nodules: Sequence[Finding], *, excluded: Sequence[Finding] = (),
                   scans: Sequence[str] | None = None, n_boot: int = 1000, seed: int = 0,
                   level: float = 0.95) -> BootstrapFroc:
    """CPM and FROC curve with percentile bootstrap intervals, resampling scans with replacement.

    Deterministic for a seed. Resamples without any nodule are left out (sensitivity is undefined there).
    """
    if scans is None:
        scans = sorted({c.seriesuid for c in candidates} | {n.seriesuid for n in nodules})
    scans = list(scans)
    full = evaluate_froc(candidates, nodules, excluded=excluded, scans=scans)
    cands, nods, excl = _by_scan(candidates), _by_scan(nodules), _by_scan(excluded)
    rng = np.random.default_rng(seed)
    cpms, curves = [], []
    for _ in range(n_boot):
        picked = rng.integers(0, len(scans), len(scans))
        # A scan drawn twice enters twice: rename the copies so their nodules count separately.
        c2, n2, e2, s2 = [], [], [], []
        for k, idx in enumerate(picked):
            scan = scans[idx]
            alias = f"{scan}#{k}"
            s2.append(alias)
            c2 += [Scored(alias, c.world_xyz_mm, c.probability) for c in cands.get(scan, [])]
            n2 += [Finding(alias, n.world_xyz_mm, n.diameter_mm) for n in nods.get(scan, [])]
            e2 += [Finding(alias, e.world_xyz_mm, e.diameter_mm) for e in excl.get(scan, [])]
        if not n2:
            continue
        sample = evaluate_froc(c2, n2, excluded=e2, scans=s2)
        cpms.append(sample.cpm)
        curves.append([_sensitivity_at(sample.fps_per_scan, sample.sensitivity, r) for r in BAND_GRID])
    alpha = (1 - level) / 2
    nan_band = np.full(len(BAND_GRID), np.nan)
    low, high = np.quantile(cpms, [alpha, 1 - alpha]) if cpms else (float("nan"), float("nan"))
    band_low, band_high = (np.quantile(np.asarray(curves), [alpha, 1 - alpha], axis=0) if curves
                           else (nan_band, nan_band))
    return BootstrapFroc(cpm=full.cpm, cpm_low=float(low), cpm_high=float(high), fps_per_scan=BAND_GRID.copy(),
                         sensitivity=np.array([_sensitivity_at(full.fps_per_scan, full.sensitivity, r)
                                               for r in BAND_GRID]),
                         sensitivity_low=band_low, sensitivity_high=band_high)
