"""What fate-lung logs as FATE metrics, in the shapes FATE-Board 2.x draws.

FATE-Board (2.1, `resources-front-end/packages/fate-board/src/transform/metric/index.ts`) reads a
task's metrics like this, and ignores `groups` and `step_axis`:

- every metric whose *type* contains "loss" goes into one "Loss" chart, a new series starting at
  each step 0 (`loss.ts`): so each task logs exactly one loss-typed metric per round;
- any other metric is drawn by the file named after its *name*: `summary` (a two-column table of
  the data's keys, `summary.ts`), `evaluation` (FATE's score table and ROC / K-S charts,
  `evaluation.ts`), `upload`; every other name is dropped without a word.

So, per task (every metric stays available to `flow output query-metric`):

=================  =========================  ===============  =====================================  ===========
task (component)   name                       type             when                                   on board
=================  =========================  ===============  =====================================  ===========
reader_* (reader)  summary                    reader_summary   once                                   table
reader_*           reader_skipped             skipped          once, if a scan/candidate was skipped  no
trainer (sites)    train_loss                 loss             every round                            Loss chart
trainer (sites)    val_loss, global_val_loss  scalar           every round                            no
trainer (sites)    val_auc                    auc              every round                            no
trainer (sites)    learning_rate              scalar           every round                            no
trainer (sites)    epsilon / update_norm      scalar           every round, with DP / client DP       no
trainer (sites)    paillier_encrypt_seconds,  scalar           every round, aggregation=paillier      no
                   paillier_decrypt_seconds,
                   bytes_sent, clipped_values
trainer (sites)    summary                    train_summary    once, after training                   table
trainer (arbiter)  global_val_loss            loss             every round, not under paillier        Loss chart
trainer (arbiter)  round_seconds              scalar           every round                            no
trainer (arbiter)  summary                    train_summary    once, after training                   table
trainer (predict)  summary                    predict_summary  once                                   table
evaluation         summary                    froc_summary     once                                   table
evaluation         evaluation                 evaluation       once                                   score table,
                                                                                                      ROC, K-S
evaluation         froc_curve                 curve            once                                   no
=================  =========================  ===============  =====================================  ===========

The arbiter has no training loss: its one loss-typed series is the global validation loss, which
it sees only with aggregation fate_masks or plaintext (under Paillier it adds ciphertexts and never
learns the mean, so its task has no Loss chart).
A one-time metric of a repeated name and group is refused by FATE
(fate/arch/context/_metrics.py, `InMemoryMetricsHandler._log_one_time_metrics`), so each
`summary` table is logged in a sub-context of its own (`log_summary`); its *type* names the
table, which is how readers of `query-metric` tell them apart.

The functions that shape data (`flat_summary`, `binary_classification_metrics`,
`evaluation_data`) use no FATE object: unit tests check them without a job.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

LOSS = "loss"            # the board's Loss chart takes every metric whose type contains "loss"
STEP = "scalar"          # any other per-round figure: not drawn, kept for query-metric and the report
SUMMARY = "summary"
EVALUATION = "evaluation"


# ------------------------------------------------------------------------------------- shaping (FATE-free)

def _finite_or_none(value):
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None      # FATE's metric store wants JSON; the board shows null as "Null"
    return value


def non_finite_to_minus_one(value: float | None) -> float:
    """A per-round figure for `log_round`: undefined (None, NaN, inf) becomes -1.0, as a step must be a number."""
    return float(value) if value is not None and math.isfinite(value) else -1.0


def non_finite_to_none(value):
    """A JSON document (dicts and lists, walked): NaN and inf become None (null), numpy scalars Python ones."""
    if isinstance(value, dict):
        return {k: non_finite_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [non_finite_to_none(v) for v in value]
    return _finite_or_none(value)


def flat_summary(data: dict, *, sep: str = "_") -> dict:
    """Nested dicts and lists become flat keys (`{"a": {"b": 1}, "c": [2, 3]}` -> `a_b`, `c_0`, `c_1`).

    The board's summary table shows each key with its value as text: a nested value would read
    as `[object Object]`. Non-finite floats become None (null in JSON).
    """
    out: dict = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{sep}{k}" if prefix else str(k), v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}{sep}{i}", v)
        else:
            if prefix in out:
                raise ValueError(f"summary key {prefix!r} appears twice after flattening")
            out[prefix] = _finite_or_none(value)

    walk("", data)
    return out


def _ks_table(labels: np.ndarray, scores: np.ndarray) -> tuple[float, dict]:
    """KS and its table as FATE computes them (fate/ml/evaluation/classification.py, `KS`).

    Thresholds are the scores at 100 evenly spaced ranks of the scores sorted high to low
    (`ThresholdCutter.cut_by_index`), a candidate counting as positive when its score is above
    the threshold; a last point (1, 1) at threshold 0 closes the curve.
    """
    descending = np.sort(scores)[::-1]
    cuts = np.arange(100) / 100
    thresholds = descending[(len(descending) * cuts).astype(int)]
    order = np.argsort(scores, kind="stable")
    ascending, ranked = scores[order], labels[order]
    positives_below = np.concatenate([[0], np.cumsum(ranked)])
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    first_above = np.searchsorted(ascending, thresholds, side="right")
    tp = n_pos - positives_below[first_above]
    fp = (len(labels) - first_above) - tp
    tpr = np.append(tp / n_pos, 1.0)
    fpr = np.append(fp / n_neg, 1.0)
    ks = float(np.max(tpr[:-1] - fpr[:-1]))
    return ks, {"tpr": tpr.tolist(), "fpr": fpr.tolist(), "threshold": [*thresholds.tolist(), 0.0],
                "cuts": [*cuts.tolist(), 1.0]}


def binary_classification_metrics(labels: Iterable[int], scores: Iterable[float], *,
                                  threshold: float = 0.5) -> list:
    """FATE's list of `{metric, val}` for a binary task, as its evaluation component logs it.

    Names as FATE's (fate/ml/evaluation/classification.py): auc, ks (with ks_table, a nested
    list as FATE's `MetricEnsemble` returns a metric of two results; the board draws ROC and K-S
    from it), binary_accuracy, binary_precision, binary_recall, binary_f1_score; a candidate is
    predicted positive when its score is above `threshold`. A metric undefined on these labels
    (AUC and KS need both classes, recall a positive, precision a predicted positive) is left out
    rather than logged as NaN.
    """
    y = np.asarray(list(labels), dtype=np.int64)
    p = np.asarray(list(scores), dtype=np.float64)
    if y.shape != p.shape:
        raise ValueError(f"{len(y)} labels but {len(p)} scores")
    if len(y) == 0:
        return []
    out: list = []
    n_pos = int(y.sum())
    if 0 < n_pos < len(y):
        from sklearn.metrics import roc_auc_score

        out.append({"metric": "auc", "val": float(roc_auc_score(y, p))})
        ks, table = _ks_table(y, p)
        out.append([{"metric": "ks", "val": ks}, {"metric": "ks_table", "val": table}])
    predicted = p > threshold
    tp = int(np.sum(predicted & (y == 1)))
    out.append({"metric": "binary_accuracy", "val": float(np.mean(predicted == (y == 1)))})
    if predicted.any():
        out.append({"metric": "binary_precision", "val": tp / int(predicted.sum())})
    if n_pos:
        out.append({"metric": "binary_recall", "val": tp / n_pos})
    if n_pos or predicted.any():   # 2 tp / (2 tp + fp + fn); the board does not show it, query-metric does
        out.append({"metric": "binary_f1_score", "val": 2 * tp / (n_pos + int(predicted.sum()))})
    return out


def evaluation_data(task_name: str, dataset: str, labels: Iterable[int], scores: Iterable[float], *,
                    threshold: float = 0.5) -> dict:
    """`{task_name: {dataset: [...]}}`, the structure of FATE's `evaluation` metric.

    FATE's evaluation component keys it by the upstream task and the dataset split
    (fate/components/components/evaluation.py); the board draws one score-table row per pair.
    """
    return {task_name: {dataset: binary_classification_metrics(labels, scores, threshold=threshold)}}


def scalar_metrics(data: dict) -> dict[str, float]:
    """{metric: value} of the single-value entries of an `evaluation_data` result (tables left out)."""
    out = {}
    for per_dataset in data.values():
        for entries in per_dataset.values():
            for entry in _flat(entries):
                if isinstance(entry["val"], (int, float)):
                    out[entry["metric"]] = float(entry["val"])
    return out


def _flat(entries: list) -> list[dict]:
    out = []
    for e in entries:
        out.extend(_flat(e) if isinstance(e, list) else [e])
    return out


# ------------------------------------------------------------------------------------- logging (a FATE ctx)

def log_round_loss(round_ctx, name: str, value: float) -> None:
    """The task's one loss-typed series: the board's Loss chart."""
    round_ctx.metrics.log_step(value=float(value), name=name, type=LOSS)


def log_round(round_ctx, name: str, value: float, *, type: str = STEP) -> None:
    """Any other per-round figure: a non-loss type, so the Loss chart stays one series."""
    if "loss" in type.lower():
        raise ValueError(f"per-round metric {name!r}: type {type!r} would join the board's Loss chart; "
                         f"use log_round_loss for the task's one loss series")
    round_ctx.metrics.log_step(value=float(value), name=name, type=type)


def log_summary(ctx, table: str, data: dict) -> None:
    """A one-time table the board shows: name "summary", flat keys, in a sub-context named `table`."""
    ctx.sub_ctx(table).metrics.log_metrics(flat_summary(data), name=SUMMARY, type=table)


def log_evaluation(ctx, data: dict) -> None:
    """FATE's evaluation structure (`evaluation_data`), which the board draws as its score table and charts."""
    ctx.metrics.log_metrics(data, name=EVALUATION, type=EVALUATION)
