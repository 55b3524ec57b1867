"""What Paillier adds to a federated round in the real FATE job, next to local training time.

    .venv/bin/python bench/round_overhead.py [--rounds 4] [--size bench]

Starts its own standalone FATE-Flow (own home, free port; stopped at the end), binds the
three sample hospitals, runs the main job (dsl/lung.json, default model) once with
`paillier` and once with `plaintext` aggregation, and prints per-round medians from each
site's training history: local training seconds, and seconds from the end of local training
until the averaged model is back (aggregation, incl. waiting for the slowest site).
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    from fate_components.core.sample_data import generate_federation
    from fate_components.ops import flow_server, runner
    from fate_components.ops.jobs import compile_dag, load_json, parse_sites
    from fate_components.ops.site_data import bind_site

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--size", default="bench")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="fate_lung_overhead_"))
    server = flow_server.start(work / "flow")
    try:
        client = server.client()
        sites_dirs = generate_federation(work / "data", size=args.size, seed=0)
        conf = load_json(ROOT / "conf" / "lung_conf.json")
        sites = parse_sites(conf)
        for site in sites:
            if site.role != "arbiter":
                table = site.tables["site"]
                bind_site(client, sites_dirs[site.name], namespace=table["namespace"], name=table["name"])
        results = {}
        for aggregation in ("paillier", "plaintext"):
            job_conf = copy.deepcopy(conf)
            job_conf["parameters"]["common"]["trainer"].update(
                rounds=args.rounds, learning_rate=1e-3, aggregation=aggregation,
                allow_plaintext=aggregation == "plaintext")
            job = runner.submit(client, compile_dag(load_json(ROOT / "dsl" / "lung.json"), job_conf))
            status = runner.wait(client, job["job_id"], timeout_s=3600, printer=lambda _: None)
            if status != "success":
                print(runner.failure_reason(client, job["job_id"], Path(server.home)))
                return 1
            per_site = {}
            for site in sites:
                if site.role == "arbiter":
                    continue
                meta = next((Path(server.home) / "jobs" / job["job_id"] / site.role / site.party_id).glob(
                    "trainer/*/output/output_model/model_directory/model_meta.json"))
                history = json.loads(meta.read_text())["history"]
                per_site[site.name] = (statistics.median(h["train_seconds"] for h in history),
                                       statistics.median(h["aggregate_seconds"] for h in history))
            results[aggregation] = per_site
        print(f"main job, {args.size} sample data, {args.rounds} rounds, default model, 3 sites + arbiter on "
              f"this machine; medians per round (s)")
        print(f"{'site':<12}{'train (paillier)':>18}{'agg paillier':>14}{'train (plain)':>15}{'agg plain':>11}"
              f"{'added':>8}{'added/train':>13}")
        for name in results["paillier"]:
            tp, ap = results["paillier"][name]
            tt, at = results["plaintext"][name]
            added = ap - at
            print(f"{name:<12}{tp:>18.2f}{ap:>14.2f}{tt:>15.2f}{at:>11.2f}{added:>8.2f}{added / tt:>12.0%}")
    finally:
        flow_server.stop(work / "flow")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
