"""A unified embedding space learned on cached embeddings.

One linear projection per modality (inputs standardised with training statistics) into a shared
``dim``-d space (256 by default), L2-normalised, trained with :class:`~utils.align.contrastive.MultiModalInfoNCE`
over every pair of modalities, a learnable temperature and per-pair loss weights. Works with 2 or 3 modalities;
rows missing any modality are left out of training and come back NaN from :func:`project`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Sequence

import numpy as np

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


def _module():
    import torch
    from torch import nn

    class UnifiedSpace(nn.Module):
        """``forward({m: x_m [B, D_m]}) -> {m: z_m [B, dim]}`` with ``||z_m|| = 1``."""

        def __init__(self, dims: Mapping[str, int], dim: int, means: Mapping[str, np.ndarray], stds: Mapping[str, np.ndarray]):
            super().__init__()
            self.modalities = list(dims)
            self.proj = nn.ModuleDict({m: nn.Linear(d, dim) for m, d in dims.items()})
            for m in dims:
                self.register_buffer(f"mean_{m}", torch.as_tensor(means[m], dtype=torch.float32))
                self.register_buffer(f"std_{m}", torch.as_tensor(stds[m], dtype=torch.float32))

        def forward(self, x: Mapping[str, "torch.Tensor"]) -> Dict[str, "torch.Tensor"]:
            out = {}
            for m, v in x.items():
                v = (v - getattr(self, f"mean_{m}")) / getattr(self, f"std_{m}")
                out[m] = nn.functional.normalize(self.proj[m](v), dim=-1)
            return out

    return UnifiedSpace


@dataclass
class UnifiedResult:
    model: object  # the trained UnifiedSpace (torch module)
    loss: object  # the MultiModalInfoNCE (holds the learned temperature)
    history: List[Dict[str, float]]
    best_epoch: int
    train_seconds: float

    @property
    def temperature(self) -> float:
        return self.loss.temperature  # type: ignore[attr-defined]


def fit_unified(
    vectors: Mapping[str, np.ndarray], split: Sequence[str], config: UnifiedConfig = UnifiedConfig(),
    show_progress: bool = False,
) -> UnifiedResult:
    """Train the projections on rows of split ``train`` (complete in every modality); stop on ``val`` loss.

    ``vectors``: modality -> ``[N, D_m]`` aligned rows; ``split``: ``[N]`` of train / val / test.
    """
    import torch

    from ..config import resolve_device
    from ..train import set_seed
    from .contrastive import MultiModalInfoNCE

    mods = list(vectors)
    if len(mods) < 2:
        raise ValueError(f"a unified space needs at least two modalities, got {mods}")
    split = np.asarray(split)
    complete = np.all([np.isfinite(np.asarray(vectors[m])).all(1) for m in mods], axis=0)
    tr, va = np.flatnonzero(complete & (split == "train")), np.flatnonzero(complete & (split == "val"))
    if len(tr) < 4:
        raise ValueError(f"need at least 4 training rows with every modality {mods}, found {len(tr)}")
    set_seed(config.seed)
    dev = resolve_device(config.device)
    X = {m: torch.as_tensor(np.asarray(vectors[m], dtype=np.float32)).to(dev) for m in mods}
    means = {m: np.asarray(vectors[m])[tr].mean(0) for m in mods}
    stds = {m: np.maximum(np.asarray(vectors[m])[tr].std(0), 1e-6) for m in mods}
    model = _module()({m: X[m].shape[1] for m in mods}, config.dim, means, stds).to(dev)
    loss_fn = MultiModalInfoNCE(mods, config.pair_weights, config.init_temperature, config.learn_temperature).to(dev)
    opt = torch.optim.AdamW(list(model.parameters()) + list(loss_fn.parameters()), lr=config.lr,
                            weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    tr_t, va_t = torch.as_tensor(tr, device=dev), torch.as_tensor(va, device=dev)
    best, best_epoch, best_state, history, seconds = float("inf"), 0, None, [], 0.0
    from tqdm.auto import trange

    for epoch in trange(1, config.epochs + 1, desc="unified space", disable=not show_progress, leave=False):
        model.train()
        t0 = time.perf_counter()
        perm = tr_t[torch.randperm(len(tr_t), generator=gen).to(dev)]
        total, count = 0.0, 0
        for lo in range(0, len(perm), config.batch_size):
            idx = perm[lo : lo + config.batch_size]
            if len(idx) < 2:
                continue
            loss, _ = loss_fn(model({m: X[m].index_select(0, idx) for m in mods}))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        seconds += time.perf_counter() - t0
        row = {"epoch": epoch, "train_loss": total / max(count, 1), "temperature": loss_fn.temperature}
        if len(va_t) >= 2:
            row["val_loss"], parts = _eval_loss(model, loss_fn, X, va_t, config.batch_size)
            row.update({f"val_{p}": v for p, v in parts.items()})
        history.append(row)
        score = row.get("val_loss", row["train_loss"])
        if score < best:
            best, best_epoch = score, epoch
            best_state = ({k: v.clone() for k, v in model.state_dict().items()},
                          {k: v.clone() for k, v in loss_fn.state_dict().items()})
        elif epoch - best_epoch >= config.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state[0])
        loss_fn.load_state_dict(best_state[1])
    model.eval()
    log.info("unified space: best epoch %d, val loss %.3f, temperature %.3f", best_epoch, best, loss_fn.temperature)
    return UnifiedResult(model, loss_fn, history, best_epoch, seconds)


def _eval_loss(model, loss_fn, X, rows, batch_size: int):
    import torch

    with torch.inference_mode():
        total, parts_sum, count = 0.0, {}, 0
        for lo in range(0, len(rows), batch_size):
            idx = rows[lo : lo + batch_size]
            if len(idx) < 2:
                continue
            loss, parts = loss_fn(model({m: X[m].index_select(0, idx) for m in X}))
            total += float(loss) * len(idx)
            count += len(idx)
            for p, v in parts.items():
                parts_sum[p] = parts_sum.get(p, 0.0) + v * len(idx)
    return total / max(count, 1), {p: v / max(count, 1) for p, v in parts_sum.items()}


def contrastive_loss(result: UnifiedResult, vectors: Mapping[str, np.ndarray], rows: np.ndarray, batch_size: int = 256):
    """Mean weighted InfoNCE of the trained space on ``rows`` (and per pair)."""
    import torch

    dev = next(result.model.parameters()).device  # type: ignore[attr-defined]
    X = {m: torch.as_tensor(np.asarray(v, dtype=np.float32)).to(dev) for m, v in vectors.items()}
    return _eval_loss(result.model, result.loss, X, torch.as_tensor(np.asarray(rows), device=dev), batch_size)


def project(result: UnifiedResult, vectors: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Each modality's rows in the shared space: ``{m: [N, dim]}`` (NaN where the input row was missing)."""
    import torch

    model = result.model
    dev = next(model.parameters()).device  # type: ignore[attr-defined]
    out = {}
    with torch.inference_mode():
        for m, v in vectors.items():
            v = np.asarray(v, dtype=np.float32)
            ok = np.isfinite(v).all(1)
            z = np.full((len(v), model.proj[m].out_features), np.nan, dtype=np.float32)  # type: ignore[attr-defined]
            if ok.any():
                z[ok] = model({m: torch.as_tensor(v[ok]).to(dev)})[m].cpu().numpy()
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
