"""FATE component `lung_evaluation`: FROC/CPM (LUNA16 rules), AUC and bootstrap CI of a site's predictions.

Runs at each hospital on its own annotations; only the summary figures become FATE metrics.
"""
# No `from __future__ import annotations` here: FATE reads the annotations as live objects.
import json
import logging
from pathlib import Path

from fate.components.core import GUEST, HOST, Role, cpn, params

from ._artifacts import publish_directory, replace_file

logger = logging.getLogger(__name__)


@cpn.component(roles=[GUEST, HOST])
def lung_evaluation(
    ctx,
    role: Role,
    site_data: cpn.data_directory_input(roles=[GUEST, HOST], desc="the bound site directory (annotations.csv, "
                                        "optional annotations_excluded.csv)"),
    predictions: cpn.data_directory_input(roles=[GUEST, HOST], desc="predictions from homo_lung_nn"),
    report: cpn.data_directory_output(roles=[GUEST, HOST], desc="evaluation.json with the FROC curve"),
    split: cpn.parameter(type=params.string_choice(["val", "all"]), default="val",
                         desc="val: only patients held out of training; all: every scan"),
    bootstrap: cpn.parameter(type=params.conint(ge=0), default=1000, desc="bootstrap samples over scans"),
    seed: cpn.parameter(type=int, default=0, desc="bootstrap seed"),
    max_marks_per_scan: cpn.parameter(type=params.conint(ge=0), default=100,
                                      desc="keep the N most probable marks of each scan, as LUNA16 (0 keeps all)"),
):
    from fate_components.core.evaluation import evaluate_submission

    site_root = Path(site_data.get_directory())
    annotations, excluded = site_root / "annotations.csv", site_root / "annotations_excluded.csv"
    if not annotations.exists():
        logger.warning("no annotations.csv in the site directory: no nodule to find, sensitivity and CPM undefined")
    result = evaluate_submission(Path(predictions.get_directory()) / "predictions.csv",
                                 annotations if annotations.exists() else None,
                                 excluded=excluded if excluded.exists() else None,
                                 split=None if split == "all" else split, n_boot=bootstrap, seed=seed,
                                 max_marks_per_scan=max_marks_per_scan)
    out_dir = Path(report.get_directory())
    replace_file(out_dir / "evaluation.json",
                 lambda p: p.write_text(json.dumps(_finite({"split": split, **result}), indent=2)))
    publish_directory(report, {"split": split})
    summary = _finite({k: result[k] for k in ("cpm", "cpm_ci95", "auc", "n_scans", "n_nodules",
                                              "n_false_positives", "n_marks_dropped", "max_marks_per_scan")})
    ctx.metrics.log_metrics({**summary, "sensitivity_at": result["sensitivity_at"], "split": split},
                            name="froc_summary", type="froc")
    ctx.metrics.log_metrics([[x, y] for x, y in zip(result["froc"]["fps_per_scan"], result["froc"]["sensitivity"])],
                            name="froc_curve", type="curve")
    logger.info("CPM %.3f (95%% CI %.3f-%.3f), AUC %.3f on %d scans (%s)", result["cpm"], *result["cpm_ci95"],
                result["auc"], result["n_scans"], split)


def _finite(value):
    """NaN (e.g. AUC with no nodule among the evaluated scans) becomes null: FATE's metric store wants JSON."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
