"""FROC/CPM against hand-worked examples and a per-mark transcription of LUNA16's official script."""
import json
import math
import warnings

import numpy as np
import pytest

from fate_components.cli import main as cli
from fate_components.core.errors import ConfigError, CsvFormatError
from fate_components.core.evaluation.froc import (
    BAND_GRID,
    FP_RATES,
    Finding,
    Scored,
    bootstrap_cpm,
    bootstrap_froc,
    evaluate_froc,
    froc_curve,
)
from fate_components.core.evaluation.submission import evaluate_submission, format_report, read_seriesuids

SUBMISSION_HEADER = "seriesuid,coordX,coordY,coordZ,probability"
ANNOTATION_HEADER = "seriesuid,coordX,coordY,coordZ,diameter_mm"


def test_double_hit_on_one_nodule_counts_once_and_is_not_a_false_positive():
    # Prepare: one nodule (r = 5 mm) hit twice; one false positive elsewhere.
    nodules = [Finding("s1", (0, 0, 0), 10.0)]
    cands = [Scored("s1", (1, 0, 0), 0.9), Scored("s1", (0, 2, 0), 0.8), Scored("s1", (50, 0, 0), 0.7)]
    # Execute
    r = evaluate_froc(cands, nodules)
    # Assert
    assert r.n_nodules == 1 and r.n_false_positives == 1 and r.per_nodule_best == [0.9] and r.n_double_hits == 1
    # Found at 0 FP/scan already, so sensitivity is 1 at every rate.
    assert r.sensitivity_at == {k: 1.0 for k in r.sensitivity_at}
    assert r.cpm == 1.0


def test_hit_on_excluded_finding_is_ignored_and_unknown_diameter_is_10_mm():
    nodules = [Finding("s1", (0, 0, 0), 6.0)]
    excluded = [Finding("s1", (30, 0, 0), -1)]          # radius 5 mm
    cands = [Scored("s1", (34, 0, 0), 0.95),            # inside the excluded finding: ignored
             Scored("s1", (36, 0, 0), 0.94),            # 6 mm away: a false positive
             Scored("s1", (0, 0, 2), 0.5)]              # the nodule
    r = evaluate_froc(cands, nodules, excluded=excluded)
    assert r.n_ignored == 1 and r.n_false_positives == 1
    # Curve (0, 0), (1, 0), (1, 1): the nodule only appears after one false positive in one scan.
    np.testing.assert_allclose(r.fps_per_scan, [0, 1, 1])
    np.testing.assert_allclose(r.sensitivity, [0, 0, 1])
    assert r.sensitivity_at[0.5] == 0.0 and r.sensitivity_at[1.0] == 1.0
    assert r.cpm == pytest.approx(4 / 7)


def test_mark_hitting_a_nodule_and_an_excluded_finding_is_a_hit():
    nodules = [Finding("s1", (0, 0, 0), 10.0)]
    excluded = [Finding("s1", (2, 0, 0), 10.0)]
    r = evaluate_froc([Scored("s1", (1, 0, 0), 0.4)], nodules, excluded=excluded)
    assert r.per_nodule_best == [0.4] and r.n_ignored == 0 and r.n_false_positives == 0


