"""Train heads on cached embeddings: in-memory batches, early stopping on the validation split.

The fast path (see ``benchmarks/train_heads.py``): the features live in one tensor (on the GPU when
there is one); each epoch draws one permutation and slices batches from it with ``index_select``; no
DataLoader, no per-row Python. The best epoch is chosen on the validation split, never on test.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch import nn

from .config import resolve_device
from .precision import autocast, resolve_precision
from .metrics import classification_metrics
from .models.losses import ClassWeights, class_weight_vector, make_loss, probabilities, targets_tensor

log = logging.getLogger(__name__)

MONITORS = ("val_loss", "val_macro_f1", "val_roc_auc", "val_accuracy")
# with precision="auto" on a CPU, bf16 is used from this input width on. Measured on a 2-core AVX-512 BF16
# CPU at batch 64: 704 features ran 1.7x slower in bf16 (casts dominate), 4,864 features 1.3x faster.
CPU_BF16_MIN_FEATURES = 2048


@dataclass
class TrainConfig:
    epochs: int = 50  # upper bound; early stopping usually ends sooner
    batch_size: int = 64  # the original framework's batch size
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 1e-2  # AdamW's default decoupled weight decay
    patience: Optional[int] = 10  # epochs without validation improvement before stopping (None: never stop early)
    monitor: str = "val_loss"  # what "improvement" means: one of MONITORS
    class_weights: ClassWeights = None  # None, "balanced" or explicit weights (binary: pos_weight)
    seed: int = 0  # seeds torch (init, dropout) and the batch order
    device: str = "auto"  # "auto": CUDA, then MPS, then CPU
    eval_batch_size: int = 8192  # batch size for validation / inference passes
    precision: str = "auto"  # bf16 matmuls where the hardware has native bf16 (on CPUs: inputs >= CPU_BF16_MIN_FEATURES wide)
    loss: str = "auto"  # "auto" (BCE / CE by task), "ce", "bce" or "focal" (see utils.models.losses.make_loss)
    focal_gamma: float = 2.0  # focal loss focusing parameter (0: plain cross-entropy)
    focal_alpha: Optional[Any] = None  # focal loss alpha: scalar (positive-class weight) or one per class

    def __post_init__(self) -> None:
        if self.monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {MONITORS}, got {self.monitor!r}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs must be >= 1 and batch_size >= 2 (BatchNorm needs 2 rows)")


@dataclass
class FitResult:
    model: nn.Module
    best_epoch: int  # 1-based epoch whose weights the model holds
    epochs_run: int
    train_seconds: float  # time in training passes only (no validation)
    history: List[Dict[str, float]] = field(default_factory=list)
    precision: str = "fp32"  # what the training matmuls ran in

    @property
    def train_s_per_epoch(self) -> float:
        return self.train_seconds / max(self.epochs_run, 1)


_HEAP_TUNED: Optional[bool] = None


def keep_large_blocks_on_heap() -> bool:
    """Ask glibc to serve large blocks (up to 64 MiB) from the heap and keep freed ones for reuse.

    Every backward pass allocates a fresh gradient for the first layer (4,864 x 256 floats = 5 MB in the
    benchmark setting). By default glibc maps such blocks from the OS and unmaps them when freed, so each
    step pays ~1,200 page faults: a third of a step at batch 64 on a CPU. Raising the mmap threshold
    keeps them on the heap. Linux/glibc only, once per process; set ``MMFUSION_NO_MALLOPT=1`` to skip it.
    """
    global _HEAP_TUNED
    if _HEAP_TUNED is not None:
        return _HEAP_TUNED
    _HEAP_TUNED = False
    if not sys.platform.startswith("linux") or os.environ.get("MMFUSION_NO_MALLOPT"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        _HEAP_TUNED = bool(libc.mallopt(m_mmap_threshold, 64 << 20)) and bool(libc.mallopt(m_trim_threshold, 256 << 20))
    except (OSError, AttributeError):
        pass
    return _HEAP_TUNED


def set_seed(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def n_params(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _as_tensor(x: Any, device: torch.device, dtype=torch.float32) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype).to(device)


@torch.inference_mode()
def predict_logits(model: nn.Module, X: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    model.eval()
    dtype = next(model.parameters()).dtype
    return torch.cat([model(X[i : i + batch_size].to(dtype)) for i in range(0, len(X), batch_size)]) if len(X) else torch.empty(0)


def predict_proba(model: nn.Module, X: Any, task: str, device: str = "auto", batch_size: int = 8192) -> np.ndarray:
    """Probabilities for ``X [N, D]``: ``[N]`` (binary) or ``[N, C]``."""
    dev = next(model.parameters()).device if device == "auto" else resolve_device(device)
    logits = predict_logits(model, _as_tensor(X, dev), batch_size)
    return probabilities(logits, task).float().cpu().numpy()


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; the fused kernel where this torch build has it (one kernel per step instead of many)."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def fit(
    model: nn.Module,
    X_train: Any,
    y_train: np.ndarray,
    X_val: Any,
    y_val: np.ndarray,
    task: str,
    classes: List[str],
    config: TrainConfig = TrainConfig(),
    show_progress: bool = False,
) -> FitResult:
    """Train ``model`` on ``(X_train, y_train)``; keep the weights of the best validation epoch.

    ``X_*``: float ``[N, D]`` arrays or tensors; ``y_*``: encoded labels (see ``MultimodalDataset.labels``).
    Stops after ``config.patience`` epochs without improvement of ``config.monitor``.
    """
    set_seed(config.seed)
    dev = resolve_device(config.device)
    precision = resolve_precision(config.precision, dev)
    n_features = int(X_train.shape[1]) if len(getattr(X_train, "shape", ())) == 2 else 0
    if config.precision == "auto" and dev.type == "cpu" and n_features < CPU_BF16_MIN_FEATURES:
        precision = "fp32"  # narrow inputs: the casts cost more than the small matmuls save
    if dev.type == "cpu":
        keep_large_blocks_on_heap()
    model = model.to(dev)
    # in bf16 the features are kept in bf16: half the memory and half the bytes gathered per batch
    Xt = _as_tensor(X_train, dev, torch.bfloat16 if precision == "bf16" else torch.float32)
    Xv = _as_tensor(X_val, dev)
    yt = targets_tensor(y_train, task).to(dev)
    yv = targets_tensor(y_val, task).to(dev)
    weight = class_weight_vector(np.asarray(y_train), task, len(classes), config.class_weights)
    loss_fn = make_loss(task, weight.to(dev) if weight is not None else None, config.loss, config.focal_gamma, config.focal_alpha).to(dev)
    opt = make_optimizer(model, config, dev)
    gen = torch.Generator(device="cpu").manual_seed(config.seed)

    n, bs = len(Xt), config.batch_size
    if n < 2:
        raise ValueError(f"need at least 2 training rows, got {n}")
    # a last batch of one row would break BatchNorm in training mode: fold it into the previous one
    starts = list(range(0, n, bs))
    if n - starts[-1] < 2 and len(starts) > 1:
        starts.pop()
    bounds = [(s, starts[i + 1] if i + 1 < len(starts) else n) for i, s in enumerate(starts)]

    higher_is_better = config.monitor != "val_loss"
    best_score, best_epoch, best_state = -math.inf, 0, None
    history: List[Dict[str, float]] = []
    train_seconds = 0.0
    from tqdm.auto import trange

    epoch = 0
    for epoch in trange(1, config.epochs + 1, desc="epochs", disable=not show_progress, leave=False):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen).to(dev)
        running = torch.zeros((), device=dev)
        for lo, hi in bounds:
            idx = perm[lo:hi]
            with autocast(dev, precision):
                logits = model(Xt.index_select(0, idx))
            loss = loss_fn(logits.float(), yt.index_select(0, idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.detach() * (hi - lo)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        train_seconds += time.perf_counter() - t0

        logits_v = predict_logits(model, Xv, config.eval_batch_size)
        row = {"epoch": epoch, "train_loss": float(running) / n, "val_loss": float(loss_fn(logits_v, yv))}
        if config.monitor != "val_loss":
            m = classification_metrics(y_val, probabilities(logits_v, task).float().cpu().numpy(), task, classes)
            row.update(val_macro_f1=m["macro_f1"], val_roc_auc=m["roc_auc"], val_accuracy=m["accuracy"])
        history.append(row)
        score = row[config.monitor]
        score = -score if not higher_is_better else score
        if score > best_score:
            best_score, best_epoch = score, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif config.patience is not None and epoch - best_epoch >= config.patience:
            log.debug("early stop at epoch %d (best %d)", epoch, best_epoch)
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return FitResult(
        model=model, best_epoch=best_epoch, epochs_run=epoch, train_seconds=train_seconds, history=history,
        precision=precision,
    )


def config_dict(cfg: Any) -> Dict[str, Any]:
    d = asdict(cfg)
    if isinstance(d.get("class_weights"), np.ndarray):
        d["class_weights"] = d["class_weights"].tolist()
    return d
