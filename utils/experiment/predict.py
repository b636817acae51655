"""Keep a trained head and apply it: save the chosen head of a comparison as a model folder, load it, and
predict on new records, a dataset split or precomputed embeddings.

    rows  = ex.train_heads(ds, emb, ["early_fusion", "late_fusion"])
    rep   = ex.report(rows, "results", "embed_model_synthetic")
    path  = ex.save_model(rows, "results/models/embed_model_synthetic", report=rep)    # best on validation
    model = ex.load_model(path)                                                          # no network, checked
    preds = ex.predict(model, "new_records.csv")          # id, prediction, proba_<class>..., missing_<modality>
    preds = ex.predict(model, ds, split="test")           # a loaded dataset (its cached embeddings are reused)
    proba = ex.predict_proba(model, emb)                  # precomputed Embeddings (or {modality: array} + ids=)

Records are embedded with the model's own extractors (the same spec and options, checked against the
fingerprint saved with the model: its options and its vectors for fixed probe inputs) and cached in the
embedding store like any extraction. A record that lacks a modality (an empty text, an image that cannot be
read) is never silent: it is scored with that modality's saved stand-in (its training mean: the report's
"missing modality" rows measure what that costs) and flagged in ``missing_<modality>``; ``strict=True``
refuses such records instead. Probabilities are calibrated with the temperature fitted on the validation
split unless ``calibrated=False``; the decision (argmax, or the saved threshold) is the same either way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from ..config import PathLike, library_versions
from ..data.schema import DatasetError, DatasetSpec, MultimodalDataset, as_list
from ..embed import Embeddings
from ..metrics import classification_metrics
from ..models.saved import FusionModel, ModelFolderError, cosines, probe_audio, probe_images, probe_items, probe_texts
from .heads import TrainedHeads

log = logging.getLogger(__name__)

PROBE_MIN_COSINE = 0.99  # an extractor whose probe vectors fall below this against the saved ones is refused
DEFAULT_COLUMNS = {"id": "id", "text": "text", "image": "image_path", "audio": "audio_path", "label": "label"}
MODALITY_COLUMNS = {"text": "text", "image": "image_path", "audio": "audio_path"}


class ExtractorMismatchError(ValueError):
    """The extractor a model needs is not the one it was saved with (other options, weights or preprocessing)."""


# ------------------------------------------------------------------------------------------------ saving
def choose_row(rows: TrainedHeads, model: str = "best", seed: Optional[int] = None) -> int:
    """Index of the row to save: ``model="best"`` (highest validation macro-F1 over every head and seed that kept
    its weights), or a head name (its best seed on validation, or ``seed``)."""
    import torch

    from ..models.losses import probabilities

    if not isinstance(rows, TrainedHeads) or rows.recipe is None:
        raise TypeError("save_model() needs the rows returned by train_heads (they keep the trained weights); rows read "
                        "back from JSON do not")
    kept = [i for i, o in enumerate(rows.outputs) if o is not None and o.state is not None]
    if not kept:
        raise ValueError("these rows kept no trained weights: train them with train_heads(..., keep_outputs=True)")
    if model != "best":
        names = sorted({rows[i]["model"] for i in kept})
        kept = [i for i in kept if rows[i]["model"] == model]
        if not kept:
            raise ValueError(f"no trained head named {model!r} in these rows; heads: {names} (or model='best')")
    if seed is not None:
        seeds = sorted({rows[i]["seed"] for i in kept})
        kept = [i for i in kept if rows[i]["seed"] == int(seed)]
        if not kept:
            raise ValueError(f"no {model!r} head trained with seed {seed}; seeds: {seeds}")
    recipe = rows.recipe
    y_val = recipe.y[recipe.parts["val"]]
    spec = recipe.ds.spec
    scores = []
    for i in kept:
        proba = probabilities(torch.from_numpy(np.asarray(rows.outputs[i].val_logits, np.float32)), spec.task).numpy()
        scores.append(classification_metrics(y_val, proba, spec.task, spec.classes)["macro_f1"])
    best = int(np.nanargmax(np.where(np.isfinite(scores), scores, -np.inf)))
    log.info("saving %s seed %d (validation macro-F1 %.3f%s)", rows[kept[best]]["model"], rows[kept[best]]["seed"],
             scores[best], f", the best of {len(kept)}" if len(kept) > 1 else "")
    return kept[best]


def save_model(rows: TrainedHeads, folder: PathLike, model: str = "best", seed: Optional[int] = None,
               report: Optional[Any] = None, overwrite: bool = False, device: str = "auto",
               extractors: Optional[Mapping[str, Any]] = None) -> Path:
    """Save one trained head of ``rows`` (see :func:`choose_row`) as a model folder (:mod:`utils.models.saved`)
    with its model card and the report's figures; return the folder.

    ``report``: the :class:`~utils.experiment.report.Report` of these rows (its calibration, subgroup and
    missing-modality lines for this head go into the card, its saved figures beside it). The extractors are
    loaded once to record their vectors for the probe inputs (the fingerprint a later prediction checks):
    ``extractors`` (modality -> the extractor the vectors were made with, e.g. the main job's) are used when they
    are the ones the model records, instead of being built and loaded again from the record.
    """
    import torch

    from ..evaluation import fit_temperature
    from ..models.fusion import build_head
    from ..train import config_dict

    i = choose_row(rows, model, seed)
    row, out, recipe = rows[i], rows.outputs[i], rows.recipe
    spec = recipe.ds.spec
    mods = list(out.modalities)
    dims = {m: int(recipe.vectors[m].shape[1]) for m in mods}
    head = build_head(row["model"], dims, spec.num_outputs, recipe.head_config)
    head.load_state_dict(out.state, strict=True)
    head.eval()
    y_val = recipe.y[recipe.parts["val"]]
    temperature = float(fit_temperature(out.val_logits, y_val, spec.task)) if len(out.val_logits) else 1.0
    sources = {m: dict(recipe.sources.get(m) or {}) for m in mods}
    config: Dict[str, Any] = {
        "model_type": "mmfusion-fusion-head",
        "format_version": 1,
        "head": row["model"],
        "head_config": config_dict(recipe.head_config),
        "modalities": mods,
        "dims": dims,
        "n_outputs": int(spec.num_outputs),
        "n_params": int(row.get("n_params", 0)),
        "task": spec.task,
        "classes": list(spec.classes),
        "positive_class": spec.classes[1] if spec.task == "binary" else None,
        "threshold": 0.5,
        "temperature": temperature,
        "standardize": out.scaler is not None,
        "extractors": {m: extractor_record(m, sources[m], dims[m]) for m in mods},
        "training": {
            "dataset": spec.key, "dataset_name": spec.name, "description": spec.description,
            "text_template": spec.text_template, "columns": table_columns(spec),
            "fingerprints": {m: sources[m].get("fingerprint") for m in mods},
            "n_rows": {s: int(row.get(f"n_{s}", len(recipe.parts[s]))) for s in ("train", "val", "test")},
            "rows_without_vectors": int(row.get("rows_without_vectors", 0)), "seed": int(row["seed"]),
            "train_config": row.get("train_config"), "best_epoch": row.get("best_epoch"),
            "epochs_run": row.get("epochs_run"), "modality_dropout": row.get("modality_dropout", 0.0),
        },
        "metrics": {"test": test_metrics(row), "calibration": {"temperature": temperature}},
        "report": report_lines(report, row["model"]),
        "versions": library_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    fm = FusionModel(head, config)
    if out.scaler is not None:
        fm.mean, fm.std = out.scaler.mean, out.scaler.std
    fm.stand_ins = {m: np.asarray(out.stand_ins[m], np.float32) for m in mods}  # what training put in for empty texts
    with torch.inference_mode():
        record_probes(fm, device, extractors)
    figures = {k: v for k, v in (getattr(report, "paths", {}) or {}).items() if str(v).endswith(".png")}
    path = fm.save(folder, overwrite=overwrite, card=model_card(fm, row, report), figures=figures)
    log.info("model saved to %s (%s seed %s, %s)", path, row["model"], row["seed"], spec.key)
    return path


def extractor_record(modality: str, source: Mapping[str, Any], dim: int) -> Dict[str, Any]:
    """What the model keeps of the extractor of ``modality``: enough to rebuild it and to refuse another one."""
    config = source.get("config") or {"id": f"given:{modality}", "options": {}}  # vectors passed in as arrays
    identity = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
    return {"spec": source.get("spec") or config.get("id"), "options": source.get("options") or {}, "config": config,
            "identity": identity, "dim": int(dim), "precision": source.get("precision"),
            "normalized": bool(source.get("normalized", False)), "description": source.get("description", ""),
            "imported": str(config.get("id", "")).startswith(("imported:", "given:"))}


def table_columns(spec: DatasetSpec) -> Dict[str, Any]:
    """The column names a new table must use (those of the training table when it was one)."""
    saved = dict((spec.extra or {}).get("columns") or {})
    return {**DEFAULT_COLUMNS, **{k: v for k, v in saved.items() if v is not None}}


def test_metrics(row: Mapping[str, Any]) -> Dict[str, Any]:
    keys = ("accuracy", "macro_f1", "weighted_f1", "roc_auc", "macro_f1_ci_low", "macro_f1_ci_high", "roc_auc_ci_low",
            "roc_auc_ci_high", "ece", "brier", "ci_method", "n_test", "per_class_f1")
    return {k: row[k] for k in keys if k in row}


def report_lines(report: Any, model: str) -> Dict[str, Any]:
    """The report's calibration, subgroup-gap and missing-modality lines of head ``model`` (JSON-ready)."""
    if report is None:
        return {}
    from ..io import to_jsonable

    def rows_of(table: pd.DataFrame) -> List[Dict[str, Any]]:
        if table is None or table.empty or "model" not in table.columns:
            return []
        return to_jsonable(table[table["model"] == model].to_dict(orient="records"))

    return {"calibration": rows_of(report.calibration), "subgroup_gaps": rows_of(report.subgroup_gaps),
            "missing": rows_of(report.missing), "shapley": rows_of(report.shapley), "seeds": int(report.seeds),
            "n_test": int(report.n_test)}


def build_extractor(model: FusionModel, modality: str):
    """The extractor a model's ``modality`` was embedded with, built from its saved spec and options."""
    from ..extractors import create_for

    rec = model.extractors[modality]
    if rec.get("imported"):
        raise ExtractorMismatchError(
            f"{model}: its {modality} vectors were imported or given as arrays ({rec['config']['id']}), not computed by "
            "an extractor here, so "
            "raw records cannot be embedded for it: import vectors for the new records the same way and pass them as "
            "Embeddings (predict(model, emb))")
    return create_for(rec["spec"], modality, **dict(rec.get("options") or {}))


def record_probes(model: FusionModel, device: str = "auto", extractors: Optional[Mapping[str, Any]] = None) -> None:
    """Embed the probe inputs with each (non-imported) extractor and keep them in the model. ``extractors``: ones
    already made (and loaded); each is used when its identity is the one the model records, else the extractor is
    built from the record."""
    model.probe_inputs, model.probes, model.probe_files = {}, {}, {}
    files = {"image": probe_images, "audio": probe_audio}
    for m in model.modalities:
        if model.extractors[m].get("imported"):
            continue
        if m == "text":
            model.probe_inputs["text"] = probe_texts()
        else:
            made = files[m]()
            model.probe_files.update(made)
            model.probe_inputs[m] = sorted(made)
        given = (extractors or {}).get(m)
        same = given is not None and json.dumps(given.config(), sort_keys=True, default=str) == json.dumps(
            model.extractors[m]["config"], sort_keys=True, default=str)
        model.probes[m] = embed_probes(model, m, given if same else build_extractor(model, m), device)


def embed_probes(model: FusionModel, modality: str, ext: Any, device: str = "auto") -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="mmfusion-probe-") as tmp:
        items = probe_items(model, modality, Path(tmp))
        return ext.encode(items, batch_size=8, device=device, normalize=model.extractors[modality].get("normalized", False),
                          show_progress=False)


