"""Does federation pay? One held-out test set, five ways to train the same model.

    .venv/bin/python bench/federation_pays.py [--rounds 12] [--local-epochs 3] [--fedprox-mu 0.01]

Three non-IID sample hospitals (bench size: 60 patients, three scanner profiles) and one
common held-out test set of 60 further patients, a third from each scanner profile, that
no site trains on. Same model, same seed, same reader settings (conf/lung_conf.json), same
budget of rounds x local_epochs passes over the training patches:
  (a) centralized: the three sites' training patches pooled in one place;
  (b) each hospital alone, on its own training patches;
  (c) FedAvg with Paillier: the README's main job on a standalone FATE-Flow of its own;
  (d) FedProx with Paillier: the same job with fedprox_mu.
(a) and (b) run the sites' own training loop (core.federated.run_site) with an aggregator
that returns the local model unchanged, so only the data differ. Every model is scored on
the held-out candidates: LUNA16 CPM with a 95% bootstrap CI over scans, and AUC.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _harness import held_out, model_dir, pool, run_job, site_datasets, standalone_federation, train_alone


def main(argv=None) -> int:
    from fate_components.components._trainer import load_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="bench")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--local-epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--fedprox-mu", type=float, default=0.01)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for (a) and (b)")
    args = parser.parse_args(argv)
    trainer = {"rounds": args.rounds, "local_epochs": args.local_epochs, "learning_rate": args.learning_rate}

    work = Path(tempfile.mkdtemp(prefix="fate_lung_pays_"))
    t_start = time.perf_counter()
    with standalone_federation(work, args.size) as fed:
        # The held-out patients: a new seed, dealt equally to the three scanner profiles.
        heldout = held_out(work, args.size, fed.conf, seed=1)
        site_data = site_datasets(fed, work)

        models, seconds = {}, {}
        t0 = time.perf_counter()
        models["(a) centralized, pooled data"] = train_alone(pool(site_data.values()), fed.conf, trainer,
                                                             args.threads)
        seconds["(a) centralized, pooled data"] = time.perf_counter() - t0
        for name, data in site_data.items():
            t0 = time.perf_counter()
            models[f"(b) {name} alone"] = train_alone(data, fed.conf, trainer, args.threads)
            seconds[f"(b) {name} alone"] = time.perf_counter() - t0
        guest = next(s for s in fed.sites if s.role == "guest")
        for label, mu in (("(c) FedAvg + Paillier", 0.0), (f"(d) FedProx mu={args.fedprox_mu} + Paillier",
                                                           args.fedprox_mu)):
            t0 = time.perf_counter()
            job_id = run_job(fed, {**trainer, "aggregation": "paillier", "fedprox_mu": mu})
            models[label] = load_model(model_dir(fed, job_id, guest))[0]
            seconds[label] = time.perf_counter() - t0

    n_train = {name: len(d.train_x) for name, d in site_data.items()}
    print(f"\nheld-out test set: {len(heldout.scans)} scans, {len(heldout.nodules)} nodules, {len(heldout.y)} "
          f"candidates ({int(heldout.y.sum())} on a nodule); training patches per site {n_train}")
    print(f"budget: {args.rounds} rounds x {args.local_epochs} local epochs, learning rate {args.learning_rate}, "
          f"default model, seed 0; CI: {args.bootstrap} bootstrap resamples of the held-out scans\n")
    print("| training | CPM (95% CI) | AUC | wall time |")
    print("|---|---|---|---|")
    cpms = {}
    for label, model in models.items():
        cpm, low, high, auc = heldout.score(model, args.bootstrap)
        cpms[label] = cpm
        print(f"| {label} | {cpm:.3f} ({low:.3f}-{high:.3f}) | {auc:.3f} | {seconds[label]:.0f} s |")
    central = cpms["(a) centralized, pooled data"]
    best_single = max(v for k, v in cpms.items() if k.startswith("(b)"))
    for label in (k for k in cpms if k.startswith(("(c)", "(d)"))):
        print(f"{label}: CPM {cpms[label] / central:.2f} x centralized (target >= 0.95); "
              f"{'above' if cpms[label] > best_single else 'NOT above'} the best single hospital ({best_single:.3f})")
    print(f"total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
