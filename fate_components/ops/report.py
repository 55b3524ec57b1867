"""After a job: one HTML page with PNG plots, from what FATE-Flow shows and each site's own job outputs.

Per-site training loss, validation AUC, the global validation loss and epsilon come from the
trainer's per-round FATE metrics, read by name (FATE-Board charts only the training loss, the
one loss-typed series: see components/_metrics.py); the FROC curves with their bootstrap bands
from each site's `lung_evaluation` output; the data summary from each site's `reader_all`
output. The page has no script and no external resource: it opens from disk anywhere.
"""
from __future__ import annotations

import csv
import html
import json
import shutil
import statistics
import tempfile
from pathlib import Path

from fate_components.core.errors import LungError

from . import runner
from .jobs import Site

PLOTS = ("loss.png", "validation.png", "froc.png")


def collect(endpoints: runner.SiteEndpoints, job_id: str, sites: list[Site],
            metrics: dict[str, dict] | None = None) -> dict:
    """Everything the page shows, as plain data (also written next to the page as report.json).

    Each site's figures come from its own FATE-Flow and home in `endpoints`. `metrics` ({site name:
    step metrics of its trainer}) saves querying FATE-Flow again when the caller already has them.
    """
    data: dict = {"job_id": job_id, "sites": {}}
    for site in sites:
        if site.role == "arbiter":
            continue
        site_home = endpoints.home_of(site.name)
        metrics_of_site = ((metrics or {}).get(site.name) or runner.step_metrics(
            endpoints.client_of(site.name), job_id, site.role, site.party_id, "trainer"))
        if not metrics_of_site.get("train_loss"):
            raise LungError(f"job {job_id}: no training metrics for {site.name} ({site.role} {site.party_id}); "
                            f"is this a training job of dsl/lung.json?")
        entry = {"role": site.role, "party_id": site.party_id,
                 "train_loss": _series(metrics_of_site.get("train_loss")),
                 "val_auc": _series(metrics_of_site.get("val_auc")),
                 "global_val_loss": _series(metrics_of_site.get("global_val_loss")),
                 "epsilon": _series(metrics_of_site.get("epsilon")),
                 "bytes_sent": _series(metrics_of_site.get("bytes_sent")),
                 "data": _data_summary(site_home, job_id, site)}
        try:
            report = runner.data_output_dir(site_home, job_id, site.role, site.party_id, "evaluation", "report")
            entry["evaluation"] = json.loads((report / "evaluation.json").read_text())
        except runner.JobError:
            entry["evaluation"] = None   # a job without the evaluation task: the page says so
        data["sites"][site.name] = entry
    return data


def _series(points: dict | None) -> list[list[float]]:
    return [[int(k) + 1, float(v)] for k, v in sorted((points or {}).items())]


def _data_summary(home: Path, job_id: str, site: Site) -> dict:
    directory = runner.data_output_dir(home, job_id, site.role, site.party_id, "reader_all", "output_data")
    summary = json.loads((directory / "summary.json").read_text())
    with open(directory / "candidates.csv", newline="") as f:
        labels = [int(row["label"]) for row in csv.DictReader(f)]
    spacings = [s["spacing_mm"] for s in summary.get("scans", [])]
    median = [statistics.median(s[i] for s in spacings) for i in range(3)] if spacings else None
    return {"scans": len(spacings), "candidates": summary.get("candidates_total", len(labels)),
            "positives": sum(labels),
            "median_spacing_mm": median,
            "slice_spacing_range_mm": [min(s[2] for s in spacings), max(s[2] for s in spacings)] if spacings else None,
            "skipped_scans": len(summary.get("scans_skipped", [])),
            "skipped_candidates": len(summary.get("candidates_skipped", []))}


