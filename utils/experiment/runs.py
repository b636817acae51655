"""Experiments: runs described by a config dict, recorded in one results table (parquet), over seeds and grids.

    rows = run_seeds({"kind": "embedding", "dataset": "synthetic", "models": ["early_fusion", "logreg"]}, seeds=[0, 1, 2])
    summarize(rows)                       # mean and std per model
    table = run_grid(["synthetic"], {"minilm+effnet": {"text": "minilm-offline", "image": "effnet-lite0"}},
                     ["early_fusion", "late_fusion"], seeds=[0, 1, 2], full_models=["bert_vit_early_finetune"])

A config's ``kind`` names a registered run kind (:data:`RUN_KINDS`; add one with ``RUN_KINDS.register``):

- ``embedding``: cached-embedding models: fusion heads (``utils.models.HEADS``) and ``logreg``
  (keys: ``text_extractor``, ``image_extractor``, ``extractor_options``, ``models``, ``epochs``, ``batch_size``, ``train``);
- ``full``: ``bert_vit_*`` end-to-end models (keys: ``text_model``, ``image_model``, ``models``, ``epochs``,
  ``batch_size``, ``lr``, ``head_lr``, ``max_length``, ``patience``);
- ``bert_clip``: the BERT + CLIP late-fusion classifier (keys: ``bert_path``, ``clip_path``, ``lora_path``, ``epochs``, ...);
- ``guided``: the published MUSTI block, end to end (rows ``guided_tsf``; keys: ``text_model``, ``image_extractors``
  (one branch each; the branches vote), ``epochs``, ``batch_size``, ``lr`` (encoder), ``head_lr``, ``max_length``,
  ``n_image_tokens``, ``train`` (loss, focal_gamma, focal_alpha, class_weights, patience, monitor));
- ``guided_gated``: our gated variant on cached token features (rows ``guided_gated``; keys: ``text_model``,
  ``image_extractors`` (their embeddings side by side guide the gates), ``max_length``, ``epochs``, ``hidden``).

Every row records the full config, library versions, seed, metrics, per-epoch curves (``history``), train time
per epoch, inference time, parameter count and peak memory. :func:`append_runs` adds rows to
``<results>/runs.parquet`` (nested fields stored as JSON text; :func:`load_runs` decodes them).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from ..config import PathLike, embeddings_dir, library_versions, results_dir
from ..io import dumps
from ..registry import Registry
from ..runtime import peak_memory_mb, seed_list
from .baselines import (
    BertClipConfig, FullTrainConfig, TSFConfig, image_branches, image_guide_features, train_bert_clip, train_full_models,
    train_guided, train_logreg, train_tsf,
)
from .heads import TrainedHeads
from .steps import embed_config, extract_embeddings, load_dataset, train_heads

log = logging.getLogger(__name__)

RUNS_FILE = "runs.parquet"
JSON_FIELDS = ("modalities", "extractors", "per_class_f1", "confusion_matrix", "history", "train_config", "versions", "config",
               "epoch_seconds")
SUMMARY_METRICS = ["accuracy", "macro_f1", "roc_auc", "train_s_per_epoch", "inference_s"]
COMMON_KEYS = {"dataset": "synthetic", "dataset_options": {}, "data_dir": None, "device": "auto", "seeds": [0]}
EXTRA_KEYS = {"seed", "embeddings_dir", "output_dir"}

# a run kind: its default keys and the function that runs it: f(ds, cfg) -> rows
RunFn = Callable[[Any, Dict[str, Any]], List[Dict[str, Any]]]
RUN_KINDS: Registry[RunFn] = Registry("run kind")


def defaults(kind: str) -> Dict[str, Any]:
    return dict(RUN_KINDS.info(kind)["defaults"])


@RUN_KINDS.register("embedding", defaults={
    "text_extractor": "minilm-offline", "image_extractor": "effnet-lite0", "extractor_options": {},
    "models": ["early_fusion", "late_fusion", "logreg"], "epochs": 50, "batch_size": 64, "train": {}})
def run_embedding(ds, cfg: Dict[str, Any]) -> List[Dict[str, Any]]:
    from ..config import merge_config
    from ..train import TrainConfig

    embed_cfg = embed_config(device=cfg["device"], embeddings_dir=cfg.get("embeddings_dir"), show_progress=False)
    emb = extract_embeddings(ds, {"text": cfg["text_extractor"], "image": cfg["image_extractor"]}, cfg["extractor_options"],
                             embed_cfg)
    heads = [m for m in cfg["models"] if m != "logreg"]
    train = dict(cfg["train"])
    head_options = {k: train.pop(k) for k in ("modality_dropout",) if k in train}
    train_cfg = merge_config(TrainConfig, None, {"epochs": cfg["epochs"], "batch_size": cfg["batch_size"],
                                                 "device": cfg["device"], **train}, "run (kind 'embedding')")
    rows = train_heads(ds, emb, heads, train_cfg, seeds=cfg["seeds"], show_progress=False,
                       **head_options) if heads else TrainedHeads()
    if "logreg" in cfg["models"]:
        rows += train_logreg(ds, emb, cfg["seeds"])
    return rows


@RUN_KINDS.register("full", defaults={
    "text_model": "bert-base-uncased", "image_model": "google/vit-base-patch16-224-in21k",
    "models": ["bert_vit_early_frozen", "bert_vit_late_frozen", "bert_vit_early_finetune", "bert_vit_late_finetune"],
    "epochs": 5, "batch_size": 16, "lr": 2e-5, "head_lr": 1e-3, "max_length": 128, "patience": 2, "num_workers": 2,
    "class_weights": None, "loss": "auto", "focal_gamma": 2.0, "focal_alpha": None})
def run_full(ds, cfg: Dict[str, Any]) -> List[Dict[str, Any]]:
    keys = ("epochs", "batch_size", "lr", "head_lr", "max_length", "patience", "num_workers", "class_weights", "loss",
            "focal_gamma", "focal_alpha", "device")
    tc = FullTrainConfig(**{k: cfg[k] for k in keys})
    return train_full_models(ds, cfg["models"], cfg["text_model"], cfg["image_model"], cfg["seeds"], tc, show_progress=False)


@RUN_KINDS.register("guided", defaults={
    "text_model": "bert-base-multilingual-cased",
    "image_extractors": ["timm:vit_base_patch16_224.augreg2_in21k_ft_in1k", "timm:resnet34.a1_in1k"],
    "extractor_options": {}, "max_length": 128, "epochs": 5, "batch_size": 16, "lr": 2e-5, "head_lr": 1e-3,
    "n_image_tokens": 4, "train": {}})
def run_tsf(ds, cfg: Dict[str, Any]) -> List[Dict[str, Any]]:
    images, names = image_branches(ds, cfg["image_extractors"], cfg["extractor_options"], device=cfg["device"],
                                   embeddings_dir=cfg.get("embeddings_dir"), show_progress=False)
    keys = ("epochs", "batch_size", "lr", "head_lr", "max_length", "n_image_tokens", "device")
    rows = train_tsf(ds, cfg["text_model"], images, cfg["seeds"], TSFConfig(**{k: cfg[k] for k in keys}), **dict(cfg["train"]))
    for r in rows:
        r.update(extractors={"text": str(cfg["text_model"]), "image": " + ".join(names)})
    return rows


@RUN_KINDS.register("guided_gated", defaults={
    "text_model": "bert-base-multilingual-cased",
    "image_extractors": ["timm:vit_base_patch16_224.augreg2_in21k_ft_in1k", "timm:resnet34.a1_in1k"],
    "extractor_options": {}, "max_length": 128, "epochs": 30, "batch_size": 32, "hidden": 256, "train": {}})
def run_guided(ds, cfg: Dict[str, Any]) -> List[Dict[str, Any]]:
    from ..token_features import cache_token_features

    img, names = image_guide_features(ds, cfg["image_extractors"], cfg["extractor_options"], device=cfg["device"],
                                      embeddings_dir=cfg.get("embeddings_dir"), show_progress=False)
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(cfg["text_model"]))[-80:]
    folder = embeddings_dir(cfg.get("embeddings_dir")) / ds.spec.key / "text_tokens" / f"{slug}_T{cfg['max_length']}"
    cache_token_features(ds.items("text"), list(ds.df["id"]), cfg["text_model"], folder, cfg["max_length"],
                         device=cfg["device"], show_progress=False)
    rows = train_guided(ds, folder, img, cfg["seeds"], cfg["epochs"], cfg["batch_size"], cfg["hidden"], cfg["device"],
                        **dict(cfg["train"]))
    for r in rows:
        r.update(extractors={"text": f"{cfg['text_model']} (tokens)", "image": " + ".join(names)})
    return rows


@RUN_KINDS.register("bert_clip", defaults={
    "bert_path": "bert-base-uncased", "clip_path": "openai/clip-vit-base-patch32", "lora_path": None, "lora_alpha": None,
    "epochs": 5, "batch_size": 16, "lr": 2e-5, "head_lr": None, "patience": 2, "num_workers": 2,
    "class_weights": "balanced", "loss": "auto", "focal_gamma": 2.0, "focal_alpha": None, "max_length": 128, "clip_base": None})
def run_bert_clip(ds, cfg: Dict[str, Any]) -> List[Dict[str, Any]]:
    keys = ("epochs", "batch_size", "lr", "head_lr", "patience", "num_workers", "class_weights", "loss", "focal_gamma",
            "focal_alpha", "max_length", "lora_alpha", "device", "clip_base")
    rows = []
    for s in cfg["seeds"]:
        with tempfile.TemporaryDirectory() as tmp:
            row, _ = train_bert_clip(ds, cfg["bert_path"], cfg["clip_path"], cfg.get("output_dir") or tmp, cfg["lora_path"],
                                     BertClipConfig(seed=s, **{k: cfg[k] for k in keys}))
        rows.append(row)
    return rows


def full_config(config: Mapping[str, Any]) -> Dict[str, Any]:
    """``config`` with every default filled in (what a row records); unknown keys are an error."""
    kind = config.get("kind", "embedding")
    out = {"kind": kind, **json.loads(json.dumps(COMMON_KEYS)), **defaults(kind)}
    unknown = set(config) - set(out) - EXTRA_KEYS
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)} for kind {kind!r}; valid: {sorted(set(out) | EXTRA_KEYS)}")
    out.update(config)
    if "seed" in config:
        out["seeds"] = seed_list(config["seed"], "seed")
        out.pop("seed")
    out["seeds"] = seed_list(out["seeds"])
    return out


def run(config: Mapping[str, Any], ds=None) -> List[Dict[str, Any]]:
    """Run one config (every model for every seed in ``config["seeds"]``); return rows (not yet appended)."""
    cfg = full_config(config)
    ds = ds if ds is not None else load_dataset(cfg["dataset"], cfg["data_dir"], cfg.get("embeddings_dir"),
                                                  **dict(cfg["dataset_options"]))
    t0 = time.perf_counter()
    rows = RUN_KINDS.get(cfg["kind"])(ds, cfg)
    peak = peak_memory_mb()
    stamp = pd.Timestamp.now(tz="UTC").isoformat()
    versions = library_versions()
    for r in rows:
        r.setdefault("peak_memory_mb", peak)
        r.update(run_id=uuid.uuid4().hex[:12], timestamp=stamp, kind=cfg["kind"], config={**cfg, "seeds": [r["seed"]]},
                 versions=versions)
    log.info("%s run on %s: %d rows in %.1f s", cfg["kind"], ds.spec.key, len(rows), time.perf_counter() - t0)
    return rows


def run_seeds(config: Mapping[str, Any], seeds: Sequence[int] = (0, 1, 2), table: Optional[PathLike] = None, ds=None) -> List[Dict[str, Any]]:
    """Run ``config`` for each seed; append the rows to the results table when ``table`` is given
    (a path, or ``"default"``: ``<results>/runs.parquet``). :func:`summarize` gives mean and std."""
    rows = run({**{k: v for k, v in config.items() if k != "seed"}, "seeds": list(seeds)}, ds=ds)
    if table is not None:
        append_runs(rows, None if table == "default" else table)
    return rows


def summarize(rows: Union[Sequence[Mapping[str, Any]], pd.DataFrame], by: Sequence[str] = ("model",)) -> pd.DataFrame:
    """Mean and standard deviation (over seeds) of the metrics and timings per model: ``<metric>`` and ``<metric>_std``."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    by = list(by)
    g = df.groupby(by, sort=False)
    mean = g[SUMMARY_METRICS].mean()
    std = g[SUMMARY_METRICS].std(ddof=1).fillna(0.0).add_suffix("_std")
    out = mean.join(std)
    out["n_params"] = g["n_params"].first().astype(int)
    out["seeds"] = g["seed"].nunique()
    cols = [c for m in SUMMARY_METRICS for c in (m, f"{m}_std")] + ["n_params", "seeds"]
    return out[cols].reset_index()


