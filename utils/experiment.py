"""One function per notebook step, so notebooks (and ``python -m utils``) stay thin.

    ds    = load_dataset("synthetic")
    emb   = extract_embeddings(ds, {"text": "minilm-offline", "image": "random-convnext"})
    rows  = train_heads(ds, emb, ["early_fusion", "late_fusion", "text_only", "image_only"])
    table = results_table(rows)
    save_results(rows, "results/embed_model_synthetic.json")
    plot_results(table, "results/embed_model_synthetic.png")
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from . import data as data_mod
from .config import PathLike, library_versions, results_dir
from .data.schema import MultimodalDataset

log = logging.getLogger(__name__)

DEFAULT_HEADS = ["early_fusion", "late_fusion", "text_only", "image_only"]
RESULT_COLUMNS = ["model", "accuracy", "macro_f1", "weighted_f1", "roc_auc", "train_s_per_epoch", "inference_s", "n_params"]


def setup_logging(level: Union[int, str] = "INFO") -> None:
    """Show this package's INFO messages (cache reuse, resume, dropped rows) in a notebook or terminal."""
    logger = logging.getLogger("utils")
    logger.setLevel(level)
    if not any(getattr(h, "_utils_handler", False) for h in logger.handlers):
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        h._utils_handler = True  # type: ignore[attr-defined]
        logger.addHandler(h)


def load_dataset(name: str, data_dir: Optional[PathLike] = None, **options: Any) -> MultimodalDataset:
    """``utils.data.load`` with the folder taken from ``data_dir`` (``<data_dir>/<name>``) when given."""
    root = Path(data_dir) / name if data_dir else None
    ds = data_mod.load(name, root=root, **options)
    log.info("%r", ds)
    return ds


@dataclass
class Embeddings:
    """Per-modality vectors aligned to the dataset rows (``vectors[m][i]`` belongs to ``ds.df.id[i]``)."""

    vectors: Dict[str, np.ndarray]
    extractors: Dict[str, str]  # modality -> honest description of the extractor
    stores: Dict[str, str] = field(default_factory=dict)  # modality -> store folder
    reused: Dict[str, bool] = field(default_factory=dict)

    @property
    def modalities(self) -> List[str]:
        return list(self.vectors)

    def dims(self) -> Dict[str, int]:
        return {m: int(v.shape[1]) for m, v in self.vectors.items()}


def extract_embeddings(
    ds: MultimodalDataset,
    extractors: Mapping[str, str],
    options: Optional[Mapping[str, Mapping[str, Any]]] = None,
    batch_size: int = 32,
    device: str = "auto",
    embeddings_dir: Optional[PathLike] = None,
    normalize: bool = False,
    on_error: str = "raise",
    show_progress: bool = True,
) -> Embeddings:
    """Embed each modality (``{"text": spec, "image": spec}``) into the store, or reuse it; return aligned vectors."""
    from .embed import embed
    from .extractors import create

    options = options or {}
    vectors, described, stores, reused = {}, {}, {}, {}
    for modality, spec in extractors.items():
        ext = create(spec, **dict(options.get(modality, {})))
        store = embed(
            ds, modality, ext, root=embeddings_dir, batch_size=batch_size, device=device, normalize=normalize,
            on_error=on_error, show_progress=show_progress,
        )
        vectors[modality] = store.aligned(ds.df["id"], missing="nan")
        described[modality] = store.manifest().get("description", ext.describe())
        stores[modality] = str(store.folder)
        reused[modality] = bool(getattr(store, "reused", False))
    return Embeddings(vectors, described, stores, reused)


def _standardize(train: np.ndarray, *others: np.ndarray):
    mu = train.mean(axis=0, keepdims=True)
    sd = train.std(axis=0, keepdims=True)
    sd[sd < 1e-6] = 1.0
    return [(a - mu) / sd for a in (train, *others)]


