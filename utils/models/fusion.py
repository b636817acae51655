"""Small heads trained on cached embeddings.

Defaults follow the original framework:

- **early fusion**: concatenate the modalities -> Linear 256 -> ReLU -> Dropout 0.2 -> BatchNorm -> classifier
- **late fusion**: per modality two blocks of Linear 128 -> ReLU -> Dropout 0.2 -> BatchNorm, concatenate
  -> classifier
- **single modality** (``text_only``, ``image_only``, ``audio_only``): the early-fusion shape on one input

Every head takes one feature matrix ``x [B, D]`` whose columns are the modalities side by side in the
order of ``dims`` (the trainer builds it once, so a step does no concatenation); a head knows each
modality's column slice (``head.slices``): late fusion reads its modalities through them, and modality
dropout (``HeadConfig.modality_dropout``) blanks them.

**Modality dropout.** In training, each row loses one modality (chosen at random) with probability ``p``:
its columns are set to 0, which is the modality's training mean when the
features are standardised (what ``train_heads`` does by default), the same stand-in the missing-modality
evaluation uses. Heads trained this way lean less on any one modality. Off (``p = 0``) by default; in
eval mode, and for single-modality heads, it does nothing.
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
    modality_dropout: float = 0.0  # training only: chance that a row loses one modality (its columns set to 0)

    def __post_init__(self) -> None:
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1), got {self.modality_dropout!r}")


def modality_slices(dims: Dict[str, int]) -> List[slice]:
    """Column slice of each modality in ``x [B, sum(dims)]``, in the order of ``dims``."""
    out, start = [], 0
    for d in dims.values():
        out.append(slice(start, start + d))
        start += d
    return out


def drop_modalities(x: torch.Tensor, widths: List[int], p: float) -> torch.Tensor:
    """``x [B, D]`` where each row, with probability ``p``, has one of its modality blocks (``widths``, summing
    to D; chosen uniformly) set to 0."""
    B, M = x.shape[0], len(widths)
    hit = torch.rand(B, device=x.device) < p  # rows that lose a modality
    which = torch.randint(M, (B,), device=x.device)  # the modality each such row loses
    drop = (torch.arange(M, device=x.device)[None, :] == which[:, None]) & hit[:, None]  # [B, M]
    mask = torch.repeat_interleave(~drop, torch.tensor(widths, device=x.device), dim=1)  # [B, D]
    return x * mask.to(x.dtype)


class ModalityHead(nn.Module):
    """What every head shares: its modalities, their column slices, and modality dropout in training."""

    def __init__(self, dims: Dict[str, int], cfg: HeadConfig):
        super().__init__()
        self.modalities = list(dims)
        self.slices: List[slice] = modality_slices(dims)
        self.widths = [int(d) for d in dims.values()]
        self.modality_dropout = float(cfg.modality_dropout)

    def drop(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, D] -> [B, D]
        if self.training and self.modality_dropout > 0 and len(self.widths) > 1:
            return drop_modalities(x, self.widths, self.modality_dropout)
        return x


def block(d_in: int, d_out: int, dropout: float) -> nn.Sequential:
    """Linear -> ReLU -> Dropout -> BatchNorm (the original framework's order)."""
    return nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU(), nn.Dropout(dropout), nn.BatchNorm1d(d_out))


class EarlyFusion(ModalityHead):
    """Concatenated inputs ``[B, sum(dims)]`` -> logits ``[B, n_out]``."""

    def __init__(self, dims: Dict[str, int], n_out: int, cfg: HeadConfig = HeadConfig()):
        super().__init__(dims, cfg)
        self.body = block(sum(dims.values()), cfg.hidden, cfg.dropout)
        self.classifier = nn.Linear(cfg.hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, D] -> [B, n_out]
        return self.classifier(self.body(self.drop(x)))


class LateFusion(ModalityHead):
    """One branch per modality on its column slice of ``x``; branch outputs concatenated -> logits."""

    def __init__(self, dims: Dict[str, int], n_out: int, cfg: HeadConfig = HeadConfig()):
        super().__init__(dims, cfg)
        self.branches = nn.ModuleList(
            nn.Sequential(*[block(d if i == 0 else cfg.late_hidden, cfg.late_hidden, cfg.dropout) for i in range(cfg.late_blocks)])
            for d in dims.values()
        )
        self.classifier = nn.Linear(cfg.late_hidden * len(dims), n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, D] -> [B, n_out]
        x = self.drop(x)
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


def subset_head(name: str, subset: List[str]) -> str:
    """The registered head that is head ``name`` restricted to ``subset`` (early fusion on one modality is
    that modality's ``<m>_only`` head); ``name`` itself otherwise."""
    if name == "early_fusion" and len(subset) == 1 and f"{subset[0]}_only" in HEADS.names():
        return f"{subset[0]}_only"
    return name


def build_head(name: str, dims: Dict[str, int], n_out: int, cfg: HeadConfig = HeadConfig()) -> nn.Module:
    """Build head ``name`` (see ``HEADS.names()``) for input ``dims`` (modality -> width)."""
    return HEADS.create(name, dims=dims, n_out=n_out, cfg=cfg)