def check_extractor(model: FusionModel, modality: str, ext: Any, device: str = "auto") -> None:
    """Refuse an extractor other than the one the model was saved with: other id or options, another width, or
    vectors for the probe inputs that moved (cosine below :data:`PROBE_MIN_COSINE`)."""
    rec = model.extractors[modality]
    have, want = ext.config(), rec["config"]
    if (have.get("id"), have.get("options")) != (want.get("id"), want.get("options")):
        raise ExtractorMismatchError(
            f"{model.folder or model}: the {modality} extractor is {have.get('id')} with options {have.get('options')}, "
            f"but the model was trained on {want.get('id')} with options {want.get('options')}: use the model's own "
            "extractor (predict builds it from the saved spec)")
    if modality not in model.probes:
        return
    got = embed_probes(model, modality, ext, device)
    saved = model.probes[modality]
    if got.shape != saved.shape:
        raise ExtractorMismatchError(f"{model.folder or model}: {rec['spec']} now gives {got.shape[1]}-d {modality} "
                                     f"vectors; the model was trained on {saved.shape[1]}-d ones")
    cos = float(cosines(got, saved).min())
    if cos < PROBE_MIN_COSINE:
        raise ExtractorMismatchError(
            f"{model.folder or model}: {rec['spec']} no longer gives the {modality} vectors the model was trained on "
            f"(cosine {cos:.3f} with the saved vectors of its probe inputs; >= {PROBE_MIN_COSINE} expected): its weights "
            "or preprocessing changed since the model was saved. Use the same model files, or retrain the head")
    log.info("%s extractor %s matches the saved fingerprint (probe cosine %.4f)", modality, rec["spec"], cos)


