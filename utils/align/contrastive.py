"""Contrastive losses as small ``nn.Module``s (one idea each).

- :class:`InfoNCE`: symmetric InfoNCE (CLIP loss) between two batches of paired, L2-normalised embeddings.
- :class:`MultiModalInfoNCE`: the weighted sum of :class:`InfoNCE` over every pair of modalities present,
  with one learnable temperature shared by all pairs.

Duplicates are not negatives: when two rows of a batch carry the same content in a modality (ESC-50's
class-level texts and images: 40 clips share one text), the copy is masked out of the other row's
negatives. Pass ``keys`` (an integer id of each row's content per modality, :func:`content_keys`).
"""

from __future__ import annotations

import itertools
import math
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PairKey = Tuple[str, str]


def pair_key(a: str, b: str) -> str:
    """Canonical name of a modality pair (sorted, so ``text-image`` and ``image-text`` are one pair)."""
    return "-".join(sorted((a, b)))


def content_keys(x: np.ndarray) -> np.ndarray:
    """``[N]`` int64: one id per distinct row content of ``x [N, D]`` (equal rows share an id)."""
    x = np.ascontiguousarray(x)
    rows = x.view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).ravel()
    _, inverse = np.unique(rows, return_inverse=True)
    return inverse.astype(np.int64)


def duplicate_mask(keys: torch.Tensor) -> torch.Tensor:
    """``[B, B]`` bool: ``True`` at ``(i, j)``, ``j != i``, where row ``j`` has the same content as row ``i``."""
    same = keys.view(-1, 1) == keys.view(1, -1)
    return same & ~torch.eye(len(keys), dtype=torch.bool, device=keys.device)


class InfoNCE(nn.Module):
    """``(CE(s * a b^T, I) + CE(s * b a^T, I)) / 2`` for paired ``a, b [B, D]``; row ``i`` of each is a pair.

    ``keys_a``, ``keys_b`` (``[B]`` content ids): copies of row ``i``'s partner are removed from row ``i``'s
    negatives (their logits are masked), in both directions.
    """

    def forward(self, a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor,
                keys_a: Optional[torch.Tensor] = None, keys_b: Optional[torch.Tensor] = None) -> torch.Tensor:
        if a.shape != b.shape:
            raise ValueError(f"InfoNCE needs paired batches of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        logits = logit_scale * a @ b.t()  # [B, B]; the diagonal holds the matched pairs
        target = torch.arange(len(a), device=a.device)
        logits_t = logits.t()
        if keys_b is not None:  # a_i against b_j: b_j equal to b_i is a positive, not a negative
            logits = logits.masked_fill(duplicate_mask(keys_b), float("-inf"))
        if keys_a is not None:
            logits_t = logits_t.masked_fill(duplicate_mask(keys_a), float("-inf"))
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits_t, target))


class MultiModalInfoNCE(nn.Module):
    """Weighted symmetric InfoNCE over all modality pairs, with a learnable temperature.

    ``weights`` maps a pair (``"image-text"``, in :func:`pair_key` order, or a ``(a, b)`` tuple) to its loss
    weight (default 1); use it to stop one pair (often text-image) from dominating. The temperature
    starts at ``init_temperature`` (CLIP: 0.07) and is learned as ``log(1/T)``, clamped to ``T >= 1/max_scale``.
    """

    def __init__(
        self, modalities: Sequence[str], weights: Optional[Mapping] = None, init_temperature: float = 0.07,
        learn_temperature: bool = True, max_scale: float = 100.0,
    ):
        super().__init__()
        if len(modalities) < 2:
            raise ValueError(f"need at least two modalities, got {list(modalities)}")
        self.pairs = [pair_key(a, b) for a, b in itertools.combinations(modalities, 2)]
        given = {pair_key(*k) if isinstance(k, tuple) else pair_key(*k.split("-")): float(v) for k, v in (weights or {}).items()}
        unknown = set(given) - set(self.pairs)
        if unknown:
            raise ValueError(f"weights for unknown modality pairs {sorted(unknown)}; pairs: {self.pairs}")
        self.weights = {p: given.get(p, 1.0) for p in self.pairs}
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)), requires_grad=learn_temperature)
        self.max_scale = max_scale
        self.pair_loss = InfoNCE()

    @property
    def temperature(self) -> float:
        return float(1.0 / self.scale().detach())

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=self.max_scale)

    def forward(self, z: Mapping[str, torch.Tensor],
                keys: Optional[Mapping[str, torch.Tensor]] = None) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """``z``: modality -> normalised ``[B, D]`` (same rows); ``keys``: modality -> ``[B]`` content ids
        (duplicates are masked out of the negatives). Returns the weighted loss and each pair's loss as a detached
        0-d tensor on the batch's device: nothing here waits for the device (``float()`` them when reporting)."""
        s = self.scale()
        total = torch.zeros((), device=next(iter(z.values())).device)
        parts: Dict[str, torch.Tensor] = {}
        norm = 0.0
        for p in self.pairs:
            a, b = p.split("-")
            if a not in z or b not in z:
                continue
            ka = keys.get(a) if keys else None
            kb = keys.get(b) if keys else None
            loss = self.pair_loss(z[a], z[b], s, ka, kb)
            total = total + self.weights[p] * loss
            norm += self.weights[p]
            parts[p] = loss.detach()  # no .item(): a host sync per pair and step would stall the GPU
        if norm == 0:
            raise ValueError(f"no modality pair present in the batch (got {list(z)}; pairs {self.pairs})")
        return total / norm, parts
