"""Bring your own embeddings: vectors made with other tools, put into the store so that heads, the report,
alignment and retrieval run on them without extraction.

    from utils.imported import import_embeddings
    import_embeddings(ds, "image", "Embeddings_dinov2_base.csv", name="dinov2_base")      # the original's CSV
    import_embeddings(ds, "image", "clip_out/", name="clip_b32")                          # clip-retrieval output
    import_embeddings(ds, "text", vectors, ids=ids, name="my_bert")                       # arrays in memory
    emb = ex.extract_embeddings(ds, {"text": "imported:my_bert", "image": "imported:dinov2_base"})

Sources (:func:`read_vectors`):

- a numpy array ``[N, D]`` with ``ids=`` (a sequence, or a file: ``.npy``, ``.txt`` one id per line, ``.csv``
  with an ``id`` column);
- a ``.npy`` file with ``ids=`` as above;
- a ``.parquet`` file: an id column (``id_column``, default ``id``) and either one list column of vectors
  (``vector_column``, found when there is one) or one numeric column per dimension;
- a ``.csv`` file in the original framework's layout: one row per record, an id column (``id_column``, or the
  first column) and one column per dimension (a single column of bracketed lists, ``"[0.1, 0.2, ...]"``, is read
  too, as JSON: never ``eval``);
- a clip-retrieval output folder: ``img_emb/img_emb_*.npy`` (image) or ``text_emb/text_emb_*.npy`` (text),
  with ``metadata/metadata_*.parquet`` partition by partition. Records are matched by the metadata's
  ``image_path`` against the dataset's image files (the same file, the same path as written, or a unique
  file name) or by ``id_column`` (e.g. ``key`` of a webdataset).

Every problem is an error naming the file and the first bad row before anything is written: ids the dataset
does not have, duplicate ids, NaN or infinite values, rows of another width, a width other than the store
already holds. Dataset records without an imported vector are recorded as failed rows (the heads leave them
out and say so). A store already holding other vectors under the same name is replaced only with
``overwrite=True``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from .data.schema import MultimodalDataset
from .embed import EmbedConfig, store_header, store_path
from .store import EmbeddingStore

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
ID_COLUMNS = ("id", "ID", "Id", "image_id", "ImageName", "image_name", "img_id", "record_id", "key", "filename")


class ImportVectorsError(ValueError):
    """Imported vectors that cannot be used; the message names the file and the first bad row."""


@dataclass
class VectorSource:
    """Vectors read from somewhere: ``vectors [N, D]`` float32, ``ids [N]`` str, and where each row came from."""

    ids: np.ndarray
    vectors: np.ndarray
    files: List[str]  # the files rows were read from
    file_of_row: np.ndarray  # [N] index into files
    row_in_file: np.ndarray  # [N] row number inside that file (0-based data row)
    description: str  # one line for the store manifest and logs

    def where(self, i: int) -> str:
        return f"{self.files[int(self.file_of_row[i])]} row {int(self.row_in_file[i])}"


# ------------------------------------------------------------------------------------------ reading
def read_vectors(source: Any, ids: Any = None, modality: Optional[str] = None, dataset: Optional[MultimodalDataset] = None,
                 id_column: Optional[str] = None, vector_column: Optional[str] = None) -> VectorSource:
    """Read vectors and their ids from ``source`` (see the module docstring for the forms it takes)."""
    if isinstance(source, VectorSource):
        return source
    if isinstance(source, (np.ndarray, list)) and not isinstance(source, str):
        arr = np.asarray(source)
        if ids is None:
            raise ImportVectorsError("vectors given as an array need their ids: pass ids=[...] (one per row, in order)")
        return from_array(arr, read_ids(ids), "<array>", "vectors given in memory")
    path = Path(source)
    if path.is_dir():
        if (path / "img_emb").is_dir() or (path / "text_emb").is_dir():
            return read_clip_retrieval(path, modality, dataset, id_column)
        raise ImportVectorsError(f"{path} is a folder but not a clip-retrieval output (no img_emb/ or text_emb/); give a "
                                 ".npy, .parquet or .csv file, or the folder clip-retrieval wrote")
    if not path.is_file():
        raise ImportVectorsError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if ids is None:
            raise ImportVectorsError(f"{path}: a .npy file holds no ids: pass ids= (a list, or a .npy / .txt / .csv file "
                                     "of ids in the same row order)")
        return from_array(load_npy(path), read_ids(ids), str(path), f"imported from {path.name}")
    if suffix == ".parquet":
        return read_table(pd.read_parquet(path), path, id_column, vector_column)
    if suffix in (".csv", ".tsv", ".txt"):
        try:
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False,
                                encoding="utf-8-sig")
        except pd.errors.ParserError as e:
            where = re.search(r"line (\d+), saw (\d+)", str(e))
            said = (f"line {where.group(1)} has {where.group(2)} fields, more than the header's columns (a vector "
                    "of another width?)") if where else str(e).strip()
            raise ImportVectorsError(f"{path}: {said}; every row needs the id and one value per dimension, like the "
                                     "header") from None
        except UnicodeDecodeError as e:
            raise ImportVectorsError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save the table as "
                                     "UTF-8 CSV") from None
        return read_table(frame, path, id_column, vector_column)
    raise ImportVectorsError(f"{path}: unknown vector file type {suffix!r}; give .npy (+ ids), .parquet, .csv or a "
                             "clip-retrieval folder")


def load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError) as e:
        raise ImportVectorsError(f"{path}: not a numeric .npy array ({e})") from None


def read_ids(ids: Any) -> np.ndarray:
    """Ids from a sequence, or a file: ``.npy``, ``.txt`` (one per line), ``.csv`` (an ``id`` column or the first)."""
    if isinstance(ids, (str, os.PathLike)) and Path(ids).is_file():
        p = Path(ids)
        if p.suffix.lower() == ".npy":
            arr = np.load(p, allow_pickle=False)
            return arr.astype(str)
        if p.suffix.lower() == ".csv":
            frame = pd.read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8-sig")
            col = "id" if "id" in frame.columns else frame.columns[0]
            return frame[col].to_numpy(dtype=str)
        return np.asarray([ln.rstrip("\r\n") for ln in p.read_text(encoding="utf-8-sig").splitlines() if ln.strip()], str)
    return np.asarray(list(ids)).astype(str)


def from_array(arr: np.ndarray, ids: np.ndarray, file: str, description: str) -> VectorSource:
    if arr.ndim != 2:
        raise ImportVectorsError(f"{file}: vectors must be a 2-D array [N, D], got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise ImportVectorsError(f"{file}: vectors must be numbers, got dtype {arr.dtype}")
    if len(ids) != len(arr):
        raise ImportVectorsError(f"{file}: {len(arr)} vector rows but {len(ids)} ids: give one id per row, in row order")
    n = len(arr)
    return VectorSource(ids, np.asarray(arr, dtype=np.float32), [file], np.zeros(n, np.int64), np.arange(n), description)


def read_table(frame: pd.DataFrame, path: Path, id_column: Optional[str], vector_column: Optional[str]) -> VectorSource:
    """A table with an id column and the vector as numeric columns (one per dimension) or one list column."""
    if frame.empty:
        raise ImportVectorsError(f"{path}: no rows")
    cols = [str(c) for c in frame.columns]
    frame.columns = cols
    id_col = id_column or next((c for c in ID_COLUMNS if c in cols), None)
    if id_col is None:
        first = cols[0]
        if _numeric_name(first):
            raise ImportVectorsError(f"{path}: no id column (looked for {', '.join(ID_COLUMNS)}; the first column "
                                     f"{first!r} looks like a dimension): pass id_column=")
        id_col = first
    if id_col not in cols:
        raise ImportVectorsError(f"{path}: no column {id_col!r}; columns are {cols[:10]}{' ...' if len(cols) > 10 else ''}")
    ids = frame[id_col].astype(str).to_numpy()
    rest = [c for c in cols if c != id_col and not c.startswith("Unnamed:")]
    listy = vector_column or _list_column(frame, rest)
    if listy is not None:
        if listy not in cols:
            raise ImportVectorsError(f"{path}: no column {listy!r}")
        rows = [_as_vector(v, path, i, listy) for i, v in enumerate(frame[listy].tolist())]
        widths = {len(r) for r in rows}
        if len(widths) > 1:
            w0 = len(rows[0])
            bad = next(i for i, r in enumerate(rows) if len(r) != w0)
            raise ImportVectorsError(f"{path} row {bad} (id {ids[bad]!r}): {len(rows[bad])} values in {listy!r}, but "
                                     f"row 0 has {w0}: every vector must have the same width")
        arr = np.asarray(rows, dtype=np.float64)
    else:
        dims = [c for c in rest if frame[c].dtype != object or _column_numeric(frame[c])]
        other = [c for c in rest if c not in dims]
        if not dims:
            raise ImportVectorsError(f"{path}: no numeric columns besides {id_col!r}: give one column per dimension or a "
                                     "column of bracketed lists (vector_column=)")
        if other and any(_numeric_name(c) for c in other):
            c = next(c for c in other if _numeric_name(c))
            bad = _first_non_number(frame[c])
            raise ImportVectorsError(f"{path} row {bad} (id {ids[bad]!r}): column {c!r} holds {frame[c].iloc[bad]!r}, "
                                     "not a number")
        if other:
            log.info("%s: columns %s are not numbers and are not part of the vectors", path, other[:5])
        arr = np.column_stack([pd.to_numeric(frame[c], errors="coerce").to_numpy(np.float64) for c in dims])
        blank = np.flatnonzero(np.isnan(arr).any(axis=1))
        if len(blank):
            i = int(blank[0])
            c = dims[int(np.flatnonzero(np.isnan(arr[i]))[0])]
            raise ImportVectorsError(f"{path} row {i} (id {ids[i]!r}): column {c!r} holds {frame[c].iloc[i]!r}, which is "
                                     "empty, NaN or not a number: every dimension needs a finite value")
    n = len(arr)
    return VectorSource(ids, arr.astype(np.float32), [str(path)], np.zeros(n, np.int64), np.arange(n),
                        f"imported from {path.name}")


def _numeric_name(name: str) -> bool:
    return bool(re.fullmatch(r"(dim|emb|embedding|feature|f|e|x|v)?[_ -]?\d+", name, flags=re.IGNORECASE))


def _column_numeric(col: pd.Series) -> bool:
    values = col.astype(str).str.strip()
    filled = values[values != ""]
    return len(filled) > 0 and pd.to_numeric(filled, errors="coerce").notna().mean() > 0.5


def _first_non_number(col: pd.Series) -> int:
    return int(np.flatnonzero(pd.to_numeric(col, errors="coerce").isna().to_numpy())[0])


def _list_column(frame: pd.DataFrame, cols: Sequence[str]) -> Optional[str]:
    """The one column that holds whole vectors (arrays, or text like ``[0.1, 0.2]``), if any."""
    found = []
    for c in cols:
        v = frame[c].iloc[0]
        if isinstance(v, (list, tuple, np.ndarray)) or (isinstance(v, str) and v.strip().startswith("[")):
            found.append(c)
    return found[0] if len(found) == 1 else None


def _as_vector(v: Any, path: Path, row: int, column: str) -> List[float]:
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except json.JSONDecodeError as e:
            raise ImportVectorsError(f"{path} row {row}: {column!r} is not a list of numbers ({e.msg})") from None
    try:
        out = [float(x) for x in np.asarray(v, dtype=object).reshape(-1)]
    except (TypeError, ValueError):
        raise ImportVectorsError(f"{path} row {row}: {column!r} is not a list of numbers") from None
    return out


def read_clip_retrieval(folder: Path, modality: Optional[str], dataset: Optional[MultimodalDataset],
                        id_column: Optional[str] = None) -> VectorSource:
    """clip-retrieval's output: ``img_emb/img_emb_<k>.npy`` or ``text_emb/text_emb_<k>.npy`` beside
    ``metadata/metadata_<k>.parquet``, rows aligned partition by partition."""
    if modality not in ("image", "text"):
        raise ImportVectorsError(f"{folder}: say which embeddings to import from a clip-retrieval folder: modality "
                                 "'image' (img_emb/) or 'text' (text_emb/)")
    sub, stem = ("img_emb", "img_emb") if modality == "image" else ("text_emb", "text_emb")
    parts = sorted((folder / sub).glob(f"{stem}_*.npy"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    if not parts:
        raise ImportVectorsError(f"{folder / sub}: no {stem}_*.npy files")
    arrays, ids, files, file_of, row_in = [], [], [], [], []
    for p in parts:
        k = p.stem[len(stem) + 1:]
        meta = folder / "metadata" / f"metadata_{k}.parquet"
        if not meta.is_file():
            raise ImportVectorsError(f"{p}: its metadata {meta} is missing; the ids of its rows are there")
        arr = load_npy(p)
        frame = pd.read_parquet(meta)
        if len(frame) != len(arr):
            raise ImportVectorsError(f"{p} has {len(arr)} rows but {meta} has {len(frame)}: the partition is incomplete")
        if arr.ndim != 2:
            raise ImportVectorsError(f"{p}: expected a [N, D] array, got shape {arr.shape}")
        if arrays and arr.shape[1] != arrays[0].shape[1]:
            raise ImportVectorsError(f"{p}: {arr.shape[1]}-d vectors, but {files[0]} holds {arrays[0].shape[1]}-d ones")
        ids.append(_clip_ids(frame, meta, dataset, id_column))
        arrays.append(np.asarray(arr, dtype=np.float32))
        files.append(str(p))
        file_of.append(np.full(len(arr), len(files) - 1))
        row_in.append(np.arange(len(arr)))
    return VectorSource(np.concatenate(ids).astype(str), np.concatenate(arrays), files, np.concatenate(file_of),
                        np.concatenate(row_in), f"imported from clip-retrieval output {folder.name}/{sub}")


def _clip_ids(frame: pd.DataFrame, meta: Path, dataset: Optional[MultimodalDataset], id_column: Optional[str]) -> np.ndarray:
    """Dataset ids of a metadata partition: its ``id_column``, or its ``image_path`` matched to the dataset's files."""
    if id_column:
        if id_column not in frame.columns:
            raise ImportVectorsError(f"{meta}: no column {id_column!r}; columns are {list(frame.columns)}")
        return frame[id_column].astype(str).to_numpy()
    if "image_path" not in frame.columns:
        raise ImportVectorsError(f"{meta} has no image_path column to match records by: pass id_column= (e.g. 'key')")
    if dataset is None:
        raise ImportVectorsError(f"{meta}: matching clip-retrieval rows by image_path needs the dataset")
    return match_paths(frame["image_path"].astype(str).tolist(), dataset, meta)