# ------------------------------------------------------------------------------------------------ loading
def load_model(folder: PathLike, device: str = "cpu") -> FusionModel:
    """Load a saved model folder (every file checked against its checksum first; no network)."""
    return FusionModel.load(folder, device=device)


def as_model(model: Union[FusionModel, PathLike]) -> FusionModel:
    return model if isinstance(model, FusionModel) else load_model(model)


# ------------------------------------------------------------------------------------------------ records
def read_records(path: PathLike) -> pd.DataFrame:
    """A table of records read as text (no guessing of types): CSV, TSV or parquet."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{p}: no such file (a table of records to predict: .csv, .tsv or .parquet)")
    if p.suffix.lower() == ".parquet":
        return pd.read_parquet(p).astype(object).where(lambda f: f.notna(), None)
    try:
        return pd.read_csv(p, sep="\t" if p.suffix.lower() == ".tsv" else ",", dtype=str, keep_default_na=False,
                           encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{p}: not UTF-8 (byte {e.start}); save it as UTF-8") from None
    except pd.errors.ParserError as e:
        raise DatasetError(f"{p}: not a readable table ({e})") from None


def records_dataset(model: FusionModel, frame: pd.DataFrame, name: str, base: Optional[PathLike],
                    columns: Optional[Mapping[str, str]] = None, where: str = "the table") -> MultimodalDataset:
    """New records as a dataset the store can embed: the model's columns (those of its training table unless
    ``columns`` says otherwise), media paths relative to ``base``; labels optional. Checked before anything runs."""
    cols = {**model.config.get("training", {}).get("columns", DEFAULT_COLUMNS), **dict(columns or {})}
    have = [str(c) for c in frame.columns]
    template = cols.get("text_template")
    needed = {m: cols.get(m) or MODALITY_COLUMNS[m] for m in model.modalities}
    lacking = [(m, c) for m, c in needed.items() if c not in have and not (m == "text" and template)]
    if lacking:
        what = "; ".join(f"{m} needs column {c!r}" for m, c in lacking)
        raise DatasetError(f"{where} lacks the column(s) the model reads ({what}); it has {have[:12]}. Rename them, or "
                           "pass columns={'text': ..., 'image': ...} (CLI: --columns)")
    n = len(frame)
    id_col = cols.get("id") or "id"
    ids = frame[id_col].astype(str).tolist() if id_col in have else [f"r{i:07d}" for i in range(n)]
    dup = pd.Series(ids)[pd.Series(ids).duplicated()]
    if len(dup):
        raise DatasetError(f"{where}: id {dup.iloc[0]!r} appears more than once (column {id_col!r}); ids must be unique")
    df = pd.DataFrame({"id": ids})
    if "text" in model.modalities:
        if template and needed["text"] not in have:
            df["text"] = [template.format_map(_Row(r)) for r in frame.to_dict(orient="records")]
        else:
            df["text"] = [None if v is None else str(v) for v in frame[needed["text"]].tolist()]
    for m in ("image", "audio"):
        if m in model.modalities:
            df[MODALITY_COLUMNS[m]] = [None if (v is None or str(v).strip() == "") else str(v).strip()
                                       for v in frame[needed[m]].tolist()]
    label_col = cols.get("label") or "label"
    df["label"] = frame[label_col].tolist() if label_col in have else None
    df["split"] = "test"
    check_labels(model, df, label_col, where)
    spec = DatasetSpec(name=name, task=model.task, classes=model.classes, root=None if base is None else str(base),
                       modalities=list(model.modalities), description=f"records to predict ({where})",
                       absolute_paths=True)
    return MultimodalDataset(df, spec, validate_rows=False)


class _Row(dict):
    def __missing__(self, key: str) -> str:
        raise DatasetError(f"the model's text template needs column {key!r}, which the table lacks")


def label_list(value: Any, task: str, sep: Optional[str]) -> Optional[List[str]]:
    """A cell of a label column as class names (None when empty)."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == "":
        return None
    if task == "multilabel":
        s = str(value).strip() if not isinstance(value, (list, tuple, np.ndarray)) else value
        if isinstance(s, str) and not s.startswith("["):
            return [p.strip() for p in s.split(sep or ",") if p.strip()]
        return [str(v) for v in as_list(s)]
    return [str(value).strip()]


