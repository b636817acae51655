"""Notebook steps for the alignment study: fit on the training split, apply everywhere, measure, train heads.

    gaps = gap_table(ds, emb)                                   # gap, pair similarity, CKA, PCA variance per split
    rows = compare_alignments(ds, emb, ["none", "shift", "centering", "procrustes", "cca"])
    rows += lambda_sweep(ds, emb, [-1, -0.5, 0, 0.5, 1], seeds=[0, 1, 2])
    table = alignment_table(rows)
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from ..data.schema import MultimodalDataset
from ..experiment import Embeddings, train_heads
from .gap import gap_report
from .posthoc import Aligner, make_aligner

log = logging.getLogger(__name__)

MethodSpec = Union[str, Tuple[str, Mapping[str, Any]]]


def _paired_rows(ds: MultimodalDataset, emb: Embeddings, a: str, b: str, split: Optional[str] = None) -> np.ndarray:
    ok = np.isfinite(emb.vectors[a]).all(1) & np.isfinite(emb.vectors[b]).all(1)
    if split is not None:
        ok &= ds.df["split"].to_numpy() == split
    return np.flatnonzero(ok)


def align_embeddings(
    ds: MultimodalDataset, emb: Embeddings, method: Union[str, Aligner] = "shift", a: str = "text", b: str = "image",
    **options: Any,
) -> Tuple[Embeddings, Aligner]:
    """Fit ``method`` on the training rows that have both ``a`` and ``b``; transform every such row.

    Rows missing either modality stay NaN (the heads leave them out). Other modalities are copied unchanged.
    Returns the new :class:`~utils.experiment.Embeddings` and the fitted aligner.
    """
    aligner = make_aligner(method, **options) if isinstance(method, str) else method
    train = _paired_rows(ds, emb, a, b, "train")
    if len(train) < 3:
        raise ValueError(f"alignment needs at least 3 training rows with both {a} and {b}, found {len(train)}")
    aligner.fit(emb.vectors[a][train], emb.vectors[b][train])
    rows = _paired_rows(ds, emb, a, b)
    ta, tb = aligner.transform(emb.vectors[a][rows], emb.vectors[b][rows])
    vectors = dict(emb.vectors)
    for m, t in ((a, ta), (b, tb)):
        out = np.full((len(ds.df), t.shape[1]), np.nan, dtype=np.float32)
        out[rows] = t
        vectors[m] = out
    desc = aligner.describe()
    extractors = {m: (f"{e} + {desc}" if m in (a, b) else e) for m, e in emb.extractors.items()}
    return Embeddings(vectors, extractors, dict(emb.stores), dict(emb.reused)), aligner


def gap_table(
    ds: MultimodalDataset, emb: Embeddings, a: str = "text", b: str = "image", splits: Sequence[str] = ("train", "val", "test"),
    components: Sequence[int] = (1, 5, 10),
) -> pd.DataFrame:
    """One line per split: gap, matched/unmatched similarity, linear CKA, PCA variance of each modality."""
    lines = []
    for s in splits:
        rows = _paired_rows(ds, emb, a, b, s)
        if len(rows) >= 2:
            lines.append({"split": s, **gap_report(emb.vectors, a, b, rows, components)})
    return pd.DataFrame(lines)


def _gaps(ds: MultimodalDataset, emb: Embeddings, a: str, b: str) -> Dict[str, float]:
    out = {}
    for s in ("train", "test"):
        rows = _paired_rows(ds, emb, a, b, s)
        r = gap_report(emb.vectors, a, b, rows, components=())
        out[f"gap_{s}"] = r["gap"]
        out[f"cka_{s}"] = r["cka"]
        out[f"matched_minus_unmatched_{s}"] = r.get("sim_difference", float("nan"))
    return out


def _method(spec: MethodSpec) -> Tuple[str, Dict[str, Any]]:
    return (spec, {}) if isinstance(spec, str) else (spec[0], dict(spec[1]))


def compare_alignments(
    ds: MultimodalDataset,
    emb: Embeddings,
    methods: Sequence[MethodSpec] = ("none", "shift", "centering", "procrustes", "cca"),
    heads: Sequence[str] = ("early_fusion", "late_fusion"),
    a: str = "text",
    b: str = "image",
    epochs: int = 50,
    batch_size: int = 64,
    seeds: Union[int, Sequence[int]] = 0,
    device: str = "auto",
    show_progress: bool = False,
    include_raw: bool = True,
    standardize: bool = False,
    **train_options: Any,
) -> List[Dict[str, Any]]:
    """For each method: fit on train, gap before/after (train and test splits), fusion heads before/after.

    "Before" is the raw embeddings (method ``"raw"`` rows: heads on the unaligned vectors). Each returned
    row is a :func:`~utils.experiment.train_heads` row plus ``alignment``, ``lambda``, ``gap_before_*``,
    ``gap_after_*``, ``cka_*`` fields.

    Heads train without per-feature standardisation by default (``standardize=False``, for every method and
    the raw rows alike): standardising each coordinate is not rotation-invariant, so after a PCA map or a
    rotation it blows low-variance directions up to unit scale and confounds the comparison.
    """
    rows: List[Dict[str, Any]] = []
    before = _gaps(ds, emb, a, b) if emb.vectors[a].shape[1] == emb.vectors[b].shape[1] else None
    if before is None:  # different dims: the "before" gap is measured after the common-dim map alone
        base, _ = align_embeddings(ds, emb, "shift", a, b, lam=0.0)
        before = _gaps(ds, base, a, b)
    raw_rows = [] if not include_raw else train_heads(ds, emb, heads, epochs=epochs, batch_size=batch_size, seeds=seeds, device=device,
                           show_progress=show_progress, standardize=standardize, **train_options)
    for r in raw_rows:
        r.update(alignment="raw", method="raw", **{f"{k}_before": v for k, v in before.items()},
                 **{f"{k}_after": v for k, v in before.items()})
    rows += raw_rows
    for spec in methods:
        name, opts = _method(spec)
        aligned, aligner = align_embeddings(ds, emb, name, a, b, **opts)
        after = _gaps(ds, aligned, a, b)
        log.info("%s: gap train %.3f -> %.3f, test %.3f -> %.3f", aligner.describe(), before["gap_train"],
                 after["gap_train"], before["gap_test"], after["gap_test"])
        new = train_heads(ds, aligned, heads, epochs=epochs, batch_size=batch_size, seeds=seeds, device=device,
                          show_progress=show_progress, standardize=standardize, **train_options)
        for r in new:
            r.update(alignment=aligner.describe(), method=name, **{f"{k}_before": v for k, v in before.items()},
                     **{f"{k}_after": v for k, v in after.items()})
            if name == "shift":
                r["lambda"] = aligner.lam  # type: ignore[attr-defined]
        rows += new
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
    """The centroid shift at each ``lambda`` (fitted on train), heads trained with each seed."""
    return compare_alignments(
        ds, emb, [("shift", {"lam": float(l), "common": common}) for l in lambdas], heads, a, b, seeds=seeds,
        include_raw=False, **train_options,
    )


def alignment_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Mean (and std over seeds) per (alignment, model): gap before/after and test scores."""
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
    return out.reset_index()


def pairwise_gap_table(vectors: Mapping[str, np.ndarray], rows: Optional[np.ndarray] = None) -> pd.DataFrame:
    """Gap, matched-minus-unmatched similarity and CKA for every pair of modalities sharing one dimension."""
    import itertools

    lines = []
    for a, b in itertools.combinations(list(vectors), 2):
        r = gap_report(dict(vectors), a, b, rows, components=())
        lines.append({"pair": f"{a}-{b}", "n": r["n"], "gap": r["gap"], "matched": r.get("sim_matched", np.nan),
                      "unmatched": r.get("sim_unmatched", np.nan), "cka": r["cka"]})
    return pd.DataFrame(lines)


def save_alignment_results(rows: Sequence[Mapping[str, Any]], json_path) -> "Path":
    """Write the rows as JSON (a list) and :func:`alignment_table` as CSV beside it."""
    import json
    from pathlib import Path

    from ..experiment import _clean_nan, _json_default

    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(_clean_nan(list(rows)), indent=1, default=_json_default))
    alignment_table(rows).to_csv(json_path.with_suffix(".csv"), index=False, float_format="%.4f")
    log.info("alignment results written to %s", json_path)
    return json_path
