"""Post-hoc alignment of two modalities, fitted on paired training rows and applied to any rows.

Every aligner works on L2-normalised inputs ``a [N, Da]`` (the first modality, text by default) and
``b [N, Db]`` (the second, image), has ``fit(a, b)`` (training rows only) and ``transform(a, b)``, and
returns the two transformed matrices.

- :class:`CommonDim`: a fitted linear map to one dimension when ``Da != Db`` (``"pca"``: the wider modality onto
  its own first principal axes, a linear map so centroids keep their place and, on this project's synthetic
  data, class information is kept; ``"lstsq"``: ridge least squares from the wider modality into the narrower
  one's space on paired rows, which itself pulls the centroids together but throws away whatever the wider
  modality knows that the other does not: use it only for redundant modalities).
- :class:`CentroidShift`: the original framework's shift. ``g = mean(b) - mean(a)``; ``a += (lam/2) g``,
  ``b -= (lam/2) g``, re-normalise. ``lam = 1`` closes the gap, ``0`` leaves it, ``-1`` doubles it.
- :class:`MeanCentering`: subtract each modality's training mean, re-normalise.
- :class:`Procrustes`: the orthogonal ``R`` minimising ``||a R - b||`` on paired rows; ``a -> a R``.
- :class:`CCAAlign`: scikit-learn CCA into a shared ``k``-dimensional space.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..registry import Registry
from .gap import l2_normalize

log = logging.getLogger(__name__)

Pair = Tuple[np.ndarray, np.ndarray]
ALIGNERS: Registry["Aligner"] = Registry("aligner")


class Aligner:
    """Base class: ``fit(a, b)`` on paired training rows, ``transform(a, b)`` on any rows."""

    name = "none"

    def fit(self, a: np.ndarray, b: np.ndarray) -> "Aligner":
        return self

    def transform(self, a: np.ndarray, b: np.ndarray) -> Pair:
        return l2_normalize(a), l2_normalize(b)

    def fit_transform(self, a: np.ndarray, b: np.ndarray) -> Pair:
        return self.fit(a, b).transform(a, b)

    def describe(self) -> str:
        return self.name


class CommonDim(Aligner):
    """Bring ``a [N, Da]`` and ``b [N, Db]`` to one dimension with a fitted linear map (identity when equal)."""

    name = "common_dim"

    def __init__(self, method: str = "pca", dim: Optional[int] = None, ridge: float = 1e-2):
        if method not in ("pca", "lstsq"):
            raise ValueError(f"CommonDim method must be 'pca' or 'lstsq', got {method!r}")
        self.method, self.dim, self.ridge = method, dim, ridge
        self.maps: Tuple[Optional[np.ndarray], Optional[np.ndarray]] = (None, None)

    def fit(self, a: np.ndarray, b: np.ndarray) -> "CommonDim":
        a, b = l2_normalize(a), l2_normalize(b)
        da, db = a.shape[1], b.shape[1]
        if da == db and self.dim in (None, da):
            self.maps = (None, None)
            return self
        if self.method == "pca":  # a modality already at the target width is left as it is
            d = self.dim or min(da, db)
            d = min(d, da, db, len(a))
            self.maps = (None if da == d else _pca_basis(a, d), None if db == d else _pca_basis(b, d))
        else:  # ridge least squares from the wider modality into the narrower one's space
            if da >= db:
                self.maps = (_ridge(a, b, self.ridge), None)
            else:
                self.maps = (None, _ridge(b, a, self.ridge))
        return self

    def transform(self, a: np.ndarray, b: np.ndarray) -> Pair:
        a, b = l2_normalize(a), l2_normalize(b)
        ma, mb = self.maps
        return l2_normalize(a @ ma if ma is not None else a), l2_normalize(b @ mb if mb is not None else b)

    def describe(self) -> str:
        return f"common_dim({self.method})"


def _pca_basis(x: np.ndarray, d: int) -> np.ndarray:
    """First ``d`` principal axes of ``x`` as columns ``[D, d]`` (applied to uncentred rows: a linear map)."""
    _, _, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    return vt[:d].T


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """``W [Dx, Dy]`` minimising ``||x W - y||^2 + alpha ||W||^2``."""
    return np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ y)


@ALIGNERS.register("none")
class Identity(Aligner):
    """The control of every comparison: L2 normalisation (and, when the widths differ, the same fitted map to
    one width the other methods use), no alignment."""

    name = "none"

    def __init__(self, common: str = "pca", dim: Optional[int] = None):
        self.common = CommonDim(common, dim)

    def fit(self, a: np.ndarray, b: np.ndarray) -> "Identity":
        self.common.fit(a, b)
        return self

    def transform(self, a: np.ndarray, b: np.ndarray) -> Pair:
        return self.common.transform(a, b)

    def describe(self) -> str:
        mapped = any(m is not None for m in self.common.maps)
        return f"none (normalised, {self.common.method})" if mapped else "none (normalised)"


@ALIGNERS.register("shift")
class CentroidShift(Aligner):
    """Move both modalities along the training gap vector: ``a += lam/2 g``, ``b -= lam/2 g``, re-normalise."""

    name = "shift"

    def __init__(self, lam: float = 1.0, common: str = "pca", dim: Optional[int] = None, renormalize: bool = True):
        self.lam, self.renormalize = float(lam), renormalize
        self.common = CommonDim(common, dim)
        self.gap_vector: Optional[np.ndarray] = None  # g = mean(b) - mean(a) on the training rows, [D]

    def fit(self, a: np.ndarray, b: np.ndarray) -> "CentroidShift":
        a, b = self.common.fit(a, b).transform(a, b)
        self.gap_vector = b.mean(axis=0) - a.mean(axis=0)
        return self

    def transform(self, a: np.ndarray, b: np.ndarray) -> Pair:
        if self.gap_vector is None:
            raise RuntimeError("CentroidShift: call fit() on the training rows first")
        a, b = self.common.transform(a, b)
        a = a + (self.lam / 2) * self.gap_vector
        b = b - (self.lam / 2) * self.gap_vector
        return (l2_normalize(a), l2_normalize(b)) if self.renormalize else (a, b)

    def describe(self) -> str:
        return f"shift(lambda={self.lam:g}, {self.common.method})"


@ALIGNERS.register("centering")
class MeanCentering(Aligner):
    """Subtract each modality's training mean (of the normalised rows), then re-normalise; any dimensions."""

    name = "centering"

    def __init__(self) -> None:
        self.means: Tuple[Optional[np.ndarray], Optional[np.ndarray]] = (None, None)

    def fit(self, a: np.ndarray, b: np.ndarray) -> "MeanCentering":
        self.means = (l2_normalize(a).mean(axis=0), l2_normalize(b).mean(axis=0))
        return self

    def transform(self, a: np.ndarray, b: np.ndarray) -> Pair:
        if self.means[0] is None:
            raise RuntimeError("MeanCentering: call fit() on the training rows first")
        return l2_normalize(l2_normalize(a) - self.means[0]), l2_normalize(l2_normalize(b) - self.means[1])


