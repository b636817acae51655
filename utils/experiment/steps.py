"""One function per notebook step, so notebooks (and ``python -m utils``) stay thin.

    ds    = load_dataset("synthetic")
    emb   = extract_embeddings(ds, {"text": "minilm-offline", "image": "effnet-lite0"})
    rows  = train_heads(ds, emb, ["early_fusion", "late_fusion", "text_only", "image_only"])
    table = results_table(rows)
    save_results(rows, "results/embed_model_synthetic.json")
    plot_results(table, "results/embed_model_synthetic.png")
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from .. import data as data_mod
from ..config import PathLike
from ..data.schema import MultimodalDataset
from ..embed import EmbedConfig, Embeddings, embed
from ..features import stack, split_rows, usable_rows
from ..io import write_rows
from ..metrics import classification_metrics
from .heads import HeadRecipe, TrainedHeads, fit_head
from .rows import RESULT_COLUMNS, result_row

log = logging.getLogger(__name__)

DEFAULT_HEADS = ["early_fusion", "late_fusion", "text_only", "image_only"]


class _Below(logging.Filter):
    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


def quiet_notebook_bars() -> None:
    """In a notebook: no ``TqdmWarning: IProgress not found`` (tqdm.auto's fallback, without ipywidgets, is the
    plain bar this package uses anyway), and no transformers "Loading weights" bar per model load (a widget or
    a warning for a step of under a second). Downloads from the hub keep their bars."""
    import warnings

    warnings.filterwarnings("ignore", message="IProgress not found")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def setup_logging(level: Union[int, str] = "INFO", notebook: Optional[bool] = None) -> None:
    """Show this package's INFO messages (cache reuse, resume, dropped rows) in a notebook or terminal.

    In a terminal every message goes to stderr (stdout keeps the tables). In a notebook (``notebook=None``:
    detected) INFO messages go to stdout as plain lines (``INFO embed: ...``) and only warnings and errors to
    stderr, so what is routine is not shown as an error (and :func:`quiet_notebook_bars`). Calling it again
    changes the level, not the handlers."""
    import sys

    logger = logging.getLogger("utils")
    logger.setLevel(level)
    for h in [h for h in logger.handlers if getattr(h, "_utils_handler", False)]:
        logger.removeHandler(h)
    from ..runtime import in_notebook

    if in_notebook() if notebook is None else notebook:
        quiet_notebook_bars()
        info = logging.StreamHandler(sys.stdout)
        info.addFilter(_Below(logging.WARNING))
        info.setFormatter(logging.Formatter("%(levelname)s %(module)s: %(message)s"))
        warn = logging.StreamHandler(sys.stderr)
        warn.setLevel(logging.WARNING)
        warn.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handlers = [info, warn]
    else:
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        handlers = [h]
    for h in handlers:
        h._utils_handler = True  # type: ignore[attr-defined]
        logger.addHandler(h)


def load_dataset(name: str, /, data_dir: Optional[PathLike] = None, embeddings_dir: Optional[PathLike] = None,
                 **options: Any) -> MultimodalDataset:
    """``utils.data.load`` with the folder taken from ``root`` among the options, else from ``data_dir``
    (``<data_dir>/<name>``) when given; ``embeddings_dir``: the embeddings folder of the run, whose
    ``.media-cache`` caches the file checks (default: the default embeddings folder)."""
    if embeddings_dir is not None:
        options.setdefault("embeddings_dir", embeddings_dir)
    root = options.pop("root", None)  # a root among the options (the CLI's --dataset-options) wins over data_dir
    root = Path(root).expanduser() if root else (Path(data_dir) / name if data_dir else None)
    ds = data_mod.load(name, root=root, **options)
    log.info("%r", ds)
    return ds


def extractor_options(specs: Sequence[str], options: Optional[Mapping[str, Mapping[str, Any]]],
                      modalities: Sequence[str] = ()) -> Dict[str, Dict[str, Any]]:
    """Options keyed by extractor spec (the one convention); an unknown key is an error.

    Options keyed by modality (the convention before release 0.2) are accepted for one release, with a warning.
    """
    import warnings

    out: Dict[str, Dict[str, Any]] = {}
    for key, opts in dict(options or {}).items():
        if key in specs:
            out.setdefault(key, {}).update(opts)
        elif key in modalities:
            warnings.warn(f"extractor options keyed by modality ({key!r}) are deprecated: key them by the extractor "
                          f"spec, e.g. {{{specs[list(modalities).index(key)]!r}: {dict(opts)!r}}}", DeprecationWarning,
                          stacklevel=3)
            out.setdefault(specs[list(modalities).index(key)], {}).update(opts)
        else:
            raise ValueError(f"extractor options for {key!r}, which is not one of the extractors {list(specs)}: key the "
                             "options by the extractor spec as written")
    return out


def extract_embeddings(
    ds: MultimodalDataset,
    extractors: Mapping[str, str],
    options: Optional[Mapping[str, Mapping[str, Any]]] = None,
    batch_size: Union[int, str] = "auto",
    device: str = "auto",
    embeddings_dir: Optional[PathLike] = None,
    normalize: bool = False,
    on_error: str = "raise",
    show_progress: bool = True,
    for_training: bool = True,
    engine: str = "local",
    ray: Optional[Any] = None,
) -> Embeddings:
    """Embed each modality (``{"text": spec, "image": spec}``) into the store, or reuse it; return aligned vectors.

    ``options`` maps an extractor spec to its options (``{"timm:convnext_atto": {"pretrained": False}}``).
    Families with several towers (``clip``, ``clap``) get the modality from the key of ``extractors``.
    ``for_training`` (default): first check that heads can be trained on ``ds`` (every split has rows, the
    training rows hold two classes or more), so a hopeless run stops before extraction. Every extractor
    is built (and its options checked) before the first one runs. A store found damaged while its
    vectors are read is repaired (damaged shards recomputed) and read again.
    ``engine="ray"`` computes the vectors on Ray actors (``ray``: a :class:`~utils.distributed.RayConfig` or a
    dict of its fields, e.g. ``{"address": "auto", "actors": 8, "num_gpus": 1}``); the store is the same.
    """
    from ..data import check_trainable
    from ..extractors import create_for
    from ..store import StoreIntegrityError

    if for_training:
        check_trainable(ds)
    mods, specs = list(extractors), [extractors[m] for m in extractors]
    by_spec = extractor_options(specs, options, mods)
    cfg = EmbedConfig(root=None if embeddings_dir is None else str(embeddings_dir), batch_size=batch_size,
                      device=device, normalize=normalize, on_error=on_error, show_progress=show_progress,
                      engine=engine, ray=ray)
    built = {modality: create_for(spec, modality, **dict(by_spec.get(spec, {}))) for modality, spec in extractors.items()}
    if engine != "ray":  # every model that has work to do loads before the first extraction starts: an extractor
        # that cannot load (a hub id offline) is found before the other modality spent minutes being embedded
        from ..embed import is_finished, store_path

        for modality, ext in built.items():
            if not is_finished(store_path(ds, modality, ext, cfg.root)):
                ext.load(device)
    vectors, described, stores, reused, sources = {}, {}, {}, {}, {}
    for modality, ext in built.items():
        store = embed(ds, modality, ext, cfg)
        try:
            vectors[modality] = store.aligned(ds.df["id"], missing="nan")
        except StoreIntegrityError as e:
            log.warning("%s", e)
            store = embed(ds, modality, ext, cfg, verify="full")
            vectors[modality] = store.aligned(ds.df["id"], missing="nan")
        manifest = store.manifest()
        described[modality] = manifest.get("description", ext.describe())
        stores[modality] = str(store.folder)
        reused[modality] = bool(getattr(store, "reused", False))
        sources[modality] = {"spec": extractors[modality], "options": dict(by_spec.get(extractors[modality], {})),
                             "config": ext.config(), "description": described[modality], "store": str(store.folder),
                             "precision": store.precision, "dim": int(vectors[modality].shape[1]),
                             "normalized": bool(normalize), "fingerprint": manifest.get("fingerprint")}
    return Embeddings(vectors, described, stores, reused, ids=ds.df["id"].to_numpy(), sources=sources)


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
    modality_dropout: Optional[float] = None,
    keep_outputs: bool = True,
    **train_options: Any,
) -> TrainedHeads:
    """Train each head in ``models`` for each seed; return one result row per (model, seed).

    Features are (optionally) standardised with statistics of the training split only. Selection and
    early stopping use the validation split; the metrics in each row are on the test split. Every head
    of the comparison trains and is scored on the same rows: those with a vector in every modality any
    of the heads reads (``rows_without_vectors`` counts the others).
    ``train_options`` go to :class:`~utils.train.TrainConfig` (lr, patience, monitor, class_weights, ...).
    ``modality_dropout``: the chance that a training row of a fusion head loses one modality (None: the
    value in ``head_config``, 0 by default). The rows come back as a :class:`TrainedHeads` list that also
    keeps what :func:`utils.experiment.report` needs (``keep_outputs``: test and validation outputs).
    """
    from dataclasses import replace

    from ..runtime import progress_bar as tqdm

    from ..models.fusion import HeadConfig, head_modalities
    from ..runtime import n_params, seed_list
    from ..train import TrainConfig, config_dict

    seeds = seed_list(seeds)
    embeddings = embeddings.for_dataset(ds)
    configs = {s: TrainConfig(epochs=epochs, batch_size=batch_size, seed=s, device=device, **train_options) for s in seeds}
    head_config = head_config or HeadConfig()
    if modality_dropout is not None:
        head_config = replace(head_config, modality_dropout=float(modality_dropout))
    reads = {name: head_modalities(name, embeddings.modalities) for name in models}
    used = [m for m in embeddings.modalities if any(m in r for r in reads.values())]
    usable = usable_rows(stack(embeddings.vectors, used)) if used else np.ones(len(ds), bool)
    if not usable.all():
        lost = ds.df.loc[~usable, "split"].value_counts().to_dict()
        log.warning("%s: %d row(s) have no vector in some modality (unreadable input or NaN in the store) and are left "
                    "out of training and scoring, per split %s; first ids %s (rows_without_vectors in each result)",
                    ds.spec.key, int((~usable).sum()), lost, ds.df.loc[~usable, "id"].head(5).tolist())
    parts = split_rows(ds.df["split"].to_numpy(), usable)
    require_rows(ds, parts)
    y = ds.labels()
    warn_untrained_classes(ds, y, parts)
    vectors, stand_ins, imputed = with_stand_ins(ds, embeddings.vectors, used, parts["train"],
                                                 embedded_here=embedded_from_records(embeddings))
    recipe = HeadRecipe(ds, vectors, parts, y, configs, head_config, standardize, dict(embeddings.sources), stand_ins)
    rows = TrainedHeads(recipe=recipe)
    for name, seed in tqdm([(m, s) for m in models for s in seeds], desc="train heads", disable=not show_progress):
        mods = reads[name]
        cfg = configs[seed]
        fitted = fit_head(name, mods, recipe, seed, keep_outputs, keep_model=keep_outputs)
        res, proba = fitted.fit, fitted.proba
        metrics = classification_metrics(y[parts["test"]], proba, ds.spec.task, ds.spec.classes)
        row = result_row(
            name, ds.spec, seed, metrics, modalities=mods, extractors={m: embeddings.extractors[m] for m in mods},
            fit=res, inference_s=fitted.inference_s, n_params=n_params(res.model),
            n_rows={s: len(parts[s]) for s in parts}, train_config=config_dict(cfg),
            rows_without_vectors=int((~usable).sum()), standardize=standardize, y_true=y[parts["test"]], proba=proba,
            rows_with_stand_in={m: imputed[m] for m in mods if imputed.get(m)},
            modality_dropout=head_config.modality_dropout if len(mods) > 1 else 0.0,
        )
        rows.append(row, fitted.outputs)
        log.info("%-13s seed %d: test macro-F1 %.3f, acc %.3f, AUC %.3f (best epoch %d/%d)",
                 name, seed, row["macro_f1"], row["accuracy"], row["roc_auc"], row["best_epoch"], row["epochs_run"])
    return rows


def embedded_from_records(embeddings: Embeddings) -> List[str]:
    """Modalities whose vectors this framework computed from the records' own inputs (an extractor run through the
    store), as opposed to vectors imported or built by hand: only for those is a blank text's vector known to be the
    embedding of ``""`` rather than something the outside tool computed from data we do not see."""
    out = []
    for m, src in (embeddings.sources or {}).items():
        spec = str((src or {}).get("spec") or "")
        if spec and not spec.startswith("imported"):
            out.append(m)
    return out


def with_stand_ins(ds: MultimodalDataset, vectors: Mapping[str, np.ndarray], modalities: Sequence[str],
                   train_rows: np.ndarray, embedded_here: Optional[Sequence[str]] = None,
                   ) -> "tuple[Dict[str, np.ndarray], Dict[str, np.ndarray], Dict[str, int]]":
    """Each modality's stand-in (its mean over the training rows that have it, ``[D]`` float32) and the vectors
    with the stand-in put in for rows that have nothing in that modality (a missing or blank text: the store holds
    the embedding of ``""`` for them). A saved model puts the same stand-in in for such records at prediction time,
    so its scores on the test split are the ones reported. Only modalities in ``embedded_here`` (computed from the
    records by an extractor; default: all) are imputed: vectors imported or made by hand are used as given.
    Returns ``(vectors, stand_ins, rows imputed per modality)``."""
    out, stand_ins, imputed = dict(vectors), {}, {}
    for m in modalities:
        v = vectors[m]
        computed = embedded_here is None or m in embedded_here
        empty = (ds.empty(m) if computed and m == "text" and "text" in ds.df.columns
                 else np.zeros(len(v), bool))
        keep = train_rows[~empty[train_rows]]
        stand_ins[m] = np.asarray(v[keep if len(keep) else train_rows], dtype=np.float64).mean(axis=0).astype(np.float32)
        if empty.any():
            filled = np.array(v, dtype=np.float32, copy=True)
            filled[empty] = stand_ins[m]
            out[m] = filled
            imputed[m] = int(empty.sum())
            log.info("%s: %d record(s) have no %s; the training mean of the %s vectors stands in for them (as a saved "
                     "model does when predicting)", ds.spec.key, imputed[m], m, m)
    return out, stand_ins, imputed


def warn_untrained_classes(ds: MultimodalDataset, y: np.ndarray, parts: Mapping[str, np.ndarray]) -> List[str]:
    """Warn about (and return) classes that have test or validation rows but no training row: no head can
    predict them, so every such test row is an error and the class's F1 is 0 in every macro average."""
    present = (lambda rows: set(np.flatnonzero(y[rows].sum(axis=0) > 0).tolist())) if y.ndim == 2 else \
        (lambda rows: set(np.unique(y[rows]).tolist()))
    trained = present(parts["train"])
    missing = sorted((present(parts["test"]) | present(parts["val"])) - trained)
    names = [ds.spec.classes[int(c)] for c in missing]
    if names:
        log.warning("%s: class(es) %s have no training rows but appear in validation / test: no head can learn them; "
                    "their test rows are scored as errors (move some of their rows to train, or drop the class)",
                    ds.spec.key, names)
    return names


