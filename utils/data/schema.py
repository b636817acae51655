"""The dataset contract: one table plus a spec, whatever the source.

Columns of ``df``:

============  =========================================================================
``id``        unique string
``text``      string, or missing (NaN/None): extractors embed missing text as ""
``image_path`` string, absolute or relative to ``spec.root`` (optional when ``spec.modalities``
              has no image)
``audio_path`` optional, like ``image_path``
``label``     a class name (binary / multiclass) or a list of class names (multilabel)
``split``     one of ``train``, ``val``, ``test``
``group``     optional: patient, lesion or place; grouped splits keep a group in one split
============  =========================================================================
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

TASKS = ("binary", "multiclass", "multilabel")
SPLITS = ("train", "val", "test")
MODALITIES = ("text", "image", "audio")
_MODALITY_COLUMN = {"text": "text", "image": "image_path", "audio": "audio_path"}


class DatasetError(ValueError):
    """A dataset file, column or row breaks the contract; the message says where and what to do."""


@dataclass
class DatasetSpec:
    """What a table means. ``classes`` is ordered; for binary tasks ``classes[1]`` is the positive class."""

    name: str
    task: str
    classes: List[str]
    root: Optional[str] = None  # image/audio paths are relative to this folder
    modalities: List[str] = field(default_factory=lambda: ["text", "image"])
    text_template: str = ""  # how the text was built (a template or a description)
    variant: str = ""  # options that change the rows (size, seed, task...): part of the cache key
    description: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DatasetError(f"spec {self.name!r}: task must be one of {TASKS}, got {self.task!r}")
        self.classes = [str(c) for c in self.classes]
        if len(set(self.classes)) != len(self.classes):
            raise DatasetError(f"spec {self.name!r}: duplicate class names in {self.classes}")
        if self.task == "binary" and len(self.classes) != 2:
            raise DatasetError(f"spec {self.name!r}: a binary task needs exactly 2 classes, got {self.classes}")
        for m in self.modalities:
            if m not in MODALITIES:
                raise DatasetError(f"spec {self.name!r}: unknown modality {m!r}; use {MODALITIES}")

    @property
    def key(self) -> str:
        """Folder-safe identity of the rows (name plus variant), used by the embedding store."""
        return f"{self.name}-{self.variant}" if self.variant else self.name

    @property
    def num_outputs(self) -> int:
        """Width of a classifier's output: 1 logit for binary, one per class otherwise."""
        return 1 if self.task == "binary" else len(self.classes)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class MultimodalDataset:
    """A validated table (``df``) with its :class:`DatasetSpec` (``spec``)."""

    def __init__(self, df: pd.DataFrame, spec: DatasetSpec, validate_rows: bool = True):
        df = df.reset_index(drop=True)
        if validate_rows:
            validate(df, spec)
        self.df = df
        self.spec = spec

    def __len__(self) -> int:
        return len(self.df)

    def __repr__(self) -> str:
        counts = self.df["split"].value_counts().reindex(list(SPLITS), fill_value=0)
        return (
            f"MultimodalDataset({self.spec.key!r}, task={self.spec.task}, classes={len(self.spec.classes)}, "
            f"rows={len(self.df)}: " + ", ".join(f"{s}={counts[s]}" for s in SPLITS) + ")"
        )

    def split_mask(self, split: str) -> np.ndarray:
        return (self.df["split"] == split).to_numpy()

    def items(self, modality: str) -> List[Any]:
        """Inputs of one modality in table order: texts (missing -> "") or absolute file paths."""
        col = _MODALITY_COLUMN[modality]
        if col not in self.df.columns:
            raise DatasetError(f"dataset {self.spec.key!r} has no {col!r} column (modality {modality!r})")
        values = self.df[col]
        if modality == "text":
            return ["" if _is_missing(v) else str(v) for v in values]
        return [None if _is_missing(v) else str(self.resolve_path(v)) for v in values]

    def resolve_path(self, path: str) -> Path:
        p = Path(path)
        if p.is_absolute() or not self.spec.root:
            return p
        return Path(self.spec.root) / p

    def labels(self) -> np.ndarray:
        """Encoded targets: ``[N]`` int64 class indices (binary, multiclass) or ``[N, C]`` float32 (multilabel)."""
        return encode_labels(self.df["label"], self.spec)

    def fingerprint(self, modality: str) -> str:
        """Hash of ids and the inputs of one modality (text content; file path and size for files)."""
        h = hashlib.sha256()
        h.update(self.spec.key.encode())
        for rid, item in zip(self.df["id"], self.items(modality)):
            h.update(str(rid).encode() + b"\x00")
            if modality == "text" or item is None:
                h.update(str(item).encode() + b"\x01")
            else:
                try:
                    size = Path(item).stat().st_size
                except OSError:
                    size = -1
                h.update(f"{Path(item).name}:{size}".encode() + b"\x01")
        return h.hexdigest()


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and np.isnan(v):
        return True
    return False


