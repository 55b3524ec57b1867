"""Metrics in the shapes FATE-Board 2.x draws (components/_metrics.py), checked without a FATE job."""
from __future__ import annotations

import json

import numpy as np
import pytest
from fate.arch import Context
from fate.arch.context._metrics import InMemoryMetricsHandler

from fate_components.components import _metrics
from fate_components.components._trainer import require_predict_io, site_train_summary
from fate_components.core.errors import ConfigError


def _scores(n: int = 400, seed: int = 0, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.15).astype(int)
    p = np.clip(rng.random(n) * 0.6 + 0.35 * y, 0, 1)
    return y, (np.round(p, 1) if ties else p)


def _context() -> tuple[Context, InMemoryMetricsHandler]:
    """A context whose sub-contexts share one in-memory handler, as a component's do (FATE sets the handler)."""
    handler = InMemoryMetricsHandler()
    return Context(metrics_handler=handler), handler


def _flat(entries: list) -> dict:
    out = {}
    for e in entries:
        out.update(_flat(e) if isinstance(e, list) else {e["metric"]: e["val"]})
    return out


# -------------------------------------------------------------------------------------------- summary tables

def test_flat_summary_flattens_nested_values_and_nulls_non_finite_numbers():
    data = {"cpm": 0.5, "sensitivity_at": {"0.125": 0.1, "8.0": float("nan")}, "ci": [0.2, 0.8],
            "n": np.int64(3), "split": "val"}
    assert _metrics.flat_summary(data) == {"cpm": 0.5, "sensitivity_at_0.125": 0.1, "sensitivity_at_8.0": None,
                                           "ci_0": 0.2, "ci_1": 0.8, "n": 3, "split": "val"}
    json.dumps(_metrics.flat_summary(data), allow_nan=False)


def test_flat_summary_refuses_two_values_under_one_key():
    with pytest.raises(ValueError, match="'a_b' appears twice"):
        _metrics.flat_summary({"a": {"b": 1}, "a_b": 2})


def test_summaries_of_one_task_are_each_named_summary_in_their_own_group():
    # Prepare: FATE's own in-memory handler refuses a one-time metric of a repeated name and group.
    ctx, handler = _context()
    # Execute
    _metrics.log_summary(ctx, "froc_summary", {"cpm": 0.4})
    _metrics.log_summary(ctx, "train_summary", {"rounds_trained": 2})
    # Assert
    records = handler.get_metrics()
    assert [(r["name"], r["type"]) for r in records] == [("summary", "froc_summary"), ("summary", "train_summary")]
    assert records[0]["data"] == {"cpm": 0.4} and records[0]["step_axis"] is None
    with pytest.raises(ValueError, match="duplicated"):
        _metrics.log_summary(ctx, "froc_summary", {"cpm": 0.5})


# -------------------------------------------------------------------------------------------- per round

def test_a_round_logs_one_loss_typed_series_and_the_rest_as_other_types():
    ctx, handler = _context()
    for r in range(3):
        round_ctx = ctx.on_iterations.indexed_ctx(r)
        _metrics.log_round_loss(round_ctx, "train_loss", 0.5 - 0.1 * r)
        _metrics.log_round(round_ctx, "val_loss", 0.6)
        _metrics.log_round(round_ctx, "val_auc", 0.7, type="auc")
        _metrics.log_round(round_ctx, "global_val_loss", 0.55)
    records = handler.get_metrics()
    loss_typed = [r for r in records if "loss" in (r["type"] or "").lower()]   # what the board's Loss chart takes
    assert [r["name"] for r in loss_typed] == ["train_loss"]
    assert [p["step"] for p in loss_typed[0]["data"]] == [0, 1, 2]
    assert {r["name"]: r["type"] for r in records} == {"train_loss": "loss", "val_loss": "scalar",
                                                       "val_auc": "auc", "global_val_loss": "scalar"}


def test_a_second_loss_typed_series_is_refused():
    with pytest.raises(ValueError, match="Loss chart"):
        _metrics.log_round(Context().on_iterations.indexed_ctx(0), "val_loss", 0.3, type="loss")


# -------------------------------------------------------------------------------------------- evaluation

