"""Beyond one score: bootstrap intervals, paired comparisons, calibration, subgroups and Shapley values.

Everything here takes plain arrays (labels, probabilities, group values); no model, no dataset. torch is used
only to run the bootstrap's two heavy parts on a GPU (``ScoreTable(device=...)``; :func:`bootstrap_device`).

**Bootstrap.** A resample is a vector of row weights (how often each test row is drawn). Resamples are drawn
within strata (the class labels by default: each resample keeps the class counts of the test split), in
seeded chunks of ``[B, N]`` weights, and every metric is computed for all resamples and all models at once
from those weights: F1 from weighted confusion counts (one matrix product), ROC-AUC from weighted tie-group
sums over the sorted scores. No Python loop runs over resamples; the loop over models is only in ROC-AUC
(one vectorised pass per model and class). Models scored on the same rows with the same weights are paired,
so the difference of two models has its own interval. Intervals are percentile intervals (95% by default).
On a GPU (``ScoreTable(device="cuda")``) the weighted counts (the matrix product) and the ROC-AUC sums run there
in float64 from the same numpy-drawn weights, so the samples equal the CPU's (up to float64 rounding).

    samples = metric_samples(y, [proba_a, proba_b], "multiclass")          # {"macro_f1": [B, 2], ...}
    low, high = percentile_interval(samples["macro_f1"][:, 0])
    paired_difference(samples["macro_f1"][:, 0], samples["macro_f1"][:, 1], point_a, point_b)

**Calibration.** ``ece`` (equal-width bins), ``brier``, ``reliability_bins`` for the diagram, and temperature
scaling: :func:`fit_temperature` on validation logits only, :func:`apply_temperature` on test logits.

**Subgroups.** :func:`subgroup_metrics` scores each value of a grouping column (groups with too few rows are
listed with the reason, not dropped) and the worst-group gap with its interval; :func:`age_bands` and
:func:`group_labels` turn raw metadata (ages, numbers, missing values) into groups.

**Shapley values.** :func:`shapley_values` over modalities from the value of every subset (exact), with
:func:`prior_proba` / :func:`prior_predictions` as the empty set's predictor.
"""

from __future__ import annotations

import math
import re
from itertools import combinations
from typing import Any, Dict, FrozenSet, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from .metrics import predictions

METRICS = ("accuracy", "macro_f1", "weighted_f1", "roc_auc")
N_RESAMPLES = 1000  # bootstrap resamples (the floor)
LEVEL = 0.95  # two-sided interval level
MAX_CELLS = 1 << 23  # weights per chunk (B x N floats): about 32 MB of float32 at a time
GPU_BOOTSTRAP_MIN_CELLS = 1 << 20  # device="auto": the bootstrap goes to a GPU from this many row weights


# ------------------------------------------------------------------------------------------------ bootstrap


def resample_weights(strata: Sequence, n_resamples: int = N_RESAMPLES, seed: int = 0,
                     max_cells: int = MAX_CELLS) -> Iterator[np.ndarray]:
    """Stratified bootstrap row weights, in chunks: float32 ``[b, N]`` with ``sum(b) == n_resamples``.

    Each stratum's rows are drawn with replacement as many times as the stratum has rows, so every resample
    keeps the strata sizes. Deterministic for given ``strata``, ``n_resamples``, ``seed`` and ``max_cells``.
    """
    strata = np.asarray(strata)
    n = len(strata)
    if n == 0:
        raise ValueError("cannot bootstrap zero rows")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    _, inverse = np.unique(strata, return_inverse=True)
    members = [np.flatnonzero(inverse == s) for s in range(inverse.max() + 1)]
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_resamples, max_cells // n))
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        W = np.empty((b, n), dtype=np.float32)
        for idx in members:
            k = len(idx)
            draws = rng.integers(0, k, size=(b, k)) + (np.arange(b) * k)[:, None]
            W[:, idx] = np.bincount(draws.ravel(), minlength=b * k).reshape(b, k)
        yield W


def label_strata(y_true: np.ndarray, task: str) -> np.ndarray:
    """The default strata: the class of each row (binary, multiclass); one stratum for multilabel."""
    y_true = np.asarray(y_true)
    return np.zeros(len(y_true), np.int64) if task == "multilabel" else y_true.astype(np.int64)