def check_labels(model: FusionModel, df: pd.DataFrame, column: str, where: str) -> None:
    """Labels, where given, must be classes the model knows: a clear error naming them and the first rows."""
    sep = model.config.get("training", {}).get("columns", {}).get("label_sep")
    known = set(model.classes)
    unknown: Dict[str, List[int]] = {}
    for i, v in enumerate(df["label"].tolist()):
        for c in label_list(v, model.task, sep) or []:
            if c not in known:
                unknown.setdefault(c, []).append(i)
    if unknown:
        shown = "; ".join(f"{c!r} (rows {rows[:3]})" for c, rows in list(unknown.items())[:5])
        raise DatasetError(f"{where}: column {column!r} holds class(es) the model never saw: {shown}. It knows "
                           f"{model.classes[:20]}{' ...' if len(model.classes) > 20 else ''}: map the labels to these, or "
                           "drop the column to predict without scoring")


def encoded_labels(model: FusionModel, labels: Sequence[Any]) -> Tuple[np.ndarray, np.ndarray]:
    """``(rows with a label, their encoded targets)`` for scoring."""
    sep = model.config.get("training", {}).get("columns", {}).get("label_sep")
    index = {c: k for k, c in enumerate(model.classes)}
    rows, ys = [], []
    for i, v in enumerate(labels):
        names = label_list(v, model.task, sep)
        if names is None:
            continue
        rows.append(i)
        if model.task == "multilabel":
            y = np.zeros(len(model.classes), np.float32)
            y[[index[c] for c in names]] = 1
            ys.append(y)
        else:
            ys.append(index[names[0]])
    dtype = np.float32 if model.task == "multilabel" else np.int64
    shape = (0, len(model.classes)) if model.task == "multilabel" else (0,)
    return np.asarray(rows, np.int64), (np.asarray(ys, dtype) if ys else np.zeros(shape, dtype))


# ------------------------------------------------------------------------------------------------ predicting
def predict(model: Union[FusionModel, PathLike], data: Any, split: Optional[str] = None, calibrated: bool = True,
            strict: bool = False, ids: Optional[Sequence[Any]] = None, columns: Optional[Mapping[str, str]] = None,
            image_base: Optional[PathLike] = None, embeddings_dir: Optional[PathLike] = None, device: str = "auto",
            batch_size: int = 32, check_extractors: bool = True, show_progress: bool = True) -> pd.DataFrame:
    """One row per record: ``id``, ``prediction`` (class names; multilabel: joined with ``|``), ``proba_<class>``
    for every class, ``missing_<modality>`` flags, and ``label`` when the input had labels.

    ``data``: a path to a CSV / TSV / parquet table of records (media paths relative to its folder, or to
    ``image_base``), a pandas DataFrame (paths relative to ``image_base`` or the current folder), a
    :class:`~utils.data.schema.MultimodalDataset` (``split`` picks rows; its cached embeddings are reused),
    :class:`~utils.embed.Embeddings`, or a dict ``{modality: [N, D]}`` with ``ids``. ``strict=True`` refuses
    records that lack a modality instead of scoring them with the stand-in. See the module docstring.
    """
    fm = as_model(model)
    vectors, frame, missing = gather_vectors(fm, data, split, strict, ids, columns, image_base, embeddings_dir, device,
                                             batch_size, check_extractors, show_progress)
    for m, rows in missing.items():
        if rows.any():
            vectors[m] = np.array(vectors[m], dtype=np.float32, copy=True)
            vectors[m][rows] = fm.stand_ins[m]
    proba = fm.predict_proba(vectors, calibrated=calibrated)
    return prediction_frame(fm, frame, proba, missing)


def predict_proba(model: Union[FusionModel, PathLike], data: Any, **options: Any) -> pd.DataFrame:
    """:func:`predict`'s probabilities alone: one column per class, indexed by record id."""
    fm = as_model(model)
    out = predict(fm, data, **options)
    return out.set_index("id")[[f"proba_{c}" for c in fm.classes]].rename(columns=lambda c: c[len("proba_"):])


