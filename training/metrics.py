"""Classification metrics: the one implementation, used by train.py (in SageMaker's container too) and by
`scones evaluate` (scones/scoring.py). Standard library and numpy only."""

from __future__ import annotations

import numpy as np


def classification_metrics(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, per-class precision/recall/support and the confusion matrix (rows: true, columns: predicted)."""
    predicted = probs.argmax(1)
    k = len(classes)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {}
    for i, name in enumerate(classes):
        tp = confusion[i, i]
        per_class[name] = {
            "precision": float(tp / confusion[:, i].sum()) if confusion[:, i].sum() else 0.0,
            "recall": float(tp / confusion[i].sum()) if confusion[i].sum() else 0.0,
            "support": int(confusion[i].sum()),
        }
    return {
        "accuracy": float((predicted == labels).mean()),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }
