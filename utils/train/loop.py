"""The one training loop: every trainable thing here (fusion heads, guided models, end-to-end baselines,
the unified space) trains through :func:`train_loop`.

A batch is ``(inputs, targets)``: ``inputs`` a dict of tensors passed as keyword arguments
(``model(**inputs)``), ``targets`` whatever ``loss_fn(outputs, targets)`` wants. Batches come from any
re-iterable: :class:`~utils.train.batches.TensorBatches` (tensors in memory, one permutation per epoch:
the fast path) or a ``DataLoader`` whose collate function returns ``(inputs, targets)``.

The rules, in one place:

- AdamW (the fused kernel where there is one) over the trainable parameters, or the given parameter groups;
- the loss is summed on the device (no host sync per step); training time is measured apart from validation;
- after each epoch the validation batches are scored (loss, and the metrics of ``evaluate`` when the
  monitor needs them); the epoch with the best monitor value is kept: its trainable parameters and buffers
  are snapshotted and restored at the end (a frozen backbone costs no copy);
- early stopping after ``patience`` epochs without improvement;
- a monitor that is NaN from the first epoch (ROC-AUC on a one-class validation split) falls back to the
  validation loss, with a warning (``FitResult.monitor`` says what was used);
- no validation rows is a clear error, never a silent "best = last epoch".
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..runtime import (
    autocast, cpu_bf16_matmuls, cpu_bf16_matmuls_supported, cpu_threads, keep_large_blocks_on_heap, progress_bar,
    resolve_device, resolve_train_precision, set_seed, train_threads,
)
from .batches import DEFAULT_MEMORY_BUDGET_MB

log = logging.getLogger(__name__)

MONITORS = ("val_loss", "val_macro_f1", "val_roc_auc", "val_accuracy")
Batch = Tuple[Dict[str, torch.Tensor], Any]


@dataclass
class TrainConfig:
    epochs: int = 50  # upper bound; early stopping usually ends sooner
    batch_size: int = 64  # the original framework's batch size
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 1e-2  # AdamW's default decoupled weight decay
    patience: Optional[int] = 10  # epochs without validation improvement before stopping (None: never stop early)
    monitor: str = "val_loss"  # what "improvement" means: one of MONITORS
    class_weights: Any = None  # None, "balanced" or explicit weights (binary: pos_weight)
    seed: int = 0  # seeds torch (init, dropout) and the batch order
    device: str = "auto"  # "auto": CUDA, then MPS, then CPU
    eval_batch_size: int = 8192  # batch size for validation / inference passes
    precision: str = "auto"  # bf16 matmuls where the hardware has native bf16 (on CPUs: inputs >= cpu_bf16_min_features() wide)
    loss: str = "auto"  # "auto" (BCE / CE by task), "ce", "bce" or "focal" (see utils.models.losses.make_loss)
    focal_gamma: float = 2.0  # focal loss focusing parameter (0: plain cross-entropy)
    focal_alpha: Optional[Any] = None  # focal loss alpha: scalar (positive-class weight) or one per class
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB  # fit(): larger feature arrays (memmaps) stream from disk
    # CPU threads while training. None: 1 on machines with at most 2 cores (there a second thread saves at most
    # 1.6x and costs 10-25x whenever other jobs share the cores), torch's setting elsewhere; see
    # utils.runtime.train_threads. Same seed and same threads: same result (another count rounds differently).
    threads: Optional[int] = None
    show_progress: bool = False  # a progress bar over the epochs

    def __post_init__(self) -> None:
        if self.monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {MONITORS}, got {self.monitor!r}")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ValueError(f"batch_size must be an integer >= 2 (BatchNorm needs 2 rows), got {self.batch_size!r}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be None or >= 1, got {self.patience!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not self.memory_budget_mb > 0:
            raise ValueError(f"memory_budget_mb must be > 0, got {self.memory_budget_mb!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ValueError(f"threads must be None (torch's setting) or an integer >= 1, got {self.threads!r}")


def config_dict(cfg: Any) -> Dict[str, Any]:
    """A config dataclass as a JSON-ready dict (arrays as lists)."""
    d = asdict(cfg)
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            d[k] = v.tolist()
    return d


@dataclass
class FitResult:
    model: nn.Module
    best_epoch: int  # 1-based epoch whose weights the model holds
    epochs_run: int
    train_seconds: float  # time in training passes only (no validation)
    history: List[Dict[str, float]] = field(default_factory=list)
    precision: str = "fp32"  # what the training forward passes ran in
    epoch_seconds: List[float] = field(default_factory=list)
    monitor: str = "val_loss"  # the monitor actually used for selection (after any fallback)

    @property
    def train_s_per_epoch(self) -> float:
        return self.train_seconds / max(self.epochs_run, 1)


def make_optimizer(params: Any, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; the fused kernel where this torch build has it (one kernel per step instead of many)."""
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


