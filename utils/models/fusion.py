"""Small heads trained on cached embeddings.

Defaults follow the original framework:

- **early fusion**: concatenate the modalities -> Linear 256 -> ReLU -> Dropout 0.2 -> BatchNorm -> classifier
- **late fusion**: per modality two blocks of Linear 128 -> ReLU -> Dropout 0.2 -> BatchNorm, concatenate
  -> classifier
- **single modality** (``text_only``, ``image_only``, ``audio_only``): the early-fusion shape on one input

Every head takes one feature matrix ``x [B, D]`` whose columns are the modalities side by side in the
order of ``dims`` (the trainer builds it once, so a step does no concatenation); late fusion reads its
modalities as column slices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

import torch
from torch import nn

from ..registry import Registry

HEADS: Registry[nn.Module] = Registry("head")


@dataclass
class HeadConfig:
    hidden: int = 256  # width of the early-fusion / single-modality hidden layer
    late_hidden: int = 128  # width of each per-modality block in late fusion
    late_blocks: int = 2  # blocks per modality in late fusion
    dropout: float = 0.2  # dropout after each ReLU


def block(d_in: int, d_out: int, dropout: float) -> nn.Sequential:
    """Linear -> ReLU -> Dropout -> BatchNorm (the original framework's order)."""
    return nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU(), nn.Dropout(dropout), nn.BatchNorm1d(d_out))


class EarlyFusion(nn.Module):
    """Concatenated inputs ``[B, sum(dims)]`` -> logits ``[B, n_out]``."""

    def __init__(self, dims: Dict[str, int], n_out: int, cfg: HeadConfig = HeadConfig()):
        super().__init__()
        self.modalities = list(dims)
        self.body = block(sum(dims.values()), cfg.hidden, cfg.dropout)
        self.classifier = nn.Linear(cfg.hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, D] -> [B, n_out]
        return self.classifier(self.body(x))


class LateFusion(nn.Module):
    """One branch per modality on its column slice of ``x``; branch outputs concatenated -> logits."""

    def __init__(self, dims: Dict[str, int], n_out: int, cfg: HeadConfig = HeadConfig()):
        super().__init__()
        self.modalities = list(dims)
        self.slices: List[slice] = []
        start = 0
        for d in dims.values():
            self.slices.append(slice(start, start + d))
            start += d
        self.branches = nn.ModuleList(
            nn.Sequential(*[block(d if i == 0 else cfg.late_hidden, cfg.late_hidden, cfg.dropout) for i in range(cfg.late_blocks)])
            for d in dims.values()
        )
        self.classifier = nn.Linear(cfg.late_hidden * len(dims), n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, D] -> [B, n_out]
        parts = [branch(x[:, s]) for branch, s in zip(self.branches, self.slices)]  # each [B, late_hidden]
        return self.classifier(torch.cat(parts, dim=1))


@HEADS.register("early_fusion")
def _early(dims: Dict[str, int], n_out: int, cfg: HeadConfig = HeadConfig()) -> nn.Module:
    return EarlyFusion(dims, n_out, cfg)


@HEADS.register("late_fusion")
def _late(dims: Dict[str, int], n_out: int, cfg: HeadConfig = HeadConfig()) -> nn.Module:
    return LateFusion(dims, n_out, cfg)


def _unimodal(modality: str):
    def make(dims: Dict[str, int], n_out: int, cfg: HeadConfig = HeadConfig()) -> nn.Module:
        return EarlyFusion({modality: dims[modality]}, n_out, cfg)

    return make


for _m in ("text", "image", "audio"):
    HEADS.register(f"{_m}_only")(_unimodal(_m))


def head_modalities(name: str, available: List[str]) -> List[str]:
    """The modalities head ``name`` reads, in column order."""
    HEADS.get(name)
    if name.endswith("_only"):
        m = name[: -len("_only")]
        if m not in available:
            raise ValueError(f"head {name!r} needs {m} embeddings; available: {available}")
        return [m]
    if len(available) < 2:
        raise ValueError(f"head {name!r} fuses modalities but only {available} are available")
    return list(available)


def build_head(name: str, dims: Dict[str, int], n_out: int, cfg: HeadConfig = HeadConfig()) -> nn.Module:
    """Build head ``name`` (see ``HEADS.names()``) for input ``dims`` (modality -> width)."""
    return HEADS.create(name, dims=dims, n_out=n_out, cfg=cfg)
