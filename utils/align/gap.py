"""Measures of how two embedding spaces relate (no fitting, no torch).

- :func:`modality_gap`: distance between the centroids of the L2-normalised embeddings of two modalities
  (Liang et al. 2022, "Mind the Gap"). Needs the same dimension; see :mod:`utils.align.posthoc` for maps
  that bring modalities of different dimension to a common one.
- :func:`pair_similarity`: cosine similarity of matched pairs (row i with row i) against unmatched ones.
- :func:`linear_cka`: linear centred kernel alignment between two spaces of any dimensions (Kornblith et al. 2019).
- :func:`pca_variance`: share of a modality's variance in its first principal components.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length: ``[N, D] -> [N, D]`` (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def _check_pair(a: np.ndarray, b: np.ndarray, same_dim: bool = True) -> None:
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"expected two [N, D] matrices, got shapes {a.shape} and {b.shape}")
    if same_dim and a.shape[1] != b.shape[1]:
        raise ValueError(
            f"the modalities have different dimensions ({a.shape[1]} vs {b.shape[1]}): bring them to a common "
            "dimension first (utils.align.CommonDim, fitted on the training split)"
        )


def centroid_gap_vector(a: np.ndarray, b: np.ndarray, normalize: bool = True) -> np.ndarray:
    """``mean(b) - mean(a)`` (after L2 normalisation when ``normalize``): ``[D]``."""
    _check_pair(a, b)
    if normalize:
        a, b = l2_normalize(a), l2_normalize(b)
    return np.asarray(b, np.float64).mean(axis=0) - np.asarray(a, np.float64).mean(axis=0)


def modality_gap(a: np.ndarray, b: np.ndarray, normalize: bool = True) -> float:
    """Euclidean distance between the centroids of ``a [N, D]`` and ``b [M, D]`` (L2-normalised rows by default)."""
    return float(np.linalg.norm(centroid_gap_vector(a, b, normalize)))


def pair_similarity(a: np.ndarray, b: np.ndarray, n_unmatched: int = 20000, seed: int = 0) -> Dict[str, float]:
    """Cosine similarity of matched rows ``(a[i], b[i])`` against random unmatched rows ``(a[i], b[j]), j != i``.

    Returns ``matched``, ``unmatched`` (means), their ``difference`` and the share of matched pairs that beat
    a random unmatched partner (``matched_wins``).
    """
    _check_pair(a, b)
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"pair_similarity needs paired rows (same N >= 2), got {len(a)} and {len(b)}")
    a, b = l2_normalize(a), l2_normalize(b)
    matched = np.einsum("nd,nd->n", a, b)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(a), n_unmatched)
    j = (i + rng.integers(1, len(a), n_unmatched)) % len(a)  # never j == i
    unmatched = np.einsum("nd,nd->n", a[i], b[j])
    return {
        "matched": float(matched.mean()),
        "unmatched": float(unmatched.mean()),
        "difference": float(matched.mean() - unmatched.mean()),
        "matched_wins": float((matched[i] > unmatched).mean()),
    }


def linear_cka(a: np.ndarray, b: np.ndarray) -> float:
    """Linear CKA between paired ``a [N, Da]`` and ``b [N, Db]`` (1: same geometry up to rotation and scale)."""
    _check_pair(a, b, same_dim=False)
    if len(a) != len(b):
        raise ValueError(f"linear_cka needs paired rows, got {len(a)} and {len(b)}")
    a = np.asarray(a, np.float64) - np.mean(a, axis=0)
    b = np.asarray(b, np.float64) - np.mean(b, axis=0)
    cross = np.linalg.norm(a.T @ b, "fro") ** 2
    denom = np.linalg.norm(a.T @ a, "fro") * np.linalg.norm(b.T @ b, "fro")
    return float(cross / denom) if denom > 0 else 0.0


def pca_variance(x: np.ndarray, components: Sequence[int] = (1, 2, 5, 10, 20, 50)) -> Dict[int, float]:
    """Cumulative share of variance of ``x [N, D]`` in its first ``k`` principal components, for each ``k``."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=0)
    s = np.linalg.svd(x, compute_uv=False) ** 2
    total = s.sum()
    cum = np.cumsum(s) / total if total > 0 else np.zeros_like(s)
    return {int(k): float(cum[min(k, len(cum)) - 1]) for k in components if k >= 1 and len(cum)}


def gap_report(
    vectors: Dict[str, np.ndarray], a: str, b: str, rows: Optional[np.ndarray] = None,
    components: Sequence[int] = (1, 5, 10),
) -> Dict[str, float]:
    """All measures for modalities ``a`` and ``b`` on ``rows`` (indices; default all rows finite in both).

    Gap and pair similarity need equal dimensions and are NaN otherwise; CKA and PCA variance always work.
    """
    xa, xb = np.asarray(vectors[a]), np.asarray(vectors[b])
    ok = np.isfinite(xa).all(1) & np.isfinite(xb).all(1)
    idx = np.flatnonzero(ok) if rows is None else np.asarray(rows)[ok[np.asarray(rows)]]
    xa, xb = xa[idx], xb[idx]
    out: Dict[str, float] = {"n": int(len(idx))}
    if xa.shape[1] == xb.shape[1]:
        out["gap"] = modality_gap(xa, xb)
        out.update({f"sim_{k}": v for k, v in pair_similarity(xa, xb).items()})
    else:
        out["gap"] = float("nan")
    out["cka"] = linear_cka(xa, xb)
    for m, x in ((a, xa), (b, xb)):
        out.update({f"pca{k}_{m}": v for k, v in pca_variance(l2_normalize(x), components).items()})
    return out


def pairwise_gap_table(vectors: Dict[str, np.ndarray], rows: Optional[np.ndarray] = None):
    """Gap, matched / unmatched similarity and CKA for every pair of modalities (a pandas DataFrame)."""
    import itertools

    import pandas as pd

    lines = []
    for a, b in itertools.combinations(list(vectors), 2):
        r = gap_report(dict(vectors), a, b, rows, components=())
        lines.append({"pair": f"{a}-{b}", "n": r["n"], "gap": r.get("gap", np.nan), "matched": r.get("sim_matched", np.nan),
                      "unmatched": r.get("sim_unmatched", np.nan), "cka": r["cka"]})
    return pd.DataFrame(lines)