def gather_vectors(fm: FusionModel, data: Any, split, strict, ids, columns, image_base, embeddings_dir, device,
                   batch_size, check_extractors, show_progress) -> Tuple[Dict[str, np.ndarray], pd.DataFrame, Dict[str, np.ndarray]]:
    """``(vectors per modality, a frame with id [and label], missing rows per modality)`` for any input form."""
    if isinstance(data, Embeddings) or isinstance(data, Mapping):
        return given_vectors(fm, data, ids)
    if isinstance(data, MultimodalDataset):
        ds, whole = data, True
    elif isinstance(data, pd.DataFrame):
        digest = hashlib.sha256(pd.util.hash_pandas_object(data.astype(str), index=False).values.tobytes()).hexdigest()
        ds, whole = records_dataset(fm, data, f"predict-frame-{digest[:12]}", image_base or os.getcwd(), columns,
                                    "the DataFrame"), False
    elif isinstance(data, (str, os.PathLike)):
        path = Path(data).resolve()
        where = str(path)
        tag = hashlib.sha256(where.encode()).hexdigest()[:8]
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem)[:40]
        ds, whole = records_dataset(fm, read_records(path), f"predict-{stem}-{tag}", image_base or path.parent, columns,
                                    where), False
    else:
        raise TypeError(f"predict: data must be a table path, a DataFrame, a MultimodalDataset, Embeddings or a dict of "
                        f"arrays, got {type(data).__name__}")
    rows = np.arange(len(ds)) if split is None else np.flatnonzero(ds.split_mask(split))
    if split is not None and not len(rows):
        raise DatasetError(f"{ds.spec.key}: no rows in split {split!r}")
    empty = empty_inputs(fm, ds)
    if strict:
        refuse_missing(fm, ds, {m: v[rows] for m, v in empty.items()}, rows, "empty or no file path")
    vectors = embed_records(fm, ds, whole, embeddings_dir, device, batch_size, check_extractors, show_progress)
    missing = {m: (empty[m] | ~np.isfinite(vectors[m]).all(axis=1))[rows] for m in fm.modalities}
    if strict:
        refuse_missing(fm, ds, missing, rows, "could not be read")
    frame = pd.DataFrame({"id": ds.df["id"].astype(str).to_numpy()[rows]})
    if "label" in ds.df.columns and ds.df["label"].notna().any():
        frame["label"] = ds.df["label"].to_numpy()[rows]
    return {m: v[rows] for m, v in vectors.items()}, frame, missing


def given_vectors(fm: FusionModel, data: Any, ids: Optional[Sequence[Any]]):
    if isinstance(data, Embeddings):
        vectors, rid = dict(data.vectors), data.ids
        for m in fm.modalities:
            if m in data.sources:
                check_source(fm, m, data.sources[m])
    else:
        vectors = {m: np.asarray(v) for m, v in data.items()}
        n = len(next(iter(vectors.values()))) if vectors else 0
        rid = np.asarray([str(i) for i in ids]) if ids is not None else np.asarray([f"r{i:07d}" for i in range(n)])
    absent = [m for m in fm.modalities if m not in vectors]
    if absent:
        raise ValueError(f"{fm}: no vectors for {absent}; the model reads {fm.modalities}")
    missing = {m: ~np.isfinite(np.asarray(vectors[m], np.float32)).all(axis=1) for m in fm.modalities}
    return vectors, pd.DataFrame({"id": np.asarray(rid, dtype=str)}), missing


def check_source(fm: FusionModel, modality: str, source: Mapping[str, Any]) -> None:
    """Precomputed vectors from the store: their extractor must be the model's."""
    want = fm.extractors[modality]["config"]
    have = source.get("config") or {}
    if (have.get("id"), have.get("options")) != (want.get("id"), want.get("options")):
        raise ExtractorMismatchError(f"{fm.folder or fm}: these {modality} embeddings come from {have.get('id')} "
                                     f"{have.get('options')}, but the model was trained on {want.get('id')} "
                                     f"{want.get('options')}")


def empty_inputs(fm: FusionModel, ds: MultimodalDataset) -> Dict[str, np.ndarray]:
    """Per modality, the rows with nothing to embed: an empty or whitespace text, no media path. Vectors that were
    imported (not computed from the records) are taken as given, as in training: only a missing vector counts."""
    out = {}
    for m in fm.modalities:
        given = bool(fm.extractors.get(m, {}).get("imported"))
        out[m] = np.zeros(len(ds), bool) if given or m not in ds.df.columns and m == "text" else ds.empty(m)
    return out


def refuse_missing(fm: FusionModel, ds: MultimodalDataset, missing: Mapping[str, np.ndarray], rows: np.ndarray,
                   why: str) -> None:
    for m, bad in missing.items():
        if bad.any():
            hit = rows[np.flatnonzero(bad)]
            shown = ", ".join(repr(str(ds.df["id"].iloc[r])) for r in hit[:5])
            raise DatasetError(f"{ds.spec.key}: {len(hit)} record(s) have no usable {m} ({why}): ids {shown}. strict=True "
                               "refuses them; without it they are scored with the training mean of that modality and "
                               f"flagged in missing_{m}")


def embed_records(fm: FusionModel, ds: MultimodalDataset, whole: bool, embeddings_dir, device, batch_size,
                  check_extractors: bool, show_progress: bool) -> Dict[str, np.ndarray]:
    """Embed every modality the model reads with its own extractors (checked first), through the store."""
    from ..embed import EmbedConfig, embed
    from ..store import StoreMismatchError

    ready = fm.__dict__.setdefault("_ready_extractors", {})  # built and checked once per loaded model and device
    built = {}
    for m in fm.modalities:
        key = (m, str(device), bool(check_extractors))
        if key not in ready:
            ext = build_extractor(fm, m)
            if check_extractors:
                check_extractor(fm, m, ext, device)
            ready[key] = ext
        built[m] = ready[key]
    cfg = EmbedConfig(root=None if embeddings_dir is None else str(embeddings_dir), batch_size=batch_size, device=device,
                      normalize=False, on_error="skip", show_progress=show_progress)
    out = {}
    for m, ext in built.items():
        mcfg = EmbedConfig(**{**cfg.__dict__, "normalize": bool(fm.extractors[m].get("normalized", False))})
        try:
            store = embed(ds, m, ext, mcfg)
        except StoreMismatchError:
            if whole:  # a dataset's own store: never discarded here
                raise
            log.info("%s: the records changed since they were last predicted; embedding them again", ds.spec.key)
            store = embed(ds, m, ext, mcfg, overwrite=True)
        out[m] = store.aligned(ds.df["id"], missing="nan")
    return out


