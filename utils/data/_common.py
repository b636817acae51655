"""Helpers shared by the dataset loaders: reading raw files with errors that say where and what to do."""

from __future__ import annotations

import logging
import string
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

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


def read_table(path: Path, dataset: str, sep: Optional[str] = None, **kw: Any) -> pd.DataFrame:
    """Read a CSV / TSV (optionally .gz) / parquet / JSON / JSON-lines file into a DataFrame."""
    path = Path(path)
    name = path.name.lower()
    try:
        if name.endswith(".parquet"):
            return pd.read_parquet(path)
        if name.endswith(".jsonl") or name.endswith(".json.gz") or name.endswith(".jsonl.gz"):
            return pd.read_json(path, lines=True, **kw)
        if name.endswith(".json"):
            try:
                return pd.read_json(path, **kw)
            except ValueError:
                return pd.read_json(path, lines=True, **kw)
        if sep is None:
            sep = "\t" if (name.endswith(".tsv") or name.endswith(".tsv.gz")) else ","
        return pd.read_csv(path, sep=sep, **kw)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise DatasetError(f"{dataset}: could not parse {path}: {e}. Check the file is the published one, unmodified.") from e


def require_columns(df: pd.DataFrame, columns: Iterable[str], path: Any, dataset: str, hint: str = "") -> None:
    """Raise naming the file and the missing columns (and the columns it does have)."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DatasetError(
            f"{dataset}: {path} lacks column(s) {missing}; it has {list(df.columns)[:30]}. "
            + (hint or "Pass the right column names as loader options, or check the file version.")
        )


def unknown_values(values: Sequence[Any], allowed: Iterable[Any], path: Any, column: str, dataset: str,
                   offset: int = 2) -> None:
    """Raise naming the rows (file line numbers, header = line 1) whose value is not in ``allowed``."""
    allowed_set = {str(a) for a in allowed}
    bad = [(i, v) for i, v in enumerate(values) if str(v) not in allowed_set]
    if bad:
        shown = "; ".join(f"line {i + offset}: {v!r}" for i, v in bad[:10])
        raise DatasetError(
            f"{dataset}: unknown value(s) in column {column!r} of {path} ({len(bad)} row(s)): {shown}. "
            f"Expected one of {sorted(allowed_set)[:20]}. Fix or remove those rows."
        )


def normalise_split(values: Sequence[Any], path: Any, column: str, dataset: str) -> List[str]:
    """Map split names (train / validate / dev / test ...) onto train / val / test; raise on others."""
    out = []
    for i, v in enumerate(values):
        key = str(v).strip().lower()
        if key not in SPLIT_ALIASES:
            raise DatasetError(
                f"{dataset}: split value {v!r} in column {column!r} of {path} (row {i}) is not one of "
                f"{sorted(SPLIT_ALIASES)}. Rename it, or pass split_column=None to make splits."
            )
        out.append(SPLIT_ALIASES[key])
    return out


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


def is_missing(v: Any) -> bool:
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
