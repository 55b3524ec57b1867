"""Privacy against utility: patient-level DP-SGD at epsilon about 1, 3 and 8, and without DP.

    .venv/bin/python bench/privacy_utility.py [--epsilons 1,3,8] [--rounds 10] [--local-epochs 2]

Three sample hospitals of the `patients` size (480 patients, about 128 training patients per
site) train the README's main job (Paillier aggregation) on a standalone FATE-Flow of their
own: once without DP, then once per target epsilon with dp.mode=sample. For each target the
noise multiplier comes from Opacus (`get_noise_multiplier`) for the site that spends its
budget fastest (sampling rate and steps per epoch differ by site); dp.max_epsilon is set to the
target, so no site can end above it. Every model is scored on one common held-out set of 60 further patients
(LUNA16 CPM with a 95% bootstrap CI over scans, and AUC). Training time per local epoch
comes from the sites' round histories (jobs share the machine's two cores), and side by side
in one process on one site's patches (the figure to quote).

It also trains the same model on the pooled data without DP twice, with GroupNorm (what the
model uses, and what DP-SGD requires) and with BatchNorm, to show GroupNorm costs no accuracy.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _harness import held_out, history, model_dir, pool, run_job, site_datasets, standalone_federation, train_alone


def _with_batchnorm(model):
    """The same network with every GroupNorm replaced by BatchNorm3d."""
    from torch import nn

    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.GroupNorm):
                setattr(module, child_name, nn.BatchNorm3d(child.num_channels))
    return model


def _seconds_per_epoch(fed, job_id: str, local_epochs: int) -> float:
    per_site = [statistics.median(h["train_seconds"] for h in history(fed, job_id, s)) / local_epochs
                for s in fed.sites if s.role != "arbiter"]
    return statistics.mean(per_site)


def _dp_sgd_overhead(data, conf: dict, patients_per_step: int, epochs: int) -> tuple[float, float]:
    """Seconds per epoch of plain training and of DP-SGD on the same site's patches, side by side, 1 thread."""
    import torch

    from fate_components.core.learning.augmentation import augment_3d
    from fate_components.core.learning.model import build_model
    from fate_components.core.learning.training import TrainConfig, train_local
    from fate_components.core.privacy.dp import DPConfig, PatientDPSGD, train_local_dp

    torch.set_num_threads(1)
    spec = conf["parameters"]["common"]["trainer"]["model"]
    config = TrainConfig(learning_rate=1e-3)
    plain, private = [], []
    for _ in range(epochs):
        model = build_model(spec, seed=0)
        t0 = time.perf_counter()
        train_local(model, config.make_optimizer(model), data.train_x, data.train_y, epochs=1, batch_size=16,
                    generator=torch.Generator().manual_seed(0), augment=True)
        plain.append(time.perf_counter() - t0)
        model = build_model(spec, seed=0)
        trainer = PatientDPSGD(model, config.make_optimizer(model), data.train_groups,
                               DPConfig(mode="sample", noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-3),
                               patients_per_step)
        t0 = time.perf_counter()
        generator = torch.Generator().manual_seed(0)
        train_local_dp(trainer, data.train_x, data.train_y, epochs=1, augment=lambda x: augment_3d(x, generator))
        private.append(time.perf_counter() - t0)
        trainer.close()
    return statistics.median(plain), statistics.median(private)


def _print_row(row: dict, heldout, n_boot: int, base_epoch: float | None) -> None:
    """Score one job's model and print its table row at once (a long run's rows are not lost to a later failure)."""
    cpm, low, high, auc = heldout.score(row["model"], n_boot)
    eps = "-" if row["epsilon"] is None else ", ".join(f"{v:.2f}" for v in row["epsilon"].values())
    sigma = "-" if row["sigma"] is None else f"{row['sigma']:.2f}"
    overhead = "" if row["sigma"] is None or not base_epoch else f" ({row['epoch_s'] / base_epoch:.2f}x)"
    row["line"] = (f"| {row['label']} | {sigma} | {eps} | {cpm:.3f} ({low:.3f}-{high:.3f}) | {auc:.3f} | "
                   f"{row['epoch_s']:.1f}{overhead} | {row['wall']:.0f} s |")
    print(row["line"], flush=True)