# --------------------------------------------------------------------------------- the results table
def runs_path(path: Optional[PathLike] = None) -> Path:
    return Path(path) if path else results_dir() / RUNS_FILE


def encode_row(row: Mapping[str, Any]) -> Dict[str, Any]:
    """A row with nested fields as JSON text (what parquet stores)."""
    out = {}
    for k, v in row.items():
        if k in JSON_FIELDS or isinstance(v, (dict, list, tuple)):
            out[k] = dumps(list(v) if isinstance(v, tuple) else v, indent=None)
        else:
            out[k] = v
    return out


def as_text(v: Any) -> Optional[str]:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, float) and np.isnan(v):
        return None
    return json.dumps(v, default=str)


def append_runs(rows: Sequence[Mapping[str, Any]], path: Optional[PathLike] = None) -> Path:
    """Append rows to the parquet results table (created when missing); written to a temp file, then renamed."""
    path = runs_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = pd.DataFrame([encode_row(r) for r in rows])
    if path.is_file():
        new = pd.concat([pd.read_parquet(path), new], ignore_index=True)
    for c in new.columns:  # mixed object columns (None + str) stay strings for parquet
        if new[c].dtype == object or str(new[c].dtype) in ("str", "string"):
            new[c] = new[c].map(as_text)
    tmp = path.with_suffix(".parquet.tmp")
    new.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    log.info("%d rows appended to %s (%d in all)", len(rows), path, len(new))
    return path


