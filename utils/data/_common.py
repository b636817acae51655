"""Helpers shared by the dataset loaders: reading raw files with errors that say where and what to do."""

from __future__ import annotations

import csv
import gzip
import logging
import re
import string
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from .quirks import LoadReport
from .schema import DatasetError

log = logging.getLogger(__name__)

SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validate": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test", "test_public": "test",
}


def download_hint(dataset: str) -> str:
    """One line telling the user where the files come from (see utils.data.download.SOURCES)."""
    from .download import SOURCES

    src = SOURCES.get(dataset)
    if src is None:
        return ""
    return f" Get it with utils.data.download.fetch({dataset!r}) or by hand from {src.page}."


def require_file(root: Path, rel: str, dataset: str, what: str = "") -> Path:
    """``root / rel`` if it is a file, else a :class:`DatasetError` naming it and saying how to get it."""
    path = Path(root) / rel
    if not path.is_file():
        raise DatasetError(
            f"{dataset}: file {rel!r} not found under {root}{' (' + what + ')' if what else ''}. "
            f"Point root/DATA_DIR at the unpacked dataset.{download_hint(dataset)}"
        )
    return path


def read_table(
    path: Path,
    dataset: str,
    sep: Optional[str] = None,
    report: Optional[LoadReport] = None,
    encoding: str = "utf-8",
    hint: Optional[str] = None,
    **kw: Any,
) -> pd.DataFrame:
    """Read a CSV / TSV (optionally .gz) / parquet / JSON / JSON-lines file into a DataFrame.

    For CSV / TSV the index holds each row's line number in the file (1-based, the header is line 1), so
    loaders can name the line of a bad value; for JSON lines and parquet it holds the row number from 1. With a ``report``, blank lines and stray whitespace around
    column names are recovered, and rows with too many fields are skipped, all counted in it; without one
    such a row is an error. ``hint``: what to tell the user when the file does not parse (default: it
    should be the published file); ``encoding`` names the text encoding.
    """
    path = Path(path)
    name = path.name.lower()
    fix = hint or "Check the file is the published one, unmodified."
    try:
        if name.endswith(".parquet"):
            df = pd.read_parquet(path)
            df.index = pd.RangeIndex(1, len(df) + 1)  # row numbers from 1, as for JSON lines
            return df
        if name.endswith(".jsonl") or name.endswith(".json.gz") or name.endswith(".jsonl.gz"):
            df = pd.read_json(path, lines=True, encoding=encoding, **kw)
            df.index = df.index + 1
            return df
        if name.endswith(".json"):
            try:
                return pd.read_json(path, encoding=encoding, **kw)
            except ValueError:
                df = pd.read_json(path, lines=True, encoding=encoding, **kw)
                df.index = df.index + 1
                return df
        if sep is None:
            sep = "\t" if (name.endswith(".tsv") or name.endswith(".tsv.gz")) else ","
        return _read_delimited(path, dataset, sep, report, encoding, **kw)
    except pd.errors.EmptyDataError as e:
        raise DatasetError(f"{dataset}: {path} is empty (no header line and no records: a truncated copy or the "
                           "wrong file?)") from e
    except UnicodeDecodeError as e:
        raise DatasetError(f"{dataset}: {path} is not valid {encoding} text ({_decode_error_place(path, encoding)}). {fix}") from e
    except (pd.errors.ParserError, ValueError) as e:
        raise DatasetError(f"{dataset}: could not parse {path}: {e}. {fix}") from e


def _read_delimited(path: Path, dataset: str, sep: str, report: Optional[LoadReport], encoding: str, **kw: Any) -> pd.DataFrame:
    """CSV / TSV with line numbers as the index (see :func:`read_table`)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        df = pd.read_csv(path, sep=sep, encoding=encoding, skip_blank_lines=False,
                         on_bad_lines="warn" if report is not None else "error", **kw)
    bad: List[int] = []
    for w in caught:
        if issubclass(w.category, pd.errors.ParserWarning):
            found = [int(n) for n in _BAD_LINE.findall(str(w.message))]
            bad.extend(found)
            if not found:
                warnings.warn(w.message, w.category)
    records = [k for k in range(2, len(df) + len(bad) + 2) if k not in set(bad)]
    lines = _physical_lines(path, sep, encoding, len(df) + len(bad) + 1)
    df.index = pd.Index([lines[k - 1] for k in records] if lines else records)
    if report is not None:
        for k in bad:
            report.skipped(path, lines[k - 1] if lines else k, "wrong number of fields")
        stripped = {c: c.strip() for c in df.columns if isinstance(c, str) and c != c.strip()}
        if stripped and len(set(stripped.values()) | (set(df.columns) - set(stripped))) == len(df.columns):
            for c in stripped:
                report.recovered(path, 1, "stray whitespace in a column name", repr(c))
            df = df.rename(columns=stripped)
    blank = _blank_cells(df.iloc[:, 1:]).all(axis=1) if len(df.columns) else pd.Series(False, index=df.index)
    if blank.any():  # a blank (or whitespace-only) line reads as an empty first field and missing others
        blank &= df.iloc[:, 0].map(is_missing)
    if blank.any():
        if report is not None:
            for line in df.index[blank]:
                report.recovered(path, line, "blank line")
        df = df.loc[~blank].copy()
        for c in df.columns:  # integer columns that read as float only because of the blank lines
            col = df[c]
            if col.dtype.kind == "f" and len(col) and col.notna().all() and (col % 1 == 0).all():
                df[c] = col.astype("int64")
    return df


_BAD_LINE = re.compile(r"Skipping line (\d+)")


def _blank_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Missing cells: NaN, or (a table read as text, ``keep_default_na=False``) empty / whitespace strings."""
    out = df.isna()
    for c in df.columns:
        if pd.api.types.is_object_dtype(df[c]) or pd.api.types.is_string_dtype(df[c]):
            out[c] = out[c].to_numpy() | df[c].astype("string").str.strip().eq("").fillna(True).to_numpy()
    return out