def main(argv=None) -> int:
    from opacus.accountants.utils import get_noise_multiplier

    from fate_components.core.learning.model import build_model
    from fate_components.core.learning.model_io import load_model
    from fate_components.core.privacy.dp import DPConfig, epsilon_for, patient_sampling

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="patients")
    parser.add_argument("--heldout-size", default="bench")
    parser.add_argument("--epsilons", default="1,3,8")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--local-epochs", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--patients-per-step", type=int, default=8, help="expected patients per DP-SGD step")
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--delta", type=float, default=1e-3)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--steps", default="overhead,baseline,dp,norm",
                        help="which parts to run: overhead (side by side, no FATE), baseline (the job without DP), "
                             "dp (one job per epsilon), norm (GroupNorm vs BatchNorm, pooled)")
    args = parser.parse_args(argv)
    steps_to_run = set(args.steps.split(","))
    trainer = {"rounds": args.rounds, "local_epochs": args.local_epochs, "learning_rate": args.learning_rate}

    work = Path(tempfile.mkdtemp(prefix="fate_lung_dp_"))
    t_start = time.perf_counter()
    rows = []
    with standalone_federation(work, args.size) as fed:
        heldout = held_out(work, args.heldout_size, fed.conf, seed=1)
        site_data = site_datasets(fed, work)
        patients = {name: len(set(d.train_groups)) for name, d in site_data.items()}
        # Each site spends at its own rate (sampling rate and steps per epoch): the noise is set for the
        # site that spends fastest, so every site stays within the target.
        spend = {name: patient_sampling(n, args.patients_per_step) for name, n in patients.items()}
        steps = {name: per_epoch * args.local_epochs * args.rounds for name, (_, per_epoch) in spend.items()}
        guest = next(s for s in fed.sites if s.role == "guest")
        largest = max(site_data, key=lambda n: len(site_data[n].train_x))
        if "overhead" in steps_to_run:
            plain_s, private_s = _dp_sgd_overhead(site_data[largest], fed.conf, args.patients_per_step, 3)
            print(f"\nDP-SGD time overhead, side by side on {largest}'s {len(site_data[largest].train_x)} training "
                  f"patches, 1 thread, median of 3 epochs: plain {plain_s:.1f} s/epoch, DP-SGD {private_s:.1f} "
                  f"s/epoch ({private_s / plain_s:.2f}x)")

        base_epoch = None
        if "baseline" in steps_to_run:
            t0 = time.perf_counter()
            job_id = run_job(fed, trainer)
            rows.append({"label": "no DP", "sigma": None, "epsilon": None,
                         "model": load_model(model_dir(fed, job_id, guest))[0],
                         "epoch_s": _seconds_per_epoch(fed, job_id, args.local_epochs),
                         "wall": time.perf_counter() - t0})
            base_epoch = rows[0]["epoch_s"]
            _print_row(rows[-1], heldout, args.bootstrap, base_epoch)
        for target in (float(e) for e in args.epsilons.split(",") if "dp" in steps_to_run):
            sigma = max(get_noise_multiplier(target_epsilon=target, target_delta=args.delta, sample_rate=rate,
                                             steps=steps[name], accountant="rdp") for name, (rate, _) in spend.items())
            dp = {"mode": "sample", "noise_multiplier": sigma, "max_grad_norm": args.max_grad_norm,
                  "delta": args.delta, "max_epsilon": target, "accountant": "rdp"}
            t0 = time.perf_counter()
            job_id = run_job(fed, {**trainer, "batch_size": args.patients_per_step, "dp": dp})
            reached = {s.name: history(fed, job_id, s)[-1]["epsilon"] for s in fed.sites if s.role != "arbiter"}
            rounds_run = len(history(fed, job_id, guest))
            label = f"DP-SGD, target epsilon {target:g}"
            if rounds_run < args.rounds:
                label += f" ({rounds_run} rounds within budget)"
            rows.append({"label": label, "sigma": sigma, "epsilon": reached,
                         "rounds": rounds_run, "model": load_model(model_dir(fed, job_id, guest))[0],
                         "epoch_s": _seconds_per_epoch(fed, job_id, args.local_epochs),
                         "wall": time.perf_counter() - t0})
            _print_row(rows[-1], heldout, args.bootstrap, base_epoch)
            assert all(epsilon_for(DPConfig(**dp), rate, steps[name]) <= target for name, (rate, _) in spend.items())

        norm_rows = []
        if "norm" in steps_to_run:
            pooled = pool(site_data.values())
            for label, make in (("GroupNorm", lambda: None),
                                ("BatchNorm", lambda: _with_batchnorm(build_model(
                                    fed.conf["parameters"]["common"]["trainer"]["model"], seed=0)))):
                t0 = time.perf_counter()
                model = train_alone(pooled, fed.conf, trainer, threads=2, model=make())
                norm_rows.append((label, heldout.score(model, args.bootstrap), time.perf_counter() - t0))

    print(f"\nsites: training patients {patients}, training patches "
          f"{ {n: len(d.train_x) for n, d in site_data.items()} }")
    print(f"held-out test set: {len(heldout.scans)} scans, {len(heldout.nodules)} nodules, {len(heldout.y)} candidates")
    print(f"budget: {args.rounds} rounds x {args.local_epochs} local epochs, learning rate {args.learning_rate}, "
          f"Paillier aggregation; DP-SGD: {args.patients_per_step} expected patients per step (sampling rate, "
          f"steps per site: { {n: (round(r, 3), steps[n]) for n, (r, _) in spend.items()} }), "
          f"max_grad_norm {args.max_grad_norm}, delta {args.delta}, RDP accountant\n")
    print("| training | noise multiplier | epsilon reached (per site) | held-out CPM (95% CI) | AUC | "
          "s per local epoch | job wall time |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(row["line"])
    if norm_rows:
        print("\npooled training without DP, same budget:\n")
        print("| normalisation | held-out CPM (95% CI) | AUC | wall time |")
        print("|---|---|---|---|")
        for label, (cpm, low, high, auc), seconds in norm_rows:
            print(f"| {label} | {cpm:.3f} ({low:.3f}-{high:.3f}) | {auc:.3f} | {seconds:.0f} s |")
    print(f"total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
