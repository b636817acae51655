"""Classic baselines on the same cached embeddings: scikit-learn logistic regression (model name ``logreg``).

The model and its probabilities; :func:`utils.experiment.baselines.train_logreg` trains it on cached
embeddings and writes result rows with the same fields as every other model, so each table has a floor.
"""

from __future__ import annotations

import logging
from typing import Optional

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