def load_runs(path: Optional[PathLike] = None, decode: bool = True) -> pd.DataFrame:
    """The results table; JSON fields decoded back to Python objects when ``decode``."""
    path = runs_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no results table at {path}: run utils.experiment.run_seeds(..., table='default') or run_grid first")
    df = pd.read_parquet(path)
    if decode:
        for c in JSON_FIELDS:
            if c in df.columns:
                df[c] = df[c].map(lambda v: json.loads(v) if isinstance(v, str) else v)
    return df


# ------------------------------------------------------------------------------------------- the grid
def run_grid(
    datasets: Sequence[str] = ("synthetic",),
    extractors: Optional[Mapping[str, Mapping[str, str]]] = None,
    fusion: Sequence[str] = ("early_fusion", "late_fusion"),
    seeds: Sequence[int] = (0, 1, 2),
    full_models: Sequence[str] = ("bert_vit_early_finetune", "bert_vit_late_finetune"),
    dataset_options: Optional[Mapping[str, Mapping[str, Any]]] = None,
    embedding_options: Optional[Mapping[str, Any]] = None,
    full_options: Optional[Mapping[str, Any]] = None,
    table: Optional[PathLike] = None,
    out_dir: Optional[PathLike] = None,
) -> pd.DataFrame:
    """datasets x extractors x fusion x seeds (+ the full models per dataset): fill the results table, draw the
    comparison plots, write the paper table (CSV) and return it (see :func:`paper_table`).

    ``extractors``: label -> ``{"text": spec, "image": spec}``; ``dataset_options``: dataset -> loader options.
    """
    emb_defaults = defaults("embedding")
    extractors = extractors or {"default": {"text": emb_defaults["text_extractor"], "image": emb_defaults["image_extractor"]}}
    out = results_dir(out_dir)
    rows: List[Dict[str, Any]] = []
    for name in datasets:
        opts = dict((dataset_options or {}).get(name, {}))
        ds = load_dataset(name, None, **opts)
        for label, pair in extractors.items():
            cfg = {"kind": "embedding", "dataset": name, "dataset_options": opts, "text_extractor": pair["text"],
                   "image_extractor": pair["image"], "models": list(fusion), **dict(embedding_options or {})}
            for r in run_seeds(cfg, seeds, ds=ds):
                r["extractor_set"] = label
                rows.append(r)
        if full_models:
            cfg = {"kind": "full", "dataset": name, "dataset_options": opts, "models": list(full_models), **dict(full_options or {})}
            for r in run_seeds(cfg, seeds, ds=ds):
                r["extractor_set"] = "end-to-end"
                rows.append(r)
    append_runs(rows, table)
    df = pd.DataFrame(rows)
    paper = paper_table(df)
    paper.to_csv(out / "paper_table.csv", index=False, float_format="%.4f")
    plot_comparison(df, out / "comparison.png")
    log.info("grid: %d rows; paper table and plots in %s", len(rows), out)
    return paper


