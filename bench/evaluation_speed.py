"""How long does a LUNA16-size evaluation take? FROC/CPM, then with 1,000 bootstrap resamples, on one core.

    .venv/bin/python bench/evaluation_speed.py [--seed 0] [--bootstrap 1000]

A synthetic case of LUNA16's size, from a seed (world millimetres): 888 scans, about 1,200 nodules
(3-30 mm), about 35,000 excluded findings (a tenth of unknown size, -1), about 55,000 marks: one or
two near most nodules (a few missed, some double hits), some inside excluded findings, the rest
false positives, and a few scans with more than 100 marks. Timed three ways:
  core:       match + FROC/CPM from in-memory marks (froc.match_scans + froc_from_match);
  bootstrap:  the same plus the bootstrap (froc.bootstrap_from_match, matching done once);
  files:      `fate-lung evaluate` end to end (evaluation.evaluate_submission) on the case written as
              LUNA16 CSV files (CRLF), seriesuids.csv included: reading, matching, FROC and bootstrap.
BLAS/OpenMP threads are set to 1 and the process is pinned to one CPU where the OS allows it.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import _harness  # noqa: E402,F401  (puts the project root on sys.path)
import numpy as np  # noqa: E402

N_SCANS, N_NODULES, N_EXCLUDED, N_MARKS = 888, 1200, 35000, 55000


def build_case(seed: int):
    """(marks, nodules, excluded, scans) of LUNA16's size, deterministic for the seed."""
    from fate_components.core.evaluation.froc import Finding, Scored

    rng = np.random.default_rng(seed)
    scans = [f"1.3.6.1.4.1.14519.5.2.1.6279.6001.{seed}{i:06d}" for i in range(N_SCANS)]

    def spread(n: int) -> np.ndarray:
        return np.bincount(rng.integers(0, N_SCANS, n), minlength=N_SCANS)

    def lung_points(n: int) -> np.ndarray:
        return np.column_stack([rng.uniform(-150, 150, n), rng.uniform(-250, 50, n), rng.uniform(-350, -50, n)])

    nod_scan = np.repeat(np.arange(N_SCANS), spread(N_NODULES))
    nod_xyz = lung_points(len(nod_scan))
    nod_d = np.clip(rng.lognormal(np.log(8), 0.45, len(nod_scan)), 3, 30)
    exc_scan = np.repeat(np.arange(N_SCANS), spread(N_EXCLUDED))
    exc_xyz = lung_points(len(exc_scan))
    exc_d = np.where(rng.random(len(exc_scan)) < 0.1, -1.0, rng.uniform(1, 10, len(exc_scan)))

    marks = []     # (scan, xyz, probability)
    per_nodule = rng.choice([0, 1, 2], len(nod_scan), p=[0.15, 0.7, 0.15])        # 0: missed
    for k in np.flatnonzero(per_nodule):
        for _ in range(per_nodule[k]):
            offset = rng.normal(0, 1, 3)
            offset *= rng.uniform(0, 0.9) * nod_d[k] / 2 / np.linalg.norm(offset)
            marks.append((nod_scan[k], nod_xyz[k] + offset, rng.beta(5, 2)))
    for k in rng.choice(len(exc_scan), 5000, replace=False):                     # inside excluded findings
        radius = (10.0 if exc_d[k] < 0 else exc_d[k]) / 2
        marks.append((exc_scan[k], exc_xyz[k] + rng.uniform(-0.5, 0.5, 3) * radius, rng.beta(2, 3)))
    n_fp = N_MARKS - len(marks) - 20 * 60
    fp_scan = np.repeat(np.arange(N_SCANS), spread(n_fp))
    crowded = rng.choice(N_SCANS, 20, replace=False)                              # > 100 marks each
    fp_scan = np.concatenate([fp_scan, np.repeat(crowded, 60)])
    for s, xyz, p in zip(fp_scan, lung_points(len(fp_scan)), rng.beta(1.2, 5, len(fp_scan))):
        marks.append((s, xyz, p))

    scored = [Scored(scans[s], tuple(float(v) for v in np.round(xyz, 2)), float(round(p, 6))) for s, xyz, p in marks]
    nodules = [Finding(scans[s], tuple(float(v) for v in np.round(x, 2)), float(round(d, 2)))
               for s, x, d in zip(nod_scan, nod_xyz, nod_d)]
    excluded = [Finding(scans[s], tuple(float(v) for v in np.round(x, 2)), float(round(d, 2)))
                for s, x, d in zip(exc_scan, exc_xyz, exc_d)]
    return scored, nodules, excluded, scans


