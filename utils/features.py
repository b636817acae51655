"""Feature matrices from per-modality vectors: stack them, pick split rows, standardise on train only.

Everything here takes plain arrays (no dataset object, no torch), so every layer above can use it:

    X = stack(vectors, ["text", "image"])               # [N, D_text + D_image], float32
    rows = split_rows(split, usable=usable_rows(X))     # {"train": idx, "val": idx, "test": idx}
    scaler = Standardizer.fit(X[rows["train"]])         # statistics of the training rows only
    Xtr, Xte = scaler(X[rows["train"]]), scaler(X[rows["test"]])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

SPLITS = ("train", "val", "test")


def stack(vectors: Mapping[str, np.ndarray], modalities: Sequence[str]) -> np.ndarray:
    """The modalities side by side: ``[N, sum D_m]`` float32, in the order of ``modalities``."""
    missing = [m for m in modalities if m not in vectors]
    if missing:
        raise KeyError(f"no vectors for modality {missing}; available: {list(vectors)}")
    return np.concatenate([np.asarray(vectors[m], dtype=np.float32) for m in modalities], axis=1)


def usable_rows(X: np.ndarray) -> np.ndarray:
    """``[N]`` bool: rows with every value finite (a missing modality is stored as a NaN row)."""
    return np.isfinite(X).all(axis=1)


def split_rows(split: Sequence[str], usable: Optional[np.ndarray] = None,
               splits: Sequence[str] = SPLITS) -> Dict[str, np.ndarray]:
    """Row indices of each split (only ``usable`` rows when given), in table order."""
    split = np.asarray(split)
    ok = np.ones(len(split), dtype=bool) if usable is None else np.asarray(usable, dtype=bool)
    return {s: np.flatnonzero((split == s) & ok) for s in splits}


@dataclass
class Standardizer:
    """Per-feature ``(x - mean) / std`` with statistics of the rows it was fitted on (the training split)."""

    mean: np.ndarray  # [1, D]
    std: np.ndarray  # [1, D]; features with (almost) no variance keep std 1

    @classmethod
    def fit(cls, train: np.ndarray, min_std: float = 1e-6) -> "Standardizer":
        train = np.asarray(train, dtype=np.float64)
        mu = train.mean(axis=0, keepdims=True)
        sd = train.std(axis=0, keepdims=True)
        sd[sd < min_std] = 1.0
        return cls(mu.astype(np.float32), sd.astype(np.float32))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float32) - self.mean) / self.std).astype(np.float32, copy=False)


def standardize(train: np.ndarray, *others: np.ndarray):
    """``[train, *others]`` standardised with the statistics of ``train`` only."""
    scaler = Standardizer.fit(train)
    return [scaler(a) for a in (train, *others)]