def match_paths(paths: Sequence[str], dataset: MultimodalDataset, where: Path) -> np.ndarray:
    """The dataset id of each path: the same file, then the same path as written in the table, then a unique name."""
    df = dataset.df
    if "image_path" not in df.columns:
        raise ImportVectorsError(f"{where}: rows are matched by image path, but dataset {dataset.spec.key!r} has no "
                                 "image_path column: pass id_column=")
    ids = df["id"].astype(str).tolist()
    written = df["image_path"].astype(str).tolist()
    absolute = [os.path.normpath(str(dataset.resolve_path(p))) for p in written]
    by_abs = {a: i for a, i in zip(absolute, ids)}
    by_written = {w: i for w, i in zip(written, ids)}
    names: Dict[str, List[str]] = {}
    for w, i in zip(written, ids):
        names.setdefault(os.path.basename(w), []).append(i)
    out = []
    for row, p in enumerate(paths):
        hit = by_abs.get(os.path.normpath(os.path.abspath(p))) or by_written.get(p)
        if hit is None:
            same = names.get(os.path.basename(p), [])
            hit = same[0] if len(same) == 1 else None
        if hit is None:
            raise ImportVectorsError(f"{where} row {row}: image_path {p!r} matches no image of dataset "
                                     f"{dataset.spec.key!r} (compared as a file, as written and by file name): pass "
                                     "id_column= to match by another column")
        out.append(hit)
    return np.asarray(out, dtype=str)