def _open_text(path: Path, encoding: str):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def _physical_lines(path: Path, sep: str, encoding: str, n_records: int) -> Optional[List[int]]:
    """Start line of every record (header first) when a quoted field spans lines; None when records are lines."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    n_lines, last = 0, b"\n"
    with opener(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            n_lines += chunk.count(b"\n")
            last = chunk[-1:]
    n_lines += last != b"\n"
    if n_lines <= n_records:
        return None
    starts, prev = [], 0
    with _open_text(path, encoding) as f:
        reader = csv.reader(f, delimiter=sep)
        for _ in reader:
            starts.append(prev + 1)
            prev = reader.line_num
    return starts if len(starts) >= n_records else None


def _decode_error_place(path: Path, encoding: str) -> str:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    try:
        data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        return f"line {line}: byte {data[e.start:e.start + 1]!r} is not {encoding}"
    return "a byte that does not decode"


def require_columns(df: pd.DataFrame, columns: Iterable[str], path: Any, dataset: str, hint: str = "") -> None:
    """Raise naming the file and the missing columns (and the columns it does have)."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DatasetError(
            f"{dataset}: {path} lacks column(s) {missing}; it has {list(df.columns)[:30]}. "
            + (hint or "Pass the right column names as loader options, or check the file version.")
        )


CANONICAL_SPLITS = ("train", "val", "test")


def normalise_split(values: Sequence[Any], path: Any, column: str, dataset: str,
                    report: Optional[LoadReport] = None, lines: Optional[Sequence[int]] = None) -> List[Optional[str]]:
    """Map split names (train / validate / dev / test ...) onto train / val / test.

    Without a ``report`` an unknown value raises; with one it becomes None and is recorded as skipped
    (``lines``: the file line of each value), and a value that differs only in case or whitespace is
    recorded as recovered."""
    values = list(values)
    if all(isinstance(v, str) and v in CANONICAL_SPLITS for v in set(values)):  # the common case: already clean
        return values
    out: List[Optional[str]] = []
    for i, v in enumerate(values):
        key = str(v).strip().lower()
        line = lines[i] if lines is not None else i + 2
        if key not in SPLIT_ALIASES:
            if report is None:
                raise DatasetError(
                    f"{dataset}: split value {v!r} in column {column!r} of {path} (line {line}) is not one of "
                    f"{sorted(SPLIT_ALIASES)}. Rename it, or pass split_column=None to make splits."
                )
            report.skipped(path, line, f"unknown split in {column!r}", v)
            out.append(None)
            continue
        if report is not None and str(v) != key:
            report.recovered(path, line, "stray whitespace" if str(v).strip() == key else "inconsistent case", v)
        out.append(SPLIT_ALIASES[key])
    return out


def canonical(value: Any, known: Mapping[str, str]) -> Tuple[Optional[str], str]:
    """``(name, how)`` for a raw ``value`` against ``known`` (``{casefolded name: name}``, see :func:`fold_map`).

    ``how`` is ``""`` for an exact match, ``"stray whitespace"`` or ``"inconsistent case"`` when only those
    differ, ``"unknown"`` (name None) when nothing matches.
    """
    if is_missing(value):
        return None, "missing"
    s = str(value)
    if s in known.values():
        return s, ""
    t = s.strip()
    if t in known.values():
        return t, "stray whitespace"
    hit = known.get(" ".join(t.split()).casefold())
    return (hit, "inconsistent case") if hit is not None else (None, "unknown")


def fold_map(names: Iterable[str]) -> Dict[str, str]:
    """``{casefolded name: name}``; names that fold together are left out (then no case fix is unambiguous)."""
    out: Dict[str, str] = {}
    clash = set()
    for n in names:
        k = " ".join(str(n).split()).casefold()
        if k in out and out[k] != n:
            clash.add(k)
        out[k] = str(n)
    for k in clash:
        del out[k]
    return out


