"""What Paillier adds to a federated round in the real FATE job, next to local training time.

    .venv/bin/python bench/round_overhead.py [--rounds 4] [--size bench] [--local-epochs 3 24]

Starts its own standalone FATE-Flow (own home, free port; stopped at the end), binds the
three sample hospitals, runs the main job (dsl/lung.json, default model) once with
`paillier` and once with `plaintext` aggregation, and prints per-round medians from each
site's training history: local training seconds, and seconds from the end of local training
until the averaged model is back (aggregation, incl. waiting for the slowest site).

Paillier's cost per round is fixed by the model size; local training time grows with the
patches a site trains on per round. `--local-epochs` takes several values: 3 is the conf's
default (on bench-size sites every candidate each epoch, 300-400 training patches per site);
24 does the training work per round of a site eight times larger.
"""
from __future__ import annotations

import argparse
import statistics

from _harness import bench_work, history, run_job, standalone_federation


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--size", default="bench")
    parser.add_argument("--local-epochs", type=int, nargs="+", default=[3])
    args = parser.parse_args(argv)

    with bench_work("fate_lung_overhead_") as work, standalone_federation(work, args.size) as fed:
        results = {}
        for epochs, aggregation in [(e, a) for e in args.local_epochs for a in ("paillier", "plaintext")]:
            job_id = run_job(fed, {"rounds": args.rounds, "learning_rate": 1e-3, "aggregation": aggregation,
                                   "local_epochs": epochs, "allow_plaintext": aggregation == "plaintext"})
            per_site = {}
            for site in fed.sites:
                if site.role == "arbiter":
                    continue
                rounds = history(fed, job_id, site)
                per_site[site.name] = (statistics.median(h["train_seconds"] for h in rounds),
                                       statistics.median(h["aggregate_seconds"] for h in rounds))
            results[epochs, aggregation] = per_site
    print(f"main job, {args.size} sample data, {args.rounds} rounds, default model, 3 sites + arbiter on "
          f"this machine; medians per round (s)")
    print(f"{'epochs':>6}  {'site':<12}{'train (paillier)':>18}{'agg paillier':>14}{'train (plain)':>15}"
          f"{'agg plain':>11}{'added':>8}{'added/train':>13}")
    for epochs in args.local_epochs:
        for name in results[epochs, "paillier"]:
            tp, ap = results[epochs, "paillier"][name]
            tt, at = results[epochs, "plaintext"][name]
            added = ap - at
            print(f"{epochs:>6}  {name:<12}{tp:>18.2f}{ap:>14.2f}{tt:>15.2f}{at:>11.2f}{added:>8.2f}"
                  f"{added / tt:>12.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