def train_heads(
    ds: MultimodalDataset,
    embeddings: Embeddings,
    models: Sequence[str] = DEFAULT_HEADS,
    epochs: int = 50,
    batch_size: int = 64,
    seeds: Union[int, Sequence[int]] = 0,
    standardize: bool = True,
    head_config: Optional[Any] = None,
    device: str = "auto",
    show_progress: bool = True,
    **train_options: Any,
) -> List[Dict[str, Any]]:
    """Train each head in ``models`` for each seed; return one result row per (model, seed).

    Features are (optionally) standardised with statistics of the training split only. Selection and
    early stopping use the validation split; the metrics in each row are on the test split. Rows with a
    missing vector in any modality a head reads are left out of that head's data (and counted).
    ``train_options`` go to :class:`~utils.train.TrainConfig` (lr, patience, monitor, class_weights, ...).
    """
    import torch

    from .metrics import classification_metrics
    from .models.fusion import HeadConfig, build_head, head_modalities
    from .train import TrainConfig, config_dict, fit, n_params, predict_proba

    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    head_config = head_config or HeadConfig()
    y = ds.labels()
    split = ds.df["split"].to_numpy()
    rows: List[Dict[str, Any]] = []
    from tqdm.auto import tqdm

    jobs = [(m, s) for m in models for s in seeds]
    for name, seed in tqdm(jobs, desc="train heads", disable=not show_progress):
        mods = head_modalities(name, embeddings.modalities)
        X = np.concatenate([embeddings.vectors[m] for m in mods], axis=1).astype(np.float32, copy=False)
        usable = np.isfinite(X).all(axis=1)
        parts = {s: np.flatnonzero((split == s) & usable) for s in ("train", "val", "test")}
        Xtr, Xva, Xte = X[parts["train"]], X[parts["val"]], X[parts["test"]]
        if standardize:
            Xtr, Xva, Xte = _standardize(Xtr, Xva, Xte)
        cfg = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, device=device, **train_options)
        torch.manual_seed(seed)
        model = build_head(name, {m: embeddings.vectors[m].shape[1] for m in mods}, ds.spec.num_outputs, head_config)
        res = fit(model, Xtr, y[parts["train"]], Xva, y[parts["val"]], ds.spec.task, ds.spec.classes, cfg)
        t0 = time.perf_counter()
        proba = predict_proba(res.model, Xte, ds.spec.task)
        inference_s = time.perf_counter() - t0
        metrics = classification_metrics(y[parts["test"]], proba, ds.spec.task, ds.spec.classes)
        row = {
            "model": name,
            "dataset": ds.spec.key,
            "task": ds.spec.task,
            "seed": seed,
            "modalities": mods,
            "extractors": {m: embeddings.extractors[m] for m in mods},
            **{k: metrics[k] for k in ("accuracy", "macro_f1", "weighted_f1", "roc_auc")},
            "per_class_f1": metrics["per_class_f1"],
            "confusion_matrix": metrics["confusion_matrix"],
            "train_s_per_epoch": res.train_s_per_epoch,
            "train_s": res.train_seconds,
            "inference_s": inference_s,
            "n_params": n_params(res.model),
            "epochs_run": res.epochs_run,
            "best_epoch": res.best_epoch,
            "n_train": len(parts["train"]),
            "n_val": len(parts["val"]),
            "n_test": len(parts["test"]),
            "rows_without_vectors": int((~usable).sum()),
            "history": res.history,
            "train_config": config_dict(cfg),
            "train_precision": res.precision,
            "standardize": standardize,
            "versions": library_versions(),
        }
        rows.append(row)
        log.info("%-13s seed %d: test macro-F1 %.3f, acc %.3f, AUC %.3f (best epoch %d/%d)",
                 name, seed, row["macro_f1"], row["accuracy"], row["roc_auc"], row["best_epoch"], row["epochs_run"])
    return rows