def require_rows(ds: MultimodalDataset, parts: Mapping[str, np.ndarray]) -> None:
    """A clear error naming the dataset and the split when a split has no usable rows."""
    empty = [s for s in ("train", "val", "test") if len(parts.get(s, ())) == 0]
    if empty:
        raise ValueError(
            f"dataset {ds.spec.key!r}: the {' and '.join(empty)} split(s) have no usable rows (rows with every "
            "vector the models read). Check the split column; a dataset without validation rows gets them carved "
            "from train by utils.data.load (carve_val=True)."
        )


def results_table(rows: Sequence[Mapping[str, Any]], by_seed: bool = False) -> pd.DataFrame:
    """The headline table: one line per model (mean over seeds, with ``*_std`` when several seeds)."""
    df = pd.DataFrame([{k: r.get(k, np.nan) for k in ["model", "seed", *RESULT_COLUMNS[1:], "n_test"]} for r in rows])
    if by_seed or df.empty:
        return df
    order = list(dict.fromkeys(df["model"]))
    metrics = RESULT_COLUMNS[1:]
    g = df.groupby("model", sort=False)
    out = g[metrics + ["n_test"]].mean()
    if g.size().max() > 1:
        std = g[["accuracy", "macro_f1", "roc_auc"]].std().add_suffix("_std")
        out = out.join(std)
        out["seeds"] = g.size()
    out["n_params"] = out["n_params"].astype(int)
    if out["n_test"].notna().all():
        out["n_test"] = out["n_test"].round().astype(int)  # the same test rows for every seed: a count, not 450.0
    return out.loc[order].reset_index()