@ALIGNERS.register("procrustes")
class Procrustes(Aligner):
    """Orthogonal Procrustes: rotate ``a`` onto ``b`` with ``R = U V^T`` from ``svd(a^T b)`` (paired rows)."""

    name = "procrustes"

    def __init__(self, common: str = "pca", dim: Optional[int] = None):
        self.common = CommonDim(common, dim)
        self.rotation: Optional[np.ndarray] = None  # [D, D], orthogonal

    def fit(self, a: np.ndarray, b: np.ndarray) -> "Procrustes":
        a, b = self.common.fit(a, b).transform(a, b)
        self.rotation = orthogonal_procrustes(a, b)
        return self

    def transform(self, a: np.ndarray, b: np.ndarray) -> Pair:
        if self.rotation is None:
            raise RuntimeError("Procrustes: call fit() on the training rows first")
        a, b = self.common.transform(a, b)
        return l2_normalize(a @ self.rotation), b


def orthogonal_procrustes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The orthogonal ``R [D, D]`` minimising ``||a R - b||_F`` for paired ``a, b [N, D]``."""
    if a.shape != b.shape:
        raise ValueError(f"Procrustes needs paired rows of one dimension, got {a.shape} and {b.shape}")
    u, _, vt = np.linalg.svd(a.T @ b)
    return u @ vt


@ALIGNERS.register("cca")
class CCAAlign(Aligner):
    """CCA: both modalities into a shared ``k``-dimensional space of maximally correlated axes.

    ``solver="svd"`` (default): regularised closed-form CCA -- whiten each modality with its ridge-regularised
    covariance (``reg`` times the mean variance added to the diagonal), then an SVD of the whitened
    cross-covariance. It has no iterations that can diverge: near-collinear or constant features (common in
    embeddings) cost nothing. ``solver="nipals"``: scikit-learn's iterative ``CCA``; if its fit produces NaN
    (seen with scikit-learn 1.9 on rank-deficient inputs) it falls back to the closed form, with a warning.
    ``k`` never exceeds the rank of either modality's training rows.
    """

    name = "cca"

    def __init__(self, n_components: int = 16, max_iter: int = 500, solver: str = "svd", reg: float = 1e-6):
        if solver not in ("svd", "nipals"):
            raise ValueError(f"cca: solver must be 'svd' or 'nipals', got {solver!r}")
        self.n_components, self.max_iter, self.solver, self.reg = n_components, max_iter, solver, float(reg)
        self.means: Optional[Tuple[np.ndarray, np.ndarray]] = None
        self.rotations: Optional[Tuple[np.ndarray, np.ndarray]] = None  # [Da, k], [Db, k]
        self.correlations: Optional[np.ndarray] = None  # [k] canonical correlations (training rows)
        self.k = 0

    def fit(self, a: np.ndarray, b: np.ndarray) -> "CCAAlign":
        a, b = l2_normalize(a), l2_normalize(b)
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            raise ValueError("cca: the training rows contain NaN or infinite values; drop rows without vectors first")
        ca, cb = a - a.mean(0), b - b.mean(0)
        rank = min(_rank(ca), _rank(cb))
        if rank == 0:
            raise ValueError("cca: a modality is constant on the training rows (rank 0): nothing to correlate")
        k = max(1, min(self.n_components, rank, len(a) - 1))
        if k < self.n_components:
            log.info("cca: %d components asked, the training rows support %d", self.n_components, k)
        self.k = k
        if self.solver == "nipals" and self._fit_nipals(a, b, k):
            return self
        self._fit_closed_form(a, b, k)
        return self

    def _fit_closed_form(self, a: np.ndarray, b: np.ndarray, k: int) -> None:
        ma, mb = a.mean(0), b.mean(0)
        ca, cb = a - ma, b - mb
        n = max(len(a) - 1, 1)
        wa, wb = _inv_sqrt(ca.T @ ca / n, self.reg), _inv_sqrt(cb.T @ cb / n, self.reg)
        u, s, vt = np.linalg.svd(wa @ (ca.T @ cb / n) @ wb, full_matrices=False)
        self.means = (ma, mb)
        self.rotations = (wa @ u[:, :k], wb @ vt[:k].T)
        self.correlations = s[:k]

    def _fit_nipals(self, a: np.ndarray, b: np.ndarray, k: int) -> bool:
        import warnings

        from sklearn.cross_decomposition import CCA

        model = CCA(n_components=k, max_iter=self.max_iter)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # sklearn warns when NIPALS stops at max_iter on tiny data
                model.fit(a, b)
            ok = all(np.isfinite(w).all() for w in (model.x_rotations_, model.y_rotations_))
        except (ValueError, np.linalg.LinAlgError) as e:
            ok = False
            log.debug("cca: NIPALS failed: %s", e)
        if not ok:
            log.warning("cca: scikit-learn's NIPALS fit diverged (NaN) with %d components on %d rows; using the "
                        "regularised closed-form CCA instead (solver='svd')", k, len(a))
            return False
        self.means = (model._x_mean, model._y_mean) if hasattr(model, "_x_mean") else (a.mean(0), b.mean(0))
        xs = getattr(model, "_x_std", np.ones(a.shape[1]))
        ys = getattr(model, "_y_std", np.ones(b.shape[1]))
        self.rotations = (model.x_rotations_ / xs[:, None], model.y_rotations_ / ys[:, None])
        return True

    def transform(self, a: np.ndarray, b: np.ndarray) -> Pair:
        if self.rotations is None or self.means is None:
            raise RuntimeError("CCAAlign: call fit() on the training rows first")
        ta = (l2_normalize(a) - self.means[0]) @ self.rotations[0]
        tb = (l2_normalize(b) - self.means[1]) @ self.rotations[1]
        return l2_normalize(ta), l2_normalize(tb)

    def describe(self) -> str:
        return f"cca(k={self.k or self.n_components})"


def _rank(x: np.ndarray) -> int:
    """Numerical rank of ``x`` (singular values above ``1e-8`` of the largest)."""
    s = np.linalg.svd(x, compute_uv=False)
    return int((s > (s[0] if len(s) else 0) * 1e-8).sum()) if len(s) and s[0] > 0 else 0


def _inv_sqrt(cov: np.ndarray, reg: float) -> np.ndarray:
    """``(cov + reg * mean_var * I)^(-1/2)`` by eigendecomposition (symmetric, always finite)."""
    d = cov.shape[0]
    ridge = reg * max(float(np.trace(cov)) / d, 1e-12)
    w, v = np.linalg.eigh(cov + ridge * np.eye(d))
    return (v / np.sqrt(np.maximum(w, ridge))) @ v.T


def make_aligner(name: str, **options: Any) -> Aligner:
    """An aligner by name (``ALIGNERS.names()``: none, shift, centering, procrustes, cca)."""
    return ALIGNERS.create(name, **options)


def describe_options(name: str, options: Dict[str, Any]) -> str:
    return make_aligner(name, **options).describe()
