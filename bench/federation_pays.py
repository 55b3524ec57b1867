"""Does federation pay? One held-out test set, the same model trained several ways; and how to choose negatives.

    .venv/bin/python bench/federation_pays.py [--patients 45] [--heldout-patients 24] [--rounds 12]

Three non-IID sample hospitals at LUNA16 density (`luna16` size: about 850 candidates per
scan, 0.2% positive, three scanner profiles) and one common held-out test set of further
patients, a third from each scanner profile, that no site trains on. Same model, seed and
reader settings (conf/lung_conf.json), same budget of rounds x local epochs:
  (a) centralized: the three sites' training patches pooled in one place;
  (b) each hospital alone, on its own training patches;
  (c) FedAvg with Paillier: the README's main job on a standalone FATE-Flow of its own;
  (d) FedProx with Paillier: the same job with fedprox_mu.
Every run trains on every positive plus `negatives_per_positive` (10) fresh negatives per
positive each epoch. (a) and (b) run the sites' own training loop (core.federation.round_loop.run_site)
with an aggregator that returns the local model unchanged, so only the data differ.

Then three ways of choosing negatives, centralized, at one budget (3 negatives per positive
per epoch, so every epoch trains on the same number of patches):
  (e) the read-time 3:1 subsample (the reader keeps 3 negatives per positive, drawn once);
  (f) per-epoch sampling, 3 fresh negatives per positive each epoch;
  (g) per-epoch sampling with hard negatives (half of them the highest-scored of a fresh pool).
Every model is scored on every held-out candidate by LUNA16's official rules: CPM with a 95%
bootstrap CI over scans, and AUC.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from _harness import bench_work, held_out, model_dir, pool, run_job, site_datasets, standalone_federation, train_alone


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="luna16")
    parser.add_argument("--patients", type=int, default=45, help="patients over the three hospitals")
    parser.add_argument("--heldout-patients", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--local-epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--fedprox-mu", type=float, default=0.01)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the runs outside FATE")
    parser.add_argument("--skip", default="", help="comma-separated rows to leave out, e.g. e,f,g")
    args = parser.parse_args(argv)
    skip = {x.strip() for x in args.skip.split(",") if x.strip()}
    trainer = {"rounds": args.rounds, "local_epochs": args.local_epochs, "learning_rate": args.learning_rate}

    with bench_work("fate_lung_pays_") as work:   # patches and FATE-Flow's home, removed at the end
        return _measure(args, work, skip, trainer)


def _measure(args, work: Path, skip: set[str], trainer: dict) -> int:
    from fate_components.core.learning.model_io import load_model

    t_start = time.perf_counter()
    models, seconds = {}, {}

    def timed(label: str, train) -> None:
        t0 = time.perf_counter()
        models[label] = train()
        seconds[label] = time.perf_counter() - t0
        print(f"  {label}: trained in {seconds[label]:.0f} s", flush=True)

    with standalone_federation(work, args.size, n_patients=args.patients) as fed:
        # The held-out patients: a new seed, dealt equally to the three scanner profiles.
        heldout = held_out(work, args.size, fed.conf, seed=1, n_patients=args.heldout_patients)
        site_data = site_datasets(fed, work)
        pooled = pool(site_data.values())
        if "a" not in skip:
            timed("(a) centralized, pooled data", lambda: train_alone(pooled, fed.conf, trainer, args.threads))
        if "b" not in skip:
            for name, data in site_data.items():
                timed(f"(b) {name} alone", lambda data=data: train_alone(data, fed.conf, trainer, args.threads))
        guest = next(s for s in fed.sites if s.role == "guest")
        for row, label, mu in (("c", "(c) FedAvg + Paillier", 0.0),
                               ("d", f"(d) FedProx mu={args.fedprox_mu} + Paillier", args.fedprox_mu)):
            if row not in skip:
                timed(label, lambda mu=mu: load_model(model_dir(fed, run_job(
                    fed, {**trainer, "aggregation": "paillier", "fedprox_mu": mu}), guest))[0])
        if "e" not in skip:
            subsampled = pool(site_datasets(fed, work, negative_ratio=3.0).values())
            timed("(e) read-time 3:1 subsample", lambda: train_alone(
                subsampled, fed.conf, {**trainer, "negatives_per_positive": 0}, args.threads))
        if "f" not in skip:
            timed("(f) per-epoch, 3 fresh negatives per positive", lambda: train_alone(
                pooled, fed.conf, {**trainer, "negatives_per_positive": 3}, args.threads))
        if "g" not in skip:
            timed("(g) per-epoch, 3 per positive, half hard", lambda: train_alone(
                pooled, fed.conf, {**trainer, "negatives_per_positive": 3, "hard_negative_fraction": 0.5},
                args.threads))

    positives = {name: int(d.train_y.sum()) for name, d in site_data.items()}
    candidates = {name: len(d.train_x) for name, d in site_data.items()}
    print(f"\nheld-out test set: {len(heldout.scans)} scans, {len(heldout.nodules)} nodules, {len(heldout.y)} "
          f"candidates ({int(heldout.y.sum())} on a nodule); training candidates per site {candidates}, "
          f"of them positive {positives}")
    print(f"budget: {args.rounds} rounds x {args.local_epochs} local epochs, learning rate {args.learning_rate}, "
          f"default model, seed 0; CI: {args.bootstrap} bootstrap resamples of the held-out scans\n")
    print("| training | CPM (95% CI) | AUC | wall time |")
    print("|---|---|---|---|")
    cpms = {}
    for label, model in models.items():
        cpm, low, high, auc = heldout.score(model, args.bootstrap)
        cpms[label] = cpm
        print(f"| {label} | {cpm:.3f} ({low:.3f}-{high:.3f}) | {auc:.3f} | {seconds[label]:.0f} s |")
    central = cpms.get("(a) centralized, pooled data")
    singles = [v for k, v in cpms.items() if k.startswith("(b)")]
    for label in (k for k in cpms if k.startswith(("(c)", "(d)"))):
        if central is not None and singles:
            print(f"{label}: CPM {cpms[label] / central:.2f} x centralized (target >= 0.95); "
                  f"{'above' if cpms[label] > max(singles) else 'NOT above'} the best single hospital "
                  f"({max(singles):.3f})")
    print(f"total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
