"""The dataset contract: one table plus a spec, whatever the source.

Columns of ``df``:

============  =========================================================================
``id``        unique string
``text``      string, or missing (NaN/None): extractors embed missing text as ""
``image_path`` string, relative to ``spec.root`` (optional when ``spec.modalities`` has no image).
              A path that is absolute or leads outside the root is refused unless
              ``spec.absolute_paths`` is True (``load(..., allow_absolute_paths=True)``); a spec
              without a root takes paths as they are.
``audio_path`` optional, like ``image_path``
``label``     a class name (binary / multiclass) or a list of class names (multilabel)
``split``     one of ``train``, ``val``, ``test``
``group``     optional: patient, lesion or place; grouped splits keep a group in one split
============  =========================================================================

The input fingerprint (what the embedding store compares before reusing vectors) covers the ids and,
per modality, the texts, or each file's path, size and modification time (``mode="stat"``) or a hash
of its bytes (``mode="content"``, which survives copying the dataset elsewhere). File facts come from
:mod:`utils.data.media`: checked once and cached.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

TASKS = ("binary", "multiclass", "multilabel")
SPLITS = ("train", "val", "test")
MODALITIES = ("text", "image", "audio")
_MODALITY_COLUMN = {"text": "text", "image": "image_path", "audio": "audio_path"}
FINGERPRINT_MODES = ("stat", "content")


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
    absolute_paths: bool = False  # media paths may be absolute or lead outside root (off: such rows are refused)

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
    """A validated table (``df``) with its :class:`DatasetSpec` (``spec``).

    ``media_check`` says how cached file facts are re-checked (see :mod:`utils.data.media`);
    ``embeddings_dir`` is the embeddings folder whose ``.media-cache`` caches them (None: the default one).
    """

    def __init__(self, df: pd.DataFrame, spec: DatasetSpec, validate_rows: bool = True, media_check: str = "auto",
                 embeddings_dir: Optional[str] = None):
        df = df.reset_index(drop=True)
        if validate_rows:
            validate(df, spec)
        self.df = df
        self.spec = spec
        self.media_check = media_check
        self.embeddings_dir = embeddings_dir
        self._media: Dict[Tuple[str, bool], Any] = {}  # (modality, content) -> MediaStats, filled on first use

    def __len__(self) -> int:
        return len(self.df)

    def __repr__(self) -> str:
        counts = self.df["split"].value_counts().reindex(list(SPLITS), fill_value=0)
        return (
            f"MultimodalDataset({self.spec.key!r}, task={self.spec.task}, classes={len(self.spec.classes)}, "
            f"rows={len(self.df)}: " + ", ".join(f"{s}={counts[s]}" for s in SPLITS) + ")"
        )

    def take(self, rows: Sequence[int]) -> "MultimodalDataset":
        """The dataset restricted to ``rows`` (positions), keeping the file facts already gathered."""
        rows = np.asarray(rows, dtype=np.int64)
        out = MultimodalDataset(self.df.iloc[rows].reset_index(drop=True), self.spec, validate_rows=False,
                                media_check=self.media_check, embeddings_dir=self.embeddings_dir)
        out._media = {key: stats.subset(rows) for key, stats in self._media.items()}
        return out

    def split_mask(self, split: str) -> np.ndarray:
        return (self.df["split"] == split).to_numpy()

    def _column(self, modality: str) -> List[Any]:
        col = _MODALITY_COLUMN[modality]
        if col not in self.df.columns:
            raise DatasetError(f"dataset {self.spec.key!r} has no {col!r} column (modality {modality!r})")
        return self.df[col].tolist()

    def empty(self, modality: str) -> np.ndarray:
        """``[N]`` bool: rows with nothing to embed in ``modality``: a missing or blank text (whitespace or NUL bytes
        only), no media path.

        Heads treat such a row's vector as missing (the modality's training mean stands in for it, in training,
        scoring and prediction alike); a media file that exists but cannot be read shows up in the store instead."""
        values = pd.Series(self._column(modality), dtype=object)
        text = values.astype(str)
        if modality == "text" and text.str.contains("\x00", regex=False).any():
            text = text.str.replace("\x00", "", regex=False)  # NUL bytes alone are no text (tokenizers drop them)
        return (values.isna() | (text.str.strip() == "")).to_numpy()

    def items(self, modality: str) -> List[Any]:
        """Inputs of one modality in table order: texts (missing -> "") or absolute file paths (missing -> None).

        Media paths resolve inside ``spec.root``; rows whose path is absolute or leads outside it raise
        :class:`DatasetError` (unless ``spec.absolute_paths``).
        """
        if modality == "text":
            return ["" if _is_missing(v) else str(v) for v in self._column("text")]
        paths, bad = resolve_media(self._column(modality), self.spec.root, self.spec.absolute_paths)
        if bad:
            col = _MODALITY_COLUMN[modality]
            raise DatasetError(outside_root_message(self, col, bad))
        return paths

    def resolve_path(self, path: str) -> Path:
        p = Path(path)
        if p.is_absolute() or not self.spec.root:
            return p
        return Path(self.spec.root) / p

    def labels(self) -> np.ndarray:
        """Encoded targets: ``[N]`` int64 class indices (binary, multiclass) or ``[N, C]`` float32 (multilabel)."""
        return encode_labels(self.df["label"], self.spec)

    def media_stats(self, modality: str, content: bool = False):
        """Existence, size and time (and with ``content`` a hash) of each file of ``modality``: a
        :class:`~utils.data.media.MediaStats`, computed once per dataset object and cached on disk."""
        from .media import media_stats, table_key

        got = self._media.get((modality, content)) or (self._media.get((modality, True)) if not content else None)
        if got is None:
            col = pd.Series(self._column(modality), dtype=object)
            values = [None if m else v for v, m in zip(col.astype(str).tolist(), col.isna().tolist())]
            key = table_key(os.path.abspath(self.spec.root) if self.spec.root else None, modality, values)
            got = media_stats(self.items(modality), key, self.media_check, content=content, embeddings=self.embeddings_dir)
            self.refuse_escaping_links(modality, got)
            self._media[(modality, content)] = got
        return got

    def refuse_escaping_links(self, modality: str, stats: Any) -> None:
        """Raise :class:`DatasetError` naming the rows whose file leads outside ``spec.root`` through a symbolic
        link (the file, or a folder on its way, links elsewhere), unless ``spec.absolute_paths``: a table, or a
        link planted in the data folder, must not make the framework read files outside it."""
        from .media import links_outside

        if not self.spec.root or self.spec.absolute_paths or stats.link is None:
            return
        bad = links_outside(stats.paths, stats.link, self.spec.root)
        if bad:
            col = _MODALITY_COLUMN[modality]
            shown = "; ".join(f"row {r} (id {self.df['id'].iloc[r]!r}): {stats.paths[r]} -> {os.path.realpath(stats.paths[r])}"
                              for r in bad[:5])
            more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
            raise DatasetError(
                f"dataset {self.spec.key!r}: {len(bad)} {col} file(s) lead outside the dataset root {self.spec.root} "
                f"through a symbolic link: {shown}{more}. Copy the files into the root, or pass "
                "allow_absolute_paths=True to utils.data.load (spec.absolute_paths=True) if the link is meant to "
                "point elsewhere.")

    def fingerprint(self, modality: str, mode: str = "stat") -> str:
        """Hash of the ids and the inputs of one modality: texts; for files their path (as in the table), size
        and modification time (``mode="stat"``) or a hash of their bytes (``mode="content"``)."""
        if modality == "text":
            return self._text_fingerprint()
        if mode not in FINGERPRINT_MODES:
            raise ValueError(f"fingerprint mode must be one of {FINGERPRINT_MODES}, got {mode!r}")
        stats = self.media_stats(modality, content=mode == "content")
        h = _media_hash(mode, self.spec.key, self.df["id"].astype(str).tolist(), self._column(modality))
        if mode == "content":
            h.update("\0".join(stats.content or []).encode())
        else:
            h.update(stats.size.tobytes())
            h.update(stats.mtime_ns.tobytes())
        return h.hexdigest()

    def row_keys(self, modality: str, mode: str = "stat") -> np.ndarray:
        """``[N]`` 16-byte keys, one per row: a hash of the row's id and its input (the text; for files the path
        as in the table with its size and modification time, or with ``mode="content"`` a hash of its bytes).
        Two rows with the same key embed to the same vector, whatever table, order or subset they come from:
        the embedding store reuses vectors by these keys."""
        import xxhash

        ids = self.df["id"].astype(str).tolist()
        if modality == "text":
            values, extra = [str(v) for v in self.items("text")], [""] * len(ids)
        else:
            col = pd.Series(self._column(modality), dtype=object)
            values = col.where(col.notna(), "").astype(str).tolist()
            stats = self.media_stats(modality, content=mode == "content")
            extra = (list(stats.content) if mode == "content" and stats.content is not None
                     else [f"{s}:{t}" for s, t in zip(stats.size.tolist(), stats.mtime_ns.tolist())])
        out = np.empty(len(ids), dtype="S16")
        for i, (rid, v, e) in enumerate(zip(ids, values, extra)):
            out[i] = xxhash.xxh3_128_digest(f"{modality}\0{rid}\0{v}\0{e}".encode("utf-8", "surrogatepass"))
        return out

    def fingerprint_detail(self, modality: str, mode: str = "stat") -> Dict[str, str]:
        """What helps explain a fingerprint mismatch: the mode, and for files the hash without modification times."""
        if modality == "text":
            return {"mode": "text"}
        stats = self.media_stats(modality, content=mode == "content")
        h = _media_hash("sizes", self.spec.key, self.df["id"].astype(str).tolist(), self._column(modality))
        h.update(stats.size.tobytes())
        return {"mode": mode, "without_times": h.hexdigest()}

    def _text_fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(self.spec.key.encode())
        for rid, item in zip(self.df["id"].tolist(), self.items("text")):
            h.update(str(rid).encode() + b"\x00")
            h.update(str(item).encode() + b"\x01")
        return h.hexdigest()


def _media_hash(mode: str, key: str, ids: List[str], values: List[Any]):
    import xxhash

    h = xxhash.xxh3_128()
    h.update(f"{mode}\0{key}\0{len(ids)}\0".encode())
    h.update("\0".join(ids).encode("utf-8", "surrogatepass"))
    text = pd.Series(list(values), dtype=object)
    h.update("\1".join(text.where(text.notna(), "").astype(str).tolist()).encode("utf-8", "surrogatepass"))
    return h


def resolve_media(values: Sequence[Any], root: Optional[str], absolute_ok: bool = False
                  ) -> Tuple[List[Optional[str]], List[int]]:
    """Absolute paths of media ``values`` under ``root``, and the rows whose path is absolute or escapes it.

    Checked lexically (``..`` components), so a symbolic link the user placed inside the root is followed.
    Without a root, paths are taken as they are. Vectorised (400,000 rows in a fraction of a second).
    """
    s = pd.Series(list(values), dtype=object)
    missing = s.isna().to_numpy()
    text = s.where(~missing, "").astype(str)
    if not root:
        return [None if m else v for v, m in zip(text.tolist(), missing)], []
    base = os.path.abspath(root)
    prefix = base.rstrip(os.sep) + os.sep
    absolute = (text.str.startswith("/") | text.str.startswith("\\") | text.str.match(r"[A-Za-z]:[\\/]")).to_numpy() & ~missing
    joined = (prefix + text).tolist()
    paths: List[Optional[str]] = [v if a else j for v, j, a in zip(text.tolist(), joined, absolute)]
    bad: List[int] = []
    if not absolute_ok:
        bad = np.flatnonzero(absolute).tolist()
        for i in np.flatnonzero(text.str.contains("..", regex=False).to_numpy() & ~absolute & ~missing).tolist():
            if not os.path.normpath(paths[i]).startswith(prefix):  # type: ignore[arg-type]
                bad.append(i)
        bad.sort()
    for i in np.flatnonzero(missing).tolist():
        paths[i] = None
    return paths, bad


def outside_root_message(ds: "MultimodalDataset", column: str, rows: Sequence[int]) -> str:
    shown = "; ".join(f"row {r} (id {ds.df['id'].iloc[r]!r}): {ds.df[column].iloc[r]!r}" for r in list(rows)[:5])
    more = f" (and {len(rows) - 5} more)" if len(rows) > 5 else ""
    return (f"dataset {ds.spec.key!r}: {len(rows)} {column} value(s) are absolute or lead outside the dataset root "
            f"{ds.spec.root}: {shown}{more}. Make them relative to the root, or pass allow_absolute_paths=True to "
            "utils.data.load (spec.absolute_paths=True) if they are meant to point elsewhere.")


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


def not_strings(column: pd.Series) -> List[int]:
    """Rows of ``column`` that hold neither a string nor a missing value (fast when the column is all strings)."""
    if pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty"):
        return []
    return [i for i, v in enumerate(column.tolist()) if not (_is_missing(v) or isinstance(v, str))]


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
    bad_id = np.flatnonzero((ids.isna() | (ids.astype(str) == "")).to_numpy()).tolist()
    report("empty id", bad_id, "Every row needs a unique id.")
    dup = df.index[ids.astype(str).duplicated(keep=False)].tolist()
    report("duplicate id", dup, "Ids must be unique.")

    bad_split = df.index[~df["split"].isin(SPLITS)].tolist()
    report("split not in train/val/test", bad_split, "Set split to train, val or test.")

    classes = set(spec.classes)
    bad_label: List[int] = []
    bad_label_values: List[str] = []
    labels = df["label"]
    if spec.task != "multilabel":  # vectorised: tables of 400,000 rows are checked in milliseconds
        wrong = (labels.isna() | ~labels.astype(str).isin(list(classes))).to_numpy()
        rows_to_check = np.flatnonzero(wrong).tolist()
    else:
        rows_to_check = list(range(len(labels)))
    values = labels.tolist()
    for i in rows_to_check:
        lab = values[i]
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
        bad_text = not_strings(df["text"])
        report("text that is neither a string nor missing", bad_text, "Convert text to str (or leave it missing).")

    for m in spec.modalities:
        if m == "text":
            continue
        col = _MODALITY_COLUMN[m]
        bad = not_strings(df[col])
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
