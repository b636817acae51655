"""Train one head on cached embeddings, and keep what the report needs from it.

:func:`fit_head` is the one place a fusion head is standardised, built, trained and scored; ``train_heads``
calls it for each (model, seed) and the report calls it again for the Shapley subsets, so both train on the
same rows in the same way.

What is kept per trained head (:class:`HeadOutputs`) is small: test probabilities and logits, validation
logits (temperature scaling is fitted on them), and the test probabilities with each modality replaced by a
stand-in (missing-modality evaluation), computed right after training so the model itself is not kept.
:class:`TrainedHeads` is the list of result rows ``train_heads`` returns (saved as JSON as it is) carrying
those outputs and a :class:`HeadRecipe` (references to the dataset, vectors and configs, no copies).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..features import SPLITS, Standardizer, stack

STAND_INS = ("mean", "zeros")  # what replaces a removed modality: its training mean, or zero vectors


@dataclass
class HeadOutputs:
    """What the report needs from one trained head (arrays on the test / validation rows of its recipe)."""

    modalities: List[str]
    test_proba: np.ndarray  # [n_test] (binary) or [n_test, C], what the result row was scored on
    test_logits: np.ndarray  # [n_test, n_out]
    val_logits: np.ndarray  # [n_val, n_out]
    missing: Dict[str, Dict[str, np.ndarray]] = field(default_factory=dict)  # modality -> stand-in -> test proba
    state: Optional[Dict[str, Any]] = None  # the trained head's state_dict (CPU tensors): what save_model writes
    scaler: Optional[Standardizer] = None  # the standardiser it was trained with (None: raw vectors)
    stand_ins: Dict[str, np.ndarray] = field(default_factory=dict)  # modality -> raw training mean [D_m]


@dataclass
class HeadRecipe:
    """How the heads of a comparison were trained: enough to train one more on the same rows."""

    ds: Any  # the MultimodalDataset (a reference)
    vectors: Mapping[str, np.ndarray]  # modality -> [N, D] aligned to ds rows (a reference)
    parts: Dict[str, np.ndarray]  # split -> row indices into ds (the rows every head trains / is scored on)
    y: np.ndarray  # encoded labels of every ds row
    configs: Dict[int, Any]  # seed -> TrainConfig
    head_config: Any  # HeadConfig
    standardize: bool = True
    sources: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # modality -> extractor spec, options, store
    stand_ins: Dict[str, np.ndarray] = field(default_factory=dict)  # modality -> [D] training mean put in for a missing one


@dataclass
class FittedHead:
    fit: Any  # FitResult (holds the model)
    proba: np.ndarray  # test probabilities
    inference_s: float
    outputs: Optional[HeadOutputs] = None


class TrainedHeads(list):
    """Result rows (a plain list of dicts for JSON, tables and plots) plus ``outputs`` (one
    :class:`HeadOutputs` per row, or None) and the ``recipe`` they were trained with."""

    def __init__(self, rows: Sequence[Dict[str, Any]] = (), outputs: Sequence[Optional[HeadOutputs]] = (),
                 recipe: Optional[HeadRecipe] = None):
        super().__init__(rows)
        self.outputs: List[Optional[HeadOutputs]] = list(outputs) or [None] * len(self)
        self.recipe = recipe

    def extend(self, rows: Sequence[Dict[str, Any]]) -> None:
        """Append rows and keep ``outputs`` aligned with them: rows of another :class:`TrainedHeads` bring their
        outputs (when both were scored on the same test rows), plain rows bring none (the report says so)."""
        rows = list(rows) if not isinstance(rows, TrainedHeads) else rows
        outs = list(rows.outputs) if isinstance(rows, TrainedHeads) else [None] * len(rows)
        if isinstance(rows, TrainedHeads) and self.recipe is not None and rows.recipe is not None:
            mine, theirs = self.recipe.parts, rows.recipe.parts
            if any(not np.array_equal(mine[s], theirs[s]) for s in mine):
                raise ValueError("these rows were scored on other test rows than the ones they are added to (another "
                                 "dataset, or other rows without vectors): keep them in separate comparisons")
        if self.recipe is None and isinstance(rows, TrainedHeads):
            self.recipe = rows.recipe
        super().extend(rows)
        self.outputs.extend(outs)

    def __iadd__(self, rows):
        self.extend(rows)
        return self

    def append(self, row: Dict[str, Any], outputs: Optional[HeadOutputs] = None) -> None:
        super().append(row)
        self.outputs.append(outputs)


def fit_head(name: str, modalities: Sequence[str], recipe: HeadRecipe, seed: int, keep_outputs: bool = True,
             keep_model: bool = False) -> FittedHead:
    """Train head ``name`` on ``modalities`` with the recipe's rows and the config of ``seed``; score the test rows.

    ``keep_model`` (with ``keep_outputs``): the outputs also keep the trained weights, the standardiser and the
    stand-ins, so :func:`utils.experiment.predict.save_model` can save the head later."""
    import torch

    from ..models.fusion import build_head
    from ..models.losses import probabilities
    from ..train import fit, predict_logits

    mods = list(modalities)
    X = stack(recipe.vectors, mods)
    Xtr, Xva, Xte = (X[recipe.parts[s]] for s in SPLITS)
    scaler = Standardizer.fit(Xtr) if recipe.standardize else None
    if scaler is not None:
        Xtr, Xva, Xte = scaler(Xtr), scaler(Xva), scaler(Xte)
    spec = recipe.ds.spec
    dims = {m: int(recipe.vectors[m].shape[1]) for m in mods}
    torch.manual_seed(seed)
    model = build_head(name, dims, spec.num_outputs, recipe.head_config)
    y = recipe.y
    res = fit(model, Xtr, y[recipe.parts["train"]], Xva, y[recipe.parts["val"]], spec.task, spec.classes, recipe.configs[seed])
    t0 = time.perf_counter()
    test_logits = predict_logits(res.model, Xte)
    proba = probabilities(test_logits, spec.task).float().numpy()
    inference_s = time.perf_counter() - t0
    outputs = None
    if keep_outputs:
        outputs = HeadOutputs(mods, proba, test_logits.numpy(), predict_logits(res.model, Xva).numpy())
        if len(mods) > 1:
            means = (np.concatenate([recipe.stand_ins[m] for m in mods])[None, :] if all(m in recipe.stand_ins for m in mods)
                     else X[recipe.parts["train"]])
            outputs.missing = missing_modality_proba(res.model, Xte, dims, means, scaler, spec.task)
        if keep_model:
            outputs.state = {k: v.detach().cpu().clone() for k, v in res.model.state_dict().items()}
            outputs.scaler = scaler
            outputs.stand_ins = {m: recipe.stand_ins[m] for m in mods if m in recipe.stand_ins}
    return FittedHead(res, proba, inference_s, outputs)


def missing_modality_proba(model: Any, X_test: np.ndarray, dims: Mapping[str, int], X_train_raw: np.ndarray,
                           scaler: Optional[Standardizer], task: str) -> Dict[str, Dict[str, np.ndarray]]:
    """Test probabilities with each modality replaced by each stand-in (:data:`STAND_INS`).

    ``X_test`` is what the model reads (standardised when ``scaler``); the stand-ins are built in the raw
    embedding space (the modality's training mean, or zeros) and then standardised like the real vectors.
    ``X_train_raw``: the raw training rows, or their mean ``[1, D]`` itself (the recipe's stand-ins).
    """
    from ..models.losses import probabilities
    from ..train import predict_logits

    raw_mean = np.asarray(X_train_raw, dtype=np.float64).mean(axis=0, keepdims=True).astype(np.float32)
    fills = {"mean": raw_mean, "zeros": np.zeros_like(raw_mean)}
    if scaler is not None:
        fills = {k: scaler(v) for k, v in fills.items()}
    out: Dict[str, Dict[str, np.ndarray]] = {}
    start = 0
    for m, d in dims.items():
        cols = slice(start, start + d)
        start += d
        out[m] = {}
        for kind in STAND_INS:
            Xm = np.array(X_test, dtype=np.float32, copy=True)
            Xm[:, cols] = fills[kind][:, cols]
            out[m][kind] = probabilities(predict_logits(model, Xm), task).float().numpy()
    return out
