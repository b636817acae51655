"""Classification metrics (scikit-learn underneath), the same for every model and notebook."""

from __future__ import annotations

import math
from typing import Any, Dict, Sequence

import numpy as np


def predictions(proba: np.ndarray, task: str, threshold: float = 0.5) -> np.ndarray:
    """Hard predictions from probabilities: argmax (multiclass) or ``p >= threshold``."""
    proba = np.asarray(proba)
    if task == "multiclass":
        return proba.argmax(axis=1)
    if task == "binary":
        return (proba.reshape(-1) >= threshold).astype(np.int64)
    return (proba >= threshold).astype(np.int64)


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y)) < 2:
        return math.nan
    return float(roc_auc_score(y, score))


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, task: str, classes: Sequence[str], threshold: float = 0.5
) -> Dict[str, Any]:
    """Accuracy, macro / weighted F1, per-class F1, ROC-AUC and the confusion matrix.

    ``y_true``: int ``[N]`` (binary, multiclass) or 0/1 ``[N, C]`` (multilabel).
    ``proba``: ``[N]`` positive-class probability (binary), ``[N, C]`` otherwise.
    Accuracy is subset accuracy for multilabel. ROC-AUC comes from the probabilities: binary AUC,
    macro one-vs-rest for multiclass, macro over labels for multilabel; classes absent from ``y_true``
    are left out of the macro average (``roc_auc_classes`` says how many counted).
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, multilabel_confusion_matrix

    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    pred = predictions(proba, task, threshold)
    n_classes = len(classes)
    if task == "multilabel":
        labels = list(range(n_classes))
        per_class = f1_score(y_true, pred, average=None, zero_division=0)
        aucs = [_auc(y_true[:, c], proba[:, c]) for c in labels]
        cm = multilabel_confusion_matrix(y_true, pred).tolist()
    elif task == "binary":
        labels = [0, 1]
        per_class = f1_score(y_true, pred, average=None, labels=labels, zero_division=0)
        p = proba.reshape(-1)
        aucs = [_auc(y_true, p)]
        cm = confusion_matrix(y_true, pred, labels=labels).tolist()
    else:
        labels = list(range(n_classes))
        per_class = f1_score(y_true, pred, average=None, labels=labels, zero_division=0)
        aucs = [_auc((y_true == c).astype(int), proba[:, c]) for c in labels]
        cm = confusion_matrix(y_true, pred, labels=labels).tolist()
    valid_aucs = [a for a in aucs if not math.isnan(a)]
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, pred)),
        "macro_f1": float(f1_score(y_true, pred, average="macro", labels=labels, zero_division=0)),
        "weighted_f1": float(f1_score(y_true, pred, average="weighted", labels=labels, zero_division=0)),
        "roc_auc": float(np.mean(valid_aucs)) if valid_aucs else math.nan,
        "roc_auc_classes": len(valid_aucs),
        "per_class_f1": {str(classes[c]): float(f) for c, f in zip(labels, per_class)},
        "confusion_matrix": cm,
    }
