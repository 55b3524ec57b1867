"""FROC, CPM and AUC exactly as LUNA16's official ``noduleCADEvaluationLUNA16.py`` computes them, with
bootstrap confidence intervals over scans.

Each rule below is the official script's (``evaluateCAD``, ``computeFROC``, ``computeFROC_bootstrap``,
``compute_mean_ci``) unless it says otherwise.

Scans
- The evaluated scans are a fixed list (LUNA16's ``seriesuids.csv``; `scans=`). A listed scan without marks still
  counts in the false-positives-per-scan divisor, and its nodules count as missed. Marks on scans not in the list
  are ignored and counted (``n_marks_unlisted``); findings of unlisted scans are ignored. Without a list, every
  scan with a mark or a nodule is evaluated. A scan listed twice is an error (the official script would count it
  twice).

Findings
- A finding's radius is diameter_mm / 2; a diameter below 0 counts as 10 mm (LUNA16 writes -1 in
  annotations_excluded.csv; the file readers accept -1 there only).

Marks kept per scan
- At most ``max_marks_per_scan`` (default 100; 0 keeps all). When a scan has more, the threshold is the score of
  its (max + 1)-th most probable mark and only marks scoring strictly above it are kept (``probThreshold =
  probs[maxNumberOfCADMarks]``, ``> probThreshold``): marks tied with the (max + 1)-th are all dropped, so a scan
  may keep fewer than max. Dropped marks count in ``n_marks_dropped`` and nowhere else.

Matching (world millimetres, per scan, on the kept marks)
- A mark hits a finding when its squared distance to the centre is strictly less than the squared radius
  (``dist < radiusSquared``): a mark at exactly the radius does not hit.
- Each included nodule scores its highest-scoring hit. Its other hits are ignored: neither true nor false
  positives (the official "double detections", counted per nodule in ``n_double_hits``).
- A mark may hit several included nodules (overlapping annotations). As in the official script it is then a hit
  for each of them: every nodule it hits takes its score into its own maximum, so one mark can detect two nodules.
- A mark that hits an included nodule is a hit even when it also lies inside an excluded finding.
- A mark that hits no included nodule but lies inside an excluded finding is ignored (``n_ignored``;
  ``bOtherNodulesAsIrrelevant``).
- Every other kept mark is a false positive.
- A nodule without a hit is missed: it counts in the sensitivity denominator only.

FROC curve and CPM
- ``sklearn.metrics.roc_curve`` (default ``drop_intermediate``) over the detected nodules' best scores labelled 1
  and the false positives' scores labelled 0. fps_per_scan = FPR * n_false_positives / n_scans; sensitivity =
  TPR * n_detected / n_nodules.
- The sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false positives per scan is ``numpy.interp`` on that curve:
  linear between vertices (so tied scores of a nodule and false positives give a slanted segment), the last
  vertex's sensitivity beyond the curve's end. CPM is the mean of the seven.
- AUC: ``sklearn.metrics.roc_auc_score`` over the same two lists (ignored and dropped marks left out; NaN when
  either list is empty). Not part of LUNA16; reported alongside.

Degenerate cases (the official script prints a warning or divides 0 by 0 here)
- No false positive but a detected nodule: fps_per_scan is 0 at every vertex (as official), so the sensitivity is
  n_detected / n_nodules at every rate.
- No detected nodule (false positives, or no marks at all): the curve is (0, 0) to (n_false_positives / n_scans,
  0) and every sensitivity is 0 (official: NaN from TPR = 0/0).
- No included nodule among the evaluated scans: sensitivity is undefined, so the curve's sensitivities, the seven
  sensitivities and the CPM are NaN (official: NaN from 0/0).
- No evaluated scan: an error.

Bootstrap (``bootstrap_froc``, ``bootstrap_cpm``)
- Matching is done once per scan (per-scan arrays: best score per nodule with -inf where missed, false-positive
  scores); resamples reuse those arrays and never match again.
- Resample b (b = 0, 1, ...) draws ``rng.integers(0, n_scans, n_scans)`` from ``numpy.random.default_rng(seed)``:
  scans with replacement, a scan drawn k times contributing its nodules and false positives k times, the divisor
  staying n_scans. Default 1000 resamples.
- Each resample's FROC curve is built by the rules above on the resampled lists and interpolated (``numpy.interp``)
  at the seven rates (its CPM) and on ``BAND_GRID``. For speed the curve comes from one sort of all scores,
  weighted by how often each scan was drawn, not from 1000 calls of ``roc_curve``; ``drop_intermediate`` removes
  only collinear vertices, so the interpolated values are those of ``roc_curve`` on the resampled lists (tested).
- Resamples without any nodule are skipped (sensitivity undefined); ``n_boot_used`` says how many counted.
- Percentile interval as ``compute_mean_ci``: with a = (1 - level) / 2 and n sorted values, the values at
  floor(a * n) and floor((1 - a) * n) (clipped to n - 1), for the CPM and for each point of the band.
- The band's centre line (``sensitivity``) is the all-scans curve on the grid (the official script also plots the
  bootstrap mean; it is not kept here).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from fate_components.core.errors import ConfigError

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
EXCLUDED_UNKNOWN_DIAMETER_MM = 10.0
MAX_MARKS_PER_SCAN = 100
BAND_GRID = 2.0 ** np.linspace(-3.0, 3.0, 25)   # log-spaced, 1/8 to 8; holds the seven rates exactly

__all__ = ["Scored", "Finding", "Matched", "FrocResult", "BootstrapFroc", "match_scans", "froc_from_match",
           "bootstrap_from_match", "froc_curve", "evaluate_froc", "bootstrap_cpm", "bootstrap_froc", "FP_RATES",
           "BAND_GRID", "MAX_MARKS_PER_SCAN"]


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
class Matched:
    """The outcome of matching, per evaluated scan: all that the FROC and the bootstrap need."""

    scans: list[str]
    nodule_best: list[np.ndarray]     # per scan: best hit score per included nodule, -inf where missed
    fp_scores: list[np.ndarray]       # per scan: scores of the false positives
    max_marks_per_scan: int
    n_marks: int = 0                  # marks given, on any scan
    n_marks_unlisted: int = 0         # on scans not evaluated: ignored
    n_marks_dropped: int = 0          # beyond max_marks_per_scan
    n_ignored: int = 0                # inside an excluded finding only
    n_double_hits: int = 0            # per nodule, hits other than its best

    @property
    def n_scans(self) -> int:
        return len(self.scans)

    @property
    def n_nodules(self) -> int:
        return int(sum(len(b) for b in self.nodule_best))


@dataclass
class FrocResult:
    fps_per_scan: np.ndarray          # FROC curve, x (vertices of roc_curve)
    sensitivity: np.ndarray           # FROC curve, y
    sensitivity_at: dict[float, float]
    cpm: float
    auc: float                        # ROC AUC of detected nodules' best scores vs false positives
    n_scans: int
    n_nodules: int
    n_false_positives: int
    n_ignored: int
    per_nodule_best: list[float] = field(default_factory=list)   # -inf where a nodule was missed
    n_detected: int = 0
    n_marks: int = 0
    n_marks_unlisted: int = 0
    n_marks_dropped: int = 0
    n_double_hits: int = 0
    max_marks_per_scan: int = MAX_MARKS_PER_SCAN
    thresholds: np.ndarray = field(default_factory=lambda: np.zeros(0))   # score at each vertex (inf first)


@dataclass
class BootstrapFroc:
    cpm: float
    cpm_low: float
    cpm_high: float
    fps_per_scan: np.ndarray          # the band's grid: log-spaced from 1/8 to 8 false positives per scan
    sensitivity: np.ndarray           # on the grid, from all scans
    sensitivity_low: np.ndarray
    sensitivity_high: np.ndarray
    cpm_samples: np.ndarray = field(default_factory=lambda: np.zeros(0))   # CPM of each resample used, in order
    n_boot_used: int = 0


# ----------------------------------------------------------------------------------------------------- matching

def _grouped(items: Sequence, index: dict[str, int], values: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                   np.ndarray, int]:
    """Items of listed scans sorted by scan: (xyz (k, 3), values (k,), bounds (n_scans + 1,), n unlisted)."""
    where = np.fromiter((index.get(it.seriesuid, -1) for it in items), dtype=np.int64, count=len(items))
    xyz = np.array([it.world_xyz_mm for it in items], dtype=np.float64).reshape(-1, 3)
    listed = where >= 0
    where, xyz, values = where[listed], xyz[listed], values[listed]
    order = np.argsort(where, kind="stable")
    bounds = np.searchsorted(where[order], np.arange(len(index) + 1))
    return xyz[order], values[order], bounds, int(len(items) - listed.sum())


def _squared_distance(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(m, n) squared distances, summed x + y + z in that order as the official script does."""
    d = points[:, None, :] - centres[None, :, :]
    d *= d
    return d[..., 0] + d[..., 1] + d[..., 2]


