"""Classic baselines on the same cached embeddings: scikit-learn logistic regression (model name ``logreg``).

Rows have the fields of :func:`utils.experiment.train_heads` rows, so every results table has a floor.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

log = logging.getLogger(__name__)


def fit_logreg(X: np.ndarray, y: np.ndarray, task: str, C: float = 1.0, max_iter: int = 2000, class_weight: Optional[str] = None, seed: int = 0):
    """A fitted ``LogisticRegression`` (binary / multiclass) or one per label (multilabel, one-vs-rest)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    clf = LogisticRegression(C=C, max_iter=max_iter, class_weight=class_weight, random_state=seed)
    if task == "multilabel":
        clf = OneVsRestClassifier(clf)
    return clf.fit(X, y)


def logreg_proba(clf, X: np.ndarray, task: str, n_classes: Optional[int] = None) -> np.ndarray:
    """``[N]`` positive-class probability (binary) or ``[N, C]``.

    A class absent from the training split has no column in scikit-learn's output; with ``n_classes``
    the columns are placed at their class indices and absent classes get probability 0.
    """
    p = clf.predict_proba(X)
    if task == "binary":
        return p[:, list(clf.classes_).index(1)] if 1 in clf.classes_ else np.zeros(len(X))
    if task == "multiclass" and n_classes is not None and p.shape[1] != n_classes:
        full = np.zeros((len(X), n_classes), dtype=p.dtype)
        full[:, np.asarray(clf.classes_, dtype=int)] = p
        return full
    return p


def logreg_n_params(clf) -> int:
    """Fitted weights and biases. A label seen with one value in training gets a constant predictor
    (one-vs-rest), which has no weights: it counts as 1 parameter."""
    ests = getattr(clf, "estimators_", [clf])
    return int(sum(e.coef_.size + e.intercept_.size if hasattr(e, "coef_") else 1 for e in ests))


def train_logreg(
    ds,
    embeddings,
    seeds: Union[int, Sequence[int]] = 0,
    modalities: Optional[Sequence[str]] = None,
    C: float = 1.0,
    max_iter: int = 2000,
    class_weight: Optional[str] = None,
    standardize: bool = True,
) -> List[Dict[str, Any]]:
    """Logistic regression on the modalities side by side (standardised with training statistics); one row per seed.

    The validation split is not used (no early stopping); metrics are on test. ``train_s_per_epoch`` is the fit time.
    """
    from ..config import library_versions
    from ..experiment import _standardize
    from ..metrics import classification_metrics

    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    mods = list(modalities or embeddings.modalities)
    X = np.concatenate([embeddings.vectors[m] for m in mods], axis=1).astype(np.float64)
    usable = np.isfinite(X).all(axis=1)
    split = ds.df["split"].to_numpy()
    parts = {s: np.flatnonzero((split == s) & usable) for s in ("train", "val", "test")}
    Xtr, Xte = X[parts["train"]], X[parts["test"]]
    if standardize:
        Xtr, Xte = _standardize(Xtr, Xte)
    y = ds.labels()
    rows = []
    for seed in seeds:
        t0 = time.perf_counter()
        clf = fit_logreg(Xtr, y[parts["train"]], ds.spec.task, C, max_iter, class_weight, seed)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        proba = logreg_proba(clf, Xte, ds.spec.task, len(ds.spec.classes))
        inference_s = time.perf_counter() - t0
        m = classification_metrics(y[parts["test"]], proba, ds.spec.task, ds.spec.classes)
        rows.append({
            "model": "logreg", "family": "embedding", "dataset": ds.spec.key, "task": ds.spec.task, "seed": seed, "modalities": mods,
            "extractors": {k: embeddings.extractors[k] for k in mods},
            **{k: m[k] for k in ("accuracy", "macro_f1", "weighted_f1", "roc_auc", "per_class_f1", "confusion_matrix")},
            "train_s_per_epoch": train_s, "train_s": train_s, "inference_s": inference_s, "n_params": logreg_n_params(clf),
            "epochs_run": 1, "best_epoch": 1, "n_train": len(parts["train"]), "n_val": len(parts["val"]), "n_test": len(parts["test"]),
            "rows_without_vectors": int((~usable).sum()), "history": [],
            "train_config": {"C": C, "max_iter": max_iter, "class_weight": class_weight}, "standardize": standardize,
            "versions": library_versions(),
        })
    return rows
