"""The alignment study: fit on the training split, apply everywhere, measure the gap, train heads.

    gaps = gap_table(ds, emb)                                   # gap, pair similarity, CKA, PCA variance per split
    rows = compare_alignments(ds, emb, ["none", "shift", "centering", "procrustes", "cca"])
    rows += lambda_sweep(ds, emb, [-1, -0.5, 0, 0.5, 1], seeds=[0, 1, 2])
    table = alignment_table(rows)                               # gain_vs_none: each method against the control

A fair comparison: every method's vectors are L2-normalised (and brought to one width where the widths
differ), so the control is ``none`` -- the same preprocessing with no alignment -- and each method's gain is
measured against it (``gain_vs_none``). The heads on the raw, unnormalised vectors (``raw``) are kept as a
reference only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from ..align.gap import gap_report
from ..align.posthoc import Aligner, make_aligner
from ..config import merge_config
from ..data.schema import MultimodalDataset
from ..embed import Embeddings
from ..features import split_rows, stack, usable_rows
from ..io import write_rows
from .steps import train_heads

log = logging.getLogger(__name__)

MethodSpec = Union[str, Tuple[str, Mapping[str, Any]]]
DEFAULT_METHODS = ("none", "shift", "centering", "procrustes", "cca")


@dataclass
class AlignmentConfig:
    a: str = "text"  # first modality of the pair
    b: str = "image"  # second modality
    epochs: int = 50  # head training: upper bound, early stopping on validation
    batch_size: int = 64  # head training batch size
    seeds: Any = 0  # one seed or a list; mean and std over seeds in alignment_table
    device: str = "auto"
    show_progress: bool = False
    include_raw: bool = True  # also train heads on the raw (unnormalised) vectors, as a reference
    control: bool = True  # run the "none" control (same preprocessing, no alignment) when methods lack it
    standardize: bool = False  # per-feature standardisation before the heads (off: it is not rotation-invariant)
    common: str = "pca"  # map to one width when the widths differ ("pca" or "lstsq"), for the control too
    train: Optional[Dict[str, Any]] = None  # more TrainConfig options (lr, patience, monitor, ...)


def paired_rows(ds: MultimodalDataset, emb: Embeddings, a: str, b: str, split: Optional[str] = None) -> np.ndarray:
    """Rows with a vector in both ``a`` and ``b`` (in ``split`` when given); ``emb`` in ``ds``'s row order."""
    ok = usable_rows(stack(emb.vectors, [a, b]))
    return np.flatnonzero(ok) if split is None else split_rows(ds.df["split"].to_numpy(), ok, [split])[split]


def align_embeddings(
    ds: MultimodalDataset, emb: Embeddings, method: Union[str, Aligner] = "shift", a: str = "text", b: str = "image",
    **options: Any,
) -> Tuple[Embeddings, Aligner]:
    """Fit ``method`` on the training rows that have both ``a`` and ``b``; transform every such row.

    Rows missing either modality stay NaN (the heads leave them out). Other modalities are copied unchanged.
    Returns the new :class:`~utils.embed.Embeddings` and the fitted aligner.
    """
    emb = emb.for_dataset(ds)
    aligner = make_aligner(method, **options) if isinstance(method, str) else method
    train = paired_rows(ds, emb, a, b, "train")
    if len(train) < 3:
        raise ValueError(f"alignment needs at least 3 training rows with both {a} and {b}, found {len(train)}")
    aligner.fit(emb.vectors[a][train], emb.vectors[b][train])
    rows = paired_rows(ds, emb, a, b)
    ta, tb = aligner.transform(emb.vectors[a][rows], emb.vectors[b][rows])
    vectors = dict(emb.vectors)
    for m, t in ((a, ta), (b, tb)):
        out = np.full((len(ds.df), t.shape[1]), np.nan, dtype=np.float32)
        out[rows] = t
        vectors[m] = out
    desc = aligner.describe()
    extractors = {m: (f"{e} + {desc}" if m in (a, b) else e) for m, e in emb.extractors.items()}
    return Embeddings(vectors, extractors, dict(emb.stores), dict(emb.reused), ids=emb.ids), aligner


def gap_table(
    ds: MultimodalDataset, emb: Embeddings, a: str = "text", b: str = "image", splits: Sequence[str] = ("train", "val", "test"),
    components: Sequence[int] = (1, 5, 10),
) -> pd.DataFrame:
    """One line per split: gap, matched/unmatched similarity, linear CKA, PCA variance of each modality."""
    emb = emb.for_dataset(ds)
    lines = []
    for s in splits:
        rows = paired_rows(ds, emb, a, b, s)
        if len(rows) >= 2:
            lines.append({"split": s, **gap_report(emb.vectors, a, b, rows, components)})
    return pd.DataFrame(lines)