# ------------------------------------------------------------------------------------------ checking
def check_source(src: VectorSource, dataset: MultimodalDataset) -> None:
    """Duplicates, unknown ids and non-finite values: the first bad row, named by file and row."""
    if len(src.ids) == 0:
        raise ImportVectorsError(f"{src.files[0]}: no vectors")
    order = np.argsort(src.ids, kind="stable")
    sorted_ids = src.ids[order]
    dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if len(dup):
        first = order[dup[0]], order[dup[0] + 1]
        a, b = sorted(int(x) for x in first)
        raise ImportVectorsError(f"{src.where(b)}: id {src.ids[b]!r} appears again (first at {src.where(a)}): each record "
                                 "needs exactly one vector")
    known = pd.Index(dataset.df["id"].astype(str))
    unknown = np.flatnonzero(~pd.Index(src.ids).isin(known))
    if len(unknown):
        i = int(unknown[0])
        raise ImportVectorsError(f"{src.where(i)}: id {src.ids[i]!r} is not a record of dataset {dataset.spec.key!r} "
                                 f"({len(unknown)} such id(s)); ids look like {known[:3].tolist()}: check id_column and "
                                 "that the vectors belong to this dataset")
    finite = np.isfinite(src.vectors).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise ImportVectorsError(f"{src.where(i)} (id {src.ids[i]!r}): the vector holds NaN or infinite values; fix or "
                                 "drop that row")