def paper_table(rows: Union[Sequence[Mapping[str, Any]], pd.DataFrame]) -> pd.DataFrame:
    """The original paper's table: per dataset, embedding models against full models (accuracy, macro-F1,
    train seconds per epoch, inference seconds; mean and std over seeds)."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    df = df.copy()
    if "family" not in df.columns:
        df["family"] = "embedding"
    df["approach"] = np.where(df["family"].fillna("embedding") == "full", "full model", "embedding model")
    if "extractor_set" not in df.columns:
        df["extractor_set"] = ""
    df["extractor_set"] = df["extractor_set"].fillna("")
    s = summarize(df, by=["dataset", "approach", "extractor_set", "model"])
    s = s.rename(columns={"macro_f1": "f1", "macro_f1_std": "f1_std"})
    keep = ["dataset", "approach", "extractor_set", "model", "accuracy", "accuracy_std", "f1", "f1_std",
            "train_s_per_epoch", "inference_s", "n_params", "seeds"]
    return s[keep].sort_values(["dataset", "approach", "f1"], ascending=[True, True, False]).reset_index(drop=True)


def plot_comparison(rows: Union[Sequence[Mapping[str, Any]], pd.DataFrame], path: Optional[PathLike] = None,
                    title: Optional[str] = None, dpi: Optional[int] = None, formats: Optional[Sequence[str]] = None):
    """macro-F1 per model (bars with the spread over seeds) and train seconds per epoch (log scale); saved as
    PNG and PDF when ``path`` is given (``formats``, ``dpi``: see :func:`utils.viz.save_figure`). ``title``:
    e.g. the dataset's own name (``ds.spec.name``; None: the rows' dataset keys)."""
    from ..viz import comparison_plot

    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    return comparison_plot(df, path, title=title, dpi=dpi, formats=formats)