def gaps(ds: MultimodalDataset, emb: Embeddings, a: str, b: str) -> Dict[str, float]:
    emb = emb.for_dataset(ds)
    out = {}
    for s in ("train", "test"):
        r = gap_report(emb.vectors, a, b, paired_rows(ds, emb, a, b, s), components=())
        out[f"gap_{s}"] = r.get("gap", float("nan"))
        out[f"cka_{s}"] = r["cka"]
        out[f"matched_minus_unmatched_{s}"] = r.get("sim_difference", float("nan"))
    return out


def method_spec(spec: MethodSpec) -> Tuple[str, Dict[str, Any]]:
    return (spec, {}) if isinstance(spec, str) else (spec[0], dict(spec[1]))


def compare_alignments(
    ds: MultimodalDataset,
    emb: Embeddings,
    methods: Sequence[MethodSpec] = DEFAULT_METHODS,
    heads: Sequence[str] = ("early_fusion", "late_fusion"),
    config: Optional[AlignmentConfig] = None,
    **options: Any,
) -> List[Dict[str, Any]]:
    """For each method: fit on train, gap before/after (train and test splits), fusion heads after.

    ``config`` / ``options``: :class:`AlignmentConfig` fields (``epochs``, ``batch_size``, ``seeds``, ``device``,
    ``include_raw``, ``standardize``, ``common``, ...); other keyword options are passed to the head trainer
    (``lr``, ``patience``, ...). The control ``none`` (L2 normalisation, and the common-width map when widths
    differ) is always run, first. Each row is a :func:`~utils.experiment.steps.train_heads` row plus
    ``alignment``, ``method``, ``lambda``, ``gap_*_before``, ``gap_*_after``, ``cka_*`` fields.
    """
    emb = emb.for_dataset(ds)
    fields = set(AlignmentConfig.__dataclass_fields__)
    cfg = merge_config(AlignmentConfig, config, {k: v for k, v in options.items() if k in fields}, "compare_alignments")
    train_options = {**(cfg.train or {}), **{k: v for k, v in options.items() if k not in fields}}
    a, b = cfg.a, cfg.b
    specs = [method_spec(s) for s in methods]
    if cfg.control and not any(name == "none" for name, _ in specs):
        specs.insert(0, ("none", {}))

    from ..train import TrainConfig

    head_options = {k: train_options.pop(k) for k in ("modality_dropout",) if k in train_options}
    train_config = merge_config(TrainConfig, None, {"epochs": cfg.epochs, "batch_size": cfg.batch_size,
                                                    "device": cfg.device, **train_options}, "compare_alignments")

    def heads_on(e: Embeddings) -> List[Dict[str, Any]]:  # every method's heads: the same config, made once
        return train_heads(ds, e, heads, train_config, seeds=cfg.seeds, show_progress=cfg.show_progress,
                           standardize=cfg.standardize, **head_options)

    rows: List[Dict[str, Any]] = []
    base, _ = align_embeddings(ds, emb, "none", a, b, common=cfg.common)
    before = gaps(ds, base, a, b)  # the gap of the normalised vectors (at one width when the widths differ)
    if cfg.include_raw:
        for r in heads_on(emb):
            r.update(alignment="raw (unnormalised)", method="raw", **{f"{k}_before": v for k, v in before.items()},
                     **{f"{k}_after": v for k, v in before.items()})
            rows.append(r)
    for name, opts in specs:
        if name in ("shift", "procrustes", "none"):
            opts = {"common": cfg.common, **opts}
        aligned, aligner = align_embeddings(ds, emb, name, a, b, **opts)
        after = gaps(ds, aligned, a, b)
        log.info("%s: gap train %.3f -> %.3f, test %.3f -> %.3f", aligner.describe(), before["gap_train"],
                 after["gap_train"], before["gap_test"], after["gap_test"])
        for r in heads_on(aligned):
            r.update(alignment=aligner.describe(), method=name, **{f"{k}_before": v for k, v in before.items()},
                     **{f"{k}_after": v for k, v in after.items()})
            if name == "shift":
                r["lambda"] = aligner.lam  # type: ignore[attr-defined]
            rows.append(r)
    return rows


