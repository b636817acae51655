r"""``table``: your own data. Any CSV / TSV / parquet / JSON(L) with text, image path and label columns.

>>> load("table", root="/content/drive/MyDrive/mydata", file="records.csv",
...      text_column="caption", image_column="file", label_column="class", positive_class="malignant")

Options of the loader: ``file`` (relative to ``root`` or absolute), ``dataset_name`` (the cache key's
name; default ``table-<file stem>`` plus a short hash of the file's full path, so two different
``records.csv`` never share a cache), ``encoding`` (default ``utf-8``; a CSV saved by Excel is often
``cp1252`` or ``latin-1``), ``sep`` (default: tab for .tsv, else comma), ``strict``, and every field of
:class:`TableOptions` (columns, task, classes, splits, subgroup columns).

Binary tables: the positive class is ``classes[1]`` (``classes=`` sets the order; default sorted). Pass
``positive_class=`` to :func:`utils.data.load` to choose it by name; the class used is logged either way.

Quirks (counted in ``ds.spec.extra["load_report"]``): blank lines, stray whitespace, labels in another case
than the rest of the column (or than ``classes=``), split names in another case, Windows ``\`` in paths
and exact duplicate rows are recovered; a row with a missing or unknown label, an unknown split, a missing
id or group, too many fields, or rows sharing an id that disagree, are skipped (``strict=True`` raises
instead).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from ..config import merge_config
from . import register
from ._common import (canonical, clean_paths, column_strings, drop_duplicates, fill_template, fold_map, is_missing, normalise_split,
                      read_table,
                      require_columns)
from .quirks import LoadReport, attach
from .schema import DatasetError, DatasetSpec, MultimodalDataset
from .splits import assign_splits

log = logging.getLogger(__name__)

CONTRACT_COLUMNS = ("id", "text", "image_path", "audio_path", "label", "split", "group")


@dataclass
class TableOptions:
    """How to read a user table (the ``table`` and ``musti`` loaders)."""

    text_column: Optional[str] = "text"  # column with the text; None: no text modality
    image_column: Optional[str] = "image"  # column with image paths; None: no image modality
    label_column: str = "label"
    split_column: Optional[str] = None  # values like train / validate / test; None: the table's own ``split``
    # column when it has one (said in the log), else a stratified seeded split
    resplit: bool = False  # True: make a seeded split even when the table has a ``split`` column
    id_column: Optional[str] = None  # None: the row number ("r0000012")
    group_column: Optional[str] = None  # patient / lesion / place: the made split keeps a group in one split
    audio_column: Optional[str] = None  # column with audio paths
    text_template: Optional[str] = None  # str.format template over columns ("{title}. {body}"); replaces text_column
    image_base: Optional[str] = None  # folder the media paths are relative to; None: the dataset folder
    task: str = "auto"  # auto: binary for 2 classes, else multiclass; or multilabel (labels split on label_sep)
    label_sep: Optional[str] = None  # multilabel separator; None: ","
    classes: Optional[Sequence[str]] = None  # class order (binary: classes[1] is positive); None: sorted
    label_map: Optional[Dict[Any, Any]] = None  # raw label -> class name (case-insensitive)
    subgroup_columns: Sequence[str] = ()  # metadata columns kept as they are for per-subgroup metrics
    fractions: Tuple[float, float, float] = (0.7, 0.15, 0.15)  # train / val / test of a made split
    seed: int = 0  # seed of a made split


def _label_str(v: Any) -> Any:
    if is_missing(v):
        return None
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def label_strings(col: pd.Series) -> List[Optional[str]]:
    """:func:`_label_str` over a whole column, vectorised for the common dtypes (strings, integers)."""
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_float_dtype(col) or col.dtype == object:
        return [_label_str(v) for v in col.tolist()]  # mixed or float cells: 1.0 -> "1", True -> "1"
    return column_strings(col)


def _unify_numbers(labels: List[Optional[str]], lines: Sequence[int], path: Path, column: str,
                   report: LoadReport) -> List[Optional[str]]:
    """A label column of numbers in which one number is written two ways (``1`` and ``1.0``, ``2`` and ``02``)
    names one class, not two: each such spelling becomes the column's most common spelling of that number, and
    every changed row is reported as recovered. Spellings of different numbers (``01`` / ``02`` alone) and
    columns with any non-numeric label are left exactly as written."""
    spellings = Counter(v for v in labels if v is not None)
    if len(spellings) < 2:
        return labels
    value: Dict[str, float] = {}
    for v in spellings:
        try:
            x = float(v)
        except ValueError:
            return labels  # not a numeric column: text labels stay text
        if not np.isfinite(x):
            return labels
        value[v] = x
    by_number: Dict[float, List[str]] = {}
    for v, x in value.items():
        by_number.setdefault(x, []).append(v)
    fix = {}
    for forms in by_number.values():
        if len(forms) > 1:
            best = sorted(forms, key=lambda f: (-spellings[f], len(f), f))[0]
            fix.update({f: best for f in forms if f != best})
    if not fix:
        return labels
    out = []
    for line, v in zip(lines, labels):
        if v in fix:
            report.recovered(path, line, f"one number written two ways in {column!r} ({v!r} read as {fix[v]!r})", v)
            out.append(fix[v])
        else:
            out.append(v)
    return out


def _map_labels(raw: List[Optional[str]], lines: Sequence[int], label_map: Optional[Dict[Any, Any]], path: Path,
                report: LoadReport) -> List[Optional[str]]:
    """Apply ``label_map`` (exact keys first, then case- and whitespace-insensitive: recovered)."""
    if not label_map:
        return raw
    exact = {str(k): str(v) for k, v in label_map.items()}
    folded = {" ".join(str(k).split()).casefold(): str(v) for k, v in label_map.items()}
    out: List[Optional[str]] = []
    for line, v in zip(lines, raw):
        if v is None or v in exact:
            out.append(None if v is None else exact[v])
            continue
        hit = folded.get(" ".join(v.split()).casefold())
        if hit is not None:
            report.recovered(path, line, "inconsistent case" if v.strip() == v else "stray whitespace", v)
        out.append(hit if hit is not None else v)
    return out


def _unify(values: List[str], counts: Optional[Dict[str, int]] = None) -> Dict[str, str]:
    """``{spelling: the column's most common spelling}`` for values that differ only in case / whitespace."""
    counts = counts if counts is not None else Counter(values)
    groups: Dict[str, List[str]] = {}
    for v in counts:
        groups.setdefault(" ".join(v.split()).casefold(), []).append(v)
    out = {}
    for spellings in groups.values():
        best = sorted(spellings, key=lambda s: (-counts[s], s != s.strip(), s))[0].strip()
        out.update({s: best for s in spellings})
    return out


def _clean_single(labels_raw: List[Optional[str]], classes: Optional[Sequence[str]]) -> Optional[List[str]]:
    """Single labels as class names when no row needs recovering or skipping (the common case, vectorised);
    None otherwise (then :func:`_clean_labels` goes row by row and reports)."""
    col = pd.Series(labels_raw, dtype=object)
    if col.isna().any():
        return None
    counts = col.value_counts().to_dict()
    if classes is not None:
        known = fold_map(classes)
        fix = {p: canonical(p, known) for p in counts}
        if not all(name is not None and not how for name, how in fix.values()):
            return None
        mapping = {p: name for p, (name, _) in fix.items()}
    else:
        mapping = _unify(list(counts), counts)
        if any(k != v for k, v in mapping.items()):
            return None
    return col.map(mapping).tolist()


def _clean_labels(labels: List[Optional[List[str]]], lines: Sequence[int], classes: Optional[Sequence[str]],
                  path: Path, column: str, report: LoadReport) -> List[Optional[List[str]]]:
    """Each row's label parts as class names; an unknown part or no part at all skips the row (None)."""
    flat = [p for lab in labels if lab for p in lab]
    if classes is not None:
        known = fold_map(classes)
        fix = {p: canonical(p, known) for p in set(flat)}
    else:
        uni = _unify(flat)
        fix = {p: (uni[p], "" if uni[p] == p else "stray whitespace" if p.strip() == uni[p] else "inconsistent case")
               for p in set(flat)}
    if all(name is not None and not how for name, how in fix.values()) and all(labels):
        return [[fix[p][0] for p in lab] for lab in labels]  # nothing to recover or skip: no per-row reporting
    out: List[Optional[List[str]]] = []
    for line, lab in zip(lines, labels):
        if not lab:
            report.skipped(path, line, f"missing label in {column!r}")
            out.append(None)
            continue
        parts = []
        for p in lab:
            name, how = fix[p]
            if name is None:
                report.skipped(path, line, f"label not in classes= ({list(classes or [])[:10]})", p)
                break
            if how:
                report.recovered(path, line, how, p)
            parts.append(name)
        else:
            out.append(parts)
            continue
        out.append(None)
    return out


def frame_to_dataset(
    raw: pd.DataFrame,
    path: Path,
    root: Path,
    name: str,
    options: Optional[TableOptions] = None,
    report: Optional[LoadReport] = None,
    variant: str = "",
    description: str = "",
    **overrides: Any,
) -> MultimodalDataset:
    """The contract table from an already-read user table (shared by ``table`` and ``musti``).

    ``options`` (a :class:`TableOptions`) with ``overrides`` replacing fields; an unknown option is an error
    naming the valid ones. ``raw``'s index holds file line numbers (:func:`read_table`); ``report``
    collects the lines recovered and skipped (a new one when None) and is finished here.
    """
    o = merge_config(TableOptions, options, overrides, what=name)
    report = report if report is not None else LoadReport(name, root=str(root))
    if o.split_column is None and not o.resplit:
        own = [c for c in raw.columns if str(c).strip().casefold() == "split"]
        if own:  # the file says which split each row belongs to: never re-split it silently
            o = replace(o, split_column=own[0])
            log.info("%s: using the table's own %r column for the splits (resplit=True makes a seeded split instead)",
                     name, own[0])
    elif o.split_column and o.resplit:
        raise DatasetError(f"{name}: split_column={o.split_column!r} and resplit=True contradict each other; give one")
    if o.task not in ("auto", "binary", "multiclass", "multilabel"):
        raise DatasetError(f"{name}: task must be auto, binary, multiclass or multilabel, got {o.task!r}")
    needed = [o.label_column] + [c for c in (o.text_column if not o.text_template else None, o.image_column,
                                             o.audio_column, o.split_column, o.id_column, o.group_column) if c]
    clash = [c for c in o.subgroup_columns if c in CONTRACT_COLUMNS]
    if clash:
        raise DatasetError(f"{name}: subgroup_columns {clash} would overwrite the table's own columns {CONTRACT_COLUMNS}; "
                           "rename them in the file.")
    needed += list(o.subgroup_columns)
    require_columns(raw, needed, path, name, "Name the columns with text_column=, image_column=, label_column=, ...")
    lines = list(raw.index)
    ids = (column_strings(raw[o.id_column], strip=True) if o.id_column
           else [f"r{i:07d}" for i in range(len(raw))])
    labels_raw = _map_labels(label_strings(raw[o.label_column]), lines, o.label_map, path, report)
    if o.task != "multilabel" and not o.label_map:
        labels_raw = _unify_numbers(labels_raw, lines, path, o.label_column, report)
    sep = o.label_sep or ","
    single = _clean_single(labels_raw, o.classes) if o.task != "multilabel" else None
    if single is not None:
        labels: List[Any] = single
        keep = [True] * len(labels)
    else:
        parts = [None if v is None else ([p for p in v.split(sep) if p.strip()] if o.task == "multilabel" else [v])
                 for v in labels_raw]
        labels = _clean_labels(parts, lines, o.classes, path, o.label_column, report)
        keep = [lab is not None for lab in labels]
        if o.task != "multilabel":
            labels = [lab[0] if lab else None for lab in labels]
    for k, (line, rid) in enumerate(zip(lines, ids)):
        if keep[k] and rid is None:
            report.skipped(path, line, f"missing id in {o.id_column!r}")
            keep[k] = False
    groups = column_strings(raw[o.group_column], strip=True) if o.group_column else None
    if groups is not None:
        for k, line in enumerate(lines):
            if keep[k] and groups[k] is None:
                report.skipped(path, line, f"missing group in {o.group_column!r} (the split needs it)")
                keep[k] = False
    if o.text_template:
        texts: List[Any] = fill_template(o.text_template, raw.to_dict("records"))
    elif o.text_column:
        texts = column_strings(raw[o.text_column])
    else:
        texts = [None] * len(raw)
    df = pd.DataFrame({"id": ids, "text": texts,
                       "label": labels},
                      index=raw.index)
    modalities = ["text"] if (o.text_column or o.text_template) else []
    if o.image_column:
        df["image_path"] = clean_paths(raw[o.image_column].tolist(), lines, path, report)
        modalities.append("image")
    if o.audio_column:
        df["audio_path"] = clean_paths(raw[o.audio_column].tolist(), lines, path, report)
        modalities.append("audio")
    if groups is not None:
        df["group"] = groups
    for c in o.subgroup_columns:
        df[c] = raw[c].tolist()
    if o.split_column:
        df["split"] = normalise_split(raw[o.split_column].tolist(), path, o.split_column, name, report, lines)
        keep = list(np.asarray(keep, dtype=bool) & df["split"].notna().to_numpy())
    df = df.loc[np.asarray(keep, dtype=bool)]  # a list would select columns when empty (a header-only file)
    if o.id_column:
        df = drop_duplicates(df, "id", report, path, o.id_column)
    note_doubtful(df, path, o, report)
    report.finish(len(df))
    df = df.reset_index(drop=True)
    if o.classes is not None:
        classes = [str(c) for c in o.classes]
    else:
        classes = (sorted({c for lab in df["label"] for c in lab}) if o.task == "multilabel"
                   else sorted(set(df["label"].tolist())))
    task = ("binary" if len(classes) == 2 else "multiclass") if o.task == "auto" else o.task
    if not o.split_column:
        df["split"] = assign_splits(df["label"].tolist(), tuple(o.fractions), o.seed,
                                    groups=df["group"].tolist() if o.group_column else None)
    base = Path(o.image_base).expanduser() if o.image_base else root
    if not base.is_absolute():
        base = root / base
    extra: Dict[str, Any] = {"subgroups": list(o.subgroup_columns)} if o.subgroup_columns else {}
    spec = DatasetSpec(
        name=name, task=task, classes=classes, root=str(base), modalities=modalities,
        text_template=o.text_template or (f"column {o.text_column!r}" if o.text_column else ""), variant=variant,
        description=description or f"user table {path.name}", extra=attach(extra, report),
    )
    return MultimodalDataset(df, spec)


LOOKS_MISSING = {"nan", "na", "n/a", "null", "none", "nil", "missing", "unknown", "-", "?", "#n/a"}


def note_doubtful(df: pd.DataFrame, path: Path, o: TableOptions, report: LoadReport) -> None:
    """Record (as *noted*: loaded as written, logged as a warning) what is valid but likely unintended: ids that
    differ from another only by case (kept as two records), labels that read like a missing value (kept as a
    class of that name, as every cell is read as text), classes with a single row in a table of 20 or more
    (a typo of a class name, named when one is close), and classes with no training rows in the table's own
    split (no head can learn them, and their test rows all count as errors)."""
    lines = df.index.tolist()
    if o.id_column:
        folded: Dict[str, List[int]] = {}
        for line, rid in zip(lines, df["id"].tolist()):
            folded.setdefault(str(rid).casefold(), []).append(line)
        for group in (g for g in folded.values() if len(g) > 1):
            shown = df.loc[group, "id"].tolist()
            for line in group:
                report.noted(path, line, f"id differs from another only by case ({', '.join(map(repr, shown[:3]))}; "
                             "kept as separate records)", df.at[line, "id"])
    if o.task != "multilabel":
        for line, lab in zip(lines, df["label"].tolist()):
            if isinstance(lab, str) and lab.strip().casefold() in LOOKS_MISSING:
                report.noted(path, line, f"label reads like a missing value; kept as the class {lab!r} (remove or "
                             "fix the row if it has no label)", lab)
    if o.task != "multilabel" and o.classes is None and len(df) >= 20:
        import difflib

        counts = df["label"].astype(str).value_counts()
        common = [c for c, n in counts.items() if n > 1]
        for cls in [c for c, n in counts.items() if n == 1]:
            near = difflib.get_close_matches(cls, common, n=1, cutoff=0.75)
            line = df.index[df["label"].astype(str) == cls][0]
            report.noted(path, line, f"class {cls!r} has a single row" + (f" (a typo of {near[0]!r}?)" if near else ""), cls)
    if o.split_column and "split" in df.columns:
        flat = (df["label"] if o.task != "multilabel" else df["label"].explode()).astype(str)
        split = df["split"] if o.task != "multilabel" else df["split"].reindex(flat.index)
        trained = set(flat[split.to_numpy() == "train"])
        for cls in sorted(set(flat) - trained):
            where = split[flat.to_numpy() == cls].value_counts().to_dict()
            report.noted(path, 0, f"class {cls!r} has no training rows ({', '.join(f'{n} {s}' for s, n in where.items())}): "
                         "no head can learn it and its rows are scored as errors", cls)


def path_tag(path: Path) -> str:
    """8 hex digits of the resolved path: part of the default cache key of a user table."""
    return hashlib.sha1(str(Path(path).expanduser().resolve()).encode()).hexdigest()[:8]


def _is_in_memory_image(v: Any) -> bool:
    if isinstance(v, (bytes, bytearray)):
        return True
    if isinstance(v, dict):  # a Hugging Face datasets Image column: {"bytes": ..., "path": ...}
        return v.get("bytes") is not None
    return type(v).__module__.startswith("PIL.")


def _is_file_reference(v: Any) -> bool:
    """A Hugging Face ``datasets`` Image cell that refers to a file instead of holding its bytes (what an image
    dataset built from local files gives): ``{"bytes": None, "path": "..."}``, read as that path."""
    return isinstance(v, dict) and set(v) <= {"bytes", "path"} and v.get("bytes") is None


def materialise_images(frame: pd.DataFrame, column: str, folder: Path) -> Tuple[pd.DataFrame, Optional[int]]:
    """A column of in-memory images (PIL images, encoded bytes, or Hugging Face ``{"bytes", "path"}`` dicts)
    written once as files under ``folder``, named by the hash of their bytes (a second load writes nothing),
    and replaced by paths relative to ``folder``'s parent. Returns the new frame and how many files were
    written, or ``None`` (and the frame as it is) when the column holds no in-memory image. Missing cells stay
    missing; a column mixing paths and images is refused."""
    import io

    from PIL import Image

    from ..io import atomic_write_bytes

    values = frame[column].tolist()
    kinds = {"missing" if is_missing(v) else "image" if _is_in_memory_image(v) else "path" for v in values}
    if "image" not in kinds:
        return frame, None
    if "path" in kinds:
        raise DatasetError(f"table: column {column!r} mixes file paths and in-memory images; give one kind")
    written, out = 0, []
    for v in values:
        if not _is_in_memory_image(v):
            out.append(None)
            continue
        if isinstance(v, (bytes, bytearray, dict)):
            data = bytes(v["bytes"] if isinstance(v, dict) else v)
            try:
                with Image.open(io.BytesIO(data)) as im:
                    fmt = (im.format or "png").lower()
            except Exception as e:  # noqa: BLE001 -- named here
                raise DatasetError(f"table: a cell of {column!r} holds bytes that are not an image ({e})") from None
        else:  # a PIL image: encoded losslessly, so the pixels embedded are the pixels given
            buf = io.BytesIO()
            v.save(buf, format="PNG")
            data, fmt = buf.getvalue(), "png"
        target = folder / f"{hashlib.sha256(data).hexdigest()[:24]}.{'jpg' if fmt == 'jpeg' else fmt}"
        if not target.is_file():
            atomic_write_bytes(target, lambda f, b=data: f.write(b))
            written += 1
        out.append(f"{folder.name}/{target.name}")
    frame = frame.copy()
    frame[column] = out
    return frame, written


def frame_as_text(frame: Any) -> pd.DataFrame:
    """A pandas DataFrame or a Hugging Face ``datasets.Dataset`` (``to_pandas``) as the loader reads a file:
    row numbers from 1 as the index, and every cell that is not an image as text (so the same table read
    from memory and from a CSV gives the same dataset)."""
    if not isinstance(frame, pd.DataFrame):
        if hasattr(frame, "to_pandas"):
            frame = frame.to_pandas()
        else:
            raise DatasetError(f"table: df= must be a pandas DataFrame or a datasets.Dataset, got {type(frame).__name__}")
    frame = frame.reset_index(drop=True).copy()
    for c in frame.columns:
        if any(_is_file_reference(v) for v in frame[c].head(50).tolist()):
            frame[c] = [v.get("path") if _is_file_reference(v) else v for v in frame[c].tolist()]
        col = frame[c]
        if any(_is_in_memory_image(v) for v in col.head(50).tolist()):
            continue
        frame[c] = [None if is_missing(v) else
                    (str(int(v)) if isinstance(v, float) and v.is_integer() and pd.api.types.is_float_dtype(col)
                     else str(v)) for v in col.tolist()]
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    return frame


@register("table", task="any", access="local")
def load_table(
    root: Path,
    file: str = "records.csv",
    dataset_name: Optional[str] = None,
    encoding: str = "utf-8",
    sep: Optional[str] = None,
    strict: bool = False,
    name: Optional[str] = None,
    df: Any = None,
    **options: Any,
) -> MultimodalDataset:
    """Load a user table ``root/file`` (see the module docstring; ``options`` are :class:`TableOptions` fields).

    A relative ``file`` is looked up in ``root``, then in the working directory (where a command was typed).
    Relative image / audio paths in the table are resolved against the table's own folder, unless
    ``image_base`` names another (relative to that folder, or absolute)."""
    if name is not None:  # the documented option: a name for the table (its cache key), same as dataset_name
        if dataset_name is not None and name != dataset_name:
            raise DatasetError(f"table: name={name!r} and dataset_name={dataset_name!r} disagree; give one")
        dataset_name = name
    if df is not None:
        return _load_frame(df, Path(root), dataset_name, strict, options)
    given = Path(file).expanduser()
    tried = [given] if given.is_absolute() else [Path(root) / given, Path.cwd() / given]
    path = next((p for p in tried if p.is_file()), tried[0])
    if not path.is_file():
        raise DatasetError(
            f"table: {file!r} not found (looked for {' and '.join(str(p) for p in dict.fromkeys(tried))}). Pass "
            "file= as an absolute path, or root= (the folder) and file= (the CSV / TSV / parquet inside it)."
        )
    if path != tried[0]:
        log.info("table: %s is not in %s; using %s (from the working directory)", given, root, path)
    path = path.resolve()
    hint = (f"Pass encoding='cp1252' (a CSV saved by Excel) or encoding='latin-1' if the file is not {encoding}; "
            "check sep= and the quoting otherwise.")
    report = LoadReport("table", root=str(root), strict=strict)
    # every cell as the text in the file: pandas' guessing turned a class named "None" and texts "NA" / "null"
    # into missing values, "01" into 1, "True" into 1 and ids "00007" and "7" into one id. Conversions happen
    # below, where the schema says so, and are reported.
    as_text = {} if path.name.lower().endswith((".parquet", ".json", ".jsonl", ".json.gz", ".jsonl.gz")) else {
        "dtype": str, "keep_default_na": False}
    raw = read_table(path, "table", sep=sep, report=report, encoding=encoding, hint=hint, **as_text)
    if len(raw) == 0:
        raise DatasetError(f"table: {path} has no records (only a header line {list(map(str, raw.columns))[:8]}, or "
                           "nothing): a truncated file, or the wrong file=?")
    name = dataset_name or f"table-{path.stem}"
    return frame_to_dataset(raw, path, path.parent, name, report=report, variant="" if dataset_name else path_tag(path),
                            **options)



def _load_frame(frame: Any, root: Path, dataset_name: Optional[str], strict: bool, options: Dict[str, Any]
                ) -> MultimodalDataset:
    """``load("table", df=...)``: a DataFrame / ``datasets.Dataset`` in memory. Image (audio) paths in it are
    relative to the working directory, or to ``image_base``; in-memory images are written once under
    ``<root>/media/`` (root: ``root=`` or ``<data dir>/table``) and read from there."""
    raw = frame_as_text(frame)
    name = dataset_name or "table-dataframe"
    report = LoadReport("table", root=str(root), strict=strict)
    base = Path.cwd()
    for key in ("image_column", "audio_column"):
        col = options.get(key, {"image_column": "image", "audio_column": None}[key])
        if col and col in raw.columns:
            raw, written = materialise_images(raw, col, root / "media")
            if written is not None:
                base = root  # the written files live under root/media
                log.info("table: %d image(s) of column %r written to %s (once; later loads reuse them)", written, col,
                         root / "media")
    text = raw.apply(lambda c: c.map(lambda v: "" if v is None else str(v)))  # images are paths by now
    tag = hashlib.sha256(pd.util.hash_pandas_object(text, index=False).values.tobytes()).hexdigest()[:8]
    return frame_to_dataset(raw, root / "<DataFrame>", base, name, report=report, variant="" if dataset_name else tag,
                            description="an in-memory table", **options)