def encode_labels(labels: Sequence[Any], spec: DatasetSpec) -> np.ndarray:
    index = {c: i for i, c in enumerate(spec.classes)}
    if spec.task == "multilabel":
        y = np.zeros((len(labels), len(spec.classes)), dtype=np.float32)
        for r, lab in enumerate(labels):
            for c in as_list(lab):
                y[r, index[str(c)]] = 1.0
        return y
    return np.fromiter((index[str(v)] for v in labels), dtype=np.int64, count=len(labels))


def as_list(label: Any) -> List[Any]:
    if isinstance(label, (list, tuple, set, np.ndarray)):
        return list(label)
    if isinstance(label, str):
        # multilabel labels read back from CSV/parquet may arrive as a JSON list
        s = label.strip()
        if s.startswith("["):
            try:
                return list(json.loads(s))
            except json.JSONDecodeError:
                pass
        return [label]
    return [label]


def validate(df: pd.DataFrame, spec: DatasetSpec, max_rows_listed: int = 10) -> None:
    """Check ``df`` against the contract; raise :class:`DatasetError` naming every broken row.

    Checks: required columns, unique non-empty ids, splits in {train, val, test}, labels known to the
    spec (lists for multilabel), media path columns present for the spec's modalities, text is a string
    or missing, and a group never spans two splits.
    """
    problems: List[str] = []
    required = ["id", "label", "split"] + [_MODALITY_COLUMN[m] for m in spec.modalities]
    missing_cols = [c for c in required if c not in df.columns]
    if missing_cols:
        raise DatasetError(
            f"dataset {spec.name!r}: missing column(s) {missing_cols}; the table needs {required} "
            f"(see utils/data/schema.py)"
        )

    def report(what: str, rows: Sequence[int], fix: str) -> None:
        if len(rows):
            shown = ", ".join(str(r) for r in list(rows)[:max_rows_listed])
            more = f" (and {len(rows) - max_rows_listed} more)" if len(rows) > max_rows_listed else ""
            problems.append(f"{what} in {len(rows)} row(s): {shown}{more}. {fix}")

    ids = df["id"]
    bad_id = [i for i, v in enumerate(ids) if _is_missing(v) or str(v) == ""]
    report("empty id", bad_id, "Every row needs a unique id.")
    dup = df.index[ids.astype(str).duplicated(keep=False)].tolist()
    report("duplicate id", dup, "Ids must be unique.")

    bad_split = df.index[~df["split"].isin(SPLITS)].tolist()
    report("split not in train/val/test", bad_split, "Set split to train, val or test.")

    classes = set(spec.classes)
    bad_label: List[int] = []
    bad_label_values: List[str] = []
    for i, lab in enumerate(df["label"]):
        if spec.task == "multilabel":
            if not isinstance(lab, (list, tuple, np.ndarray)) and not (isinstance(lab, str) and lab.startswith("[")):
                bad_label.append(i)
                bad_label_values.append(repr(lab))
                continue
            unknown = [c for c in as_list(lab) if str(c) not in classes]
        else:
            unknown = [] if (not _is_missing(lab) and str(lab) in classes) else [lab]
        if unknown:
            bad_label.append(i)
            bad_label_values.append(", ".join(repr(u) for u in unknown))
    if bad_label:
        shown = "; ".join(f"row {r}: {v}" for r, v in list(zip(bad_label, bad_label_values))[:max_rows_listed])
        problems.append(
            f"label outside the spec's classes in {len(bad_label)} row(s): {shown}. "
            f"Known classes: {spec.classes[:20]}{' ...' if len(spec.classes) > 20 else ''}; "
            "fix the label or add the class to the spec"
            + ("; multilabel labels must be lists" if spec.task == "multilabel" else "")
            + "."
        )

    if "text" in df.columns:
        bad_text = [i for i, v in enumerate(df["text"]) if not (_is_missing(v) or isinstance(v, str))]
        report("text that is neither a string nor missing", bad_text, "Convert text to str (or leave it missing).")

    for m in spec.modalities:
        if m == "text":
            continue
        col = _MODALITY_COLUMN[m]
        bad = [i for i, v in enumerate(df[col]) if not (_is_missing(v) or isinstance(v, str))]
        report(f"{col} that is not a string path", bad, f"Store {col} as a path string.")

    if "group" in df.columns:
        spans = df.groupby("group")["split"].nunique()
        leaky = spans[spans > 1].index.tolist()
        if leaky:
            rows = df.index[df["group"].isin(leaky)].tolist()
            report(
                f"group in several splits ({len(leaky)} group(s), e.g. {leaky[:3]})",
                rows,
                "Split by group (utils.data.splits.grouped_split) so one patient/lesion/place stays in one split.",
            )

    if problems:
        raise DatasetError(f"dataset {spec.name!r} breaks the table contract:\n- " + "\n- ".join(problems))