def lambda_sweep(
    ds: MultimodalDataset,
    emb: Embeddings,
    lambdas: Sequence[float] = (-1.0, -0.5, 0.0, 0.5, 1.0),
    heads: Sequence[str] = ("early_fusion", "late_fusion"),
    seeds: Union[int, Sequence[int]] = (0, 1, 2),
    a: str = "text",
    b: str = "image",
    common: str = "pca",
    **train_options: Any,
) -> List[Dict[str, Any]]:
    """The centroid shift at each ``lambda`` (fitted on train), heads trained with each seed.

    ``lambda = 0`` is the normalised control; no raw rows."""
    return compare_alignments(
        ds, emb, [("shift", {"lam": float(lam), "common": common}) for lam in lambdas], heads,
        a=a, b=b, seeds=seeds, include_raw=False, control=False, common=common, **train_options,
    )


def alignment_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Mean (and std over seeds) per (alignment, model): gap before/after, test scores, and the gain in
    macro-F1 over the ``none`` control of the same head (``gain_vs_none``; NaN when no control was run)."""
    keep = ["alignment", "method", "lambda", "model", "seed", "gap_train_before", "gap_train_after", "gap_test_before",
            "gap_test_after", "accuracy", "macro_f1", "roc_auc"]
    df = pd.DataFrame([{k: r.get(k, np.nan) for k in keep} for r in rows])
    if df.empty:
        return df
    df["lambda"] = df["lambda"].astype(float)
    g = df.groupby(["alignment", "model"], sort=False, dropna=False)
    out = g[["lambda", "gap_train_before", "gap_train_after", "gap_test_before", "gap_test_after",
             "accuracy", "macro_f1", "roc_auc"]].mean()
    std = g[["accuracy", "macro_f1", "roc_auc"]].std().add_suffix("_std")
    out = out.join(std)
    out["seeds"] = g.size()
    out = out.reset_index()
    methods = df.groupby(["alignment", "model"], sort=False, dropna=False)["method"].first().reset_index()
    out = out.merge(methods, on=["alignment", "model"], how="left")
    control = out[out["method"] == "none"].groupby("model")["macro_f1"].first()
    out["gain_vs_none"] = out["macro_f1"] - out["model"].map(control)
    return out


def save_alignment_results(rows: Sequence[Mapping[str, Any]], json_path) -> Path:
    """Write the rows as JSON (a list) and :func:`alignment_table` as CSV beside it."""
    return write_rows(rows, json_path, alignment_table(rows))


def content_report(ds: MultimodalDataset, emb: Embeddings) -> pd.DataFrame:
    """Per modality: rows with a vector, distinct contents, and whether the modality is class-level (one content
    per class, e.g. ESC-50's per-class texts and images). A class-level modality encodes the label: contrastive
    training masks its duplicates out of the negatives, and fusion scores with it are not a fair measure."""
    from ..align.contrastive import content_keys

    labels = ds.df["label"].astype(str).to_numpy()
    lines = []
    for m, v in emb.for_dataset(ds).vectors.items():
        ok = np.isfinite(v).all(1)
        keys = content_keys(np.asarray(v[ok], dtype=np.float32)) if ok.any() else np.zeros(0, np.int64)
        per_class = pd.DataFrame({"label": labels[ok], "key": keys}).groupby("label")["key"].nunique()
        distinct = int(len(np.unique(keys)))
        class_level = bool(len(per_class) and (per_class <= 1).all() and distinct <= len(per_class))
        lines.append({"modality": m, "rows": int(ok.sum()), "distinct": distinct, "class_level": class_level})
        if class_level:
            log.warning("%s: the %s modality is class-level (%d distinct contents for %d classes): it encodes the label",
                        ds.spec.key, m, distinct, len(per_class))
    return pd.DataFrame(lines)


# ------------------------------------------------------------------ the steps of the Alignment/ notebooks
# Each notebook cell is one call: the row selections (a split, rows with both modalities), label and id lookups
# and the bookkeeping of derived embeddings live here, where they are tested.


def split_indices(ds: MultimodalDataset, split: str) -> np.ndarray:
    """``[n]`` row indices of ``split`` in table order (every row of it, with or without vectors)."""
    return np.flatnonzero(ds.split_mask(split))


def label_names(ds: MultimodalDataset) -> np.ndarray:
    """``[N]`` the label of each row as a string (what figures colour by and retrieval compares)."""
    return ds.df["label"].astype(str).to_numpy()


def pair_vectors(emb: Embeddings, a: str = "text", b: str = "image") -> Dict[str, np.ndarray]:
    """``{a: [N, D], b: [N, D]}``: the two modalities a joint figure or a search space holds (others left out)."""
    missing = [m for m in (a, b) if m not in emb.vectors]
    if missing:
        raise KeyError(f"no vectors for modality {missing}; the embeddings hold {emb.modalities}")
    return {a: emb.vectors[a], b: emb.vectors[b]}


def plot_before_after(ds: MultimodalDataset, before: Embeddings, after: Embeddings, method: str = "umap",
                      path: Optional[Union[str, Path]] = None, a: str = "text", b: str = "image", seed: int = 0):
    """Joint 2-D maps of ``a`` and ``b`` before and after an alignment (rows: before / after; columns: coloured
    by class / by modality); rows missing a vector are left out. Returns the figure (saved when ``path``)."""
    from ..viz import umap_before_after

    before, after = before.for_dataset(ds), after.for_dataset(ds)
    return umap_before_after(pair_vectors(before, a, b), pair_vectors(after, a, b), label_names(ds), method,
                             path=path, seed=seed)


def plot_gap_shift(ds: MultimodalDataset, emb: Embeddings, shift: Aligner, dims: Sequence[int] = (2, 3),
                   lambdas: Sequence[float] = (-1.0, 0.0, 1.0), path: Optional[Union[str, Path]] = None,
                   a: str = "text", b: str = "image") -> List[Any]:
    """The centroid shift of ``shift`` (a fitted :class:`~utils.align.posthoc.CentroidShift`) drawn on the training
    rows that have both ``a`` and ``b`` in ``emb`` (the normalised vectors before alignment), one figure per
    entry of ``dims`` (2 or 3). ``path`` ``.../name.png`` saves ``.../name_2d.png``, ``.../name_3d.png``."""
    from ..viz import gap_shift_plot

    emb = emb.for_dataset(ds)
    train = paired_rows(ds, emb, a, b, "train")
    gap_vector = getattr(shift, "gap_vector", None)
    figs = []
    for d in dims:
        out = None if path is None else Path(path).with_name(f"{Path(path).stem}_{d}d{Path(path).suffix or '.png'}")
        figs.append(gap_shift_plot(emb.vectors[a][train], emb.vectors[b][train], lambdas, dims=d, names=(a, b),
                                   gap_vector=gap_vector, path=out))
    return figs


def with_synthetic_modality(ds: MultimodalDataset, emb: Embeddings, name: Optional[str], dim: int = 64,
                            noise: float = 1.0, seed: int = 0) -> Embeddings:
    """``emb`` plus a stand-in modality ``name`` built from the labels (:func:`utils.align.synthetic_modality`:
    a fixed prototype per class plus Gaussian noise), or ``emb`` unchanged when ``name`` is empty. It is not
    audio: it lets the three-modality code run on datasets without a third input."""
    from ..align.unified import synthetic_modality

    emb = emb.for_dataset(ds)
    if not name:
        return emb
    if name in emb.vectors:
        raise ValueError(f"the embeddings already have a modality {name!r}; name the stand-in otherwise")
    vectors = {**emb.vectors, name: synthetic_modality(ds.labels(), dim, noise, seed=seed)}
    extractors = {**emb.extractors, name: f"synthetic: class prototype + noise {noise:g}"}
    return Embeddings(vectors, extractors, dict(emb.stores), dict(emb.reused), ids=emb.ids, sources=dict(emb.sources))


def unified_space(ds: MultimodalDataset, emb: Embeddings, config: Any = None, show_progress: bool = False):
    """Learn the shared space (:func:`utils.align.fit_unified`: trained on the ``train`` rows, stopped on ``val``)
    and project every modality into it. Returns ``(result, unified)``: the fitted
    :class:`~utils.align.unified.UnifiedResult` and :class:`Embeddings` ``{m: [N, dim]}`` (NaN where a row had
    no input), each described as ``"<extractor> -> unified <dim>-d"``."""
    from ..align.unified import UnifiedConfig, fit_unified, project

    emb = emb.for_dataset(ds)
    config = config or UnifiedConfig()
    result = fit_unified(emb.vectors, ds.df["split"].to_numpy(), config, show_progress=show_progress)
    z = project(result, emb.vectors)
    extractors = {m: f"{emb.extractors.get(m, m)} -> unified {config.dim}-d" for m in z}
    return result, Embeddings(z, extractors, ids=emb.ids)


def pairwise_gaps(ds: MultimodalDataset, emb: Embeddings, split: str = "test") -> pd.DataFrame:
    """Gap, matched / unmatched similarity and CKA of every pair of modalities on the rows of ``split``."""
    from ..align.gap import pairwise_gap_table

    emb = emb.for_dataset(ds)
    return pairwise_gap_table(dict(emb.vectors), split_indices(ds, split))


def train_heads_per_space(ds: MultimodalDataset, spaces: Mapping[str, Embeddings], heads: Sequence[str],
                          **options: Any) -> List[Dict[str, Any]]:
    """:func:`~utils.experiment.steps.train_heads` on each space (name -> embeddings), one list of rows. The first
    space is the reference: its rows keep the head's name; the others' models are named ``<head>+<space>``.
    Every row says its ``space``. ``options``: train_heads options (``epochs``, ``batch_size``, ``seeds``, ...)."""
    if not spaces:
        raise ValueError("train_heads_per_space needs at least one space (name -> Embeddings)")
    rows: List[Dict[str, Any]] = []
    for i, (name, emb) in enumerate(spaces.items()):
        for r in train_heads(ds, emb, heads, **options):
            if i:
                r["model"] = f"{r['model']}+{name}"
            r["space"] = name
            rows.append(r)
    return rows


def retrieval_spaces(ds: MultimodalDataset, emb: Embeddings, common: str = "pca", unified: Any = None,
                     a: str = "text", b: str = "image") -> Dict[str, Dict[str, np.ndarray]]:
    """Three spaces to search, all fitted on the training split: ``common`` (each modality L2-normalised and
    mapped to one width, no alignment), ``shift`` (the centroid shift with lambda = 1) and ``unified`` (the
    contrastive projections, :class:`~utils.align.unified.UnifiedConfig` ``unified``). name -> ``{a, b}``."""
    emb = emb.for_dataset(ds)
    base, _ = align_embeddings(ds, emb, "none", a, b, common=common)
    shifted, _ = align_embeddings(ds, emb, "shift", a, b, lam=1.0, common=common)
    _, projected = unified_space(ds, emb, unified)
    return {"common": pair_vectors(base, a, b), "shift": pair_vectors(shifted, a, b),
            "unified": pair_vectors(projected, a, b)}


def retrieval_table(ds: MultimodalDataset, spaces: Mapping[str, Mapping[str, np.ndarray]], split: str = "test",
                    ks: Sequence[int] = (1, 5, 10), **index_options: Any) -> pd.DataFrame:
    """:func:`utils.retrieval.compare_spaces` with the rows of ``split`` as queries and every record as the
    collection: pair Recall@k (the same record), class Recall@1 and mAP, per space and (query, target) pair."""
    from ..retrieval import compare_spaces

    return compare_spaces(spaces, ds.df["id"].to_numpy(), label_names(ds), split_indices(ds, split), ks,
                          **index_options)


def collection(ds: MultimodalDataset, vectors: Mapping[str, np.ndarray], **index_options: Any):
    """A :class:`utils.retrieval.Collection` (one index per modality and one over all) of ``ds``'s records."""
    from ..retrieval import Collection

    return Collection.build(vectors, ds.df["id"].to_numpy(), **index_options)


def class_map(ds: MultimodalDataset, vectors: Mapping[str, np.ndarray], query: str = "text", target: str = "image",
              split: str = "test", k: int = 10, coll: Any = None, **index_options: Any) -> pd.DataFrame:
    """mAP@k per class of ``query`` -> ``target`` search (relevant: a record of the query's class): the rows of
    ``split`` that have a ``query`` vector are the queries; ``coll`` (default: built here) the collection. One
    line per class plus ``all`` (:func:`utils.retrieval.map_by_class`); padded slots count as misses."""
    from ..retrieval import map_by_class

    coll = coll if coll is not None else collection(ds, vectors, **index_options)
    labels = label_names(ds)
    label_of = dict(zip(ds.df["id"].astype(str).tolist(), labels.tolist()))
    rows = split_indices(ds, split)
    q = np.asarray(vectors[query])[rows]
    ok = np.isfinite(q).all(1)
    _, hit_ids, _ = coll.search(q[ok], k, target=target)
    hit_labels = np.vectorize(label_of.get, otypes=[object])(hit_ids)  # a padded slot (None) has no label
    target_labels = [label_of[i] for i in np.asarray(coll.indexes[target].ids).astype(str).tolist()]
    return map_by_class(labels[rows][ok], hit_labels, target_labels)


def hit_shares(ds: MultimodalDataset, vectors: Mapping[str, np.ndarray], query: str = "text", split: str = "test",
               ks: Sequence[int] = (1, 5, 10, 20, 50), **index_options: Any) -> pd.DataFrame:
    """Share of each modality among the top-k hits of the ``query`` vectors of ``split``'s rows, searched over
    every modality of every record (the query's own vector left out): does one modality crowd the others out?"""
    from ..retrieval import hit_share

    return hit_share(vectors, ds.df["id"].to_numpy(), query, split_indices(ds, split), ks, **index_options)
