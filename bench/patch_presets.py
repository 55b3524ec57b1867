"""Patch presets at LUNA16 density: held-out CPM and cost of 48mm_32, 64mm_48 and 64mm_64, the same model and budget.

    .venv/bin/python bench/patch_presets.py            # about 30 min on one core (see below)
    .venv/bin/python bench/patch_presets.py --quick    # smoke run, about 2 min

Generates `luna16`-size training patients over the three sample hospitals (about 850 candidates
per scan, 0.2% positive, three scanner profiles) and a held-out test set of further patients
(a new seed, a third from each scanner) that nothing trains on. Then, for each preset
(core/imaging/patch_presets.py), on one core (torch, numba and BLAS at one thread), seed 0:
- cut: the training sites read as the reader does (`build_patch_dataset`, the preset's
  PatchSpec), in train mode with a read-time pool of `--negative-pool` (30) negatives per
  positive: 64³ float16 patches are 512 KiB each, and every candidate of 30 scans would be 12.5 GB;
- train: the default model (ModelConfig()), centralized on the pooled sites, with the core
  training loop (`train_local`, no FATE, no rounds): `--epochs` epochs of every positive plus
  `--negatives-per-positive` fresh negatives per positive drawn from the pool each epoch,
  augmented, Adam at 1e-3, batch 16. 3 negatives per positive, not the trainer's default 10:
  bench/federation_pays.py measured 3 as good (row f) at 2.75x fewer patches per epoch, so the
  budget buys more epochs. The same epochs, rows and order for every preset: only the patch
  geometry differs;
- predict: every held-out candidate cut with the preset and scored, one held-out hospital at a
  time, in float32 (its patches deleted after scoring, so disk stays under about 4 GB at 64³); scored by
  LUNA16's official rules (core/evaluation/froc.py): CPM with a bootstrap 95% CI over scans,
  and candidate AUC.
It prints per preset: held-out CPM (CI), AUC, train patches/s, predict candidates/s, disk per
candidate, and the wall time of cut, train and predict. Each preset's patches are deleted before
the next one, and the whole temporary folder at the end (also on error).

Sizing (defaults: 30 training patients, about 50 positives; 12 held-out, about 10,000
candidates; 20 epochs of about 200 patches), from the one-core rates `--quick` measured on the
2-core reference machine while other work ran on it (training 68, 19 and 6.9 patches/s and
prediction 300, 98 and 28 candidates/s at 32³, 48³ and 64³; a quiet core is up to 1.6x faster):
generating the 42 scans about 75 s; cutting about 30 s a preset; training about 60 s, 210 s and
580 s; scoring the held-out set about 35 s, 105 s and 370 s. In all about 25 min on one loaded
core (30 min at most), about 18 min on a quiet one; 64mm_64 is two thirds of it. `--quick`: 3
training patients (one per scanner), 1 held-out patient (hospital_b's scanner), 2 epochs, 100
bootstrap resamples, about 80 s; its figures only show that the bench runs (1 held-out scan
gives CPM 0).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ONE_CORE = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
os.environ.update(ONE_CORE)   # before numpy, numba and torch start their thread pools

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Stacked  # noqa: E402  (puts the source tree first on sys.path)



@dataclass
class Row:
    preset: str
    cpm: float
    low: float
    high: float
    auc: float
    train_rate: float
    predict_rate: float
    bytes_per_candidate: float
    cut_s: float
    train_s: float
    predict_s: float
    train_positives: int
    train_pool: int

    @property
    def wall_s(self) -> float:
        return self.cut_s + self.train_s + self.predict_s


def _cut_training(site_dirs: dict, out: Path, spec, negative_pool: float):
    """The training sites' patches (every positive, a fixed pool of negatives), pooled: (x, y, bytes a candidate)."""
    import numpy as np

    from fate_components.core.data.patch_dataset import PatchDataset, build_patch_dataset

    xs, ys, size, rows = [], [], 0, 0
    for name, site_dir in site_dirs.items():
        build_patch_dataset(site_dir, out / name, spec=spec, mode="train", negative_ratio=negative_pool,
                            val_fraction=0.0, seed=0)
        dataset = PatchDataset(out / name)
        xs.append(dataset.patches)
        ys.append(np.asarray(dataset.labels, dtype=np.float32))
        size += (out / name / "patches.npy").stat().st_size
        rows += len(dataset.labels)
    return Stacked(xs), np.concatenate(ys), size / rows


def _score_heldout(model, heldout_dirs: dict, out: Path, spec, n_boot: int) -> tuple[float, float, float, float,
                                                                                         int, float]:
    """Cut every held-out candidate, one hospital at a time, score and delete: (CPM, low, high, AUC, n, seconds)."""
    import numpy as np

    from fate_components.core.data.patch_dataset import PatchDataset, build_patch_dataset
    from fate_components.core.evaluation.auc import candidate_auc
    from fate_components.core.evaluation.froc import Scored, bootstrap_cpm
    from fate_components.core.evaluation.submission import load_findings
    from fate_components.core.learning.training import predict_proba

    scored, labels, probabilities, nodules, excluded, scans = [], [], [], [], [], set()
    predict_s = 0.0
    for name, site_dir in heldout_dirs.items():
        target = out / f"heldout_{name}"
        build_patch_dataset(site_dir, target, spec=spec, mode="predict", seed=0)
        dataset = PatchDataset(target)
        t0 = time.perf_counter()
        p = predict_proba(model, dataset.patches)
        predict_s += time.perf_counter() - t0
        scored += [Scored(r.seriesuid, r.world_xyz_mm, float(q)) for r, q in zip(dataset.table, p)]
        labels.append(np.asarray(dataset.labels))
        probabilities.append(p)
        scans |= {r.seriesuid for r in dataset.table}
        nodules += load_findings(site_dir / "annotations.csv", excluded=False)
        excluded += load_findings(site_dir / "annotations_excluded.csv", excluded=True)
        del dataset
        shutil.rmtree(target)
    cpm, low, high = bootstrap_cpm(scored, nodules, excluded=excluded, scans=sorted(scans), n_boot=n_boot, seed=0)
    auc = candidate_auc(np.concatenate(labels), np.concatenate(probabilities))
    return cpm, low, high, auc, len(scored), predict_s