def write_report(data: dict, out_dir: Path) -> Path:
    """Write index.html, the PNGs and report.json into `out_dir` (replaced whole); returns the page."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        _plot(data, partial)
        (partial / "report.json").write_text(json.dumps(data, indent=2))
        (partial / "index.html").write_text(_page(data))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        partial.rename(out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out_dir / "index.html"


def _plot(data: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")   # no display on a FATE node
    import matplotlib.pyplot as plt

    sites = data["sites"]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for name, s in sites.items():
        ax.plot(*zip(*s["train_loss"]), marker="o", label=name)
    ax.set(xlabel="round", ylabel="training loss (BCE)", title="Training loss per site")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=100)
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    first = next(iter(sites.values()))
    left.plot(*zip(*first["global_val_loss"]), marker="o", color="black")
    left.set(xlabel="round", ylabel="loss (BCE)", title="Global validation loss\n(sample-weighted over sites)")
    for name, s in sites.items():
        if s["val_auc"] and any(v >= 0 for _, v in s["val_auc"]):
            right.plot(*zip(*[(r, v) for r, v in s["val_auc"] if v >= 0]), marker="o", label=name)
    right.set(xlabel="round", ylabel="AUC", title="Validation AUC per site", ylim=(0, 1.02))
    right.legend()
    fig.tight_layout()
    fig.savefig(out / "validation.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, s in sites.items():
        ev = s["evaluation"]
        if not ev:
            continue
        band = ev.get("froc_band")
        low, high = ev["cpm_ci95"]
        label = f"{name}: CPM {_fmt(ev['cpm'])} ({_fmt(low)}-{_fmt(high)})"
        if band:
            line, = ax.plot(band["fps_per_scan"], band["sensitivity"], label=label)
            ax.fill_between(band["fps_per_scan"], _nan_to(band["low"], 0.0), _nan_to(band["high"], 1.0),
                            color=line.get_color(), alpha=0.15)
        else:
            ax.plot(ev["froc"]["fps_per_scan"], ev["froc"]["sensitivity"], label=label)   # linear, as LUNA16
    ax.set_xscale("log", base=2)
    ax.set(xlim=(0.125, 8), ylim=(0, 1.02), xlabel="false positives per scan", ylabel="sensitivity",
           title="FROC on held-out patients, 95% bootstrap band")
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "froc.png", dpi=100)
    plt.close(fig)


def _nan_to(values, fill: float) -> list[float]:
    return [fill if v is None or v != v else v for v in values]


def _fmt(x) -> str:
    return "n/a" if x is None or x != x else f"{x:.3f}"


def _page(data: dict) -> str:
    e = html.escape
    rows = []
    for name, s in data["sites"].items():
        d, ev = s["data"], s["evaluation"]
        spacing = " x ".join(f"{v:.2f}" for v in d["median_spacing_mm"]) if d["median_spacing_mm"] else "n/a"
        slices = "-".join(f"{v:.2f}" for v in d["slice_spacing_range_mm"]) if d["slice_spacing_range_mm"] else "n/a"
        final = s["train_loss"][-1][1] if s["train_loss"] else float("nan")
        cpm = f"{_fmt(ev['cpm'])} ({_fmt(ev['cpm_ci95'][0])}-{_fmt(ev['cpm_ci95'][1])})" if ev else "not evaluated"
        # The candidate-level ROC AUC (what the demo prints and FATE-Board's evaluation table shows),
        # not the FROC's detection AUC.
        auc = _fmt((ev.get("candidates") or {}).get("auc")) if ev else "n/a"
        sent = s.get("bytes_sent") or []
        mb_sent = f"{sum(v for _, v in sent) / len(sent) / 1e6:.2f}" if sent else "n/a"
        epsilon = f"{s['epsilon'][-1][1]:.2f}" if s.get("epsilon") else "no DP"
        rows.append(f"<tr><td>{e(name)}</td><td>{e(s['role'])} {e(str(s['party_id']))}</td><td>{d['scans']}</td>"
                    f"<td>{d['candidates']}</td><td>{d['positives']}</td><td>{spacing}</td><td>{slices}</td>"
                    f"<td>{final:.3f}</td><td>{cpm}</td><td>{auc}</td><td>{epsilon}</td><td>{mb_sent}</td></tr>")
    images = "\n".join(f'<figure><img src="{p}" alt="{e(alt)}"><figcaption>{e(alt)}</figcaption></figure>'
                       for p, alt in zip(PLOTS, ("Training loss per site and round",
                                                 "Global validation loss and per-site validation AUC",
                                                 "FROC curves with 95% bootstrap bands and CPM")))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>fate-lung job {e(data['job_id'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:.3em .6em;text-align:right}} td:first-child{{text-align:left}}
figure{{display:inline-block;margin:1em}} img{{max-width:100%}}</style></head>
<body>
<h1>Federated lung-nodule classifier: job {e(data['job_id'])}</h1>
<h2>Sites</h2>
<table><tr><th>site</th><th>FATE party</th><th>scans</th><th>candidates</th><th>positives</th>
<th>median spacing x, y, z (mm)</th><th>slice spacing (mm)</th><th>final train loss</th>
<th>held-out CPM (95% CI)</th><th>held-out candidate AUC</th><th>privacy: final &epsilon;</th>
<th>MB sent per round</th></tr>
{chr(10).join(rows)}
</table>
<p>CPM: mean sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false positives per scan (LUNA16 rules), on each
site's patients held out of training; the interval resamples scans. &epsilon;: the site's differential-privacy
guarantee for its training patients at the job's delta (Opacus accountant), if DP was on. MB sent per round:
the mean size of the site's encrypted updates (aggregation paillier).</p>
<h2>Training and evaluation</h2>
{images}
</body></html>
"""