class BoundGroup(NamedTuple):
    """One AdamW parameter group with its state tensors, as the fused kernel takes them."""
    group: Dict[str, Any]
    params: List[torch.Tensor]
    exp_avgs: List[torch.Tensor]
    exp_avg_sqs: List[torch.Tensor]
    steps: List[torch.Tensor]


class OptimizerStep:
    """``opt.step()``, with torch.optim's per-step Python done once for a fused AdamW.

    Each ``Optimizer.step`` call regroups the tensors by device and dtype, looks up every parameter's state and
    checks its options again: ~0.2 ms per step, 8-10% of a head's step at batch 64 on a CPU. Once the first
    step has created the state, this binds each parameter group's parameters, moments and step counters into
    lists and calls the same fused kernel (``torch._fused_adamw_``) with the same arguments ``step()`` passes
    it: the same numbers bit for bit (tested). Anything the fast call does not cover (another optimizer,
    amsgrad, a missing gradient, mixed devices or dtypes, a torch without the kernel, a state loaded in
    between) takes ``opt.step()``."""

    def __init__(self, opt: torch.optim.Optimizer):
        self.opt = opt
        self.groups: Optional[List[BoundGroup]] = None
        self.fast = (type(opt) is torch.optim.AdamW and hasattr(torch, "_fused_adamw_")
                     and all(g.get("fused") and not g.get("amsgrad") and not g.get("capturable")
                             and not g.get("differentiable") and not isinstance(g.get("lr"), torch.Tensor)
                             for g in opt.param_groups))

    def bind(self) -> bool:
        """Bind the state lists (after the first ``opt.step()``); False when the fast call does not apply."""
        groups = []
        for g in self.opt.param_groups:
            params = list(g["params"])
            states = [self.opt.state.get(p) for p in params]
            if not params or any(not st or "exp_avg" not in st for st in states):
                return False
            if len({(p.device, p.dtype) for p in params}) != 1 or any(st["step"].device != params[0].device
                                                                     for st in states):
                return False
            groups.append(BoundGroup(g, params, [st["exp_avg"] for st in states], [st["exp_avg_sq"] for st in states],
                                     [st["step"] for st in states]))
        self.groups = groups
        return True

    def __call__(self) -> None:
        if not self.fast:
            self.opt.step()
            return
        if self.groups is None or any(b.steps[0] is not self.opt.state[b.params[0]].get("step") for b in self.groups):
            self.opt.step()  # the first step creates the state; a state loaded since is bound again
            self.fast = self.bind()
            return
        grads = [[p.grad for p in b.params] for b in self.groups]
        if any(x is None for gs in grads for x in gs):
            self.opt.step()  # a parameter without a gradient this step: torch.optim skips it
            return
        for i, (b, gs) in enumerate(zip(self.groups, grads)):
            g = b.group
            torch._foreach_add_(b.steps, 1)
            beta1, beta2 = g["betas"]
            try:
                torch._fused_adamw_(b.params, gs, b.exp_avgs, b.exp_avg_sqs, [], b.steps, amsgrad=False, lr=g["lr"],
                                    beta1=beta1, beta2=beta2, weight_decay=g["weight_decay"], eps=g["eps"],
                                    maximize=g["maximize"], grad_scale=None, found_inf=None)
            except TypeError:  # another torch's kernel signature: raised before anything is updated
                torch._foreach_sub_(b.steps, 1)
                if i:
                    raise
                log.debug("torch._fused_adamw_ takes other arguments in this torch: using opt.step()")
                self.fast = False
                self.opt.step()
                return

    def zero_grad(self) -> None:
        """``opt.zero_grad(set_to_none=True)``."""
        if self.fast and self.groups is not None:
            for b in self.groups:
                for p in b.params:
                    p.grad = None
        else:
            self.opt.zero_grad(set_to_none=True)


