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


def scored_classes(y_true: np.ndarray, pred: np.ndarray, task: str) -> np.ndarray:
    """Indices of the classes that appear in the labels or the predictions (what F1 averages over).

    A class absent from both has no F1 to speak of: counting it as 0 pulls macro-F1 down for nothing
    (with 4 classes, one absent, perfect predictions would read 0.75). scikit-learn's default does the same.
    """
    if task == "multilabel":
        return np.flatnonzero(np.asarray(y_true).any(axis=0) | np.asarray(pred).any(axis=0))
    return np.union1d(np.unique(y_true), np.unique(pred)).astype(np.int64)


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, task: str, classes: Sequence[str], threshold: float = 0.5
) -> Dict[str, Any]:
    """Accuracy, macro / weighted F1, per-class F1, ROC-AUC and the confusion matrix.

    ``y_true``: int ``[N]`` (binary, multiclass) or 0/1 ``[N, C]`` (multilabel).
    ``proba``: ``[N]`` positive-class probability (binary), ``[N, C]`` otherwise.
    Accuracy is subset accuracy for multilabel. F1 averages (macro and weighted) run over the classes present
    in the labels or the predictions (``n_classes_scored`` says how many; ``per_class_f1`` is ``None`` for the
    others). ROC-AUC comes from the probabilities: binary AUC, macro one-vs-rest for multiclass, macro over
    labels for multilabel; classes without both positives and negatives in ``y_true`` are left out
    (``roc_auc_classes`` says how many counted).
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, multilabel_confusion_matrix

    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    pred = predictions(proba, task, threshold)
    n_classes = len(classes)
    if task == "multilabel":
        labels = list(range(n_classes))
        aucs = [_auc(y_true[:, c], proba[:, c]) for c in labels]
        cm = multilabel_confusion_matrix(y_true, pred, labels=labels).tolist()
    elif task == "binary":
        labels = [0, 1]
        p = proba.reshape(-1)
        aucs = [_auc(y_true, p)]
        cm = confusion_matrix(y_true, pred, labels=labels).tolist()
    else:
        labels = list(range(n_classes))
        aucs = [_auc((y_true == c).astype(int), proba[:, c]) for c in labels]
        cm = confusion_matrix(y_true, pred, labels=labels).tolist()
    present = scored_classes(y_true, pred, task).tolist() if len(y_true) else []
    per_class = f1_score(y_true, pred, average=None, labels=labels, zero_division=0) if len(y_true) else np.zeros(len(labels))
    if present:
        macro = float(np.mean([per_class[c] for c in present]))
        weighted = float(f1_score(y_true, pred, average="weighted", labels=present, zero_division=0))
    else:
        macro = weighted = math.nan
    valid_aucs = [a for a in aucs if not math.isnan(a)]
    names = [str(classes[c]) for c in labels] if task != "binary" else [str(c) for c in classes]
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, pred)) if len(y_true) else math.nan,
        "macro_f1": macro,
        "weighted_f1": weighted,
        "roc_auc": float(np.mean(valid_aucs)) if valid_aucs else math.nan,
        "roc_auc_classes": len(valid_aucs),
        "n_classes_scored": len(present),
        "per_class_f1": {name: (float(f) if c in present else None) for c, (name, f) in enumerate(zip(names, per_class))},
        "confusion_matrix": cm,
    }