def run_preset(name: str, train_dirs: dict, heldout_dirs: dict, work: Path, args) -> Row:
    import torch

    from fate_components.core.data.negative_sampling import EpochSampler, NegativeSampling
    from fate_components.core.imaging.patch_presets import preset_spec
    from fate_components.core.learning.model import ModelConfig, build_model
    from fate_components.core.learning.training import TrainConfig, train_local

    spec = preset_spec(name)
    out = work / "patches" / name
    t0 = time.perf_counter()
    x, y, bytes_per_candidate = _cut_training(train_dirs, out, spec, args.negative_pool)
    cut_train_s = time.perf_counter() - t0

    config = TrainConfig(learning_rate=args.learning_rate, seed=0)
    model = build_model(ModelConfig(), seed=0)
    sampler = EpochSampler(y, NegativeSampling(args.negatives_per_positive, 0.0))
    generator = torch.Generator().manual_seed(0)
    result = train_local(model, config.make_optimizer(model), x, y, epochs=args.epochs, batch_size=config.batch_size,
                         generator=generator, augment=True, sampler=sampler)
    train_rate = args.epochs * result.n_samples / result.seconds

    t0 = time.perf_counter()
    cpm, low, high, auc, n_scored, predict_s = _score_heldout(model, heldout_dirs, out, spec, args.bootstrap)
    cut_heldout_s = time.perf_counter() - t0 - predict_s
    shutil.rmtree(out, ignore_errors=True)
    return Row(name, cpm, low, high, auc, train_rate, n_scored / predict_s, bytes_per_candidate,
               cut_train_s + cut_heldout_s, result.seconds, predict_s, int(y.sum()), len(y))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=30, help="training patients over the three hospitals")
    parser.add_argument("--heldout-patients", type=int, default=12, help="held-out patients, a third per scanner")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--negatives-per-positive", type=float, default=3.0,
                        help="fresh negatives per positive each epoch, drawn from the pool")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--negative-pool", type=float, default=30.0,
                        help="negatives per positive cut for training (each epoch draws 10 per positive from them)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--presets", default="", help="comma-separated presets (default: all)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 + 1 patients, 2 epochs (about 2 min)")
    args = parser.parse_args(argv)

    import torch

    from fate_components.core.imaging.patch_presets import PATCH_PRESETS
    from fate_components.core.synthetic.sites import generate_federation

    torch.set_num_threads(1)
    presets = [p.strip() for p in args.presets.split(",") if p.strip()] or list(PATCH_PRESETS)
    unknown = [p for p in presets if p not in PATCH_PRESETS]
    if unknown:
        parser.error(f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(PATCH_PRESETS)}")
    heldout_hospitals = ("hospital_a", "hospital_b", "hospital_c")
    if args.quick:
        args.patients, args.heldout_patients, args.epochs, args.bootstrap = 3, 1, 2, 100
        heldout_hospitals = ("hospital_b",)

    work = Path(tempfile.mkdtemp(prefix="fate_lung_presets_"))
    t_start = time.perf_counter()
    rows = []
    try:
        t0 = time.perf_counter()
        train_dirs = generate_federation(work / "train", size="luna16", seed=0, n_patients=args.patients,
                                         split=(1 / 3,) * 3 if args.patients < 10 else (0.4, 0.3, 0.3))
        heldout_dirs = generate_federation(work / "heldout", size="luna16", seed=1, hospitals=heldout_hospitals,
                                           split=(1 / len(heldout_hospitals),) * len(heldout_hospitals),
                                           n_patients=args.heldout_patients)
        print(f"generated {args.patients} training and {args.heldout_patients} held-out luna16-size patients in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        for name in presets:
            rows.append(run_preset(name, train_dirs, heldout_dirs, work, args))
            r = rows[-1]
            print(f"  {name}: cut {r.cut_s:.0f} s, train {r.train_s:.0f} s, predict {r.predict_s:.0f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    first = rows[0]
    print(f"\ntraining: {first.train_positives} positives, a pool of {first.train_pool} candidates; {args.epochs} "
          f"epochs of every positive + {args.negatives_per_positive:g} fresh negatives each, augmented, Adam "
          f"{args.learning_rate:g}, batch 16, ModelConfig(), seed 0, one core; held-out: {args.heldout_patients} "
          f"patients ({', '.join(heldout_hospitals)}); CI: {args.bootstrap} bootstrap resamples of the scans\n")
    print("| preset | held-out CPM (95% CI) | AUC | train patches/s | predict candidates/s | disk a candidate | "
          "wall time (cut + train + predict) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        size_mm, voxels = PATCH_PRESETS[r.preset]
        print(f"| {r.preset} ({size_mm:g} mm at {voxels}³, {size_mm / voxels:.3g} mm) | {r.cpm:.3f} "
              f"({r.low:.3f}-{r.high:.3f}) | {r.auc:.3f} | {r.train_rate:.1f} | {r.predict_rate:.1f} | "
              f"{r.bytes_per_candidate / 1024:.0f} KiB | {r.wall_s:.0f} s ({r.cut_s:.0f} + {r.train_s:.0f} + "
              f"{r.predict_s:.0f}) |")
    print(f"total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
