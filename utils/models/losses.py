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


LOSSES = ("auto", "ce", "bce", "focal")


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): ``-alpha_t * (1 - p_t) ** gamma * log(p_t)``, averaged over the batch.

    - multiclass: ``logits [B, C]``, int targets ``[B]``; ``p_t`` is the softmax probability of the true
      class; ``alpha``: a scalar or one weight per class (``alpha_t = alpha[y]``).
    - binary / multilabel: ``logits [B, L]``, 0/1 float targets ``[B, L]``; ``p_t = p`` for positives and
      ``1 - p`` for negatives; ``alpha`` (scalar or per label) weighs positives and ``1 - alpha`` negatives;
      ``pos_weight`` multiplies the positive term as in ``BCEWithLogitsLoss`` (class weights).

    With ``gamma=0`` and no ``alpha`` it equals cross-entropy (multiclass) or BCE-with-logits (binary,
    with the same ``pos_weight``); the mean is over rows (multiclass) or over rows x labels.
    """

    def __init__(self, task: str, gamma: float = 2.0, alpha: Union[None, float, Sequence[float]] = None,
                 pos_weight: Optional[torch.Tensor] = None):
        super().__init__()
        if task not in ("binary", "multiclass", "multilabel"):
            raise ValueError(f"unknown task {task!r}")
        if gamma < 0:
            raise ValueError(f"focal loss gamma must be >= 0, got {gamma}")
        self.task, self.gamma = task, float(gamma)
        self.register_buffer("alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32))
        self.register_buffer("pos_weight", None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.task == "multiclass":  # logits [B, C], target [B]
            logp = torch.log_softmax(logits, dim=1).gather(1, target.view(-1, 1)).squeeze(1)  # [B]
            loss = -((1 - logp.exp()) ** self.gamma) * logp
            if self.alpha is not None:
                loss = loss * (self.alpha[target] if self.alpha.dim() else self.alpha)
            return loss.mean()
        target = target.to(logits.dtype)  # [B, L]
        logp = nn.functional.logsigmoid(logits)  # log p
        log1mp = nn.functional.logsigmoid(-logits)  # log (1 - p)
        pos = -target * ((1 - logp.exp()) ** self.gamma) * logp
        neg = -(1 - target) * (logp.exp() ** self.gamma) * log1mp
        if self.pos_weight is not None:
            pos = pos * self.pos_weight
        if self.alpha is not None:
            pos, neg = pos * self.alpha, neg * (1 - self.alpha)
        return (pos + neg).mean()


def make_loss(task: str, weight: Optional[torch.Tensor] = None, loss: str = "auto", gamma: float = 2.0,
              alpha: Union[None, float, Sequence[float]] = None) -> nn.Module:
    """The training loss. ``loss``: ``"auto"`` (BCE-with-logits for binary / multilabel, where ``weight``
    is ``pos_weight``; cross-entropy for multiclass, ``weight`` per class), ``"ce"``, ``"bce"`` or
    ``"focal"`` (:class:`FocalLoss` with ``gamma`` / ``alpha``; multiclass class weights become ``alpha``
    when no ``alpha`` is given, binary ones stay ``pos_weight``)."""
    if task not in ("binary", "multiclass", "multilabel"):
        raise ValueError(f"unknown task {task!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if loss == "focal":
        if task == "multiclass":
            return FocalLoss(task, gamma, alpha if alpha is not None else weight)
        return FocalLoss(task, gamma, alpha, pos_weight=weight)
    if loss == "ce" and task != "multiclass" or loss == "bce" and task == "multiclass":
        raise ValueError(f"loss {loss!r} does not fit a {task} task: use 'auto'")
    if task == "multiclass":
        return nn.CrossEntropyLoss(weight=weight)
    return nn.BCEWithLogitsLoss(pos_weight=weight)


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
