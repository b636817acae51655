"""Training for models with several inputs (guided text selection, end-to-end backbones).

:func:`utils.train.fit` trains heads on ONE feature matrix; models here take keyword inputs
(``model(**inputs) -> logits``), e.g. ``tokens/mask/image`` or ``input_ids/attention_mask/pixel_values``.
Batches come from any re-iterable of ``(inputs: dict of tensors, targets)``:

- :class:`TensorBatches`: inputs held as tensors in memory, sliced per batch (cached features);
- a ``torch.utils.data.DataLoader`` whose collate function returns ``(inputs, targets)`` (raw text/images).

Same rules as ``fit``: AdamW, early stopping on the validation split, the best epoch's weights restored,
training time measured apart from validation. Only trainable parameters (and buffers) are snapshotted,
so a frozen 100M-parameter backbone costs no copy.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import nn

from .config import resolve_device
from .metrics import classification_metrics
from .models.losses import class_weight_vector, make_loss, probabilities, targets_tensor
from .train import TrainConfig, make_optimizer, set_seed

log = logging.getLogger(__name__)

Batch = Tuple[Dict[str, torch.Tensor], torch.Tensor]


class TensorBatches:
    """Re-iterable batches over in-memory inputs: ``inputs[k] [N, ...]`` and ``targets [N, ...]``.

    ``shuffle``: a fresh permutation each pass (seeded); a last batch of one row is folded into the previous one
    (BatchNorm needs two rows in training mode).
    """

    def __init__(self, inputs: Mapping[str, Any], targets: torch.Tensor, batch_size: int, shuffle: bool = False, seed: int = 0):
        self.inputs = {k: v if isinstance(v, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(v)) for k, v in inputs.items()}
        self.targets = targets
        n = len(targets)
        bad = [k for k, v in self.inputs.items() if len(v) != n]
        if bad:
            raise ValueError(f"inputs {bad} have a different number of rows than the {n} targets")
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return max(1, self.n // self.batch_size) if self.shuffle else math.ceil(self.n / self.batch_size)

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.gen) if self.shuffle else torch.arange(self.n)
        starts = list(range(0, self.n, self.batch_size))
        if self.shuffle and len(starts) > 1 and self.n - starts[-1] < 2:
            starts.pop()
        for i, lo in enumerate(starts):
            hi = starts[i + 1] if i + 1 < len(starts) else self.n
            idx = order[lo:hi]
            yield {k: v.index_select(0, idx) for k, v in self.inputs.items()}, self.targets.index_select(0, idx)


@dataclass
class BatchFitResult:
    model: nn.Module
    best_epoch: int
    epochs_run: int
    train_seconds: float
    epoch_seconds: List[float] = field(default_factory=list)
    history: List[Dict[str, float]] = field(default_factory=list)

    @property
    def train_s_per_epoch(self) -> float:
        return self.train_seconds / max(self.epochs_run, 1)


def _to(inputs: Mapping[str, torch.Tensor], dev: torch.device) -> Dict[str, torch.Tensor]:
    return {k: v.to(dev, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


@torch.inference_mode()
def predict_batches(model: nn.Module, batches: Iterable[Batch], device: Optional[torch.device] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Logits and targets over every batch (model in eval mode), on the CPU."""
    dev = device or next(model.parameters()).device
    model.eval()
    logits, targets = [], []
    for inputs, y in batches:
        logits.append(model(**_to(inputs, dev)).float().cpu())
        targets.append(y)
    return torch.cat(logits), torch.cat(targets)


def _snapshot(model: nn.Module) -> Dict[str, torch.Tensor]:
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n for n, _ in model.named_buffers()}
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k in trainable or k in buffers}


def fit_batches(
    model: nn.Module,
    train: Iterable[Batch],
    val: Iterable[Batch],
    task: str,
    classes: List[str],
    config: TrainConfig = TrainConfig(),
    y_train: Optional[np.ndarray] = None,
    show_progress: bool = False,
    param_groups: Optional[List[Dict[str, Any]]] = None,
) -> BatchFitResult:
    """Train ``model(**inputs) -> logits`` on ``train`` batches; keep the best validation epoch.

    ``y_train`` (encoded labels) is needed only for ``config.class_weights="balanced"``.
    ``param_groups``: AdamW parameter groups with their own ``lr`` (default: every trainable parameter at ``config.lr``).
    Targets in the batches are in the loss's form (see :func:`utils.models.losses.targets_tensor`).
    """
    from tqdm.auto import tqdm

    set_seed(config.seed)
    dev = resolve_device(config.device)
    model = model.to(dev)
    weight = None
    if config.class_weights is not None:
        if isinstance(config.class_weights, str) and y_train is None:
            raise ValueError("class_weights='balanced' needs y_train (the encoded training labels)")
        weight = class_weight_vector(np.asarray(y_train) if y_train is not None else np.zeros(0, int), task, len(classes), config.class_weights)
    loss_fn = make_loss(task, weight.to(dev) if weight is not None else None, config.loss, config.focal_gamma, config.focal_alpha).to(dev)
    if param_groups is not None:
        opt = torch.optim.AdamW(param_groups, lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = make_optimizer(model, config, dev)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("the model has no trainable parameters")

    higher = config.monitor != "val_loss"
    best_score, best_epoch, best_state = -math.inf, 0, None
    history: List[Dict[str, float]] = []
    epoch_seconds: List[float] = []
    epoch = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        total, count = 0.0, 0
        for inputs, y in tqdm(train, desc=f"epoch {epoch}", disable=not show_progress, leave=False):
            logits = model(**_to(inputs, dev))
            loss = loss_fn(logits, y.to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(y)
            count += len(y)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        epoch_seconds.append(time.perf_counter() - t0)

        logits_v, yv = predict_batches(model, val, dev)
        row = {"epoch": epoch, "train_loss": total / max(count, 1), "val_loss": float(loss_fn(logits_v.to(dev), yv.to(dev)))}
        if higher:
            yv_np = yv.numpy().astype(np.int64) if task != "multilabel" else yv.numpy()
            m = classification_metrics(yv_np.reshape(len(yv_np), -1)[:, 0] if task == "binary" else yv_np,
                                       probabilities(logits_v, task).numpy(), task, classes)
            row.update(val_macro_f1=m["macro_f1"], val_roc_auc=m["roc_auc"], val_accuracy=m["accuracy"])
        row["epoch_s"] = epoch_seconds[-1]
        history.append(row)
        score = row[config.monitor] if higher else -row[config.monitor]
        if score > best_score:
            best_score, best_epoch, best_state = score, epoch, _snapshot(model)
        elif config.patience is not None and epoch - best_epoch >= config.patience:
            log.debug("early stop at epoch %d (best %d)", epoch, best_epoch)
            break
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    model.eval()
    return BatchFitResult(model, best_epoch, epoch, float(sum(epoch_seconds)), epoch_seconds, history)


def targets_for(y: np.ndarray, task: str) -> torch.Tensor:
    """Alias of :func:`utils.models.losses.targets_tensor` for batch builders."""
    return targets_tensor(y, task)
