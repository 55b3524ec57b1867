"""Candidate-level ROC AUC: how well the scores rank nodule candidates above the rest.

Not the FROC's `detection_auc` (core/evaluation/froc.py), which is the area under the
detected-nodules-against-false-positives curve of the official LUNA16 rules.
"""
from __future__ import annotations

import numpy as np

__all__ = ["candidate_auc"]


def candidate_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC over candidates; NaN when only one class is present (AUC is undefined then)."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if labels.size == 0 or labels.min() == labels.max():
        return float("nan")
    return float(roc_auc_score(labels, scores))