def prediction_frame(fm: FusionModel, frame: pd.DataFrame, proba: np.ndarray, missing: Mapping[str, np.ndarray]) -> pd.DataFrame:
    classes = fm.classes
    P = np.stack([1 - proba, proba], axis=1) if fm.task == "binary" else np.asarray(proba)
    decided = fm.decide(proba)
    out = frame[["id"]].copy()
    if fm.task == "multilabel":
        out["prediction"] = ["|".join(classes[j] for j in np.flatnonzero(r)) for r in decided]
    else:  # multiclass: the argmax; binary: 1 (the positive class, classes[1]) at or above the threshold
        out["prediction"] = np.asarray(classes, dtype=object)[np.asarray(decided, np.int64).reshape(-1)]
    for j, c in enumerate(classes):
        out[f"proba_{c}"] = P[:, j]
    for m in fm.modalities:
        out[f"missing_{m}"] = np.asarray(missing[m], dtype=bool)
    if "label" in frame.columns:
        out["label"] = frame["label"].to_numpy()
    n_missing = {m: int(np.sum(v)) for m, v in missing.items() if np.any(v)}
    if n_missing:
        lacking = int(np.any(np.stack([np.asarray(v, bool) for v in missing.values()]), axis=0).sum())
        log.warning("%d record(s) lack a modality (%s): scored with the training mean of that modality and flagged in "
                    "missing_<modality>", lacking, ", ".join(f"{m}: {k}" for m, k in n_missing.items()))
    return out


def save_predictions(predictions: pd.DataFrame, path: PathLike) -> Path:
    """Write :func:`predict`'s output as CSV (atomically; folders created); return the path."""
    from ..io import atomic_write_bytes

    path = Path(path)
    atomic_write_bytes(path, lambda f: f.write(predictions.to_csv(index=False, float_format="%.6f").encode()))
    log.info("predictions written to %s", path)
    return path


def model_summary(model: Union[FusionModel, PathLike]) -> pd.DataFrame:
    """What a saved model is, in one small table (for notebooks and logs)."""
    from .report import ci_text

    fm = as_model(model)
    c, tm, tr = fm.config, fm.config["metrics"]["test"], fm.config["training"]
    items = [
        ("head", f"{fm.name} ({c.get('n_params', 0):,} parameters, seed {tr['seed']})"),
        ("task", f"{fm.task}: {len(fm.classes)} classes ({', '.join(fm.classes[:8])}{' ...' if len(fm.classes) > 8 else ''})"),
        *((f"{m} extractor", f"{e['spec']} ({e['dim']}-d, {e.get('precision') or 'n/a'})") for m, e in fm.extractors.items()),
        ("trained on", f"{tr['dataset']}: {tr['n_rows']['train']:,} train / {tr['n_rows']['val']:,} val / "
                       f"{tr['n_rows']['test']:,} test rows"),
        ("test macro-F1 [95% CI]", ci_text(tm.get("macro_f1"), tm.get("macro_f1_ci_low"), tm.get("macro_f1_ci_high"))),
        ("test ROC-AUC [95% CI]", ci_text(tm.get("roc_auc"), tm.get("roc_auc_ci_low"), tm.get("roc_auc_ci_high"))),
        ("temperature", f"{fm.temperature:.3f} (fitted on the validation split)"),
        ("folder", str(fm.folder)),
    ]
    return pd.DataFrame(items, columns=["", "value"]).set_index("")


