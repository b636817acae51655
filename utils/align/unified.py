"""A unified embedding space learned on cached embeddings.

One linear projection per modality (inputs standardised with training statistics) into a shared
``dim``-d space (256 by default), L2-normalised, trained with :class:`~utils.align.contrastive.MultiModalInfoNCE`
over every pair of modalities, a learnable temperature and per-pair loss weights. Works with 2 or 3 modalities;
rows missing any modality are left out of training and come back NaN from :func:`project`. Rows that share
content in a modality (class-level texts or images) are never each other's negatives.

Training goes through the one loop (:func:`utils.train.loop.train_loop`): batches of ``({m: x_m}, keys)``
where ``keys [B, M]`` holds each row's content id per modality; early stopping on the validation loss.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..features import split_rows, usable_rows
from ..train.batches import TensorBatches
from ..train.loop import TrainConfig, predict, train_loop
from .contrastive import MultiModalInfoNCE, content_keys

log = logging.getLogger(__name__)


@dataclass
class UnifiedConfig:
    dim: int = 256  # width of the shared space
    epochs: int = 100  # upper bound; early stopping on the validation loss
    batch_size: int = 256  # contrastive batches: more negatives per step
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 1e-4
    init_temperature: float = 0.07  # CLIP's starting temperature; learned
    learn_temperature: bool = True
    pair_weights: Dict[str, float] = field(default_factory=dict)  # "image-text" -> weight (default 1)
    patience: int = 10  # epochs without validation improvement before stopping
    seed: int = 0
    device: str = "auto"


class UnifiedSpace(nn.Module):
    """``forward(**{m: x_m [B, D_m]}) -> {m: z_m [B, dim]}`` with ``||z_m|| = 1``."""

    def __init__(self, dims: Mapping[str, int], dim: int, means: Mapping[str, np.ndarray], stds: Mapping[str, np.ndarray]):
        super().__init__()
        self.modalities = list(dims)
        self.proj = nn.ModuleDict({m: nn.Linear(d, dim) for m, d in dims.items()})
        for m in dims:
            self.register_buffer(f"mean_{m}", torch.as_tensor(means[m], dtype=torch.float32))
            self.register_buffer(f"std_{m}", torch.as_tensor(stds[m], dtype=torch.float32))

    def forward(self, **x: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = {}
        for m, v in x.items():
            v = (v - getattr(self, f"mean_{m}")) / getattr(self, f"std_{m}")
            out[m] = nn.functional.normalize(self.proj[m](v), dim=-1)
        return out


class ContrastiveObjective(nn.Module):
    """The loop's loss: ``(z, keys [B, M]) -> weighted InfoNCE``; ``keys`` columns follow ``modalities``."""

    def __init__(self, infonce: MultiModalInfoNCE, modalities: Sequence[str]):
        super().__init__()
        self.infonce, self.modalities = infonce, list(modalities)
        self.last_parts: Dict[str, torch.Tensor] = {}  # pair -> detached loss on the device (no sync per step)

    def forward(self, z: Mapping[str, torch.Tensor], keys: torch.Tensor) -> torch.Tensor:
        loss, self.last_parts = self.infonce(z, {m: keys[:, i] for i, m in enumerate(self.modalities)})
        return loss


@dataclass
class UnifiedResult:
    model: UnifiedSpace  # the trained projections
    loss: MultiModalInfoNCE  # holds the learned temperature
    history: List[Dict[str, float]]
    best_epoch: int
    train_seconds: float

    @property
    def temperature(self) -> float:
        return self.loss.temperature


def _batches(X: Mapping[str, torch.Tensor], keys: torch.Tensor, rows: np.ndarray, batch_size: int,
             shuffle: bool = False, seed: int = 0) -> TensorBatches:
    idx = torch.as_tensor(rows, dtype=torch.long)
    return TensorBatches({m: v.index_select(0, idx.to(v.device)) for m, v in X.items()},
                         keys.index_select(0, idx.to(keys.device)), batch_size, shuffle, seed)


