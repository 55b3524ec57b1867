"""FROC/CPM against hand-worked examples (LUNA16 rules)."""
import numpy as np
import pytest

from fate_components.core.froc import FP_RATES, Finding, Scored, bootstrap_cpm, bootstrap_froc, evaluate_froc


def test_double_hit_on_one_nodule_counts_once_and_is_not_a_false_positive():
    # Prepare: one nodule (r = 5 mm) hit twice; one false positive elsewhere.
    nodules = [Finding("s1", (0, 0, 0), 10.0)]
    cands = [Scored("s1", (1, 0, 0), 0.9), Scored("s1", (0, 2, 0), 0.8), Scored("s1", (50, 0, 0), 0.7)]
    # Execute
    r = evaluate_froc(cands, nodules)
    # Assert
    assert r.n_nodules == 1 and r.n_false_positives == 1 and r.per_nodule_best == [0.9]
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
    # The nodule only appears after one false positive in one scan: sensitivity 0 below 1 FP/scan.
    assert r.sensitivity_at[0.5] == 0.0 and r.sensitivity_at[1.0] == 1.0
    assert r.cpm == pytest.approx(4 / 7)


def test_missed_nodule_and_scan_without_nodules_count_in_the_denominators():
    nodules = [Finding("s1", (0, 0, 0), 10.0), Finding("s1", (100, 0, 0), 10.0)]   # the second has no candidate
    cands = [Scored("s1", (0, 0, 0), 0.9), Scored("s2", (5, 5, 5), 0.8), Scored("s2", (9, 9, 9), 0.3)]
    r = evaluate_froc(cands, nodules, scans=["s1", "s2", "s3"])
    assert r.n_nodules == 2 and r.n_scans == 3 and r.n_false_positives == 2
    assert np.isneginf(r.per_nodule_best[1])
    # 2 false positives over 3 scans = 0.67 FP/scan; half the nodules found at best.
    np.testing.assert_allclose(r.fps_per_scan, [0, 0, 1 / 3, 2 / 3])
    assert r.sensitivity_at[0.125] == 0.5 and r.sensitivity_at[8.0] == 0.5
    assert r.cpm == 0.5


def test_tied_scores_move_together():
    nodules = [Finding("s1", (0, 0, 0), 10.0)]
    cands = [Scored("s1", (0, 0, 0), 0.5), Scored("s1", (40, 0, 0), 0.5), Scored("s1", (80, 0, 0), 0.5)]
    r = evaluate_froc(cands, nodules)
    # One threshold admits the nodule and both false positives at once: 2 FP/scan.
    np.testing.assert_allclose(r.fps_per_scan, [0, 2])
    assert r.sensitivity_at[1.0] == 0.0 and r.sensitivity_at[2.0] == 1.0
    assert r.auc == 0.5


def test_candidate_between_two_nodules_hits_both():
    nodules = [Finding("s1", (0, 0, 0), 10.0), Finding("s1", (6, 0, 0), 10.0)]
    r = evaluate_froc([Scored("s1", (3, 0, 0), 0.7)], nodules)
    assert r.per_nodule_best == [0.7, 0.7] and r.cpm == 1.0


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
    point, low, high = a
    assert low <= point <= high and high - low > 0


def test_froc_band_is_monotone_brackets_the_curve_and_agrees_with_the_seven_points():
    cands, nodules = _one_nodule_per_scan(seed=3, n_scans=25, n_false=12, hit_low=0.2, false_high=0.9)
    band = bootstrap_froc(cands, nodules, n_boot=200, seed=2)
    assert (np.diff(band.sensitivity_low) >= 0).all() and (np.diff(band.sensitivity_high) >= 0).all()
    assert (band.sensitivity_low <= band.sensitivity_high).all()
    assert (band.sensitivity_high - band.sensitivity_low).max() > 0
    point = evaluate_froc(cands, nodules)
    on_grid = dict(zip(np.round(band.fps_per_scan, 9), band.sensitivity))
    assert [on_grid[round(r, 9)] for r in FP_RATES] == [point.sensitivity_at[r] for r in FP_RATES]
    assert band.cpm == pytest.approx(point.cpm)
    assert (band.cpm, band.cpm_low, band.cpm_high) == bootstrap_cpm(cands, nodules, n_boot=200, seed=2)