def move(inputs: Any, dev: torch.device) -> Any:
    """Tensors (in a dict, list or alone) moved to ``dev``; anything else as it is."""
    if isinstance(inputs, torch.Tensor):
        return inputs.to(dev, non_blocking=True)
    if isinstance(inputs, dict):
        return {k: move(v, dev) for k, v in inputs.items()}
    return inputs


def as_float(out: Any) -> Any:
    """Model outputs in fp32 (a tensor, or a dict of tensors) for the loss."""
    if isinstance(out, torch.Tensor):
        return out.float()
    if isinstance(out, dict):
        return {k: v.float() for k, v in out.items()}
    return out


def snapshot(modules: Sequence[nn.Module]) -> List[Dict[str, torch.Tensor]]:
    """Copies of the trainable parameters and buffers of each module (frozen weights are not copied)."""
    out = []
    for m in modules:
        keep = {n for n, p in m.named_parameters() if p.requires_grad} | {n for n, _ in m.named_buffers()}
        out.append({k: v.detach().clone() for k, v in m.state_dict().items() if k in keep})
    return out


@torch.inference_mode()
def predict(model: nn.Module, batches: Iterable[Batch], device: Optional[torch.device] = None) -> Tuple[Any, Any]:
    """Outputs and targets over every batch (model in eval mode), concatenated on the CPU.

    Tensor outputs are concatenated; dict outputs (the unified space) per key.
    """
    dev = device or next(model.parameters()).device
    model.eval()
    outs, targets = [], []
    for inputs, y in batches:
        out = as_float(model(**move(inputs, dev)))
        outs.append({k: v.cpu() for k, v in out.items()} if isinstance(out, dict) else out.cpu())
        targets.append(y.cpu() if isinstance(y, torch.Tensor) else y)
    if not outs:
        return torch.empty(0), torch.empty(0)
    if isinstance(outs[0], dict):
        cat = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    else:
        cat = torch.cat(outs)
    y = torch.cat(targets) if isinstance(targets[0], torch.Tensor) else targets
    return cat, y


@torch.inference_mode()
def validation_pass(model: nn.Module, batches: Iterable[Batch], loss_fn: Callable, dev: torch.device,
                    keep_outputs: bool) -> Tuple[float, Any, Any, int]:
    """``(loss, outputs, targets, n_rows)`` on the validation batches.

    Tensor outputs are concatenated and the loss is computed once over all rows (exact for weighted
    losses); dict outputs (contrastive training) are scored batch by batch, weighted by batch size.
    """
    model.eval()
    outs, targets, batch_losses, n = [], [], [], 0
    for inputs, y in batches:
        out = as_float(model(**move(inputs, dev)))
        y = move(y, dev)
        rows = len(next(iter(out.values()))) if isinstance(out, dict) else len(out)
        n += rows
        if isinstance(out, dict):
            batch_losses.append((float(loss_fn(out, y)), rows))
        else:
            outs.append(out)
            targets.append(y)
    if n == 0:
        return math.nan, None, None, 0
    if batch_losses:
        return sum(l * r for l, r in batch_losses) / n, None, None, n
    logits, y = torch.cat(outs), torch.cat(targets)
    loss = float(loss_fn(logits, y))
    return loss, (logits if keep_outputs else None), (y if keep_outputs else None), n


