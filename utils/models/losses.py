"""Losses for the three task types, with class weights that work for binary tasks too."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

ClassWeights = Union[None, str, Sequence[float], np.ndarray]


def class_weight_vector(y: np.ndarray, task: str, n_classes: int, weights: ClassWeights) -> Optional[torch.Tensor]:
    """The weight tensor for :func:`make_loss`.

    - multiclass: one weight per class (``"balanced"``: ``N / (C * n_c)``), used by cross-entropy;
    - binary: ``pos_weight`` = n_negative / n_positive for ``"balanced"`` (a 1-element tensor), or the
      ratio ``w[1] / w[0]`` when two class weights are given;
    - multilabel: ``pos_weight`` per label = n_negative / n_positive.
    """
    if weights is None:
        return None
    if isinstance(weights, str):
        if weights != "balanced":
            raise ValueError(f"class_weights must be None, 'balanced' or a sequence, got {weights!r}")
        if task == "multiclass":
            counts = np.bincount(y, minlength=n_classes).astype(np.float64)
            w = len(y) / (n_classes * np.maximum(counts, 1))
            return torch.tensor(w, dtype=torch.float32)
        pos = y.reshape(len(y), -1).sum(axis=0).astype(np.float64)
        neg = len(y) - pos
        return torch.tensor(neg / np.maximum(pos, 1), dtype=torch.float32)
    w = np.asarray(weights, dtype=np.float64)
    if task == "binary":
        if w.shape == (2,):
            return torch.tensor([w[1] / w[0]], dtype=torch.float32)
        if w.shape == (1,):
            return torch.tensor(w, dtype=torch.float32)
        raise ValueError(f"binary class_weights need 2 values (negative, positive) or 1 pos_weight, got {w.shape}")
    if w.shape != (n_classes,):
        raise ValueError(f"class_weights need {n_classes} values, got {w.shape}")
    return torch.tensor(w, dtype=torch.float32)


def make_loss(task: str, weight: Optional[torch.Tensor] = None) -> nn.Module:
    """BCE-with-logits (binary, multilabel; ``weight`` is ``pos_weight``) or cross-entropy (multiclass)."""
    if task == "multiclass":
        return nn.CrossEntropyLoss(weight=weight)
    if task in ("binary", "multilabel"):
        return nn.BCEWithLogitsLoss(pos_weight=weight)
    raise ValueError(f"unknown task {task!r}")


def targets_tensor(y: np.ndarray, task: str) -> torch.Tensor:
    """Targets in the form the loss wants: int64 ``[N]`` (multiclass), float ``[N, 1]`` / ``[N, C]`` otherwise."""
    if task == "multiclass":
        return torch.as_tensor(y, dtype=torch.long)
    t = torch.as_tensor(y, dtype=torch.float32)
    return t.reshape(len(t), -1)


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Softmax for multiclass; sigmoid otherwise (binary gives ``[N]``, the positive-class probability)."""
    if task == "multiclass":
        return torch.softmax(logits, dim=1)
    p = torch.sigmoid(logits)
    return p[:, 0] if task == "binary" else p
