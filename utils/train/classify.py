"""Classification on top of the one loop: the task loss, validation metrics, and two entry points.

- :func:`fit`: a head on ONE feature matrix (cached embeddings side by side) -- the fast path: the features
  live in one tensor on the training device (bf16 where it pays), batches are ``index_select`` slices of one
  permutation per epoch.
- :func:`fit_batches`: any ``model(**inputs) -> logits`` over batches of ``(inputs, targets)`` (guided
  selection on token features, end-to-end backbones over a DataLoader).

Both train through :func:`utils.train.loop.train_loop`; selection and early stopping use the validation
split only.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Dict, Iterable, List, Optional

import numpy as np
import torch
from torch import nn

from ..metrics import classification_metrics
from ..models.losses import class_weight_vector, make_loss, probabilities, targets_tensor
from ..runtime import resolve_device, resolve_train_precision
from .batches import DEFAULT_MEMORY_BUDGET_MB, StreamingBatches, TensorBatches, nbytes
from .loop import Batch, FitResult, TrainConfig, predict, train_loop


def task_loss(task: str, n_classes: int, config: TrainConfig, y_train: Optional[np.ndarray] = None) -> nn.Module:
    """The loss ``config`` asks for, with class weights computed on the training labels when ``"balanced"``."""
    weight = None
    if config.class_weights is not None:
        if isinstance(config.class_weights, str) and y_train is None:
            raise ValueError("class_weights='balanced' needs y_train (the encoded training labels)")
        weight = class_weight_vector(np.asarray(y_train) if y_train is not None else np.zeros(0, int), task,
                                     n_classes, config.class_weights)
    return make_loss(task, weight, config.loss, config.focal_gamma, config.focal_alpha)


def labels_from_targets(targets: torch.Tensor, task: str) -> np.ndarray:
    """Targets in the loss's form back to encoded labels: ``[N]`` int (binary, multiclass) or ``[N, C]``."""
    y = targets.detach().cpu().numpy()
    if task == "multilabel":
        return y
    if task == "binary":
        return y.reshape(len(y), -1)[:, 0].astype(np.int64)
    return y.astype(np.int64)


def classification_evaluator(task: str, classes: List[str]) -> Callable[[torch.Tensor, torch.Tensor], Dict[str, float]]:
    """``evaluate(logits, targets) -> {val_macro_f1, val_roc_auc, val_accuracy}`` for the loop's monitor."""

    def evaluate(logits: torch.Tensor, targets: torch.Tensor) -> Dict[str, float]:
        proba = probabilities(logits.float(), task).cpu().numpy()
        m = classification_metrics(labels_from_targets(targets, task), proba, task, classes)
        return {"val_macro_f1": m["macro_f1"], "val_roc_auc": m["roc_auc"], "val_accuracy": m["accuracy"]}

    return evaluate


def as_tensor(x: Any, device: torch.device, dtype=torch.float32) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype).to(device)


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
    """Train a head ``model(x [B, D]) -> logits`` on ``(X_train, y_train)``; keep the best validation epoch.

    ``X_*``: float ``[N, D]`` arrays or tensors; ``y_*``: encoded labels (see ``MultimodalDataset.labels``).
    An array larger than ``config.memory_budget_mb`` (a ``np.memmap`` of store vectors) is streamed in
    shuffled windows (:class:`~utils.train.batches.StreamingBatches`) instead of being loaded.
    """
    dev = resolve_device(config.device)
    if len(X_train) < 2:
        raise ValueError(f"need at least 2 training rows, got {len(X_train)}")
    precision = resolve_train_precision(config.precision, dev, int(X_train.shape[1]))
    # in bf16 the features are kept in bf16: half the memory and half the bytes gathered per batch
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    budget = config.memory_budget_mb
    y_tr, y_va = targets_tensor(np.asarray(y_train), task), targets_tensor(np.asarray(y_val), task)
    if streamed(X_train, budget):  # larger than the budget: shuffled windows read from disk
        train = StreamingBatches({"x": X_train}, y_tr, config.batch_size, shuffle=True, seed=config.seed,
                                 memory_budget_mb=budget, dtype=dtype, device=dev)
    else:
        train = TensorBatches({"x": as_tensor(X_train, dev, dtype)}, y_tr.to(dev), config.batch_size, shuffle=True,
                              seed=config.seed)
    if streamed(X_val, budget):
        val = StreamingBatches({"x": X_val}, y_va, config.eval_batch_size, memory_budget_mb=budget, device=dev)
    else:
        val = TensorBatches({"x": as_tensor(X_val, dev)}, y_va.to(dev), config.eval_batch_size)
    if show_progress and not config.show_progress:
        config = replace(config, show_progress=True)
    return train_loop(model, train, val, task_loss(task, len(classes), config, np.asarray(y_train)), config,
                      evaluate=classification_evaluator(task, classes))


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
) -> FitResult:
    """Train ``model(**inputs) -> logits`` on ``train`` batches; keep the best validation epoch.

    ``y_train`` (encoded labels) is needed only for ``config.class_weights="balanced"``.
    ``param_groups``: AdamW parameter groups with their own ``lr``. Targets in the batches are in the loss's
    form (see :func:`utils.models.losses.targets_tensor`).
    """
    if show_progress and not config.show_progress:
        config = replace(config, show_progress=True)
    return train_loop(model, train, val, task_loss(task, len(classes), config, y_train), config,
                      evaluate=classification_evaluator(task, classes), param_groups=param_groups)


def streamed(X: Any, memory_budget_mb: float) -> bool:
    """True for an array (a memmap, say) larger than the budget: it is read in windows, never loaded whole."""
    return not isinstance(X, torch.Tensor) and nbytes(X) > memory_budget_mb * 2**20


@torch.inference_mode()
def predict_logits(model: nn.Module, X: Any, device: str = "auto", batch_size: int = 8192,
                   memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB) -> torch.Tensor:
    """Logits ``[N, n_out]`` (fp32, on the CPU) for ``X [N, D]`` from a head, in eval mode; an ``X`` larger
    than ``memory_budget_mb`` (a memmap) is read in windows."""
    dev = next(model.parameters()).device if device == "auto" else resolve_device(device)
    if len(X) == 0:
        return torch.zeros((0, model_outputs(model)))
    if streamed(X, memory_budget_mb):
        batches: Any = StreamingBatches({"x": X}, torch.zeros(len(X)), batch_size, memory_budget_mb=memory_budget_mb,
                                        device=dev)
    else:
        Xt = as_tensor(X, dev)
        batches = TensorBatches({"x": Xt}, torch.zeros(len(Xt)), batch_size)
    logits, _ = predict(model, batches, dev)
    return logits


@torch.inference_mode()
def predict_proba(model: nn.Module, X: Any, task: str, device: str = "auto", batch_size: int = 8192,
                  memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB) -> np.ndarray:
    """Probabilities for ``X [N, D]`` from a head: ``[N]`` (binary) or ``[N, C]``."""
    return probabilities(predict_logits(model, X, device, batch_size, memory_budget_mb), task).float().numpy()


def predict_batches_proba(model: nn.Module, batches: Iterable[Batch], task: str) -> np.ndarray:
    """Probabilities over batches of ``(inputs, targets)``."""
    logits, _ = predict(model, batches)
    return probabilities(logits, task).float().numpy()


def model_outputs(model: nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    return int(last.out_features)