class BestEpoch:
    """Model selection on the validation split: the monitor (with the NaN fallback to the validation loss), the
    best epoch and a snapshot of its weights, and the early-stopping rule."""

    def __init__(self, config: TrainConfig, modules: Sequence[nn.Module]):
        self.monitor, self.patience, self.modules = config.monitor, config.patience, list(modules)
        self.score, self.epoch, self.state = -math.inf, 0, None

    def update(self, epoch: int, row: Dict[str, Any]) -> bool:
        """Record epoch ``epoch``'s history row; True when training should stop here."""
        value = row.get(self.monitor, math.nan)
        if self.monitor != "val_loss" and epoch == 1 and not math.isfinite(value):
            log.warning("monitor %s is not defined on this validation split (NaN, e.g. ROC-AUC with one class): "
                        "selecting epochs on val_loss instead", self.monitor)
            self.monitor, value = "val_loss", row["val_loss"]
        score = value if self.monitor != "val_loss" else -value
        if math.isfinite(score) and score > self.score:
            self.score, self.epoch, self.state = score, epoch, snapshot(self.modules)
            return False
        if self.patience is not None and epoch - self.epoch >= self.patience:
            log.debug("early stop at epoch %d (best %d)", epoch, self.epoch)
            return True
        return False

    def restore(self) -> None:
        """Put the best epoch's weights back (nothing to do when no epoch had a finite score)."""
        if self.state is not None:
            for m, state in zip(self.modules, self.state):
                m.load_state_dict(state, strict=False)


def loop_optimizer(modules: Sequence[nn.Module], config: TrainConfig,
                   param_groups: Optional[List[Dict[str, Any]]] = None) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters of ``modules`` (the model first), or over ``param_groups`` plus the
    trainable parameters of the extra modules (``modules[1:]``) at ``config.lr``."""
    if param_groups is None:
        groups: Any = [p for m in modules for p in m.parameters() if p.requires_grad]
    else:
        groups = [g for g in param_groups if g["params"]] + [
            {"params": [p for m in modules[1:] for p in m.parameters() if p.requires_grad]}]
        groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return make_optimizer(groups, config.lr, config.weight_decay)


def floats_as_fp32(inputs: Dict[str, Any]) -> Dict[str, Any]:
    """Floating tensors of a batch's inputs in fp32 (bf16-stored features); integer tensors (token ids) as they are."""
    return {k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in inputs.items()}


def train_epoch(model: nn.Module, train: Iterable[Batch], loss_fn: Callable, step: OptimizerStep,
                dev: torch.device, precision: str) -> Tuple[float, float]:
    """One pass over ``train``: ``(seconds, mean training loss)``. The loss is summed on the device (one host
    sync per epoch, not per step); a CUDA device is synchronised before the clock is read.

    ``precision="bf16"`` on a CPU that has bf16 matmuls in oneDNN: the inputs are made fp32 and the matmuls run
    in bf16 inside oneDNN (:func:`utils.runtime.cpu_bf16_matmuls`), without autocast's weight and gradient
    casts; elsewhere the forward pass runs under autocast in ``precision``."""
    onednn = dev.type == "cpu" and precision == "bf16" and cpu_bf16_matmuls_supported()
    t0 = time.perf_counter()
    running = torch.zeros((), device=dev)
    count = 0
    with cpu_bf16_matmuls(onednn):
        for inputs, y in train:
            inputs, y = move(inputs, dev), move(y, dev)
            loss = train_step(model, floats_as_fp32(inputs) if onednn else inputs, y, loss_fn, step, dev,
                              "fp32" if onednn else precision)
            rows = len(y) if isinstance(y, torch.Tensor) else len(next(iter(inputs.values())))
            running += loss.detach() * rows
            count += rows
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    if count == 0:
        raise ValueError("the training batches are empty: no training rows")
    return seconds, float(running) / count


