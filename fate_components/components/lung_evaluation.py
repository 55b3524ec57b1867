"""FATE component `lung_evaluation`: FROC/CPM (LUNA16 rules), AUC and bootstrap CI of a site's predictions.

Runs at each hospital on its own annotations; only the summary figures become FATE metrics: the
FROC table (`summary`), the candidates' classification scores in FATE's `evaluation` structure
(AUC, KS, accuracy, precision and recall at 0.5 of the split's candidates) and the FROC curve.
"""
# No `from __future__ import annotations` here: FATE reads the annotations as live objects.
import json
import logging
from pathlib import Path

from fate.components.core import GUEST, HOST, Role, cpn, params

from . import _metrics
from ._artifacts import publish_directory

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
    from fate_components.core.evaluation.submission import evaluate_submission
    from fate_components.core.learning.model_io import replace_file

    site_root = Path(site_data.get_directory())
    annotations, excluded = site_root / "annotations.csv", site_root / "annotations_excluded.csv"
    if not annotations.exists():
        logger.warning("no annotations.csv in the site directory: no nodule to find, sensitivity and CPM undefined")
    predictions_csv = Path(predictions.get_directory()) / "predictions.csv"
    result = evaluate_submission(predictions_csv, annotations if annotations.exists() else None,
                                 excluded=excluded if excluded.exists() else None,
                                 split=None if split == "all" else split, n_boot=bootstrap, seed=seed,
                                 max_marks_per_scan=max_marks_per_scan)
    labels, scores = _labelled_scores(predictions_csv, None if split == "all" else split)
    # FATE's evaluation structure, keyed by the task that wrote the predictions as FATE's own
    # evaluation component keys it (fate/components/components/evaluation.py).
    source = getattr(predictions.artifact.metadata, "source", None)
    evaluation = _metrics.evaluation_data(getattr(source, "task_name", None) or "homo_lung_nn", split, labels, scores)
    out_dir = Path(report.get_directory())
    document = {"split": split, **result, "candidates": {"n": len(labels), **_metrics.scalar_metrics(evaluation)}}
    replace_file(out_dir / "evaluation.json",
                 lambda p: p.write_text(json.dumps(_metrics.non_finite_to_none(document), indent=2)))
    publish_directory(report, {"split": split})
    low, high = result["cpm_ci95"]
    _metrics.log_summary(ctx, "froc_summary", {
        "split": split, "cpm": result["cpm"], "cpm_ci95_low": low, "cpm_ci95_high": high,
        **{f"sensitivity_at_{rate}": value for rate, value in result["sensitivity_at"].items()},
        "detection_auc": result["auc"], "n_scans": result["n_scans"], "n_nodules": result["n_nodules"],
        "n_detected": result["n_detected"], "n_false_positives": result["n_false_positives"],
        "n_marks_dropped": result["n_marks_dropped"], "max_marks_per_scan": result["max_marks_per_scan"],
        "bootstrap": result["bootstrap"], "bootstrap_used": result["bootstrap_used"]})
    _metrics.log_evaluation(ctx, _metrics.non_finite_to_none(evaluation))
    ctx.metrics.log_metrics([[x, y] for x, y in zip(result["froc"]["fps_per_scan"], result["froc"]["sensitivity"])],
                            name="froc_curve", type="curve")
    candidate_auc = _metrics.scalar_metrics(evaluation).get("auc", float("nan"))
    logger.info("CPM %.3f (95%% CI %.3f-%.3f), detection AUC %.3f on %d scans; candidate AUC %.3f on %d "
                "candidates (%s)", result["cpm"], *result["cpm_ci95"], result["auc"], result["n_scans"],
                candidate_auc, len(labels), split)


def _labelled_scores(path: Path, split: str | None) -> tuple[list[int], list[float]]:
    """(class, probability) of each candidate of predictions.csv, only `split`'s patients if given."""
    from fate_components.core.data.candidates import csv_rows

    labels, scores = [], []
    for _, row in csv_rows(path, ("class", "patient_split", "probability"), path.name):
        if split is None or row["patient_split"] == split:
            labels.append(int(row["class"]))
            scores.append(float(row["probability"]))
    return labels, scores