def _radius_squared(findings: Sequence[Finding]) -> np.ndarray:
    radius = np.fromiter((f.radius_mm for f in findings), dtype=np.float64, count=len(findings))
    return radius * radius


def match_scans(candidates: Sequence[Scored], nodules: Sequence[Finding], *, excluded: Sequence[Finding] = (),
                scans: Sequence[str] | None = None, max_marks_per_scan: int = MAX_MARKS_PER_SCAN) -> Matched:
    """Match marks to findings once, per scan (numpy distance matrices); see the module docstring for the rules."""
    candidates, nodules, excluded = list(candidates), list(nodules), list(excluded)
    if isinstance(max_marks_per_scan, bool) or not isinstance(max_marks_per_scan, (int, np.integer)) \
            or max_marks_per_scan < 0:
        raise ConfigError(f"max_marks_per_scan is {max_marks_per_scan!r}, expected a whole number >= 0 "
                          f"(LUNA16 uses 100; 0 keeps every mark)")
    if scans is None:
        scans = sorted({c.seriesuid for c in candidates} | {n.seriesuid for n in nodules})
    scans = list(scans)
    if not scans:
        raise ConfigError("FROC needs at least one scan: the list of evaluated scans is empty and there is no mark "
                          "or nodule to take one from")
    index = {uid: i for i, uid in enumerate(scans)}
    if len(index) != len(scans):
        twice = sorted({uid for uid in scans if scans.count(uid) > 1})
        raise ConfigError(f"scan(s) listed more than once: {', '.join(twice[:3])}; list each scan once")
    scores = np.fromiter((c.probability for c in candidates), dtype=np.float64, count=len(candidates))
    bad = ~np.isfinite(scores)
    if bad.any():
        first = candidates[int(np.argmax(bad))]
        raise ConfigError(f"{int(bad.sum())} mark(s) have a non-finite probability, e.g. {first.probability!r} on "
                          f"scan {first.seriesuid}; expected a finite number")
    mark_xyz, mark_score, mark_bounds, n_unlisted = _grouped(candidates, index, scores)
    nod_xyz, nod_r2, nod_bounds, _ = _grouped(nodules, index, _radius_squared(nodules))
    exc_xyz, exc_r2, exc_bounds, _ = _grouped(excluded, index, _radius_squared(excluded))

    out = Matched(scans=scans, nodule_best=[], fp_scores=[], max_marks_per_scan=int(max_marks_per_scan),
                  n_marks=len(candidates), n_marks_unlisted=n_unlisted)
    for s in range(len(scans)):
        points = mark_xyz[mark_bounds[s]:mark_bounds[s + 1]]
        score = mark_score[mark_bounds[s]:mark_bounds[s + 1]]
        if max_marks_per_scan and len(score) > max_marks_per_scan:
            cut = len(score) - max_marks_per_scan - 1            # the (max + 1)-th most probable, ascending index
            keep = score > np.partition(score, cut)[cut]
            out.n_marks_dropped += int(len(score) - keep.sum())
            points, score = points[keep], score[keep]
        centres, r2 = nod_xyz[nod_bounds[s]:nod_bounds[s + 1]], nod_r2[nod_bounds[s]:nod_bounds[s + 1]]
        if len(centres) and len(score):
            hit = _squared_distance(points, centres) < r2
            best = np.where(hit, score[:, None], -np.inf).max(axis=0)
            out.n_double_hits += int(np.maximum(hit.sum(axis=0) - 1, 0).sum())
            free = ~hit.any(axis=1)
            points, score = points[free], score[free]
        else:
            best = np.full(len(centres), -np.inf)
        centres, r2 = exc_xyz[exc_bounds[s]:exc_bounds[s + 1]], exc_r2[exc_bounds[s]:exc_bounds[s + 1]]
        if len(centres) and len(score):
            inside = (_squared_distance(points, centres) < r2).any(axis=1)
            out.n_ignored += int(inside.sum())
            score = score[~inside]
        out.nodule_best.append(best)
        out.fp_scores.append(score.copy())
    return out