def metrics_summary(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`prediction_metrics` as a small table (``no labels`` when there were none)."""
    if not metrics:
        return pd.DataFrame({"value": ["no labelled records"]}, index=["scores"])
    keys = ("n_scored", "n_with_missing_modality", "accuracy", "macro_f1", "weighted_f1", "roc_auc")
    return pd.DataFrame({"value": [f"{metrics[k]:.3f}" if isinstance(metrics[k], float) else f"{metrics[k]:,}"
                                   for k in keys if k in metrics]}, index=[k for k in keys if k in metrics])


def prediction_metrics(model: Union[FusionModel, PathLike], predictions: pd.DataFrame) -> Dict[str, Any]:
    """Test metrics of :func:`predict`'s output on the rows that carry a label (``n_scored``; empty without labels)."""
    fm = as_model(model)
    if "label" not in predictions.columns:
        return {}
    rows, y = encoded_labels(fm, predictions["label"].tolist())
    if not len(rows):
        return {}
    cols = [f"proba_{c}" for c in fm.classes]
    P = predictions[cols].to_numpy(np.float64)[rows]
    proba = P[:, 1] if fm.task == "binary" else P
    m = classification_metrics(y, proba, fm.task, fm.classes, threshold=fm.threshold)
    flags = [c for c in predictions.columns if c.startswith("missing_")]
    m["n_scored"] = int(len(rows))
    m["n_with_missing_modality"] = int(predictions.loc[rows, flags].any(axis=1).sum()) if flags else 0
    return m


# ------------------------------------------------------------------------------------------------ model card
def model_card(fm: FusionModel, row: Mapping[str, Any], report: Any = None) -> str:
    """The folder's README.md: what the model is, how it was trained and scored, how to use it, and its limits."""
    from .report import ci_text

    c = fm.config
    tr, tm = c["training"], c["metrics"]["test"]
    rep = c.get("report") or {}
    title = f"{c['head']} on {tr['dataset']}"
    lines = ["---", "library_name: mmfusion", "tags:", "- multimodal", "- fusion", f"- {c['task']}",
             *(f"- {m}" for m in c["modalities"]), "datasets:", f"- {tr['dataset_name']}", "metrics:", "- macro_f1",
             "- roc_auc", "- accuracy", "---", "", f"# {title}", ""]
    lines += [f"A small **{c['head']}** head over frozen {' + '.join(c['modalities'])} embeddings, trained with "
              f"[mmfusion](https://github.com/) to predict **{c['task']}** labels ({len(c['classes'])} classes: "
              f"{', '.join(c['classes'][:12])}{' ...' if len(c['classes']) > 12 else ''}).", ""]
    if c["task"] == "binary":
        lines += [f"Positive class: **{c['positive_class']}**; decision threshold {c['threshold']} on its probability.", ""]
    lines += ["## Data and splits", "", f"- dataset: `{tr['dataset']}` ({tr.get('description') or 'no description'})",
              f"- rows: train {tr['n_rows']['train']:,}, validation {tr['n_rows']['val']:,}, test {tr['n_rows']['test']:,}"
              + (f"; {tr['rows_without_vectors']:,} row(s) without a vector were left out" if tr["rows_without_vectors"] else ""),
              "- model selection and early stopping on the validation split; the metrics below are on the test split",
              "- input fingerprints: " + ", ".join(f"{m} `{str(f)[:16]}`" for m, f in tr["fingerprints"].items()), ""]
    lines += ["## Extractors (frozen)", "", "| modality | spec | id | options | precision | width |", "|---|---|---|---|---|---|"]
    for m, e in c["extractors"].items():
        lines.append(f"| {m} | `{e['spec']}` | `{e['config'].get('id')}` | `{json.dumps(e['options'])}` | "
                     f"{e.get('precision') or 'n/a'} | {e['dim']} |")
    lines += ["", "Each extractor's vectors for fixed probe inputs are saved with the model: a prediction with an "
              "extractor that no longer gives them (other weights or preprocessing) is refused.", ""]
    tc = tr.get("train_config") or {}
    lines += ["## Head", "", f"- `{c['head']}` with {c.get('n_params', 0):,} parameters, config `{json.dumps(c['head_config'])}`",
              f"- seed {tr['seed']}; best epoch {tr.get('best_epoch')} of {tr.get('epochs_run')} (AdamW lr {tc.get('lr')}, "
              f"batch {tc.get('batch_size')}, monitor {tc.get('monitor')}); modality dropout {tr.get('modality_dropout', 0)}",
              f"- features standardised with training statistics: {'yes' if c['standardize'] else 'no'}", ""]
    lines += ["## Test metrics (95% stratified bootstrap intervals)", "", "| metric | value |", "|---|---|",
              f"| accuracy | {_num(tm.get('accuracy'))} |",
              f"| macro-F1 | {ci_text(tm.get('macro_f1'), tm.get('macro_f1_ci_low'), tm.get('macro_f1_ci_high'))} |",
              f"| ROC-AUC | {ci_text(tm.get('roc_auc'), tm.get('roc_auc_ci_low'), tm.get('roc_auc_ci_high'))} |",
              f"| weighted F1 | {_num(tm.get('weighted_f1'))} |", f"| ECE (uncalibrated) | {_num(tm.get('ece'))} |",
              f"| Brier | {_num(tm.get('brier'))} |", ""]
    cal = (rep.get("calibration") or [{}])[0]
    lines += ["## Calibration", "", f"Probabilities are divided by a temperature of **{c['temperature']:.3f}** fitted on "
              "the validation logits (`calibrated=False` gives the raw ones; the decisions are the same)."
              + (f" Over the report's {rep.get('seeds')} seed(s) of this head, ECE {cal['ece']:.3f} before and "
                 f"{cal['ece_after']:.3f} after temperature scaling." if cal.get("ece_after") is not None else ""), ""]
    gaps = [g for g in rep.get("subgroup_gaps") or [] if g.get("metric") == "macro_f1"]
    lines += ["## Subgroups", ""]
    if gaps:
        lines += ["| column | worst group | best group | macro-F1 gap [95% CI] |", "|---|---|---|---|"]
        lines += [f"| {g['column']} | {g.get('worst_group')} | {g.get('best_group')} | "
                  f"{ci_text(g.get('gap'), g.get('ci_low'), g.get('ci_high'))} |" for g in gaps]
    else:
        lines.append("No subgroup columns were scored for this dataset.")
    lines.append("")
    miss = [r for r in rep.get("missing") or [] if r.get("stand_in") == "mean"]
    lines += ["## A missing modality at prediction time", "",
              "A record without a modality (an empty text, an unreadable image) is scored with that modality's training "
              "mean and flagged in `missing_<modality>`; `strict=True` refuses it instead."]
    if miss:
        lines += ["What that costs, measured on the test split:", "", "| modality removed | macro-F1 with it | without | drop [95% CI] |",
                  "|---|---|---|---|"]
        lines += [f"| {r['modality']} | {_num(r.get('macro_f1_full'))} | {_num(r.get('macro_f1_without'))} | "
                  f"{ci_text(r.get('macro_f1_drop'), r.get('macro_f1_drop_ci_low'), r.get('macro_f1_drop_ci_high'), signed=True)} |"
                  for r in miss]
    lines.append("")
    lines += ["## How to use", "", "```python", "from utils import experiment as ex",
              "model = ex.load_model('path/to/this/folder')", "preds = ex.predict(model, 'new_records.csv')   "
              "# id, prediction, proba_<class>, missing_<modality>", "```", "", "```bash",
              "python -m utils predict --model path/to/this/folder --table new_records.csv --output predictions.csv", "```", "",
              f"A table needs the columns {', '.join(repr(tr['columns'].get(m) or MODALITY_COLUMNS[m]) for m in c['modalities'])}"
              f" (and optionally {tr['columns'].get('id', 'id')!r}, {tr['columns'].get('label', 'label')!r}); image paths "
              "are relative to the table's folder.", ""]
    lines += ["## Intended use and limits", "",
              "- Research use: comparing fusion strategies and screening on data like the training data. It is not a "
              "medical device and was not validated for clinical decisions.",
              f"- It has seen {tr['n_rows']['train']:,} training records of `{tr['dataset']}`; records from other sites, "
              "devices, languages or populations may score worse than the test split says (distribution shift).",
              "- The intervals above describe the test split's sampling variation only, not other datasets.",
              "- The embeddings come from frozen general-purpose models: what they do not encode, the head cannot learn.",
              ""]
    figs = sorted((report.paths or {}).items()) if report is not None and getattr(report, "paths", None) else []
    figs = [(k, v) for k, v in figs if str(v).endswith(".png")]
    if figs:
        lines += ["## Figures", ""] + [f"![{k}](figures/{k}.png)" for k, _ in figs] + [""]
    lines += ["## Versions", "", "`" + json.dumps(c["versions"]) + "`", ""]
    return "\n".join(lines)


def _num(v: Any) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.3f}"