def test_sensitivity_is_interpolated_between_two_froc_vertices():
    # Prepare: 3 listed scans, one nodule each (r = 5 mm); s3 has no mark.
    nodules = [Finding("s1", (0, 0, 0), 10.0), Finding("s2", (0, 0, 0), 10.0), Finding("s3", (0, 0, 0), 10.0)]
    cands = [Scored("s1", (1, 0, 0), 0.9),      # hit
             Scored("s1", (50, 0, 0), 0.8),     # FP
             Scored("s2", (0, 1, 0), 0.6),      # hit, tied with the next FP
             Scored("s2", (60, 0, 0), 0.6),     # FP
             Scored("s2", (70, 0, 0), 0.2)]     # FP
    # Execute
    r = evaluate_froc(cands, nodules, scans=["s1", "s2", "s3"])
    # Assert: roc_curve over (0.9:1, 0.6:1 | 0.8:0, 0.6:0, 0.2:0) has vertices FPR (0, 0, 1/3, 2/3, 1),
    # TPR (0, 1/2, 1/2, 1, 1); x = FPR * 3 FPs / 3 scans, y = TPR * 2 detected / 3 nodules.
    np.testing.assert_allclose(r.fps_per_scan, [0, 0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(r.sensitivity, [0, 1 / 3, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(r.thresholds, [np.inf, 0.9, 0.8, 0.6, 0.2])
    # At 1/2 FP/scan: halfway along the slanted segment (1/3, 1/3)-(2/3, 2/3), so 1/2. "Best sensitivity with
    # at most 1/2 FP/scan" would say 1/3.
    assert r.sensitivity_at[0.5] == pytest.approx(0.5, abs=1e-15)
    assert [r.sensitivity_at[k] for k in (0.125, 0.25, 1.0, 2.0, 4.0, 8.0)] == pytest.approx(
        [1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3], abs=1e-15)
    assert r.cpm == pytest.approx((1 / 3 + 1 / 3 + 1 / 2 + 4 * 2 / 3) / 7, abs=1e-15)   # 23/42
    assert r.cpm == pytest.approx(23 / 42)


def test_tied_nodule_and_false_positives_give_a_slanted_segment():
    nodules = [Finding("s1", (0, 0, 0), 10.0)]
    cands = [Scored("s1", (0, 0, 0), 0.5), Scored("s1", (40, 0, 0), 0.5), Scored("s1", (80, 0, 0), 0.5)]
    r = evaluate_froc(cands, nodules)
    # One threshold admits the nodule and both false positives at once: (0, 0) to (2, 1), linear between.
    np.testing.assert_allclose(r.fps_per_scan, [0, 2])
    np.testing.assert_allclose(r.sensitivity, [0, 1])
    assert [r.sensitivity_at[k] for k in FP_RATES] == [0.0625, 0.125, 0.25, 0.5, 1.0, 1.0, 1.0]
    assert r.cpm == pytest.approx(0.5625)
    assert r.auc == 0.5


def test_missed_nodule_and_scan_without_nodules_count_in_the_denominators():
    nodules = [Finding("s1", (0, 0, 0), 10.0), Finding("s1", (100, 0, 0), 10.0)]   # the second has no mark
    cands = [Scored("s1", (0, 0, 0), 0.9), Scored("s2", (5, 5, 5), 0.8), Scored("s2", (9, 9, 9), 0.3)]
    r = evaluate_froc(cands, nodules, scans=["s1", "s2", "s3"])
    assert r.n_nodules == 2 and r.n_detected == 1 and r.n_scans == 3 and r.n_false_positives == 2
    assert np.isneginf(r.per_nodule_best[1])
    # drop_intermediate removes the collinear vertex at 1 FP: (0, 0), (0, 1/2), (2/3, 1/2).
    np.testing.assert_allclose(r.fps_per_scan, [0, 0, 2 / 3])
    np.testing.assert_allclose(r.sensitivity, [0, 0.5, 0.5])
    assert r.sensitivity_at[0.125] == 0.5 and r.sensitivity_at[8.0] == 0.5
    assert r.cpm == 0.5


def test_listed_scan_without_marks_is_in_the_divisor_and_its_nodules_are_missed():
    nodules = [Finding("s1", (0, 0, 0), 10.0), Finding("s2", (0, 0, 0), 10.0)]
    cands = [Scored("s1", (0, 0, 0), 0.9)] + [Scored("s1", (20 + 10 * k, 0, 0), 0.5) for k in range(4)]
    alone = evaluate_froc(cands, nodules, scans=["s1"])
    both = evaluate_froc(cands, nodules, scans=["s1", "s2"])
    assert (alone.n_scans, alone.n_nodules, alone.n_detected) == (1, 1, 1)
    assert (both.n_scans, both.n_nodules, both.n_detected) == (2, 2, 1)
    assert both.per_nodule_best == [0.9, -math.inf]
    # 4 false positives: 4 FP/scan over one scan, 2 FP/scan over two; sensitivity halves.
    np.testing.assert_allclose(alone.fps_per_scan[-1], 4.0)
    np.testing.assert_allclose(both.fps_per_scan[-1], 2.0)
    assert alone.sensitivity_at[1.0] == 1.0 and both.sensitivity_at[1.0] == 0.5


def test_marks_of_an_unlisted_scan_are_ignored_and_counted():
    nodules = [Finding("s1", (0, 0, 0), 10.0), Finding("s9", (0, 0, 0), 10.0)]
    cands = [Scored("s1", (0, 0, 0), 0.3), Scored("s1", (40, 0, 0), 0.2),
             Scored("s9", (0, 0, 0), 0.99), Scored("s9", (40, 0, 0), 0.98), Scored("s9", (80, 0, 0), 0.97)]
    r = evaluate_froc(cands, nodules, scans=["s1"])
    assert r.n_marks == 5 and r.n_marks_unlisted == 3
    assert r.n_scans == 1 and r.n_nodules == 1 and r.n_false_positives == 1 and r.per_nodule_best == [0.3]


def test_the_101st_mark_of_a_scan_is_dropped():
    # Prepare: 100 false positives scored 0.5-0.99, then the only hit at 0.1: the 101st most probable mark.
    nodules = [Finding("s1", (0, 0, 0), 10.0)]
    cands = [Scored("s1", (20.0 + k, 0, 0), 0.5 + k * 0.0049) for k in range(100)] + [Scored("s1", (0, 0, 0), 0.1)]
    # Execute
    default = evaluate_froc(cands, nodules)
    all_marks = evaluate_froc(cands, nodules, max_marks_per_scan=0)
    # Assert
    assert default.max_marks_per_scan == 100 and default.n_marks_dropped == 1
    assert default.per_nodule_best == [-math.inf] and default.n_false_positives == 100 and default.cpm == 0.0
    assert all_marks.n_marks_dropped == 0 and all_marks.per_nodule_best == [0.1]
    assert evaluate_froc(cands[:100] + [Scored("s1", (0, 0, 0), 0.99)], nodules).per_nodule_best == [0.99]


def test_marks_tied_with_the_101st_are_all_dropped():
    # The official threshold is the 101st score and only marks strictly above it stay: 99 kept here.
    cands = [Scored("s1", (20.0 + k, 0, 0), 0.9 - k * 0.001) for k in range(99)]
    cands += [Scored("s1", (200, 0, 0), 0.05), Scored("s1", (210, 0, 0), 0.05)]
    r = evaluate_froc(cands, [Finding("s1", (0, 0, 0), 10.0)])
    assert r.n_marks_dropped == 2 and r.n_false_positives == 99


def test_a_mark_at_exactly_the_radius_is_not_a_hit():
    nodules = [Finding("s1", (0, 0, 0), 10.0)]
    excluded = [Finding("s1", (100, 0, 0), 8.0)]
    at_radius = [Scored("s1", (3, 4, 0), 0.9), Scored("s1", (100, 0, 4), 0.8)]     # 5 mm and 4 mm away
    r = evaluate_froc(at_radius, nodules, excluded=excluded)
    assert r.per_nodule_best == [-math.inf] and r.n_false_positives == 2 and r.n_ignored == 0
    inside = [Scored("s1", (3, 3.99, 0), 0.9), Scored("s1", (100, 0, 3.99), 0.8)]
    r = evaluate_froc(inside, nodules, excluded=excluded)
    assert r.per_nodule_best == [0.9] and r.n_false_positives == 0 and r.n_ignored == 1


def test_mark_between_two_nodules_hits_both():
    nodules = [Finding("s1", (0, 0, 0), 10.0), Finding("s1", (6, 0, 0), 10.0)]
    r = evaluate_froc([Scored("s1", (3, 0, 0), 0.7)], nodules)
    assert r.per_nodule_best == [0.7, 0.7] and r.n_detected == 2 and r.cpm == 1.0


@pytest.mark.parametrize("cands, nodules, expected_at, expected_cpm", [
    # No false positive: x is 0 at every vertex, so the sensitivity is detected / nodules everywhere.
    ([Scored("s1", (0, 0, 0), 0.4)], [Finding("s1", (0, 0, 0), 10.0), Finding("s1", (50, 0, 0), 10.0)], 0.5, 0.5),
    # No detected nodule: 0 everywhere.
    ([Scored("s1", (90, 0, 0), 0.4)], [Finding("s1", (0, 0, 0), 10.0)], 0.0, 0.0),
    # No mark at all.
    ([], [Finding("s1", (0, 0, 0), 10.0)], 0.0, 0.0),
])
def test_degenerate_cases_give_defined_values(cands, nodules, expected_at, expected_cpm):
    r = evaluate_froc(cands, nodules, scans=["s1"])
    assert all(v == expected_at for v in r.sensitivity_at.values()) and r.cpm == expected_cpm


def test_no_nodule_leaves_sensitivity_undefined():
    r = evaluate_froc([Scored("s1", (0, 0, 0), 0.4)], [], scans=["s1"])
    assert r.n_nodules == 0 and math.isnan(r.cpm) and all(math.isnan(v) for v in r.sensitivity_at.values())
    assert math.isnan(r.auc)
    boot = bootstrap_froc([Scored("s1", (0, 0, 0), 0.4)], [], scans=["s1"], n_boot=20)
    assert boot.n_boot_used == 0 and math.isnan(boot.cpm_low) and np.isnan(boot.sensitivity_low).all()


def test_bad_inputs_are_refused():
    with pytest.raises(ConfigError, match="at least one scan"):
        evaluate_froc([], [])
    with pytest.raises(ConfigError, match="listed more than once: s1"):
        evaluate_froc([], [], scans=["s1", "s1"])
    with pytest.raises(ConfigError, match="max_marks_per_scan is -1, expected a whole number >= 0"):
        evaluate_froc([], [], scans=["s1"], max_marks_per_scan=-1)
    with pytest.raises(ConfigError, match="non-finite probability"):
        evaluate_froc([Scored("s1", (0, 0, 0), float("nan"))], [])


# --------------------------------------------------------------- the official script, transcribed per mark

def _official(cands, nodules, excluded, scans, max_marks=100):
    """LUNA16's evaluateCAD + computeFROC as loops over marks (a reference for random cases)."""
    from sklearn.metrics import roc_curve

    gt, prob, excl = [], [], []
    ignored = 0
    for scan in scans:
        marks = [c for c in cands if c.seriesuid == scan]
        if max_marks > 0 and len(marks) > max_marks:
            threshold = sorted((m.probability for m in marks), reverse=True)[max_marks]
            marks = [m for m in marks if m.probability > threshold][:max_marks]
        left = dict(enumerate(marks))
        findings = ([(f, True) for f in nodules if f.seriesuid == scan]
                    + [(f, False) for f in excluded if f.seriesuid == scan])
        for finding, included in findings:
            diameter = finding.diameter_mm if finding.diameter_mm >= 0 else 10.0
            r2 = (diameter / 2.0) ** 2
            hits = []
            for key, m in enumerate(marks):
                d = sum((a - b) ** 2 for a, b in zip(finding.world_xyz_mm, m.world_xyz_mm))
                if d < r2:
                    if included:
                        hits.append(m)
                        left.pop(key, None)
                    elif key in left:
                        ignored += 1
                        del left[key]
            if included:
                gt.append(1.0)
                prob.append(max(m.probability for m in hits) if hits else -1e9)
                excl.append(not hits)
        for m in left.values():
            gt.append(0.0)
            prob.append(m.probability)
            excl.append(False)
    g = [x for x, e in zip(gt, excl) if not e]
    p = [x for x, e in zip(prob, excl) if not e]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fpr, tpr, _ = roc_curve(g, p)
    n_detected = sum(g)
    fps = np.zeros(len(fpr)) if sum(gt) == len(gt) else fpr * (len(p) - n_detected) / len(scans)
    sens = tpr * n_detected / sum(gt)
    at = [float(np.interp(r, fps, sens)) for r in FP_RATES]
    return at, float(np.mean(at)), ignored, len(g) - int(n_detected)


def _random_scene(seed, n_scans=12):
    """Clustered marks near nodules and excluded findings, overlapping nodules, tied rounded scores."""
    rng = np.random.default_rng(seed)
    cands, nodules, excluded = [], [], []
    for s in range(n_scans):
        uid = f"scan{s}"
        centres = rng.uniform(-60, 60, (rng.integers(0, 4), 3)).round(1)
        if len(centres) >= 2:
            centres[1] = centres[0] + [3.0, 0, 0]                       # overlapping nodules
        nodules += [Finding(uid, tuple(c), float(rng.choice([4.0, 6.0, 10.0]))) for c in centres]
        others = rng.uniform(-60, 60, (rng.integers(0, 5), 3)).round(1)
        excluded += [Finding(uid, tuple(c), float(rng.choice([-1.0, 3.0, 8.0]))) for c in others]
        near = [c + rng.normal(0, 2, 3) for c in list(centres) + list(others) for _ in range(rng.integers(0, 4))]
        cands += [Scored(uid, tuple(np.round(xyz, 1)), float(rng.integers(8, 40) / 40)) for xyz in near]
        far = rng.uniform(-80, 80, (rng.integers(0, 6), 3))
        cands += [Scored(uid, tuple(np.round(xyz, 1)), float(rng.integers(0, 34) / 40)) for xyz in far]
        if s == 0:      # past the 100 most probable: tied low scores around the cut
            far = rng.uniform(-80, 80, (rng.integers(95, 105), 3))
            cands += [Scored(uid, tuple(np.round(xyz, 1)), float(rng.integers(0, 10) / 40)) for xyz in far]
    return cands, nodules, excluded, [f"scan{s}" for s in range(n_scans + 1)]    # one more scan, no marks


@pytest.mark.parametrize("seed", range(12))
def test_agrees_with_a_per_mark_transcription_of_the_official_script(seed):
    cands, nodules, excluded, scans = _random_scene(seed)
    if not any(n.seriesuid in scans for n in nodules):
        pytest.skip("no nodule drawn")
    at, cpm, ignored, n_fp = _official(cands, nodules, excluded, scans)
    r = evaluate_froc(cands, nodules, excluded=excluded, scans=scans)
    if r.n_detected == 0:       # the official script divides 0 by 0 here (NaN); this evaluation says 0
        assert math.isnan(cpm) and r.cpm == 0.0
        return
    assert [r.sensitivity_at[k] for k in FP_RATES] == pytest.approx(at, abs=1e-12)
    assert r.cpm == pytest.approx(cpm, abs=1e-12)
    assert (r.n_ignored, r.n_false_positives) == (ignored, n_fp)


# ----------------------------------------------------------------------------------------------- bootstrap

def _one_nodule_per_scan(seed: int, n_scans: int, n_false: int, hit_low: float,
                         false_high: float) -> tuple[list[Scored], list[Finding]]:
    """Each scan: one nodule with a hit scored in [hit_low, 1), and n_false misses scored in [0, false_high)."""
    rng = np.random.default_rng(seed)
    nodules, cands = [], []
    for s in range(n_scans):
        nodules.append(Finding(f"s{s}", (0, 0, 0), 8.0))
        cands.append(Scored(f"s{s}", (0, 0, 0), float(rng.uniform(hit_low, 1.0))))
        cands += [Scored(f"s{s}", (50 + 10 * k, 0, 0), float(rng.uniform(0, false_high))) for k in range(n_false)]
    return cands, nodules


def test_bootstrap_interval_is_deterministic_and_brackets_the_point():
    cands, nodules = _one_nodule_per_scan(seed=0, n_scans=20, n_false=4, hit_low=0.3, false_high=0.8)
    a = bootstrap_cpm(cands, nodules, n_boot=200, seed=1)
    b = bootstrap_cpm(cands, nodules, n_boot=200, seed=1)
    assert a == b
    assert bootstrap_cpm(cands, nodules, n_boot=200, seed=2) != a
    point, low, high = a
    assert point == evaluate_froc(cands, nodules).cpm
    assert low <= point <= high and high - low > 0


def test_bootstrap_percentiles_are_the_official_order_statistics():
    cands, nodules = _one_nodule_per_scan(seed=5, n_scans=40, n_false=6, hit_low=0.1, false_high=0.9)
    boot = bootstrap_froc(cands, nodules, n_boot=200, seed=0)
    ordered = np.sort(boot.cpm_samples)
    assert boot.n_boot_used == len(ordered) == 200
    assert (boot.cpm_low, boot.cpm_high) == (ordered[5], ordered[195])        # floor(0.025 n), floor(0.975 n)
    assert ordered[4] < ordered[5] and ordered[194] < ordered[195]          # so an interpolated quantile differs


def test_each_resample_is_the_froc_of_the_resampled_scans():
    # The fast path (one sort, weights per scan) must give what roc_curve gives on the resampled lists.
    cands, nodules, excluded, scans = _random_scene(seed=7, n_scans=8)
    nodules += [Finding(uid, (500.0, 0, 0), 5.0) for uid in scans]           # every scan has a (missed) nodule
    boot = bootstrap_froc(cands, nodules, excluded=excluded, scans=scans, n_boot=5, seed=3)
    rng = np.random.default_rng(3)
    for b in range(5):
        picked = rng.integers(0, len(scans), len(scans))
        c2, n2, e2, s2 = [], [], [], []
        for k, idx in enumerate(picked):                      # a scan drawn twice enters twice, under two names
            alias, uid = f"{scans[idx]}#{k}", scans[idx]
            s2.append(alias)
            c2 += [Scored(alias, c.world_xyz_mm, c.probability) for c in cands if c.seriesuid == uid]
            n2 += [Finding(alias, n.world_xyz_mm, n.diameter_mm) for n in nodules if n.seriesuid == uid]
            e2 += [Finding(alias, e.world_xyz_mm, e.diameter_mm) for e in excluded if e.seriesuid == uid]
        assert boot.cpm_samples[b] == pytest.approx(evaluate_froc(c2, n2, excluded=e2, scans=s2).cpm, abs=1e-12)


def test_froc_band_is_monotone_brackets_the_curve_and_agrees_with_the_seven_points():
    cands, nodules = _one_nodule_per_scan(seed=3, n_scans=25, n_false=12, hit_low=0.2, false_high=0.9)
    band = bootstrap_froc(cands, nodules, n_boot=200, seed=2)
    assert (np.diff(band.sensitivity_low) >= 0).all() and (np.diff(band.sensitivity_high) >= 0).all()
    assert (band.sensitivity_low <= band.sensitivity_high).all()
    assert (band.sensitivity_high - band.sensitivity_low).max() > 0
    point = evaluate_froc(cands, nodules)
    on_grid = dict(zip(band.fps_per_scan.tolist(), band.sensitivity))
    assert [on_grid[r] for r in FP_RATES] == [point.sensitivity_at[r] for r in FP_RATES]
    assert np.array_equal(band.fps_per_scan, BAND_GRID) and band.fps_per_scan[0] == 0.125
    assert band.cpm == pytest.approx(point.cpm)
    assert (band.cpm, band.cpm_low, band.cpm_high) == bootstrap_cpm(cands, nodules, n_boot=200, seed=2)


def test_froc_curve_degenerate_shapes():
    fps, sens, _ = froc_curve(np.array([0.7, 0.3]), np.zeros(0), n_nodules=4, n_scans=2)
    assert (fps == 0).all() and sens[-1] == 0.5
    fps, sens, _ = froc_curve(np.zeros(0), np.array([0.1, 0.2]), n_nodules=1, n_scans=2)
    np.testing.assert_array_equal(fps, [0, 1])
    np.testing.assert_array_equal(sens, [0, 0])


# ------------------------------------------------------------------------- files and the evaluate command

def _luna16_files(tmp_path):
    """LUNA16-style files with CRLF endings, extra columns and -1 diameters in the excluded file."""
    (tmp_path / "annotations.csv").write_bytes(
        (f"{ANNOTATION_HEADER}\r\n" "s1,0,0,0,10\r\n" "s2,0,0,0,10\r\n" "s9,0,0,0,10\r\n").encode())
    (tmp_path / "annotations_excluded.csv").write_bytes(
        (f"{ANNOTATION_HEADER}\r\n" "s1,30,0,0,-1\r\n" "s2,30,0,0,4.5\r\n").encode())
    (tmp_path / "submission.csv").write_bytes(
        (f"{SUBMISSION_HEADER},extra\r\n"
         "s1,1,0,0,0.9,a\r\n"          # hit
         "s1,34,0,0,0.8,b\r\n"         # 4 mm from an excluded finding of unknown size (10 mm): ignored
         "s1,36,0,0,0.7,c\r\n"         # 6 mm from it: a false positive
         "s9,0,0,0,0.99,d\r\n"         # an unlisted scan
         "s9,40,0,0,0.98,e\r\n").encode())
    (tmp_path / "seriesuids.csv").write_bytes(b"s1\r\n\r\ns2\r\ns3\r\n")
    return tmp_path


def test_evaluate_submission_reads_luna16_files_as_published(tmp_path):
    d = _luna16_files(tmp_path)
    scans = read_seriesuids(d / "seriesuids.csv")
    report = evaluate_submission(d / "submission.csv", d / "annotations.csv", excluded=d / "annotations_excluded.csv",
                                 scans=scans, n_boot=50)
    assert scans == ["s1", "s2", "s3"]
    assert (report["n_scans"], report["n_nodules"], report["n_detected"]) == (3, 2, 1)
    assert (report["n_false_positives"], report["n_ignored"]) == (1, 1)
    assert (report["n_marks"], report["n_marks_unlisted"], report["max_marks_per_scan"]) == (5, 2, 100)
    # Hit at 0.9 before the FP: half the nodules at 0 FP/scan already.
    assert report["sensitivity_at"] == {str(r): 0.5 for r in FP_RATES} and report["cpm"] == 0.5
    assert "2 on scans not evaluated (ignored)" in format_report(report)
    for key in ("cpm", "cpm_ci95", "auc", "sensitivity_at", "froc", "froc_band", "n_scans", "n_nodules",
                "n_false_positives", "n_ignored", "bootstrap"):
        assert key in report


def test_cli_evaluate_accepts_luna16s_excluded_file_and_seriesuids(tmp_path, capsys):
    d = _luna16_files(tmp_path)
    out = tmp_path / "report.json"
    assert cli(["evaluate", str(d / "submission.csv"), str(d / "annotations.csv"), "--excluded",
                str(d / "annotations_excluded.csv"), "--seriesuids", str(d / "seriesuids.csv"), "--bootstrap", "20",
                "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "scans 3, nodules 2 (detected 1)" in text and "2 on scans not evaluated (ignored)" in text
    data = json.loads(out.read_text())
    assert data["n_marks_unlisted"] == 2 and data["n_ignored"] == 1 and data["bootstrap"] == 20
    # Without the list the submission's scans are evaluated: s1 and s9.
    assert cli(["evaluate", str(d / "submission.csv"), str(d / "annotations.csv"), "--excluded",
                str(d / "annotations_excluded.csv"), "--bootstrap", "0", "--max-marks-per-scan", "1"]) == 0
    assert "scans 2, nodules 2 (detected 2)" in capsys.readouterr().out


def test_cli_evaluate_refuses_minus_one_in_annotations_csv(tmp_path, capsys):
    d = _luna16_files(tmp_path)
    (d / "annotations.csv").write_bytes(f"{ANNOTATION_HEADER}\r\ns1,0,0,0,-1\r\n".encode())
    assert cli(["evaluate", str(d / "submission.csv"), str(d / "annotations.csv"), "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err
    assert "annotations.csv: line 2: diameter_mm is '-1', expected a positive number" in err
    assert "only in an excluded-findings file" in err


@pytest.mark.parametrize("text, message", [
    (b"s1\ns2\ns1\n", r"seriesuids\.csv: line 3: seriesuid s1 is already listed on line 1; list each scan once"),
    (b"seriesuid\ns1\n", r"seriesuids\.csv: line 1: 'seriesuid' looks like a header"),
    (b"\r\n\r\n", r"seriesuids\.csv: no seriesuid found"),
])
def test_seriesuids_file_errors_name_the_line(tmp_path, text, message):
    (tmp_path / "seriesuids.csv").write_bytes(text)
    with pytest.raises(CsvFormatError, match=message):
        read_seriesuids(tmp_path / "seriesuids.csv")


def test_seriesuids_file_takes_the_first_field(tmp_path):
    (tmp_path / "seriesuids.csv").write_bytes(b"\xef\xbb\xbfs1,x\r\n s2 \r\n\r\n")
    assert read_seriesuids(tmp_path / "seriesuids.csv") == ["s1", "s2"]


def test_submission_errors_name_file_line_and_column(tmp_path):
    (tmp_path / "submission.csv").write_text(f"{SUBMISSION_HEADER}\ns1,0,0,0,0.5\ns1,0,x,0,0.5\n")
    with pytest.raises(CsvFormatError, match=r"submission\.csv: line 3: coordY is 'x', expected a finite number"):
        evaluate_submission(tmp_path / "submission.csv", None)