def results_table(rows: Sequence[Mapping[str, Any]], by_seed: bool = False) -> pd.DataFrame:
    """The headline table: one line per model (mean over seeds, with ``*_std`` when several seeds)."""
    df = pd.DataFrame([{k: r[k] for k in ["model", "seed", *RESULT_COLUMNS[1:]]} for r in rows])
    if by_seed or df.empty:
        return df
    order = list(dict.fromkeys(df["model"]))
    metrics = RESULT_COLUMNS[1:]
    g = df.groupby("model", sort=False)
    out = g[metrics].mean()
    if g.size().max() > 1:
        std = g[["accuracy", "macro_f1", "roc_auc"]].std().add_suffix("_std")
        out = out.join(std)
        out["seeds"] = g.size()
    out["n_params"] = out["n_params"].astype(int)
    return out.loc[order].reset_index()


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _clean_nan(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean_nan(v) for v in obj]
    return obj


def save_results(rows: Sequence[Mapping[str, Any]], json_path: PathLike, table_path: Optional[PathLike] = None) -> Path:
    """Write the result rows as JSON (a list, one row per trained model) and the table as CSV beside it."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(_clean_nan(list(rows)), indent=1, default=_json_default))
    table_path = Path(table_path) if table_path else json_path.with_suffix(".csv")
    results_table(rows).to_csv(table_path, index=False, float_format="%.4f")
    log.info("results written to %s and %s", json_path, table_path)
    return json_path


def plot_results(table: pd.DataFrame, path: Optional[PathLike] = None, title: str = ""):
    """Bar plot of accuracy, macro-F1 and ROC-AUC per model; saved as PNG when ``path`` is given."""
    from .viz import metric_bars

    return metric_bars(table, ["accuracy", "macro_f1", "roc_auc"], path=path, title=title)


def format_table(table: pd.DataFrame) -> str:
    """A plain-text rendering of :func:`results_table` for terminals and logs."""
    cols = [c for c in RESULT_COLUMNS if c in table.columns]
    fmt = {c: (lambda v: f"{v:.3f}") for c in ("accuracy", "macro_f1", "weighted_f1", "roc_auc")}
    fmt.update({"train_s_per_epoch": lambda v: f"{v:.4f}", "inference_s": lambda v: f"{v:.4f}", "n_params": lambda v: f"{int(v):,}"})
    return table[cols].to_string(index=False, formatters=fmt)


def run_embedding_experiment(
    dataset: str = "synthetic",
    text_extractor: str = "minilm-offline",
    image_extractor: str = "random-convnext",
    extractor_options: Optional[Mapping[str, Mapping[str, Any]]] = None,
    dataset_options: Optional[Mapping[str, Any]] = None,
    models: Sequence[str] = DEFAULT_HEADS,
    epochs: int = 50,
    batch_size: int = 64,
    seeds: Union[int, Sequence[int]] = 0,
    data_dir: Optional[PathLike] = None,
    embeddings_dir: Optional[PathLike] = None,
    out_dir: Optional[PathLike] = None,
    embed_batch_size: int = 32,
    device: str = "auto",
) -> pd.DataFrame:
    """The main job: load, embed (cached), train every head, save JSON + CSV + PNG, return the table."""
    ds = load_dataset(dataset, data_dir, **dict(dataset_options or {}))
    emb = extract_embeddings(
        ds, {"text": text_extractor, "image": image_extractor}, extractor_options,
        batch_size=embed_batch_size, device=device, embeddings_dir=embeddings_dir,
    )
    rows = train_heads(ds, emb, models, epochs=epochs, batch_size=batch_size, seeds=seeds, device=device)
    out = Path(out_dir) if out_dir else results_dir()
    name = f"embed_model_{ds.spec.name}"
    save_results(rows, out / f"{name}.json")
    table = results_table(rows)
    plot_results(table, out / f"{name}.png", title=f"{ds.spec.key}: text {emb.extractors['text']} | image {emb.extractors['image']}")
    return table