@pytest.mark.parametrize("ties", [False, True])
def test_classification_metrics_equal_fates_own(ties):
    # Prepare
    tool = pytest.importorskip("fate.ml.evaluation.tool")
    from fate.ml.evaluation.classification import KS

    y, p = _scores(ties=ties)
    # Execute
    ours = _metrics.binary_classification_metrics(y, p)
    # Assert: FATE's single-value binary metrics and its KS with the table the board draws ROC and K-S from
    fates = _flat(tool.get_single_val_binary_metrics(threshold=0.5)(predict=p, label=y))
    ks, ks_table = (r.to_dict() for r in KS()(p, y))
    expected = {**fates, "ks": ks["val"], "ks_table": ks_table["val"]}
    mine = _flat(ours)
    assert set(mine) == set(expected)
    for name, value in expected.items():
        if name == "ks_table":
            for column, values in value.items():
                np.testing.assert_allclose(mine[name][column], values, err_msg=column)
        else:
            assert mine[name] == pytest.approx(value, abs=1e-12), name


def test_evaluation_data_has_fates_structure_and_names_the_board_matches():
    y, p = _scores()
    data = _metrics.evaluation_data("trainer", "val", y, p)
    assert list(data) == ["trainer"] and list(data["trainer"]) == ["val"]
    entries = data["trainer"]["val"]
    assert entries[0]["metric"] == "auc"
    assert [e["metric"] for e in entries[1]] == ["ks", "ks_table"]   # one metric of two results: a nested list
    assert set(entries[1][1]["val"]) == {"tpr", "fpr", "threshold", "cuts"}
    assert len(entries[1][1]["val"]["tpr"]) == 101
    json.dumps(data, allow_nan=False)
    scalars = _metrics.scalar_metrics(data)
    assert set(scalars) == {"auc", "ks", "binary_accuracy", "binary_precision", "binary_recall", "binary_f1_score"}
    # The board's evaluation.ts puts these in its score table: auc, ks, precision, recall, accuracy.
    for column in ("auc", "ks", "precision", "recall", "accuracy"):
        assert any(column in name for name in scalars), column


def test_metrics_undefined_on_the_labels_are_left_out():
    only_negatives = _flat(_metrics.binary_classification_metrics([0, 0, 0], [0.1, 0.2, 0.3]))
    assert only_negatives == {"binary_accuracy": 1.0}
    only_positives = _flat(_metrics.binary_classification_metrics([1, 1], [0.9, 0.2]))
    assert set(only_positives) == {"binary_accuracy", "binary_precision", "binary_recall", "binary_f1_score"}
    assert _metrics.binary_classification_metrics([], []) == []
    with pytest.raises(ValueError, match="2 labels but 1 scores"):
        _metrics.binary_classification_metrics([0, 1], [0.5])


# -------------------------------------------------------------------------------------------- the trainer's

def test_train_summary_is_flat_and_counts_rounds_from_one():
    meta = {"train_config": {"rounds": 5}, "n_train": 80, "n_val": 20,
            "history": [{"train_loss": 0.6, "val": {"loss": 0.5, "auc": float("nan")}, "best_round": 0,
                         "global_val_loss": 0.52, "train_seconds": 1.5, "aggregate_seconds": 0.5},
                        {"train_loss": 0.4, "val": {"loss": 0.45, "auc": 0.8}, "best_round": 1,
                         "global_val_loss": 0.47, "train_seconds": 1.5, "aggregate_seconds": 0.5}],
            "dp": {"mode": "sample", "epsilon": 2.5}}
    summary = _metrics.flat_summary(site_train_summary("hospital_a", "paillier", meta, 120))
    assert summary["rounds_trained"] == 2 and summary["best_round"] == 2 and summary["final_val_auc"] == 0.8
    assert summary["train_seconds"] == 3.0 and summary["epsilon"] == 2.5 and summary["candidates_scored"] == 120
    assert all(not isinstance(v, (dict, list)) for v in summary.values())
    no_rounds = site_train_summary("hospital_a", "fate_masks", {**meta, "history": [], "dp": {"mode": "none"}}, None)
    assert no_rounds["rounds_trained"] == 0 and "epsilon" not in no_rounds and "candidates_scored" not in no_rounds


def test_predict_without_test_data_says_how_to_fix_the_dsl():
    with pytest.raises(ConfigError, match=r"homo_lung_nn \(stage predict\): no test_data.*dsl/lung_predict.json"):
        require_predict_io(None, object())
    require_predict_io(object(), object())   # both there: nothing to say