# ------------------------------------------------------------------------------------------ importing
def import_embeddings(dataset: MultimodalDataset, modality: str, source: Any, name: str, ids: Any = None,
                      id_column: Optional[str] = None, vector_column: Optional[str] = None,
                      embeddings_dir: Optional[PathLike] = None, overwrite: bool = False,
                      shard_size: int = 1024) -> EmbeddingStore:
    """Put vectors made elsewhere into the store as ``imported:<name>`` for ``dataset``'s ``modality``.

    Then ``extract_embeddings(ds, {modality: f"imported:{name}", ...})`` (or ``embed``) reuses them like any
    store: no extraction. Returns the finished :class:`~utils.store.EmbeddingStore`. Importing the same vectors
    again does nothing; other vectors under the same name need ``overwrite=True``.
    """
    from .extractors import create_for

    ext = create_for(f"imported:{name}", modality)
    src = read_vectors(source, ids=ids, modality=modality, dataset=dataset, id_column=id_column,
                       vector_column=vector_column)
    check_source(src, dataset)
    table_ids = dataset.df["id"].astype(str).to_numpy()
    pos = pd.Index(src.ids).get_indexer(table_ids)  # row of src for each dataset record, -1 when none
    aligned = np.full((len(table_ids), src.vectors.shape[1]), np.nan, np.float32)
    aligned[pos >= 0] = src.vectors[pos[pos >= 0]]
    absent = np.flatnonzero(pos < 0)
    cfg = EmbedConfig(root=None if embeddings_dir is None else str(embeddings_dir), shard_size=shard_size,
                      show_progress=False)
    store = store_path(dataset, modality, ext, cfg.root)
    header = store_header(dataset, modality, ext, cfg)
    header["description"] = src.description
    if store.is_complete() and not overwrite:
        return _same_or_refuse(store, table_ids, aligned, src, header)
    store.open(header, overwrite=overwrite)
    n_shards = max(1, math.ceil(len(table_ids) / shard_size))
    for k in range(n_shards):
        lo, hi = k * shard_size, min(len(table_ids), (k + 1) * shard_size)
        failed = {table_ids[i]: f"no vector in {src.description}" for i in absent[(absent >= lo) & (absent < hi)]}
        lock = store.claim(k)
        if lock is None:
            raise RuntimeError(f"{store.folder}: another job is writing shard {k}; import once it has finished")
        with lock:
            store.write_shard(k, table_ids[lo:hi].tolist(), aligned[lo:hi], failed,
                              info={"description": src.description, "precision": "imported"})
    if not store.finalize(n_shards):
        store.wait_complete(n_shards)
    if len(absent):
        log.warning("%s: %d of %d record(s) have no imported %s vector (first ids %s): heads leave them out",
                    dataset.spec.key, len(absent), len(table_ids), modality, table_ids[absent[:5]].tolist())
    log.info("imported %d %d-d %s vectors for %s as %s (%s) -> %s", len(src.ids), src.vectors.shape[1], modality,
             dataset.spec.key, ext.id, src.description, store.folder)
    return store


def _same_or_refuse(store: EmbeddingStore, table_ids: np.ndarray, aligned: np.ndarray, src: VectorSource,
                    header: Dict[str, Any]) -> EmbeddingStore:
    """A finished store already holds vectors under this name: nothing to do when they are these ones."""
    from .store import identity

    have = store.manifest()
    if identity(have) == identity({**header, "format": have.get("format")}):
        old = store.aligned(table_ids, missing="nan")
        same_shape = old.shape == aligned.shape
        if same_shape and np.array_equal(np.isnan(old), np.isnan(aligned)) and np.array_equal(
                np.nan_to_num(old), np.nan_to_num(aligned)):
            log.info("%s already holds these imported vectors; nothing to do", store.folder)
            store.reused = True
            return store
        what = (f"{old.shape[1]}-d vectors where these are {aligned.shape[1]}-d" if not same_shape else
                "other vectors")
    else:
        what = "vectors for other records"
    raise ImportVectorsError(f"{store.folder} already holds {what} imported as {header['extractor']['id']} (from "
                             f"{have.get('description', '?')}). Nothing was changed: pass overwrite=True to replace them "
                             f"with {src.description}, or import under another name")