def drop_duplicates(df: pd.DataFrame, key: str, report: LoadReport, path: Any, what: str = "") -> pd.DataFrame:
    """Rows sharing ``key``: exact copies are dropped but one (recovered); rows that disagree are all
    skipped (which one is right is not known). The index must hold line numbers (:func:`read_table`)."""
    keys = df[key].astype(str)
    dup = keys.duplicated(keep=False)
    if not dup.any():
        return df
    drop = []
    for k, part in df[dup].groupby(keys[dup], sort=False):
        same = part.astype(str).drop_duplicates()
        if len(same) == 1:
            for line in part.index[1:]:
                report.recovered(path, line, f"duplicate line (same {what or key})", k)
            drop.extend(part.index[1:])
        else:
            for line in part.index:
                report.skipped(path, line, f"conflicting rows for one {what or key}", k)
            drop.extend(part.index)
    return df.drop(index=drop)


def to_number(value: Any) -> Tuple[Optional[float], str]:
    """``(number, how)`` from a raw cell: ``how`` is ``""`` when it read cleanly, ``"bad number"`` when a
    fix was needed (``"5O"`` -> 50, ``"57,5"`` -> 57.5, ``" 3 "``), ``"missing"`` or ``"not a number"``."""
    if is_missing(value):
        return None, "missing"
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value), ""
    s = str(value)
    try:
        return float(s), ""
    except ValueError:
        pass
    t = s.strip().replace(",", ".")
    t = re.sub(r"(?<=\d)[Oo]|[Oo](?=\d)|^[Oo]$", "0", t)
    try:
        return float(t), "bad number"
    except ValueError:
        return None, "not a number"


def template_fields(template: str) -> List[str]:
    """Field names of a ``str.format`` template; only plain names are allowed (no attribute/index access)."""
    fields = []
    for _, name, _, _ in string.Formatter().parse(template):
        if name is None:
            continue
        if not name or not name.replace("_", "").replace(" ", "").isalnum():
            raise DatasetError(f"text template {template!r}: field {{{name}}} must be a plain column name")
        fields.append(name)
    return fields


def fill_template(template: str, rows: Iterable[Mapping[str, Any]], missing: str = "unknown") -> List[str]:
    """Fill ``template`` for each row; missing values read ``missing``."""
    fields = template_fields(template)
    out = []
    for row in rows:
        values = {f: (missing if is_missing(row.get(f)) else _fmt(row.get(f))) for f in fields}
        out.append(template.format(**values))
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def column_strings(col: "pd.Series", strip: bool = False) -> List[Optional[str]]:
    """A column as Python strings, ``None`` where the value is missing or blank (vectorised: the per-cell
    loop over an arrow-backed pandas column costs seconds at 400,000 rows)."""
    vals = col.astype("string")
    blank = vals.isna() | vals.str.strip().eq("")
    if strip:
        vals = vals.str.strip()
    return vals.astype(object).where(~blank.to_numpy(), None).tolist()


def clean_paths(values: Sequence[Any], lines: Sequence[int], path: Any, report: LoadReport,
                missing: Optional[str] = None) -> List[Optional[str]]:
    """Media paths of a column with stray whitespace, Windows separators and a leading ``./`` recovered (and
    counted in ``report``); a missing path is None, recorded as skipped with reason ``missing`` when given.
    The common case (nothing to fix, nothing missing) is vectorised."""
    col = pd.Series(list(values), dtype="string")
    odd = (col.str.strip().ne(col) | col.str.contains("\\", regex=False) | col.str.startswith("./")).fillna(False)
    if not odd.to_numpy().any() and (missing is None or not col.isna().any()):
        return column_strings(col)
    out: List[Optional[str]] = []
    for line, v in zip(lines, values):
        if is_missing(v):
            if missing is not None:
                report.skipped(path, line, missing)
            out.append(None)
            continue
        s = str(v)
        t = s.strip()
        if t != s:
            report.recovered(path, line, "stray whitespace", s)
        if "\\" in t and not Path(t).is_absolute():
            report.recovered(path, line, "Windows path separators", t)
            t = t.replace("\\", "/")
        out.append(t[2:] if t.startswith("./") else t)
    return out


def is_missing(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip() == ""
    if v is None:
        return True
    if isinstance(v, float) and np.isnan(v):
        return True
    if v is pd.NA or v is pd.NaT:
        return True
    return isinstance(v, str) and v.strip() == ""


def warn_leaky(dataset: str, what: str) -> None:
    log.warning(
        "%s: the full text template includes %s, which encodes the label: scores with it are not a fair "
        "measure of the text modality (use the default template for experiments).", dataset, what,
    )


def variant(*parts: Any) -> str:
    """Join the non-empty option strings that change the rows into a short cache-key suffix."""
    return "-".join(str(p) for p in parts if p not in (None, "", False))


def index_files(folder: Path, suffixes: Sequence[str] = (".jpg", ".jpeg", ".png")) -> Dict[str, Path]:
    """File name -> path for every file under ``folder`` (one walk; used to find images spread over parts)."""
    out: Dict[str, Path] = {}
    if not folder.is_dir():
        return out
    for p in folder.rglob("*"):
        if p.suffix.lower() in suffixes and p.is_file():
            out.setdefault(p.name, p)
    return out


def rel(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)
