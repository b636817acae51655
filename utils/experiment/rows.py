"""One result-row builder for every model family (heads, logreg, guided, end-to-end, BERT + CLIP).

A row is a flat dict that JSON, CSV and the parquet runs table all take: identity (model, family,
dataset, task, seed, modalities, extractors), the test metrics, timing and size, the rows it was trained
and scored on, the training curve and config, and library versions. Tools read at least ``model``,
``accuracy``, ``macro_f1``, ``roc_auc``, ``train_s_per_epoch``, ``inference_s``, ``n_params``.

A row is built from the test labels and probabilities (``y_true``, ``proba``): their metrics, 95% stratified
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
    y_true: Any,
    proba: Any,
    *,
    fit: Any = None,
    config: Any = None,
    parts: Optional[Mapping[str, Sequence[int]]] = None,
    **fields: Any,
) -> Dict[str, Any]:
    """The result row of one trained model, scored on its test rows.

    ``spec``: the dataset's :class:`~utils.data.schema.DatasetSpec`. ``y_true`` / ``proba``: the test labels and
    the model's probabilities; the row gets their metrics (:func:`utils.metrics.classification_metrics`), the
    bootstrap intervals (``CI_FIELDS``), ``ece`` and ``brier``. ``fit``: a :class:`~utils.train.loop.FitResult`
    (epochs, best epoch, curve, seconds, and the model whose parameters are counted). ``config``: the config the
    model was trained with (a dataclass such as :class:`~utils.train.TrainConfig`, or a dict), kept as
    ``train_config``; its ``seed`` is the row's. ``parts``: ``{split: row indices}`` (``n_train``, ``n_val``,
    ``n_test``). ``fields``: ``family`` (default ``"embedding"``), ``seed`` (when the config has none),
    ``modalities``, ``extractors``, ``inference_s``, ``n_params`` (when there is no ``fit``), ``train_s`` (models
    trained without the loop: logistic regression, the HF Trainer); any other field is added as it is.
    """
    import dataclasses

    from ..metrics import classification_metrics
    from ..runtime import n_params as count_params

    fields = {**ROW_DEFAULTS, **fields}
    seed = fields.pop("seed")
    if seed is None:
        seed = getattr(config, "seed", None)
    if seed is None:
        raise TypeError(f"result_row({model!r}): no seed: give seed=, or a config that has one")
    n_params = fields.pop("n_params")
    if n_params is None:
        n_params = count_params(fit.model) if fit is not None else 0
    metrics = classification_metrics(y_true, proba, spec.task, spec.classes)
    row: Dict[str, Any] = {
        "model": model,
        "family": fields.pop("family"),
        "dataset": spec.key,
        "task": spec.task,
        "seed": int(seed),
        "modalities": list(fields.pop("modalities") or []),
        "extractors": dict(fields.pop("extractors") or {}),
        **{k: metrics[k] for k in METRIC_FIELDS},
        **{k: metrics[k] for k in OPTIONAL_METRIC_FIELDS if k in metrics},
        "inference_s": float(fields.pop("inference_s")),
        "n_params": int(n_params),
    }
    train_s = fields.pop("train_s")
    if fit is not None:
        row.update(
            train_s_per_epoch=fit.train_s_per_epoch, train_s=fit.train_seconds, epochs_run=fit.epochs_run,
            best_epoch=fit.best_epoch, history=fit.history, train_precision=fit.precision, monitor=fit.monitor,
        )
    else:
        seconds = float(train_s or 0.0)
        row.update(train_s_per_epoch=seconds, train_s=seconds, epochs_run=1, best_epoch=1, history=[])
    row.update(bootstrap_intervals(y_true, proba, spec.task), ci_method=CI_METHOD,
               ece=ece(y_true, proba, spec.task), brier=brier(y_true, proba, spec.task))
    note = interval_note(y_true, spec, row, proba)
    row["interval_note"] = note
    if note:
        log.warning("%s, %s seed %s: %s", spec.key, model, seed, note)
    if parts is not None:
        row.update({f"n_{s}": len(idx) for s, idx in parts.items()})
    if config is not None:
        if dataclasses.is_dataclass(config):
            from ..train import config_dict

            config = config_dict(config)
        row["train_config"] = config
    row["versions"] = library_versions()
    row.update(fields)
    return row


# result_row's named fields and their defaults (None: taken from the config / the fit)
ROW_DEFAULTS = {"family": "embedding", "seed": None, "modalities": None, "extractors": None, "inference_s": 0.0,
                "n_params": None, "train_s": None}
