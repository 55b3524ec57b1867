"""Training throughput of one site's local epochs: inside the FATE component vs a bare PyTorch loop.

    .venv/bin/python bench/training_throughput.py [--epochs 3] [--size bench] [--repeats 2]

Runs the main job with two hospitals, hospital_a and hospital_b (FATE needs a host), and the
coordinator on a standalone FATE-Flow of its own: two single-threaded trainers on this
machine's two cores, so nothing competes for hospital_a's core; its trainer logs the seconds
of each round's local epochs. Then, in this process, a bare loop
(tensor from the patch array, forward, BCE, backward, Adam step) over the same patches
(the reader's output of that job), same model, seed, batch size and thread count. No
augmentation on either side. Both are repeated and the best epoch rate of each is compared.
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
from _harness import bench_work, history, run_conf, standalone_federation


def _two_site_job(fed, trainer: dict) -> str:
    conf = copy.deepcopy(fed.conf)
    conf["sites"].pop("hospital_c")
    conf["parameters"]["common"]["trainer"].update(trainer)
    return run_conf(fed, conf, timeout_s=3600)


def _bare_epochs(patches: np.ndarray, labels: np.ndarray, model_options: dict, seed: int, batch_size: int,
                 lr: float, epochs: int) -> list[float]:
    """Seconds per epoch of the plainest loop there is."""
    import torch

    from fate_components.core.learning.model import build_model

    torch.set_num_threads(1)
    model = build_model(model_options, seed=seed)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    x_all = torch.from_numpy(np.asarray(patches, dtype=np.float32))
    y_all = torch.from_numpy(labels.astype(np.float32))
    generator = torch.Generator().manual_seed(seed)
    seconds = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        order = torch.randperm(len(x_all), generator=generator)
        for lo in range(0, len(order), batch_size):
            idx = order[lo:lo + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x_all[idx]), y_all[idx]).backward()
            optimizer.step()
        seconds.append(time.perf_counter() - t0)
    return seconds


def main(argv=None) -> int:
    from fate_components.components._trainer import load_site_data
    from fate_components.ops import runner

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="bench")
    parser.add_argument("--epochs", type=int, default=3, help="local epochs per round (and bare-loop epochs)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    with bench_work("fate_lung_throughput_") as work, standalone_federation(work, args.size) as fed:
        # negatives_per_positive 0: every training patch every epoch, the same patches as the bare loop.
        trainer = {"rounds": args.rounds, "local_epochs": args.epochs, "use_3d_aug": False, "threads": 1,
                   "aggregation": "plaintext", "allow_plaintext": True, "learning_rate": 1e-3,
                   "negatives_per_positive": 0}
        job_id = _two_site_job(fed, trainer)
        guest = next(s for s in fed.sites if s.role == "guest")
        rounds = history(fed, job_id, guest)
        reader_out = runner.data_output_dir(Path(fed.server.home), job_id, guest.role, guest.party_id,
                                            "reader_all", "output_data")
        _, data = load_site_data(reader_out)
        common = fed.conf["parameters"]["common"]["trainer"]
        bare = _bare_epochs(data.train_x, data.train_y, common["model"], common["seed"], common["batch_size"],
                            1e-3, args.epochs * args.rounds)
    n = len(data.train_x)
    component_rates = [n * args.epochs / r["train_seconds"] for r in rounds]
    bare_rates = [n / s for s in bare]
    best_component, best_bare = max(component_rates), max(bare_rates)
    print(f"hospital_a, {n} training patches, default model, batch {common['batch_size']}, 1 thread, no augmentation")
    print(f"{'':<34}{'patches/s (best)':>18}{'median':>10}")
    print(f"{'inside homo_lung_nn (FATE job)':<34}{best_component:>18.1f}{np.median(component_rates):>10.1f}")
    print(f"{'bare PyTorch loop':<34}{best_bare:>18.1f}{np.median(bare_rates):>10.1f}")
    print(f"overhead of the component: {1 - best_component / best_bare:+.1%} (target at most 10%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