def train_step(model: nn.Module, inputs: Dict[str, Any], y: Any, loss_fn: Callable, step: OptimizerStep,
               dev: torch.device, precision: str) -> torch.Tensor:
    """One optimizer step on one batch; returns the loss (a tensor on the device: no host sync)."""
    with autocast(dev, precision):
        out = model(**inputs)
    loss = loss_fn(as_float(out), y)
    step.zero_grad()
    loss.backward()
    step()
    return loss


def train_loop(
    model: nn.Module,
    train: Iterable[Batch],
    val: Iterable[Batch],
    loss_fn: Callable[[Any, Any], torch.Tensor],
    config: TrainConfig = TrainConfig(),
    *,
    evaluate: Optional[Callable[[torch.Tensor, torch.Tensor], Dict[str, float]]] = None,
    param_groups: Optional[List[Dict[str, Any]]] = None,
    extra_modules: Sequence[nn.Module] = (),
    on_epoch_end: Optional[Callable[[Dict[str, Any]], None]] = None,
) -> FitResult:
    """Train ``model`` on ``train`` batches as ``config`` says; keep the weights of the best validation epoch.

    ``loss_fn(outputs, targets)``: a scalar; it may be an ``nn.Module`` with parameters of its own (moved to
    the device; list it in ``extra_modules`` to train and snapshot them, like the InfoNCE temperature).
    ``evaluate(val_logits, val_targets) -> {"val_macro_f1": ..., ...}``: the metrics a monitor other than
    ``val_loss`` reads. ``param_groups``: AdamW groups with their own ``lr`` (default: every trainable
    parameter at ``config.lr``). ``on_epoch_end(row)`` may add fields to each history row. The precision
    follows ``config.precision``, the device and ``train.n_features`` (see
    :func:`utils.runtime.resolve_train_precision`); the CPU threads follow ``config.threads``
    (:func:`utils.runtime.train_threads`) while it runs and are restored after.
    """
    set_seed(config.seed)
    dev = resolve_device(config.device)
    if dev.type == "cpu":
        keep_large_blocks_on_heap()
    model = model.to(dev)
    if isinstance(loss_fn, nn.Module):
        loss_fn = loss_fn.to(dev)
    modules = [model, *(m.to(dev) for m in extra_modules)]
    precision = resolve_train_precision(config.precision, dev, getattr(train, "n_features", None))
    opt = loop_optimizer(modules, config, param_groups)
    step = OptimizerStep(opt)
    wants_metrics = evaluate is not None and config.monitor != "val_loss"
    if config.monitor != "val_loss" and evaluate is None:
        raise ValueError(f"monitor {config.monitor!r} needs metrics: pass evaluate=..., or use monitor='val_loss'")
    best = BestEpoch(config, modules)
    history: List[Dict[str, Any]] = []
    epoch_seconds: List[float] = []
    epoch = 0
    with cpu_threads(train_threads(config.threads) if dev.type == "cpu" else None):
        for epoch in progress_bar(range(1, config.epochs + 1), desc="epochs", disable=not config.show_progress,
                                  leave=False):
            for m in modules:
                m.train()
            seconds, train_loss = train_epoch(model, train, loss_fn, step, dev, precision)
            epoch_seconds.append(seconds)
            val_loss, logits, yv, n_val = validation_pass(model, val, loss_fn, dev, keep_outputs=wants_metrics)
            if n_val == 0:
                raise ValueError("no validation rows: early stopping and model selection need a non-empty validation split")
            row: Dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "epoch_s": seconds}
            if wants_metrics and logits is not None:
                row.update(evaluate(logits, yv))
            if on_epoch_end is not None:
                on_epoch_end(row)
            history.append(row)
            if best.update(epoch, row):
                break
    best.restore()
    for m in modules:
        m.eval()
    return FitResult(model=model, best_epoch=best.epoch, epochs_run=epoch, train_seconds=float(sum(epoch_seconds)),
                     history=history, precision=precision, epoch_seconds=epoch_seconds, monitor=best.monitor)