# ------------------------------------------------------------------------------------------------------- FROC

def _curve_from_counts(tp_cum: np.ndarray, fp_cum: np.ndarray, n_nodules: int,
                       n_scans: int) -> tuple[np.ndarray, np.ndarray]:
    """FROC vertices from cumulative (detected, false positive) counts at decreasing thresholds (no (0, 0) yet)."""
    n_detected = tp_cum[-1] if len(tp_cum) else 0
    n_fp = fp_cum[-1] if len(fp_cum) else 0
    if n_nodules == 0:
        return np.array([0.0, n_fp / n_scans]), np.full(2, np.nan)
    if n_detected == 0:
        return np.array([0.0, n_fp / n_scans]), np.zeros(2)
    fpr = np.concatenate([[0.0], fp_cum]) / n_fp if n_fp else None
    tpr = np.concatenate([[0.0], tp_cum]) / n_detected
    fps = fpr * n_fp / n_scans if n_fp else np.zeros(len(tpr))
    return fps, tpr * n_detected / n_nodules


def froc_curve(tp_scores: np.ndarray, fp_scores: np.ndarray, n_nodules: int,
               n_scans: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fps_per_scan, sensitivity, thresholds): sklearn's roc_curve scaled as the official script does."""
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import roc_curve

    tp_scores, fp_scores = np.asarray(tp_scores, dtype=np.float64), np.asarray(fp_scores, dtype=np.float64)
    n_detected, n_fp = len(tp_scores), len(fp_scores)
    if n_nodules == 0 or n_detected == 0:
        fps, sens = _curve_from_counts(np.zeros(0), np.array([n_fp]), n_nodules, n_scans)
        return fps, sens, np.array([np.inf, fp_scores.min() if n_fp else np.inf])
    labels = np.concatenate([np.ones(n_detected), np.zeros(n_fp)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)      # no false positive: FPR is NaN, unused
        fpr, tpr, thresholds = roc_curve(labels, np.concatenate([tp_scores, fp_scores]))
    fps = fpr * n_fp / n_scans if n_fp else np.zeros(len(fpr))
    return fps, tpr * n_detected / n_nodules, thresholds


def _auc(tp_scores: np.ndarray, fp_scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(tp_scores) == 0 or len(fp_scores) == 0:
        return float("nan")
    labels = np.concatenate([np.ones(len(tp_scores)), np.zeros(len(fp_scores))])
    return float(roc_auc_score(labels, np.concatenate([tp_scores, fp_scores])))


def _cpm(sensitivities: Iterable[float]) -> float:
    values = list(sensitivities)
    return float("nan") if any(np.isnan(values)) else float(np.mean(values))


def froc_from_match(matched: Matched) -> FrocResult:
    """FROC curve, the seven sensitivities, CPM and AUC of matched scans."""
    best = np.concatenate(matched.nodule_best) if matched.nodule_best else np.zeros(0)
    tp = best[np.isfinite(best)]
    fp = np.concatenate(matched.fp_scores) if matched.fp_scores else np.zeros(0)
    fps, sens, thresholds = froc_curve(tp, fp, len(best), matched.n_scans)
    at = {rate: float(np.interp(rate, fps, sens)) for rate in FP_RATES}
    return FrocResult(fps_per_scan=fps, sensitivity=sens, sensitivity_at=at, cpm=_cpm(at.values()),
                      auc=_auc(tp, fp), n_scans=matched.n_scans, n_nodules=len(best), n_false_positives=len(fp),
                      n_ignored=matched.n_ignored, per_nodule_best=[float(v) for v in best], n_detected=len(tp),
                      n_marks=matched.n_marks, n_marks_unlisted=matched.n_marks_unlisted,
                      n_marks_dropped=matched.n_marks_dropped, n_double_hits=matched.n_double_hits,
                      max_marks_per_scan=matched.max_marks_per_scan, thresholds=thresholds)


def evaluate_froc(candidates: Sequence[Scored], nodules: Sequence[Finding], *, excluded: Sequence[Finding] = (),
                  scans: Sequence[str] | None = None, max_marks_per_scan: int = MAX_MARKS_PER_SCAN) -> FrocResult:
    """FROC/CPM over `scans` (default: every scan that has a mark or a nodule), LUNA16's rules."""
    return froc_from_match(match_scans(candidates, nodules, excluded=excluded, scans=scans,
                                       max_marks_per_scan=max_marks_per_scan))


# -------------------------------------------------------------------------------------------------- bootstrap

def _interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """compute_mean_ci's percentile interval along axis 0."""
    ordered = np.sort(samples, axis=0)
    n = len(ordered)
    pz = (1.0 - level) / 2.0
    low = ordered[min(int(np.floor(pz * n)), n - 1)]
    high = ordered[min(int(np.floor((1.0 - pz) * n)), n - 1)]
    return low, high


def _resampled_sensitivities(matched: Matched, grid: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Sensitivity at `grid` for each resample with a nodule, (n_used, len(grid)), from one sort of all scores."""
    n_scans = matched.n_scans
    tp = [b[np.isfinite(b)] for b in matched.nodule_best]
    scores = np.concatenate(tp + matched.fp_scores)
    labels = np.concatenate([np.ones(len(t), dtype=np.int64) for t in tp]
                            + [np.zeros(len(f), dtype=np.int64) for f in matched.fp_scores])
    scan_of = np.concatenate([np.full(len(t), s) for s, t in enumerate(tp)]
                             + [np.full(len(f), s) for s, f in enumerate(matched.fp_scores)]).astype(np.int64)
    order = np.argsort(scores, kind="mergesort")[::-1]                       # as sklearn's _binary_clf_curve
    scores, labels, scan_of = scores[order], labels[order], scan_of[order]
    last_of_tie = np.concatenate([np.flatnonzero(np.diff(scores)), [len(scores) - 1]]) if len(scores) else \
        np.zeros(0, dtype=np.int64)
    nodules_per_scan = np.array([len(b) for b in matched.nodule_best], dtype=np.int64)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_boot):
        drawn = np.bincount(rng.integers(0, n_scans, n_scans), minlength=n_scans)
        n_nodules = int(drawn @ nodules_per_scan)
        if n_nodules == 0:
            continue
        weight = drawn[scan_of]
        all_cum = np.cumsum(weight)[last_of_tie]
        tp_cum = np.cumsum(weight * labels)[last_of_tie]
        fps, sens = _curve_from_counts(tp_cum, all_cum - tp_cum, n_nodules, n_scans)
        rows.append(np.interp(grid, fps, sens))
    return np.array(rows).reshape(-1, len(grid))


def bootstrap_from_match(matched: Matched, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                         full: FrocResult | None = None) -> BootstrapFroc:
    """CPM and FROC band with percentile bootstrap intervals over the matched scans (no matching again)."""
    if n_boot < 0:
        raise ConfigError(f"n_boot is {n_boot}, expected 0 or more bootstrap resamples")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"level is {level}, expected a confidence level between 0 and 1 (e.g. 0.95)")
    full = full or froc_from_match(matched)
    rates = np.asarray(FP_RATES)
    samples = _resampled_sensitivities(matched, np.concatenate([rates, BAND_GRID]), n_boot, seed)
    cpms = samples[:, :len(rates)].mean(axis=1)
    if len(samples):
        cpm_low, cpm_high = (float(v) for v in _interval(cpms, level))
        band_low, band_high = _interval(samples[:, len(rates):], level)
    else:
        cpm_low = cpm_high = float("nan")
        band_low = band_high = np.full(len(BAND_GRID), np.nan)
    return BootstrapFroc(cpm=full.cpm, cpm_low=cpm_low, cpm_high=cpm_high, fps_per_scan=BAND_GRID.copy(),
                         sensitivity=np.interp(BAND_GRID, full.fps_per_scan, full.sensitivity),
                         sensitivity_low=np.asarray(band_low, dtype=np.float64),
                         sensitivity_high=np.asarray(band_high, dtype=np.float64), cpm_samples=cpms,
                         n_boot_used=len(samples))


def bootstrap_froc(candidates: Sequence[Scored], nodules: Sequence[Finding], *, excluded: Sequence[Finding] = (),
                   scans: Sequence[str] | None = None, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                   max_marks_per_scan: int = MAX_MARKS_PER_SCAN) -> BootstrapFroc:
    """CPM and FROC curve with percentile bootstrap intervals, resampling scans with replacement.

    Deterministic for a seed; see the module docstring for the rules.
    """
    return bootstrap_from_match(match_scans(candidates, nodules, excluded=excluded, scans=scans,
                                            max_marks_per_scan=max_marks_per_scan),
                                n_boot=n_boot, seed=seed, level=level)


def bootstrap_cpm(candidates: Sequence[Scored], nodules: Sequence[Finding], *, excluded: Sequence[Finding] = (),
                  scans: Sequence[str] | None = None, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                  max_marks_per_scan: int = MAX_MARKS_PER_SCAN) -> tuple[float, float, float]:
    """(CPM, CI low, CI high): a percentile bootstrap over scans with replacement (deterministic for a seed)."""
    result = bootstrap_froc(candidates, nodules, excluded=excluded, scans=scans, n_boot=n_boot, seed=seed,
                            level=level, max_marks_per_scan=max_marks_per_scan)
    return result.cpm, result.cpm_low, result.cpm_high
