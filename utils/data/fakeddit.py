r"""``fakeddit``: Fakeddit fake-news detection on Reddit posts (title + image).

Three raw layouts are read, detected from the file names (``layout="auto"``):

- **official**: ``multimodal_train.tsv``, ``multimodal_validate.tsv``, ``multimodal_test_public.tsv``
  (columns ``id, clean_title, 2_way_label, 3_way_label, 6_way_label, ...``; the first column may be an
  unnamed index) and images ``<images_dir>/<id>.jpg``;
- **simple**: per-split TSVs ``train.tsv``, ``val.tsv`` (or ``validate.tsv``), ``test.tsv`` with
  ``clean_title`` (or ``title``), ``2_way_label`` and ``local_image_path``;
- the same columns in ``train_filtered.tsv``, ``val_filtered.tsv``, ``test_filtered.tsv``: the files of the
  original BERT + CLIP classifier, whose ``local_image_path`` is relative to a base folder such as the
  Drive root.

``image_base`` is the folder ``local_image_path`` is relative to. Left as None, it is ``root`` when the
first paths are found there, else the nearest folder above ``root`` where they are (logged), so
``load("fakeddit", root="/content/drive/MyDrive/fakeddit")`` finds images listed as
``fakeddit_images/x.jpg`` under ``/content/drive/MyDrive``.

``label``: ``"2_way"`` (binary), ``"3_way"`` or ``"6_way"``; classes are the published label numbers
(6-way: 0 true, 1 satire/parody, 2 misleading content, 3 imposter content, 4 false connection,
5 manipulated content). ``subset=N`` keeps a stratified, seeded sample of about N rows (each split in
proportion, stratified by the label).

Quirks (counted in ``ds.spec.extra["load_report"]``): blank lines, stray whitespace in labels, ids and
paths, Windows ``\`` in paths and exact duplicate rows are recovered; rows with too many fields, a missing
or unknown label, a missing id or image path, and rows that share an id but disagree are skipped
(``strict=True`` raises instead).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from . import register
from ._common import clean_paths, drop_duplicates, is_missing, read_table, require_columns, variant
from .quirks import LoadReport, attach
from .schema import DatasetError, DatasetSpec, MultimodalDataset

log = logging.getLogger(__name__)

OFFICIAL = {"train": "multimodal_train.tsv", "val": "multimodal_validate.tsv", "test": "multimodal_test_public.tsv"}
SIMPLE = {
    "train": ("train.tsv", "train_filtered.tsv"),
    "val": ("val.tsv", "validate.tsv", "valid.tsv", "val_filtered.tsv", "validate_filtered.tsv"),
    "test": ("test.tsv", "test_public.tsv", "test_filtered.tsv"),
}
CLASSES = {"2_way": ["0", "1"], "3_way": ["0", "1", "2"], "6_way": ["0", "1", "2", "3", "4", "5"]}
SIX_WAY_NAMES = ["true", "satire/parody", "misleading content", "imposter content", "false connection", "manipulated content"]
BASE_SEARCH_DEPTH = 3  # folders above root tried for image_base=None
BASE_SAMPLE = 20  # paths checked per candidate base folder


def _simple_files(root: Path) -> Dict[str, Path]:
    out = {}
    for split, names in SIMPLE.items():
        for n in names:
            if (root / n).is_file():
                out[split] = root / n
                break
    return out


def stratified_subset(df: pd.DataFrame, n: int, seed: int, by: str = "label") -> pd.DataFrame:
    """About ``n`` rows: each split keeps its share, each label its share within the split (seeded)."""
    if n >= len(df):
        return df
    rng = np.random.default_rng(seed)
    keep = []
    for _, part in df.groupby(["split", by], sort=True):
        k = int(round(n * len(part) / len(df)))
        k = max(k, 1)
        keep.extend(rng.choice(part.index.to_numpy(), size=min(k, len(part)), replace=False).tolist())
    return df.loc[sorted(keep)]


def _clean_column(df: pd.DataFrame, col: str, path: Path, report: LoadReport, what: str) -> pd.Series:
    """Stripped strings (stray whitespace recovered); missing values skip the row (returned as None)."""
    out = []
    for line, v in zip(df.index, df[col]):
        if is_missing(v):
            report.skipped(path, line, f"missing {what}")
            out.append(None)
            continue
        s = str(v)
        if s != s.strip():
            report.recovered(path, line, "stray whitespace", s)
        out.append(s.strip())
    return pd.Series(out, index=df.index, dtype=object)


def _labels(df: pd.DataFrame, col: str, allowed: List[str], path: Path, report: LoadReport) -> pd.Series:
    """The label column as class names; a missing or unknown label skips the row (None)."""
    out = []
    for line, v in zip(df.index, df[col]):
        if is_missing(v):
            report.skipped(path, line, "missing label")
            out.append(None)
            continue
        s = str(v)
        t = s.strip()
        t = t[: -len(".0")] if t.endswith(".0") else t
        if t not in allowed:
            report.skipped(path, line, f"unknown label in {col!r} (classes {allowed})", s)
            out.append(None)
            continue
        if s.strip() != s:
            report.recovered(path, line, "stray whitespace", s)
        out.append(t)
    return pd.Series(out, index=df.index, dtype=object)


def find_image_base(root: Path, paths: List[str], depth: int = BASE_SEARCH_DEPTH) -> Path:
    """The folder relative paths in ``paths`` resolve against: ``root`` or the nearest folder above it where
    most of the first :data:`BASE_SAMPLE` relative paths exist; ``root`` when none fits."""
    sample = [p for p in paths if p and not Path(p).is_absolute()][:BASE_SAMPLE]
    if not sample:
        return root
    for base in [root, *list(root.parents)[:depth]]:
        if sum((base / p).is_file() for p in sample) * 2 > len(sample):
            if base != root:
                log.info("fakeddit: local_image_path is relative to %s (found above root %s); pass image_base= to "
                         "choose another folder", base, root)
            return base
    return root


@register("fakeddit", task="binary", access="manual")
def load_fakeddit(
    root: Path,
    label: str = "2_way",
    layout: str = "auto",
    subset: Optional[int] = None,
    seed: int = 0,
    images_dir: str = "images",
    image_base: Optional[str] = None,
    text_column: Optional[str] = None,
    strict: bool = False,
) -> MultimodalDataset:
    """Load Fakeddit (see the module docstring for layouts and options)."""
    if label not in CLASSES:
        raise ValueError(f"fakeddit: label must be one of {list(CLASSES)}, got {label!r}")
    simple = _simple_files(root)
    if layout == "auto":
        layout = "official" if (root / OFFICIAL["train"]).is_file() or not simple else "simple"
    if layout not in ("official", "simple"):
        raise ValueError(f"fakeddit: layout must be 'auto', 'official' or 'simple', got {layout!r}")
    report = LoadReport("fakeddit", root=str(root), strict=strict)
    label_col = f"{label}_label"
    frames = []
    if layout == "official":
        for split, fname in OFFICIAL.items():
            path = root / fname
            if not path.is_file():
                raise DatasetError(
                    f"fakeddit: {fname} not found under {root}. Download the three multimodal_*.tsv files "
                    "(https://github.com/entitize/Fakeddit), or use the simple layout (train.tsv, val.tsv, test.tsv "
                    "or train_filtered.tsv, val_filtered.tsv, test_filtered.tsv)."
                )
            df = read_table(path, "fakeddit", report=report, dtype={"id": str, label_col: str})
            df = df.loc[:, [c for c in df.columns if not str(c).startswith("Unnamed")]]
            tcol = text_column or "clean_title"
            require_columns(df, ["id", tcol, label_col], path, "fakeddit")
            frame = pd.DataFrame({
                "id": _clean_column(df, "id", path, report, "id"), "text": df[tcol].where(df[tcol].notna(), None),
                "label": _labels(df, label_col, CLASSES[label], path, report), "split": split,
            }, index=df.index)
            frame = frame.dropna(subset=["id", "label"])
            frame["image_path"] = [f"{images_dir}/{i}.jpg" for i in frame["id"]]
            frames.append((path, frame))
    else:
        if set(simple) != {"train", "val", "test"}:
            raise DatasetError(
                f"fakeddit: the simple layout needs train.tsv, val.tsv (or validate.tsv) and test.tsv, or "
                f"train_filtered.tsv, val_filtered.tsv and test_filtered.tsv, under {root}; found "
                f"{sorted(p.name for p in simple.values())}."
            )
        for split, path in simple.items():
            df = read_table(path, "fakeddit", report=report, dtype={"id": str, label_col: str, "local_image_path": str})
            df = df.loc[:, [c for c in df.columns if not str(c).startswith("Unnamed")]]
            tcol = text_column or ("clean_title" if "clean_title" in df.columns else "title")
            require_columns(df, [tcol, label_col, "local_image_path"], path, "fakeddit",
                            "The simple layout has columns clean_title (or title), 2_way_label and local_image_path.")
            ids = (_clean_column(df, "id", path, report, "id") if "id" in df.columns
                   else pd.Series([f"{split}{k:07d}" for k in range(len(df))], index=df.index))
            frame = pd.DataFrame({
                "id": ids, "text": df[tcol].where(df[tcol].notna(), None),
                "label": _labels(df, label_col, CLASSES[label], path, report),
                "image_path": clean_paths(df["local_image_path"].tolist(), list(df.index), path, report,
                                          missing="missing local_image_path"), "split": split,
            }, index=df.index)
            frames.append((path, frame.dropna(subset=["id", "label", "image_path"])))
    kept = []
    for path, frame in frames:
        frame = drop_duplicates(frame, "id", report, path, "post id")
        kept.append(frame.assign(file=str(path), line=frame.index))
    df = pd.concat(kept, ignore_index=True)
    across = df["id"].duplicated(keep=False)
    if across.any():  # one post in two split files: which split it belongs to is not known
        for f, line, rid in df.loc[across, ["file", "line", "id"]].itertuples(index=False):
            report.skipped(f, line, "one post id in two splits", rid)
        df = df[~across].reset_index(drop=True)
    report.finish(len(df))
    if subset:
        df = stratified_subset(df, int(subset), seed).reset_index(drop=True)
    if image_base is not None:
        base = Path(image_base).expanduser()
        base = base if base.is_absolute() else root / base
    else:
        base = find_image_base(root, df["image_path"].tolist()) if layout == "simple" else root
    spec = DatasetSpec(
        name="fakeddit", task="binary" if label == "2_way" else "multiclass", classes=CLASSES[label],
        root=str(base), text_template=f"the post title ({text_column or 'clean_title'})",
        variant=variant(label, f"n{subset}-seed{seed}" if subset else "", "simple" if layout == "simple" else ""),
        description=f"Fakeddit {label.replace('_', '-')} labels, {layout} layout",
        extra=attach({"label_names": SIX_WAY_NAMES} if label == "6_way" else {}, report),
    )
    return MultimodalDataset(df[["id", "text", "image_path", "label", "split"]], spec)