def save_results(rows: Sequence[Mapping[str, Any]], json_path: PathLike, table_path: Optional[PathLike] = None) -> Path:
    """Write the result rows as JSON (a list, one row per trained model) and the table as CSV beside it."""
    return write_rows(rows, json_path, results_table(rows), table_path)


def plot_results(table: pd.DataFrame, path: Optional[PathLike] = None, title: str = "", intervals: Optional[pd.DataFrame] = None,
                 subtitle: str = "", dpi: Optional[int] = None, formats: Optional[Sequence[str]] = None):
    """Bar plot of accuracy, macro-F1 and ROC-AUC per model, with the report's 95% intervals as error bars when
    ``intervals`` (``report.intervals``) is given, else the spread over seeds; saved as PNG and PDF when ``path``
    is given (``formats``, ``dpi``: see :func:`utils.viz.save_figure`)."""
    from ..viz import metric_bars

    return metric_bars(table, ["accuracy", "macro_f1", "roc_auc"], path=path, title=title, intervals=intervals,
                       subtitle=subtitle, dpi=dpi, formats=formats)


def tidy_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`results_table` as shown in a notebook or a terminal: the headline columns, scores to 3 decimals,
    seconds to 4, counts as integers (``n_test`` 450, not 450.0)."""
    cols = [c for c in RESULT_COLUMNS + ["seeds", "macro_f1_std", "n_test"] if c in table.columns]
    out = table[cols].copy()
    for c in ("accuracy", "macro_f1", "weighted_f1", "roc_auc", "macro_f1_std"):
        if c in out.columns:
            out[c] = out[c].astype(float).round(3)
    for c in ("train_s_per_epoch", "inference_s"):
        if c in out.columns:
            out[c] = out[c].astype(float).round(4)
    for c in ("n_params", "n_test", "seeds"):
        if c in out.columns and out[c].notna().all():
            out[c] = out[c].round().astype(int)
    return out


def format_table(table: pd.DataFrame) -> str:
    """A plain-text rendering of :func:`results_table` for terminals and logs (:func:`tidy_table` as text)."""
    out = tidy_table(table).drop(columns=["seeds", "macro_f1_std"], errors="ignore")
    fmt = {c: (lambda v: f"{v:.3f}") for c in ("accuracy", "macro_f1", "weighted_f1", "roc_auc")}
    fmt.update({"train_s_per_epoch": lambda v: f"{v:.4f}", "inference_s": lambda v: f"{v:.4f}",
                "n_params": lambda v: f"{int(v):,}", "n_test": lambda v: f"{int(v):,}"})
    return out.to_string(index=False, formatters={k: f for k, f in fmt.items() if k in out.columns})
