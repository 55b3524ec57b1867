"""One hospital at LUNA16 density: what reading, training, predicting and evaluating cost, and at 40% of LUNA16.

    .venv/bin/python bench/luna16_scale.py [--scans 12] [--seed 0]

Generates one `luna16`-size site (hospital_a's scanner; about 850 candidates per scan, 0.2%
positive), then runs each stage in a process of its own, on one core, and records its wall
time and peak RSS:
- read: `build_patch_dataset` (every candidate cut, memory-mapped float16 on disk), timed twice: the
  first read also compiles or loads numba's kernels (once per process), the second is the steady state;
- scan: the same on one LUNA16-sized scan (512x512x300 int16 MetaImage, 850 candidates; steady
  state, after the first read has loaded the compiled kernel), since
  the synthetic scans are a mid-chest slab (see core/synthetic/sites.py) and smaller than LUNA16's;
- train: one local epoch as the trainer runs it (every positive plus 10 fresh negatives each,
  augmented), after a warm-up epoch;
- predict: every candidate of the site scored, read from disk a batch at a time; predict-half
  scores half of them, to show that peak memory does not grow with the site (both in float32);
  predict-bf16 scores them in bfloat16 (the trainer's `inference_precision`, whose default `auto`
  picks bfloat16 on CPUs that compute it natively);
- evaluate: the official LUNA16 FROC/CPM with 1,000 bootstrap resamples.
Then it extrapolates to a hospital holding 40% of LUNA16 (355 scans, about 300,000 candidates)
and prints a table. Targets there: reading, cutting and predicting within 15 minutes on one
core, at the default inference precision; peak RSS at most 4 GB at any site size.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HOSPITAL_SCANS, HOSPITAL_CANDIDATES = 355, 300_000     # 40% of LUNA16's 888 scans and ~755,000 candidates
HOSPITAL_TRAIN_POSITIVES = round(1557 * 0.4 * 0.8)     # candidates_V2's positives, 80% of patients train
ONE_CORE = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _stage(name: str, work: Path) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    site, dataset_dir = work / "site" / "hospital_a", work / "dataset"
    t0 = time.perf_counter()
    if name == "read":
        from fate_components.core.data.patch_dataset import build_patch_dataset

        # The first read in a process also compiles (or loads) numba's kernels, once per process, not per scan:
        # time it, then time a second read of the same site as the steady state a 355-scan site sees.
        build_patch_dataset(site, work / "dataset_first", mode="train")
        first = time.perf_counter() - t0
        shutil.rmtree(work / "dataset_first")
        t0 = time.perf_counter()
        report = build_patch_dataset(site, dataset_dir, mode="train")
        seconds = time.perf_counter() - t0
        n = report.positives + report.negatives_kept
        return {"seconds": seconds, "first_seconds": first, "scans": report.scans_read, "candidates": n,
                "positives": report.positives, "bytes_per_candidate": (dataset_dir / "patches.npy").stat().st_size / n}
    if name == "make-scan":
        from reader_throughput import luna16_sized_site

        luna16_sized_site(work / "scan", n_candidates=850)
        return {"seconds": time.perf_counter() - t0}
    if name == "scan":
        from fate_components.core.data.patch_dataset import build_patch_dataset

        # The first read in a process also loads numba's compiled kernel: time the steady state, as a site
        # reading hundreds of scans sees it (median of three more reads).
        build_patch_dataset(work / "scan", work / "scan_dataset", mode="predict")
        seconds = []
        for _ in range(3):
            t0 = time.perf_counter()
            build_patch_dataset(work / "scan", work / "scan_dataset", mode="predict")
            seconds.append(time.perf_counter() - t0)
        return {"seconds": sorted(seconds)[1]}
    from fate_components.components._trainer import load_site_data
    from fate_components.core.data.negative_sampling import EpochSampler
    from fate_components.core.data.patch_file import RowView
    from fate_components.core.learning.model import ModelConfig, build_model
    from fate_components.core.learning.training import TrainConfig, predict_proba, train_local

    dataset, data = load_site_data(dataset_dir)
    model = build_model(ModelConfig(), seed=0)
    if name == "train":
        config = TrainConfig()
        sampler = EpochSampler(data.train_y, config.negative_sampling)
        optimizer, generator = config.make_optimizer(model), torch.Generator().manual_seed(0)
        train_local(model, optimizer, data.train_x, data.train_y, epochs=1, batch_size=config.batch_size,
                    generator=generator, augment=True, sampler=sampler)   # warm-up: oneDNN builds its kernels
        t0 = time.perf_counter()
        result = train_local(model, optimizer, data.train_x, data.train_y, epochs=1, batch_size=config.batch_size,
                             generator=generator, augment=True, sampler=sampler)
        return {"seconds": time.perf_counter() - t0, "patches": result.n_samples}
    if name in ("predict", "predict-half", "predict-bf16"):
        rows = np.arange(len(dataset)) if name != "predict-half" else np.arange(len(dataset) // 2)
        t0 = time.perf_counter()
        scores = predict_proba(model, RowView(dataset.patches, rows),
                               precision="bfloat16" if name == "predict-bf16" else "float32")
        seconds = time.perf_counter() - t0
        if name == "predict":
            with open(work / "submission.csv", "w") as f:
                f.write("seriesuid,coordX,coordY,coordZ,probability\n")
                for row, p in zip(dataset.table, scores):
                    f.write(f"{row.seriesuid},{row.world_xyz_mm[0]},{row.world_xyz_mm[1]},{row.world_xyz_mm[2]},"
                            f"{p:.6f}\n")
        return {"seconds": seconds, "candidates": len(rows)}
    if name == "evaluate":
        from fate_components.core.evaluation.submission import evaluate_submission

        t0 = time.perf_counter()
        result = evaluate_submission(work / "submission.csv", site / "annotations.csv",
                                     excluded=site / "annotations_excluded.csv", n_boot=1000)
        return {"seconds": time.perf_counter() - t0, "scans": result["n_scans"]}
    raise SystemExit(f"unknown stage {name!r}")


def _auto_precision() -> str:
    import torch

    from fate_components.core.learning.training import resolve_inference_precision

    return resolve_inference_precision("auto", torch.device("cpu"))


def _run_stage(name: str, work: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--stage", name, "--work", str(work)], check=True,
                         capture_output=True, text=True, env={**os.environ, **ONE_CORE})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        result = _stage(args.stage, Path(args.work))
        print(json.dumps({**result, "peak_rss_mb": _peak_rss_mb()}))
        return 0

    from fate_components.core.synthetic.sites import generate_federation

    work = Path(tempfile.mkdtemp(prefix="fate_lung_scale_"))
    try:
        t0 = time.perf_counter()
        generate_federation(work / "site", size="luna16", seed=args.seed, hospitals=("hospital_a",), split=(1.0,),
                            n_patients=args.scans)
        print(f"generated {args.scans} luna16-size scans (hospital_a's scanner) in {time.perf_counter() - t0:.0f} s")
        _run_stage("make-scan", work)
        r = {name: _run_stage(name, work) for name in ("read", "scan", "train", "predict", "predict-half",
                                                       "predict-bf16", "evaluate")}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    read, scan, train, predict, half, bf16, evaluate = (r[k] for k in ("read", "scan", "train", "predict",
                                                                     "predict-half", "predict-bf16", "evaluate"))
    per_scan = read["seconds"] / read["scans"]
    train_rate, predict_rate = train["patches"] / train["seconds"], predict["candidates"] / predict["seconds"]
    print(f"\nsite: {read['scans']} scans, {read['candidates']} candidates "
          f"({read['candidates'] / read['scans']:.0f} per scan), {read['positives']} positive "
          f"({100 * read['positives'] / read['candidates']:.2f}%); one core per stage\n")
    print("| stage | measured | peak RSS |")
    print("|---|---|---|")
    print(f"| read and cut, first read in a process (numba's kernels compiled or loaded) | "
          f"{read['first_seconds']:.1f} s for {read['scans']} scans | |")
    print(f"| read and cut (synthetic slab scans) | {per_scan:.2f} s/scan, {read['bytes_per_candidate']:.0f} bytes/"
          f"candidate on disk | {read['peak_rss_mb']:.0f} MB |")
    print(f"| read and cut, one 512x512x300 scan, 850 candidates | {scan['seconds']:.2f} s/scan | "
          f"{scan['peak_rss_mb']:.0f} MB |")
    print(f"| train, one epoch of {train['patches']} patches | {train_rate:.0f} patches/s | "
          f"{train['peak_rss_mb']:.0f} MB |")
    print(f"| predict, every candidate ({predict['candidates']}) | {predict_rate:.0f} candidates/s | "
          f"{predict['peak_rss_mb']:.0f} MB |")
    print(f"| predict, half of them ({half['candidates']}) | {half['candidates'] / half['seconds']:.0f} "
          f"candidates/s | {half['peak_rss_mb']:.0f} MB |")
    print(f"| predict, every candidate, bfloat16 (inference_precision) | {bf16['candidates'] / bf16['seconds']:.0f} "
          f"candidates/s | {bf16['peak_rss_mb']:.0f} MB |")
    print(f"| evaluate, official rules, 1,000 bootstrap resamples ({evaluate['scans']} scans) | "
          f"{evaluate['seconds']:.2f} s | {evaluate['peak_rss_mb']:.0f} MB |")

    # Once per process: what the first read costs beyond the steady state; then every scan at the slower of the
    # two steady rates (the slab scans are DICOM, the LUNA16-sized one MetaImage).
    read_h = max(0.0, read["first_seconds"] - read["seconds"]) + HOSPITAL_SCANS * max(scan["seconds"], per_scan)
    predict_h = HOSPITAL_CANDIDATES / predict_rate
    epoch_patches = HOSPITAL_TRAIN_POSITIVES * 11
    peak = max(v["peak_rss_mb"] for v in r.values())
    print(f"\nextrapolated to a hospital with 40% of LUNA16 ({HOSPITAL_SCANS} scans, {HOSPITAL_CANDIDATES:,} "
          f"candidates, {HOSPITAL_TRAIN_POSITIVES} training positives), one core:\n")
    print("| what | figure | target |")
    print("|---|---|---|")
    print(f"| read and cut (LUNA16-sized scans) | {read_h / 60:.1f} min | |")
    print(f"| predict every candidate | {predict_h / 60:.1f} min | |")
    total = (read_h + predict_h) / 60
    predict_bf16 = HOSPITAL_CANDIDATES / (bf16["candidates"] / bf16["seconds"])
    total_bf16 = (read_h + predict_bf16) / 60
    picked = _auto_precision()
    total_auto = total_bf16 if picked == "bfloat16" else total
    print(f"| read, cut and predict, float32 scoring | {total:.1f} min | |")
    print(f"| read, cut and predict, bfloat16 scoring | {total_bf16:.1f} min | |")
    print(f"| read, cut and predict, the default (`inference_precision: auto`: {picked} on this CPU) | "
          f"**{total_auto:.1f} min** | <= 15 min: {'met' if total_auto <= 15 else 'missed'} |")
    print(f"| patches on disk | {HOSPITAL_CANDIDATES * read['bytes_per_candidate'] / 2**30:.1f} GiB | |")
    print(f"| one local epoch ({epoch_patches} patches: positives + 10 negatives each) | "
          f"{epoch_patches / train_rate / 60:.1f} min | |")
    print(f"| evaluation with bootstrap (scales with scans) | "
          f"{evaluate['seconds'] * HOSPITAL_SCANS / max(evaluate['scans'], 1):.1f} s | |")
    print(f"| peak RSS of any stage (bounded by the batch, not the site) | {peak / 1024:.2f} GB | <= 4 GB: "
          f"{'met' if peak <= 4096 else 'missed'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
