"""``table``: your own data. Any CSV / TSV / parquet / JSON(L) with text, image path and label columns.

>>> load("table", root="/content/drive/MyDrive/mydata", file="records.csv",
...      text_column="caption", image_column="file", label_column="class")

Options: ``file`` (relative to ``root`` or absolute), ``text_column`` (or ``text_template``, a
``str.format`` template over columns such as ``"{title}. {body}"``), ``image_column``, ``audio_column``,
``label_column``, ``split_column`` (values like train / validate / test; without it the rows are split
stratified and seeded, grouped by ``group_column`` when given), ``id_column`` (default: the row
number), ``image_base`` (folder the image paths are relative to; default ``root``, the layout of a
Drive folder on Colab), ``task`` (``auto``: binary for 2 classes, else multiclass; ``multilabel``
splits labels on ``label_sep``), ``classes`` (order; default sorted), ``name`` (the cache key).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import pandas as pd

from . import register
from ._common import fill_template, is_missing, normalise_split, read_table, require_columns, unknown_values
from .schema import DatasetError, DatasetSpec, MultimodalDataset
from .splits import assign_splits


def _label_str(v: Any) -> Any:
    if is_missing(v):
        return None
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def frame_to_dataset(
    raw: pd.DataFrame,
    path: Path,
    root: Path,
    name: str,
    text_column: Optional[str] = "text",
    image_column: Optional[str] = "image",
    label_column: str = "label",
    split_column: Optional[str] = None,
    id_column: Optional[str] = None,
    group_column: Optional[str] = None,
    audio_column: Optional[str] = None,
    text_template: Optional[str] = None,
    image_base: Optional[str] = None,
    task: str = "auto",
    label_sep: Optional[str] = None,
    classes: Optional[Sequence[str]] = None,
    label_map: Optional[dict] = None,
    fractions: Tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    variant: str = "",
    description: str = "",
) -> MultimodalDataset:
    """The contract table from an already-read user table (shared by ``table`` and ``musti``)."""
    needed = [label_column] + [c for c in (text_column if not text_template else None, image_column, audio_column,
                                           split_column, id_column, group_column) if c]
    require_columns(raw, needed, path, name, "Name the columns with text_column=, image_column=, label_column=, ...")
    raw = raw.reset_index(drop=True)
    labels_raw = [_label_str(v) for v in raw[label_column]]
    if label_map:
        labels_raw = [None if v is None else str(label_map.get(v, label_map.get(str(v), v))) for v in labels_raw]
    missing = [i for i, v in enumerate(labels_raw) if v is None]
    if missing:
        raise DatasetError(
            f"{name}: column {label_column!r} of {path} is empty on line(s) {[m + 2 for m in missing[:10]]}; "
            "fill in or remove those rows."
        )
    if task == "multilabel":
        sep = label_sep or ","
        labels: List[Any] = [[p.strip() for p in v.split(sep) if p.strip()] for v in labels_raw]
        found = sorted({c for lab in labels for c in lab})
    else:
        labels = labels_raw
        found = sorted(set(labels))
    if classes is not None:
        classes = [str(c) for c in classes]
        flat = [c for lab in labels for c in lab] if task == "multilabel" else labels
        unknown_values(flat, classes, path, label_column, name)
    else:
        classes = found
    if task == "auto":
        task = "binary" if len(classes) == 2 else "multiclass"
    if text_template:
        texts: List[Any] = fill_template(text_template, raw.to_dict("records"))
    elif text_column:
        texts = [None if is_missing(v) else str(v) for v in raw[text_column]]
    else:
        texts = [None] * len(raw)
    ids = raw[id_column].astype(str).tolist() if id_column else [f"r{i:07d}" for i in range(len(raw))]
    df = pd.DataFrame({"id": ids, "text": texts, "label": labels})
    modalities = ["text"] if (text_column or text_template) else []
    if image_column:
        df["image_path"] = [None if is_missing(v) else str(v) for v in raw[image_column]]
        modalities.append("image")
    if audio_column:
        df["audio_path"] = [None if is_missing(v) else str(v) for v in raw[audio_column]]
        modalities.append("audio")
    if group_column:
        df["group"] = raw[group_column].astype(str).tolist()
    if split_column:
        df["split"] = normalise_split(raw[split_column].tolist(), path, split_column, name)
    else:
        df["split"] = assign_splits(labels, tuple(fractions), seed, groups=df["group"].tolist() if group_column else None)
    base = Path(image_base) if image_base else root
    if not base.is_absolute():
        base = root / base
    spec = DatasetSpec(
        name=name, task=task, classes=classes, root=str(base), modalities=modalities,
        text_template=text_template or (f"column {text_column!r}" if text_column else ""), variant=variant,
        description=description or f"user table {path.name}",
    )
    return MultimodalDataset(df, spec)


@register("table", task="any", access="local")
def load_table(root: Path, file: str = "records.csv", name: Optional[str] = None, **options: Any) -> MultimodalDataset:
    """Load a user table ``root/file`` (see the module docstring for the options)."""
    path = Path(file) if Path(file).is_absolute() else Path(root) / file
    if not path.is_file():
        raise DatasetError(
            f"table: {path} not found. Pass root= (the folder) and file= (the CSV / TSV / parquet inside it)."
        )
    raw = read_table(path, "table")
    return frame_to_dataset(raw, path, Path(root), name or f"table-{path.stem}", **options)
