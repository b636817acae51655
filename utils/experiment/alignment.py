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