class ScoreTable:
    """``J`` models' predictions on the same ``N`` rows, ready to be scored under any row weights ``W [B, N]``.

    ``y_true``: int ``[N]`` (binary, multiclass) or 0/1 ``[N, C]`` (multilabel); ``probas``: one array per
    model, ``[N]`` (binary) or ``[N, C]``; ``hard`` (model index -> hard predictions) overrides the predictions
    read from a model's probabilities (the prior predictor's random draws). The scores equal :func:`utils.metrics.classification_metrics`
    for unit weights: accuracy (subset accuracy for multilabel), macro-F1 over the classes present in the
    (weighted) labels or predictions, weighted F1 (by support), ROC-AUC macro over classes with positives
    and negatives.
    """

    def __init__(self, y_true: np.ndarray, probas: Sequence[np.ndarray], task: str, threshold: float = 0.5,
                 hard: Optional[Mapping[int, np.ndarray]] = None, device: Any = None):
        self.task = task
        self.device = device  # None: numpy; a torch device: the counts and ROC-AUC sums run there (float64)
        self._on_device: Optional[Dict[str, Any]] = None
        y = np.asarray(y_true)
        probas = [np.asarray(p, dtype=np.float64) for p in probas]
        if not probas:
            raise ValueError("ScoreTable needs at least one model's probabilities")
        self.n, self.J = len(y), len(probas)
        for j, p in enumerate(probas):
            if len(p) != self.n:
                raise ValueError(f"model {j}: {len(p)} probability rows for {self.n} labels")
        # hard predictions from the probabilities, unless given (``hard``: model index -> predictions)
        preds = [np.asarray(hard[j]) if hard and j in hard else predictions(p, task, threshold) for j, p in enumerate(probas)]
        if task == "multilabel":
            Y = y.astype(np.float32)
            P = np.stack([p.astype(np.float32) for p in preds])  # [J, N, K]
            correct = np.stack([(p == y).all(axis=1) for p in preds], axis=1)
            self.auc_inputs = [(y[:, c] == 1, p[:, c]) for p in probas for c in range(y.shape[1])]
            self.auc_classes = y.shape[1]
        else:
            k = 2 if task == "binary" else probas[0].shape[1]
            eye = np.eye(k, dtype=np.float32)
            Y = eye[y]
            P = np.stack([eye[p] for p in preds])
            correct = np.stack([p == y for p in preds], axis=1)
            if task == "binary":
                self.auc_inputs = [(y == 1, p.reshape(-1)) for p in probas]
                self.auc_classes = 1
            else:
                self.auc_inputs = [(y == c, p[:, c]) for p in probas for c in range(k)]
                self.auc_classes = k
        self.K = Y.shape[1]
        TP = P * Y[None]
        # one matrix for one product: [true indicators | predicted indicators | true positives | correct]
        self.design = np.concatenate(
            [Y, P.transpose(1, 0, 2).reshape(self.n, -1), TP.transpose(1, 0, 2).reshape(self.n, -1),
             correct.astype(np.float32)], axis=1)
        self.auc_sorted = [auc_prepare(pos, score) for pos, score in self.auc_inputs]

    def __call__(self, W: np.ndarray, metrics: Sequence[str] = METRICS) -> Dict[str, np.ndarray]:
        """Scores under row weights ``W [B, N]``: ``{metric: [B, J]}``."""
        W = np.asarray(W, dtype=np.float32)
        out: Dict[str, np.ndarray] = {}
        B, J, K = len(W), self.J, self.K
        Wd = self.to_device(W) if self.device is not None else None
        if {"accuracy", "macro_f1", "weighted_f1"} & set(metrics):
            if Wd is not None:
                S = (Wd @ self.device_arrays()["design"]).cpu().numpy()
            else:
                S = (W @ self.design).astype(np.float64)  # [B, K + 2 J K + J]: weighted counts (exact in float32)
            T = S[:, :K]
            P = S[:, K: K + J * K].reshape(B, J, K)
            TP = S[:, K + J * K: K + 2 * J * K].reshape(B, J, K)
            total = W.sum(axis=1, keepdims=True, dtype=np.float64)
            if "accuracy" in metrics:
                with np.errstate(invalid="ignore", divide="ignore"):
                    out["accuracy"] = S[:, K + 2 * J * K:] / total
            if "macro_f1" in metrics or "weighted_f1" in metrics:
                denom = T[:, None, :] + P
                present = denom > 0
                with np.errstate(invalid="ignore", divide="ignore"):
                    f1 = np.where(present, 2 * TP / np.where(present, denom, 1), 0.0)
                    if "macro_f1" in metrics:
                        out["macro_f1"] = f1.sum(-1) / present.sum(-1)
                    if "weighted_f1" in metrics:  # weights: each class's (weighted) support in the labels
                        out["weighted_f1"] = (f1 * T[:, None, :]).sum(-1) / T.sum(-1, keepdims=True)
        if "roc_auc" in metrics:
            if Wd is not None:
                aucs = np.stack([auc_weighted_on_device(Wd, prep) for prep in self.device_arrays()["auc"]], axis=1)
            else:
                aucs = np.stack([auc_weighted(W, prep) for prep in self.auc_sorted], axis=1)  # [B, J * classes]
            aucs = aucs.reshape(B, J, self.auc_classes)
            with np.errstate(invalid="ignore"):
                valid = np.isfinite(aucs)
                out["roc_auc"] = np.where(valid.any(-1), np.nansum(aucs, -1) / np.maximum(valid.sum(-1), 1), np.nan)
        return out

    def to_device(self, W: np.ndarray) -> Any:
        """Row weights as a float64 tensor on :attr:`device`."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(W)).to(self.device, dtype=torch.float64)

    def device_arrays(self) -> Dict[str, Any]:
        """The design matrix and the ROC-AUC preparations as tensors on :attr:`device` (made once)."""
        if self._on_device is None:
            import torch

            dev = self.device
            auc = []
            for prep in self.auc_sorted:
                if prep is None:
                    auc.append(None)
                    continue
                order, pos, starts = prep
                group = np.zeros(len(order), np.int64)
                group[starts[1:]] = 1
                auc.append((torch.from_numpy(order).to(dev), torch.from_numpy(pos).to(dev, torch.float64),
                            torch.from_numpy(np.cumsum(group)).to(dev), len(starts)))
            self._on_device = {"design": torch.from_numpy(self.design).to(dev, torch.float64), "auc": auc}
        return self._on_device

    def point(self, metrics: Sequence[str] = METRICS) -> Dict[str, np.ndarray]:
        """The scores on the rows as they are (unit weights): ``{metric: [J]}``."""
        return {k: v[0] for k, v in self(np.ones((1, self.n), np.float32), metrics).items()}

    def samples(self, strata: Optional[Sequence] = None, n_resamples: int = N_RESAMPLES, seed: int = 0,
                metrics: Sequence[str] = METRICS, max_cells: int = MAX_CELLS) -> Dict[str, np.ndarray]:
        """Bootstrap distributions ``{metric: [n_resamples, J]}`` (the same resamples for every model)."""
        if strata is None:
            strata = np.zeros(self.n, np.int64)
        chunks = [self(W, metrics) for W in resample_weights(strata, n_resamples, seed, max_cells)]
        return {k: np.concatenate([c[k] for c in chunks]) for k in metrics}


def auc_prepare(positive: np.ndarray, score: np.ndarray) -> Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Sort order, positive flags in that order and tie-group starts for :func:`auc_weighted`."""
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return None
    order = np.argsort(score, kind="stable")
    s = np.asarray(score)[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    return order, positive[order].astype(np.float32), starts


def auc_weighted(W: np.ndarray, prepared: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """ROC-AUC under row weights ``W [B, N]`` (ties count one half): ``[B]``; NaN without both classes.

    ``prepared``: :func:`auc_prepare` of the labels and scores (None when one class is absent).
    """
    if prepared is None:
        return np.full(len(W), np.nan)
    order, pos, starts = prepared
    Ws = W[:, order]
    total = np.add.reduceat(Ws, starts, axis=1)  # [B, G] weight per tie group
    P = np.add.reduceat(Ws * pos, starts, axis=1)
    N = total - P
    below = np.cumsum(N, axis=1, dtype=np.float64) - N
    num = (P * (below + 0.5 * N)).sum(axis=1, dtype=np.float64)
    den = P.sum(axis=1, dtype=np.float64) * N.sum(axis=1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def auc_weighted_on_device(W: Any, prepared: Optional[Tuple[Any, Any, Any, int]]) -> np.ndarray:
    """:func:`auc_weighted` on a device: ``W [B, N]`` a float64 tensor; ``prepared``: (sort order, positive flags
    in that order, tie-group id of each sorted position, number of groups) as tensors there (see
    :meth:`ScoreTable.device_arrays`). Returns numpy ``[B]``."""
    if prepared is None:
        return np.full(W.shape[0], np.nan)
    import torch

    order, pos, group, n_groups = prepared
    Ws = W.index_select(1, order)
    total = torch.zeros((W.shape[0], n_groups), dtype=W.dtype, device=W.device).index_add_(1, group, Ws)
    P = torch.zeros_like(total).index_add_(1, group, Ws * pos)
    N = total - P
    below = torch.cumsum(N, dim=1) - N
    num = (P * (below + 0.5 * N)).sum(dim=1)
    den = P.sum(dim=1) * N.sum(dim=1)
    auc = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.full_like(den, math.nan))
    return auc.cpu().numpy()


def bootstrap_device(device: Any = "auto", n_rows: int = 0, n_resamples: int = N_RESAMPLES) -> Any:
    """Where the report's bootstrap runs: ``None`` (numpy on the CPU) or a torch CUDA device. ``"auto"``: CUDA when
    there is one and the work is large enough to pay for the copies (``n_rows * n_resamples`` at least
    :data:`GPU_BOOTSTRAP_MIN_CELLS`; ``n_rows``: test rows times the models scored on them); ``"cpu"``: numpy;
    ``"cuda"`` / ``"cuda:N"``: that GPU."""
    if device in (None, "cpu"):
        return None
    import torch

    if device == "auto":
        if not torch.cuda.is_available() or n_rows * n_resamples < GPU_BOOTSTRAP_MIN_CELLS:
            return None
        return torch.device("cuda")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"bootstrap device {device!r} was asked for but CUDA is not available; use 'auto' or 'cpu'")
    return dev


def percentile_interval(samples: np.ndarray, level: float = LEVEL, axis: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` percentile interval of bootstrap ``samples`` along ``axis`` (NaN resamples ignored)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    a = (1 - level) / 2
    samples = np.asarray(samples, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN bounds
            low, high = np.nanpercentile(samples, [100 * a, 100 * (1 - a)], axis=axis)
    return low, high


def metric_samples(y_true: np.ndarray, probas: Sequence[np.ndarray], task: str, n_resamples: int = N_RESAMPLES,
                   seed: int = 0, metrics: Sequence[str] = METRICS, strata: Optional[Sequence] = None
                   ) -> Dict[str, np.ndarray]:
    """Bootstrap distributions ``{metric: [n_resamples, J]}`` of ``J`` models on the same rows.

    ``strata`` default: the labels (:func:`label_strata`).
    """
    table = ScoreTable(y_true, probas, task)
    return table.samples(label_strata(y_true, task) if strata is None else strata, n_resamples, seed, metrics)


def bootstrap_intervals(y_true: np.ndarray, proba: np.ndarray, task: str, metrics: Sequence[str] = ("macro_f1", "roc_auc"),
                        n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = 0) -> Dict[str, float]:
    """``{<metric>_ci_low, <metric>_ci_high}`` of one model: stratified bootstrap, percentile interval."""
    out: Dict[str, float] = {}
    if len(y_true) == 0:
        return {f"{m}_ci_{s}": math.nan for m in metrics for s in ("low", "high")}
    samples = metric_samples(y_true, [proba], task, n_resamples, seed, metrics)
    for m in metrics:
        low, high = percentile_interval(samples[m][:, 0], level)
        out[f"{m}_ci_low"], out[f"{m}_ci_high"] = float(low), float(high)
    return out


def paired_difference(a: np.ndarray, b: np.ndarray, point_a: float, point_b: float, level: float = LEVEL) -> Dict[str, float]:
    """Difference ``a - b`` of two models scored on the same resamples (``a, b [B]``), with its interval.

    ``p_value``: two-sided bootstrap p (twice the smaller share of resamples on either side of 0).
    """
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    d = d[np.isfinite(d)]
    low, high = percentile_interval(d, level) if len(d) else (math.nan, math.nan)
    p = min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean())) if len(d) else math.nan
    return {"diff": float(point_a - point_b), "ci_low": float(low), "ci_high": float(high), "p_value": float(p)}


def mean_over(samples: np.ndarray, columns: Sequence[Sequence[int]]) -> np.ndarray:
    """Average the columns of ``samples [..., J]`` in each group of ``columns`` (e.g. one model's seeds)."""
    samples = np.asarray(samples)
    return np.stack([samples[..., list(c)].mean(axis=-1) for c in columns], axis=-1)


# ------------------------------------------------------------------------------------------------ calibration


def calibration_pairs(y_true: np.ndarray, proba: np.ndarray, task: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(confidence, outcome)`` 1-D arrays that calibration compares.

    binary: the positive-class probability and whether the row is positive; multiclass: the top-class
    probability and whether the top class is right; multilabel: every label's probability and its 0/1 value.
    """
    y = np.asarray(y_true)
    p = np.asarray(proba, dtype=np.float64)
    if task == "binary":
        return p.reshape(-1), (y.reshape(-1) == 1).astype(np.float64)
    if task == "multiclass":
        return p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)
    return p.reshape(-1), y.reshape(-1).astype(np.float64)


def reliability_bins(y_true: np.ndarray, proba: np.ndarray, task: str, n_bins: int = 15,
                     strategy: str = "uniform", level: float = LEVEL) -> pd.DataFrame:
    """Bins of confidence: ``lo, hi, confidence`` (mean), ``accuracy`` (mean outcome), ``count``, and the Wilson
    interval of the observed frequency (``accuracy_ci_low``, ``accuracy_ci_high``; NaN for an empty bin).

    ``strategy``: ``"uniform"`` (equal-width bins over [0, 1], as ECE uses), ``"quantile"`` (equal-mass: every
    bin holds about the same number of predictions) or ``"adaptive"`` (equal-mass, with ``adaptive_bin_count``
    bins, so a small test split still gets bins with enough predictions to read, and a large one up to ``n_bins``).
    """
    conf, outcome = calibration_pairs(y_true, proba, task)
    if strategy not in ("uniform", "quantile", "adaptive"):
        raise ValueError(f"strategy must be 'uniform', 'quantile' or 'adaptive', got {strategy!r}")
    if strategy == "uniform" or len(conf) == 0:
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        k = adaptive_bin_count(len(conf), n_bins) if strategy == "adaptive" else n_bins
        edges = np.unique(np.quantile(conf, np.linspace(0.0, 1.0, k + 1)))
        edges[0], edges[-1] = min(edges[0], 0.0), max(edges[-1], 1.0)
        if len(edges) < 2:
            edges = np.array([0.0, 1.0])
    nb = len(edges) - 1
    idx = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, nb - 1)
    count = np.bincount(idx, minlength=nb)
    hits = np.bincount(idx, outcome, minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, conf, minlength=nb) / count
        mean_out = hits / count
    low, high = wilson_interval(hits, count, level)
    return pd.DataFrame({"lo": edges[:-1], "hi": edges[1:], "confidence": mean_conf, "accuracy": mean_out,
                         "count": count.astype(np.int64), "accuracy_ci_low": low, "accuracy_ci_high": high})


def adaptive_bin_count(n: int, most: int = 15, per_bin: int = 25, fewest: int = 4) -> int:
    """Bins for a reliability diagram of ``n`` predictions: about ``per_bin`` predictions each, between
    ``fewest`` and ``most`` (40 predictions: 4 bins of 10; 450: 15 bins of 30)."""
    return int(max(1, min(most, max(fewest, n // per_bin), n)))


def wilson_interval(hits: np.ndarray, count: np.ndarray, level: float = LEVEL) -> Tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of ``hits / count`` (element-wise; NaN where ``count`` is 0). Unlike the normal
    approximation it stays inside [0, 1] and is not zero-width at 0 or 1 successes."""
    from scipy.stats import norm

    hits, count = np.asarray(hits, np.float64), np.asarray(count, np.float64)
    z = float(norm.ppf(0.5 + level / 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = hits / count
        centre = (p + z * z / (2 * count)) / (1 + z * z / count)
        half = z * np.sqrt(p * (1 - p) / count + z * z / (4 * count * count)) / (1 + z * z / count)
    low, high = centre - half, centre + half
    low[count == 0] = high[count == 0] = np.nan
    return np.clip(low, 0, 1), np.clip(high, 0, 1)


def ece(y_true: np.ndarray, proba: np.ndarray, task: str, n_bins: int = 15) -> float:
    """Expected calibration error: ``sum_b n_b / n * |accuracy_b - confidence_b|`` over equal-width bins."""
    bins = reliability_bins(y_true, proba, task, n_bins)
    n = bins["count"].sum()
    if n == 0:
        return math.nan
    used = bins[bins["count"] > 0]
    return float((used["count"] * (used["accuracy"] - used["confidence"]).abs()).sum() / n)


def brier(y_true: np.ndarray, proba: np.ndarray, task: str) -> float:
    """Brier score: mean squared error of the probabilities (multiclass: summed over classes, range 0..2)."""
    y = np.asarray(y_true)
    p = np.asarray(proba, dtype=np.float64)
    if len(y) == 0:
        return math.nan
    if task == "binary":
        return float(np.mean((p.reshape(-1) - (y == 1)) ** 2))
    if task == "multiclass":
        return float(np.mean(((p - np.eye(p.shape[1])[y]) ** 2).sum(axis=1)))
    return float(np.mean((p - y) ** 2))


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def logits_probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    """Logits to probabilities: sigmoid (binary ``[N]``, multilabel) or softmax (multiclass)."""
    z = np.asarray(logits, dtype=np.float64)
    if task == "multiclass":
        return np.exp(log_softmax(z))
    if task == "binary":
        z = z.reshape(-1)
    return 0.5 * (1 + np.tanh(0.5 * z))  # a sigmoid that cannot overflow


def nll(logits: np.ndarray, y_true: np.ndarray, task: str) -> float:
    """Mean negative log-likelihood of ``y_true`` under ``logits``."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true)
    if task == "multiclass":
        return float(-log_softmax(z)[np.arange(len(y)), y].mean())
    if task == "binary":
        z, y = z.reshape(-1), y.reshape(-1)
    # binary cross-entropy with logits: log(1 + e^z) - y z, computed stably
    return float(np.mean(np.logaddexp(0, z) - y * z))


def fit_temperature(val_logits: np.ndarray, y_val: np.ndarray, task: str, bounds: Tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature ``T`` minimising the validation NLL of ``logits / T`` (fit on the validation split only)."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(val_logits, dtype=np.float64)
    if len(z) == 0:
        raise ValueError("temperature scaling needs validation logits (the validation split is empty)")
    res = minimize_scalar(lambda t: nll(z / math.exp(t), y_val, task), bounds=(math.log(bounds[0]), math.log(bounds[1])),
                          method="bounded", options={"xatol": 1e-4})
    return float(math.exp(res.x))


def apply_temperature(logits: np.ndarray, temperature: float, task: str) -> np.ndarray:
    """Probabilities of ``logits / temperature``."""
    return logits_probabilities(np.asarray(logits, dtype=np.float64) / temperature, task)


# ------------------------------------------------------------------------------------------------ subgroups


def age_bands(age: Sequence, edges: Sequence[float] = (18, 30, 45, 60, 75)) -> pd.Series:
    """Ages to bands: ``<18, 18-29, 30-44, 45-59, 60-74, 75+`` for the default ``edges``; missing -> ``missing``.

    Text such as ``"45"`` or ``"45Y"`` is read as its number; anything unreadable is ``missing``.
    """
    s = pd.Series(age)
    if s.dtype == object:
        s = s.astype(str).str.extract(r"(-?\d+(?:\.\d+)?)", expand=False)
    values = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
    edges = list(edges)
    names = [f"<{edges[0]:g}"] + [f"{a:g}-{b - 1:g}" for a, b in zip(edges[:-1], edges[1:])] + [f"{edges[-1]:g}+"]
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    out = np.array([names[i] for i in np.clip(idx, 0, len(names) - 1)], dtype=object)
    out[~np.isfinite(values)] = "missing"
    return pd.Series(out, index=getattr(age, "index", None), name=getattr(age, "name", None))


def is_age_column(name: str) -> bool:
    """``age``, ``patient_age``, ``Age (years)``: yes; ``image``, ``stage``, ``page``: no."""
    return re.search(r"(?:^|[^a-z])age(?:[^a-z]|$)", name.lower()) is not None


def group_labels(values: Sequence, name: str = "", max_levels: int = 12) -> pd.Series:
    """Group names (str) for one metadata column: missing -> ``missing``; a numeric age column (by its
    ``name``, see :func:`is_age_column`) is cut into :func:`age_bands`; another numeric column with more than
    ``max_levels`` distinct values into quartiles."""
    s = pd.Series(values).reset_index(drop=True)
    if is_age_column(name):
        return age_bands(s)
    numeric = pd.to_numeric(s, errors="coerce")
    is_numeric = s.dtype != object or (numeric.notna() == s.notna()).all()
    if is_numeric and numeric.nunique() > max_levels:
        bands = pd.qcut(numeric, 4, duplicates="drop")
        return pd.Series([("missing" if pd.isna(b) else f"{b.left:.3g}-{b.right:.3g}") for b in bands], dtype=object)
    out = s.astype(object).where(s.notna(), "missing")
    return out.map(lambda v: str(v).strip() or "missing")


def subgroup_metrics(
    y_true: np.ndarray,
    probas: Mapping[str, Sequence[np.ndarray]],
    groups: Sequence,
    task: str,
    min_size: int = 20,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
    metrics: Sequence[str] = METRICS,
) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """Metrics per group and the worst-group gap, for each model (its seeds averaged).

    ``probas``: model -> one probability array per seed, all on the rows of ``y_true``; ``groups [N]``: the
    group of each row. Returns ``(table, gaps)``: ``table`` has one line per (model, group) with ``n``,
    ``scored`` (False when the group has fewer than ``min_size`` rows: listed with its ``reason``, never
    hidden), each metric and its interval; ``gaps`` has one line per (model, metric): best minus worst
    scored group, the interval of the difference between those two groups, and which groups they are.
    Resamples are stratified by group and label. The two groups are picked on the same test rows, so the
    gap leans high (more so with many small groups); its interval includes 0 when the data cannot tell the
    two groups apart.
    """
    groups = np.asarray(pd.Series(groups).astype(str))
    y = np.asarray(y_true)
    names = list(probas)
    flat = [np.asarray(p) for m in names for p in probas[m]]
    cols, j = [], 0
    for m in names:
        cols.append(list(range(j, j + len(probas[m]))))
        j += len(probas[m])
    strata = pd.Series(groups).str.cat(pd.Series(label_strata(y, task)).astype(str), sep="|").to_numpy()
    levels = sorted(set(groups), key=lambda g: (g == "missing", g))
    scored = [g for g in levels if (groups == g).sum() >= min_size]
    point: Dict[str, Dict[str, np.ndarray]] = {}
    samples: Dict[str, Dict[str, List[np.ndarray]]] = {g: {k: [] for k in metrics} for g in scored}
    tables = {g: ScoreTable(y[groups == g], [p[groups == g] for p in flat], task) for g in scored}
    for g in scored:
        point[g] = {k: mean_over(v, cols) for k, v in tables[g].point(metrics).items()}
    for W in resample_weights(strata, n_resamples, seed):
        for g in scored:
            for k, v in tables[g](W[:, groups == g], metrics).items():
                samples[g][k].append(mean_over(v, cols))
    lines = []
    for g in levels:
        n = int((groups == g).sum())
        n_classes = len(np.unique(label_strata(y[groups == g], task))) if task != "multilabel" else None
        for mi, m in enumerate(names):
            line = {"model": m, "group": g, "n": n, "scored": g in scored,
                    "reason": "" if g in scored else f"only {n} test rows (min_size={min_size})"}
            for k in metrics:
                if g in scored:
                    s = np.concatenate(samples[g][k])[:, mi]
                    low, high = percentile_interval(s, level)
                    line.update({k: float(point[g][k][mi]), f"{k}_ci_low": float(low), f"{k}_ci_high": float(high)})
                else:
                    line.update({k: math.nan, f"{k}_ci_low": math.nan, f"{k}_ci_high": math.nan})
            if g in scored and n_classes == 1:
                line["reason"] = "one class only: no ROC-AUC"
            lines.append(line)
    table = pd.DataFrame(lines)
    gaps = []
    for mi, m in enumerate(names):
        for k in metrics:
            vals = {g: float(point[g][k][mi]) for g in scored if np.isfinite(point[g][k][mi])}
            line = {"model": m, "metric": k, "n_groups": len(vals)}
            if len(vals) < 2:
                line.update(gap=math.nan, ci_low=math.nan, ci_high=math.nan, worst_group="", best_group="",
                            note="fewer than 2 scored groups")
            else:
                worst, best = min(vals, key=vals.get), max(vals, key=vals.get)
                # the interval of the difference between these two groups (identities fixed by the point estimate)
                gap_s = np.concatenate(samples[best][k])[:, mi] - np.concatenate(samples[worst][k])[:, mi]
                low, high = percentile_interval(gap_s, level)
                line.update(gap=vals[best] - vals[worst], ci_low=float(low), ci_high=float(high), worst_group=worst,
                            best_group=best, note="")
            gaps.append(line)
    return table, pd.DataFrame(gaps)


# ------------------------------------------------------------------------------------------------ Shapley values


def prior_proba(y_train: np.ndarray, task: str, n_classes: int, n: int) -> np.ndarray:
    """The empty set's probabilities: the training class frequencies for every one of ``n`` rows (ROC-AUC 0.5).

    Read as hard predictions they give the majority class (each label's majority for multilabel); see
    :func:`prior_predictions` for the draws the report scores instead.
    """
    y = np.asarray(y_train)
    if task == "binary":
        return np.full(n, float((y == 1).mean()), dtype=np.float32)
    if task == "multiclass":
        freq = np.bincount(y, minlength=n_classes) / max(len(y), 1)
        return np.tile(freq.astype(np.float32), (n, 1))
    return np.tile(y.mean(axis=0).astype(np.float32), (n, 1))


def prior_predictions(y_train: np.ndarray, task: str, n_classes: int, n: int, seed: int = 0) -> np.ndarray:
    """Hard predictions of the prior predictor: ``n`` classes drawn (seeded) with the training frequencies.

    Its expected accuracy and F1 are those of guessing with the class shares, which no input can make worse;
    the majority class alone would score a macro-F1 far below chance and hand every modality, noise
    included, credit for making the predictions vary.
    """
    rng = np.random.default_rng(seed)
    p = prior_proba(y_train, task, n_classes, 1)
    if task == "binary":
        return (rng.random(n) < p[0]).astype(np.int64)
    if task == "multiclass":
        return rng.choice(n_classes, size=n, p=p[0] / p[0].sum()).astype(np.int64)
    return (rng.random((n, n_classes)) < p[0][None, :]).astype(np.int64)


def all_subsets(players: Sequence[str]) -> List[FrozenSet[str]]:
    """Every subset of ``players``, smallest first."""
    return [frozenset(c) for k in range(len(players) + 1) for c in combinations(players, k)]


def shapley_values(values: Mapping[FrozenSet[str], np.ndarray], players: Sequence[str]) -> Dict[str, np.ndarray]:
    """Exact Shapley values from the value of every subset of ``players`` (arrays broadcast, e.g. resamples).

    ``phi_i = sum over S without i of |S|! (n - |S| - 1)! / n! * (v(S + i) - v(S))``; they sum to
    ``v(all) - v(empty)``.
    """
    players = list(players)
    n = len(players)
    missing = [set(s) for s in all_subsets(players) if s not in values]
    if missing:
        raise ValueError(f"Shapley values need the value of every subset; missing: {missing}")
    out: Dict[str, np.ndarray] = {}
    for p in players:
        others = [q for q in players if q != p]
        total = 0.0
        for S in all_subsets(others):
            w = math.factorial(len(S)) * math.factorial(n - len(S) - 1) / math.factorial(n)
            total = total + w * (np.asarray(values[S | {p}], dtype=np.float64) - np.asarray(values[S], dtype=np.float64))
        out[p] = total
    return out