def fit_unified(
    vectors: Mapping[str, np.ndarray], split: Sequence[str], config: UnifiedConfig = UnifiedConfig(),
    show_progress: bool = False,
) -> UnifiedResult:
    """Train the projections on rows of split ``train`` (complete in every modality); stop on ``val`` loss.

    ``vectors``: modality -> ``[N, D_m]`` aligned rows; ``split``: ``[N]`` of train / val / test.
    """
    from ..runtime import resolve_device

    mods = list(vectors)
    if len(mods) < 2:
        raise ValueError(f"a unified space needs at least two modalities, got {mods}")
    complete = np.all([usable_rows(np.asarray(vectors[m])) for m in mods], axis=0)
    parts = split_rows(np.asarray(split), complete)
    tr, va = parts["train"], parts["val"]
    if len(tr) < 4:
        raise ValueError(f"need at least 4 training rows with every modality {mods}, found {len(tr)}")
    if len(va) < 2:
        raise ValueError(f"need at least 2 validation rows with every modality {mods} for early stopping, found {len(va)}")
    dev = resolve_device(config.device)
    X = {m: torch.as_tensor(np.asarray(vectors[m], dtype=np.float32)).to(dev) for m in mods}
    keys = torch.as_tensor(np.stack([content_keys(np.asarray(vectors[m], dtype=np.float32)) for m in mods], axis=1)).to(dev)
    dup = {m: int(len(tr) - len(np.unique(keys[tr, i].cpu().numpy()))) for i, m in enumerate(mods)}
    if any(dup.values()):
        log.info("unified space: rows sharing content are masked out of each other's negatives (training duplicates: %s)", dup)
    means = {m: np.asarray(vectors[m])[tr].mean(0) for m in mods}
    stds = {m: np.maximum(np.asarray(vectors[m])[tr].std(0), 1e-6) for m in mods}
    torch.manual_seed(config.seed)
    model = UnifiedSpace({m: X[m].shape[1] for m in mods}, config.dim, means, stds)
    infonce = MultiModalInfoNCE(mods, config.pair_weights, config.init_temperature, config.learn_temperature)
    objective = ContrastiveObjective(infonce, mods)
    train_cfg = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                            weight_decay=config.weight_decay, patience=config.patience, seed=config.seed,
                            device=config.device, precision="fp32", show_progress=show_progress)
    res = train_loop(
        model, _batches(X, keys, tr, config.batch_size, shuffle=True, seed=config.seed),
        _batches(X, keys, va, config.batch_size), objective, train_cfg, extra_modules=[objective],
        on_epoch_end=lambda row: row.update(temperature=infonce.temperature),
    )
    best = res.history[res.best_epoch - 1]["val_loss"] if res.best_epoch else float("nan")
    log.info("unified space: best epoch %d, val loss %.3f, temperature %.3f", res.best_epoch, best, infonce.temperature)
    return UnifiedResult(model, infonce, res.history, res.best_epoch, res.train_seconds)


@torch.inference_mode()
def contrastive_loss(result: UnifiedResult, vectors: Mapping[str, np.ndarray], rows: np.ndarray,
                     batch_size: int = 256) -> Tuple[float, Dict[str, float]]:
    """Mean weighted InfoNCE of the trained space on ``rows`` (and per pair), in batches of ``batch_size``."""
    dev = next(result.model.parameters()).device
    mods = list(vectors)
    X = {m: torch.as_tensor(np.asarray(v, dtype=np.float32)).to(dev) for m, v in vectors.items()}
    keys = torch.as_tensor(np.stack([content_keys(np.asarray(vectors[m], dtype=np.float32)) for m in mods], axis=1)).to(dev)
    objective = ContrastiveObjective(result.loss, mods)
    result.model.eval()
    total, count, parts_sum = 0.0, 0, {}
    for inputs, k in _batches(X, keys, np.asarray(rows), batch_size):
        loss = float(objective(result.model(**inputs), k))
        n = len(k)
        total += loss * n
        count += n
        for p, v in objective.last_parts.items():
            parts_sum[p] = parts_sum.get(p, 0.0) + float(v) * n
    return total / max(count, 1), {p: v / max(count, 1) for p, v in parts_sum.items()}


def project(result: UnifiedResult, vectors: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Each modality's rows in the shared space: ``{m: [N, dim]}`` (NaN where the input row was missing)."""
    model = result.model
    dev = next(model.parameters()).device
    out = {}
    for m, v in vectors.items():
        v = np.asarray(v, dtype=np.float32)
        ok = np.isfinite(v).all(1)
        z = np.full((len(v), model.proj[m].out_features), np.nan, dtype=np.float32)
        if ok.any():
            got, _ = predict(model, TensorBatches({m: torch.as_tensor(v[ok])}, torch.zeros(int(ok.sum())), 8192), dev)
            z[ok] = got[m].numpy()
        out[m] = z
    return out


def synthetic_modality(labels: np.ndarray, dim: int = 64, noise: float = 1.0, seed: int = 0, name_seed: int = 7) -> np.ndarray:
    """A deterministic stand-in third modality: ``prototype[label] + noise`` as ``[N, dim]`` float32.

    Each class gets a fixed random prototype (from ``name_seed``); each row adds Gaussian noise of scale
    ``noise`` per coordinate (from ``seed``). It is NOT audio: it is a label-derived signal that lets the
    three-modality code path run on the synthetic dataset. With ``noise = 1`` and ``dim = 64`` the class is
    recoverable from it but not trivially so per row.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError("synthetic_modality needs one class index per row ([N] int labels)")
    k = int(labels.max()) + 1 if len(labels) else 0
    protos = np.random.default_rng(name_seed).normal(0, 1, (k, dim)) / np.sqrt(dim) * 4
    rng = np.random.default_rng(seed)
    return (protos[labels] + rng.normal(0, noise / np.sqrt(dim) * 4, (len(labels), dim))).astype(np.float32)