def write_case(folder: Path, scored, nodules, excluded, scans) -> None:
    """As LUNA16 publishes its files: CRLF line endings, -1 diameters in the excluded file, no header in the list."""
    def rows(header, items, last):
        return "\r\n".join([header] + [f"{i.seriesuid},{i.world_xyz_mm[0]!r},{i.world_xyz_mm[1]!r},"
                                       f"{i.world_xyz_mm[2]!r},{last(i)!r}" for i in items]) + "\r\n"

    header = "seriesuid,coordX,coordY,coordZ,"
    (folder / "submission.csv").write_text(rows(header + "probability", scored, lambda i: i.probability), newline="")
    (folder / "annotations.csv").write_text(rows(header + "diameter_mm", nodules, lambda i: i.diameter_mm), newline="")
    (folder / "annotations_excluded.csv").write_text(rows(header + "diameter_mm", excluded,
                                                          lambda i: i.diameter_mm), newline="")
    (folder / "seriesuids.csv").write_text("\r\n".join(scans) + "\r\n", newline="")


def main(argv=None) -> int:
    from fate_components.core.evaluation.froc import bootstrap_from_match, froc_from_match, match_scans
    from fate_components.core.evaluation.submission import evaluate_submission, read_seriesuids

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args(argv)
    pinned = "no"
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        pinned = f"CPU {cpu}"

    t0 = time.perf_counter()
    import sklearn.metrics  # noqa: F401  (imported once, timed apart)
    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    scored, nodules, excluded, scans = build_case(args.seed)
    t_build = time.perf_counter() - t0

    t0 = time.perf_counter()
    matched = match_scans(scored, nodules, excluded=excluded, scans=scans)
    t_match = time.perf_counter() - t0
    result = froc_from_match(matched)
    t_core = time.perf_counter() - t0
    t0 = time.perf_counter()
    boot = bootstrap_from_match(matched, n_boot=args.bootstrap, seed=0, full=result)
    t_boot = time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="fate_lung_eval_speed_") as tmp:
        folder = Path(tmp)
        write_case(folder, scored, nodules, excluded, scans)
        t0 = time.perf_counter()
        report = evaluate_submission(folder / "submission.csv", folder / "annotations.csv",
                                     excluded=folder / "annotations_excluded.csv",
                                     scans=read_seriesuids(folder / "seriesuids.csv"), n_boot=args.bootstrap)
        t_files = time.perf_counter() - t0
    assert report["cpm"] == result.cpm and report["cpm_ci95"] == [boot.cpm_low, boot.cpm_high]

    print(f"case (seed {args.seed}, built in {t_build:.1f} s): {result.n_scans} scans, {result.n_marks} marks, "
          f"{result.n_nodules} nodules, {len(excluded)} excluded findings "
          f"({sum(e.diameter_mm < 0 for e in excluded)} of unknown size)")
    print(f"outcome: {result.n_detected} nodules detected, {result.n_false_positives} false positives, "
          f"{result.n_ignored} marks ignored on excluded findings, {result.n_double_hits} double hits, "
          f"{result.n_marks_dropped} marks beyond 100 per scan dropped")
    print(f"CPM {result.cpm:.4f} (95% CI {boot.cpm_low:.4f}-{boot.cpm_high:.4f}, {boot.n_boot_used} resamples); "
          f"sensitivity at 1/8..8 FP/scan: " + " ".join(f"{v:.3f}" for v in result.sensitivity_at.values()))
    print(f"threads 1, pinned: {pinned}; importing sklearn.metrics took {t_import:.2f} s (not counted below)")
    print(f"core, no bootstrap:       {t_core:6.2f} s  (matching {t_match:.2f} s)")
    print(f"core + {args.bootstrap} bootstrap:     {t_core + t_boot:6.2f} s  (bootstrap {t_boot:.2f} s)")
    print(f"files end to end + boot:  {t_files:6.2f} s  (read CSVs, match, FROC, {args.bootstrap} resamples)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
