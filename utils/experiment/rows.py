"""One result-row builder for every model family (heads, logreg, guided, end-to-end, BERT + CLIP).

A row is a flat dict that JSON, CSV and the parquet runs table all take: identity (model, family,
dataset, task, seed, modalities, extractors), the test metrics, timing and size, the rows it was trained
and scored on, the training curve and config, and library versions. Tools read at least ``model``,
``accuracy``, ``macro_f1``, ``roc_auc``, ``train_s_per_epoch``, ``inference_s``, ``n_params``.

Given the test labels and probabilities (``y_true``, ``proba``), a row also carries 95% stratified
bootstrap intervals (``macro_f1_ci_low``, ``macro_f1_ci_high``, ``roc_auc_ci_low``, ``roc_auc_ci_high``;
1,000 resamples, seed 0, so rows scored on the same test rows share their resamples) and the calibration
scores ``ece`` and ``brier`` (see :mod:`utils.evaluation`).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional, Sequence

from ..config import library_versions
from ..evaluation import N_RESAMPLES, bootstrap_intervals, brier, ece

# the headline columns of every results table, in order
RESULT_COLUMNS = ["model", "accuracy", "macro_f1", "weighted_f1", "roc_auc", "train_s_per_epoch", "inference_s", "n_params"]
METRIC_FIELDS = ("accuracy", "macro_f1", "weighted_f1", "roc_auc", "per_class_f1", "confusion_matrix")
OPTIONAL_METRIC_FIELDS = ("n_classes_scored", "roc_auc_classes")
log = logging.getLogger(__name__)

CI_FIELDS = ("macro_f1_ci_low", "macro_f1_ci_high", "roc_auc_ci_low", "roc_auc_ci_high")
CI_METHOD = f"95% stratified bootstrap, {N_RESAMPLES} resamples, percentile, seed 0"


MIN_CLASS_ROWS = 10  # fewer test rows of a class (or, binary, of either outcome) and an interval means little


def interval_note(y_true: Any, spec: Any, row: Mapping[str, Any], proba: Any = None) -> Optional[str]:
    """Why the row's scores and intervals should not be read as they stand, or None: a test split with fewer than
    ``MIN_CLASS_ROWS`` rows of some class (a binary split with 2 positives scores AUC 1.000 [1.000, 1.000] by
    luck), a zero-width interval (every resample scored the same: identical predictions, not certainty), and,
    given the test probabilities ``proba``, a head that gives every test row the same probabilities (a constant
    guess: its inputs did not vary, or it learnt nothing from them) or predicts one class for every row of a
    test split that holds several (its accuracy is that class's share)."""
    import numpy as np

    y = np.asarray(y_true)
    names = list(spec.classes)
    if y.ndim == 2:
        counts = {names[c]: int(n) for c, n in enumerate(y.sum(axis=0))}
    else:
        counts = {names[c]: int((y == c).sum()) for c in range(len(names))}
    small = {c: n for c, n in counts.items() if n < MIN_CLASS_ROWS}
    notes = []
    if proba is not None and len(y):
        p = np.asarray(proba, dtype=np.float64).reshape(len(y), -1)
        if float(np.ptp(p, axis=0).max()) < 1e-6:
            notes.append("the head gives every test row the same probabilities: its scores are those of a constant "
                         "guess (its inputs did not vary, or it learnt nothing from them)")
        elif y.ndim == 1 and len(np.unique(y)) > 1:
            pred = p.argmax(axis=1) if p.shape[1] > 1 else (p[:, 0] >= 0.5).astype(int)
            if len(np.unique(pred)) == 1:
                notes.append(f"predicts {names[int(pred[0])]!r} for every test row: its accuracy is that class's "
                             "share, not skill")
    if small:
        shown = ", ".join(f"{c!r} {n}" for c, n in list(small.items())[:4])
        notes.append(f"test split too small for the intervals to mean much (test rows per class: {shown}; "
                     f"fewer than {MIN_CLASS_ROWS})")
    flat = [m for m in ("macro_f1", "roc_auc") if row.get(f"{m}_ci_low") is not None
            and row.get(f"{m}_ci_low") == row.get(f"{m}_ci_high")]
    if flat:
        notes.append(f"zero-width interval for {', '.join(flat)} (every resample scored the same: the predictions do "
                     "not vary, which is not certainty)")
    return "; ".join(notes) or None


def result_row(
    model: str,
    spec: Any,
    seed: int,
    metrics: Mapping[str, Any],
    *,
    family: str = "embedding",
    modalities: Optional[Sequence[str]] = None,
    extractors: Optional[Mapping[str, str]] = None,
    fit: Any = None,
    train_s: Optional[float] = None,
    inference_s: float = 0.0,
    n_params: int = 0,
    n_rows: Optional[Mapping[str, int]] = None,
    train_config: Any = None,
    y_true: Any = None,
    proba: Any = None,
    **extra: Any,
) -> Dict[str, Any]:
    """The result row of one trained model (``spec``: the dataset's :class:`~utils.data.schema.DatasetSpec`).

    ``metrics``: :func:`utils.metrics.classification_metrics` on the test rows. ``fit``: a
    :class:`~utils.train.loop.FitResult` (epochs, best epoch, curve, seconds); models trained without the
    loop (logistic regression, the HF Trainer) pass ``train_s`` and ``extra`` fields instead. ``n_rows``:
    ``{"train": n, "val": n, "test": n}``. ``y_true`` / ``proba``: the test labels and probabilities the
    metrics came from; with them the row gets the bootstrap intervals (``CI_FIELDS``), ``ece`` and ``brier``.
    ``extra`` fields are added as they are.
    """
    row: Dict[str, Any] = {
        "model": model,
        "family": family,
        "dataset": spec.key,
        "task": spec.task,
        "seed": int(seed),
        "modalities": list(modalities or []),
        "extractors": dict(extractors or {}),
        **{k: metrics[k] for k in METRIC_FIELDS},
        **{k: metrics[k] for k in OPTIONAL_METRIC_FIELDS if k in metrics},
        "inference_s": float(inference_s),
        "n_params": int(n_params),
    }
    if fit is not None:
        row.update(
            train_s_per_epoch=fit.train_s_per_epoch, train_s=fit.train_seconds, epochs_run=fit.epochs_run,
            best_epoch=fit.best_epoch, history=fit.history, train_precision=fit.precision, monitor=fit.monitor,
        )
    else:
        seconds = float(train_s or 0.0)
        row.update(train_s_per_epoch=seconds, train_s=seconds, epochs_run=1, best_epoch=1, history=[])
    if y_true is not None and proba is not None:
        row.update(bootstrap_intervals(y_true, proba, spec.task), ci_method=CI_METHOD,
                   ece=ece(y_true, proba, spec.task), brier=brier(y_true, proba, spec.task))
        note = interval_note(y_true, spec, row, proba)
        row["interval_note"] = note
        if note:
            log.warning("%s, %s seed %s: %s", spec.key, model, seed, note)
    if n_rows is not None:
        row.update({f"n_{s}": int(n) for s, n in n_rows.items()})
    if train_config is not None:
        row["train_config"] = train_config
    row["versions"] = library_versions()
    row.update(extra)
    return row