# ------------------------------------------------------------------------------------------------ CLI
def predict_main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m utils predict --model DIR (--dataset NAME [--split test] | --table FILE) [--output CSV]``."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m utils predict",
                                description="Predict with a saved model: one row per record (id, predicted class, "
                                            "probability per class, missing-modality flags).")
    p.add_argument("--model", required=True, help="the model folder (python -m utils prints it)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="a dataset name (utils.data.names()); scores its labels")
    src.add_argument("--table", help="a CSV / TSV / parquet table of new records (image paths relative to its folder)")
    p.add_argument("--data-dir", default=None, help="folder holding <dataset>/ (with --dataset)")
    p.add_argument("--dataset-options", default="{}", help="JSON dict of loader options (with --dataset)")
    p.add_argument("--split", default=None, help="rows of one split (with --dataset; default test)")
    p.add_argument("--columns", default="{}", help='JSON dict mapping id/text/image/label to column names')
    p.add_argument("--image-base", default=None, help="folder media paths are relative to (default: the table's folder)")
    p.add_argument("--output", default=None, help="CSV to write (default: <results dir>/predictions_<name>.csv)")
    p.add_argument("--embeddings-dir", default=None)
    p.add_argument("--results-dir", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=32, help="rows per forward pass of the extractors")
    p.add_argument("--no-calibration", action="store_true", help="raw probabilities (no temperature)")
    p.add_argument("--strict", action="store_true", help="refuse records that lack a modality")
    a = p.parse_args(argv)
    from ..config import results_dir
    from ..extractors.base import ExtractorError
    from ..store import StoreBusyError, StoreIntegrityError, StoreMismatchError, StoreSpaceError
    from .steps import load_dataset, setup_logging

    setup_logging("INFO")
    t0 = time.perf_counter()
    try:
        opts = _json(a.dataset_options, "--dataset-options")
        cols = _json(a.columns, "--columns")
        model = load_model(a.model)
        if a.dataset:
            data: Any = load_dataset(a.dataset, a.data_dir, a.embeddings_dir, **opts)
            split = a.split or "test"
            name = f"{data.spec.key}_{split}"
        else:
            data, split = a.table, None
            name = Path(a.table).stem
        preds = predict(model, data, split=split, calibrated=not a.no_calibration, strict=a.strict, columns=cols,
                        image_base=a.image_base, embeddings_dir=a.embeddings_dir, device=a.device, batch_size=a.batch_size)
        out = save_predictions(preds, Path(a.output) if a.output else results_dir(a.results_dir) / f"predictions_{name}.csv")
    except (ModelFolderError, ExtractorMismatchError, DatasetError, ExtractorError, StoreMismatchError,
            StoreIntegrityError, StoreBusyError, StoreSpaceError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    flags = [c for c in preds.columns if c.startswith("missing_")]
    flagged = int(preds[flags].any(axis=1).sum()) if flags else 0
    print(f"\n{len(preds):,} record(s) predicted with {model.name} ({model.folder}); {flagged:,} lack a modality "
          "(flagged, scored with the training mean)")
    print(preds.head(10).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    m = prediction_metrics(model, preds)
    if m:
        saved = model.config["metrics"]["test"].get("macro_f1")
        print(f"\nscored {m['n_scored']:,} labelled record(s): macro-F1 {m['macro_f1']:.4f}, accuracy {m['accuracy']:.4f}, "
              f"ROC-AUC {m['roc_auc']:.4f}" + (f" (on its own test split the model scored macro-F1 {saved:.4f})"
                                               if saved is not None else ""))
    print(f"\nsaved: {out}  ({time.perf_counter() - t0:.0f} s)")
    return 0


def _json(value: str, flag: str) -> Dict[str, Any]:
    try:
        out = json.loads(value)
    except json.JSONDecodeError as e:
        raise ValueError(f"{flag}: not valid JSON ({e.msg}): {value!r}") from None
    if not isinstance(out, dict):
        raise ValueError(f"{flag}: must be a JSON object, got {value!r}")
    return out
