"""``fakeddit``: Fakeddit fake-news detection on Reddit posts (title + image).

Two raw layouts are read:

- **official**: ``multimodal_train.tsv``, ``multimodal_validate.tsv``, ``multimodal_test_public.tsv``
  (columns ``id, clean_title, 2_way_label, 3_way_label, 6_way_label, ...``; the first column may be an
  unnamed index) and images ``<images_dir>/<id>.jpg``;
- **simple**: per-split TSVs ``train.tsv``, ``val.tsv`` (or ``validate.tsv``), ``test.tsv`` with
  ``clean_title`` (or ``title``), ``2_way_label`` and ``local_image_path`` (relative to ``image_base``).

``label``: ``"2_way"`` (binary), ``"3_way"`` or ``"6_way"``; classes are the published label numbers
(6-way: 0 true, 1 satire/parody, 2 misleading content, 3 imposter content, 4 false connection,
5 manipulated content). ``subset=N`` keeps a stratified, seeded sample of about N rows (each split in
proportion, stratified by the label).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pandas as pd

from . import register
from ._common import read_table, require_columns, unknown_values, variant
from .schema import DatasetError, DatasetSpec, MultimodalDataset

log = logging.getLogger(__name__)

OFFICIAL = {"train": "multimodal_train.tsv", "val": "multimodal_validate.tsv", "test": "multimodal_test_public.tsv"}
SIMPLE = {"train": ("train.tsv",), "val": ("val.tsv", "validate.tsv", "valid.tsv"), "test": ("test.tsv", "test_public.tsv")}
CLASSES = {"2_way": ["0", "1"], "3_way": ["0", "1", "2"], "6_way": ["0", "1", "2", "3", "4", "5"]}
SIX_WAY_NAMES = ["true", "satire/parody", "misleading content", "imposter content", "false connection", "manipulated content"]


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
) -> MultimodalDataset:
    """Load Fakeddit (see the module docstring for layouts and options)."""
    if label not in CLASSES:
        raise ValueError(f"fakeddit: label must be one of {list(CLASSES)}, got {label!r}")
    simple = _simple_files(root)
    if layout == "auto":
        layout = "official" if (root / OFFICIAL["train"]).is_file() or not simple else "simple"
    if layout not in ("official", "simple"):
        raise ValueError(f"fakeddit: layout must be 'auto', 'official' or 'simple', got {layout!r}")
    label_col = f"{label}_label"
    frames = []
    if layout == "official":
        for split, fname in OFFICIAL.items():
            path = root / fname
            if not path.is_file():
                raise DatasetError(
                    f"fakeddit: {fname} not found under {root}. Download the three multimodal_*.tsv files "
                    "(https://github.com/entitize/Fakeddit) or use the simple layout (train.tsv, val.tsv, test.tsv)."
                )
            df = read_table(path, "fakeddit", dtype={"id": str})
            df = df.loc[:, [c for c in df.columns if not str(c).startswith("Unnamed")]]
            tcol = text_column or "clean_title"
            require_columns(df, ["id", tcol, label_col], path, "fakeddit")
            unknown_values(df[label_col].astype(str).str.replace(r"\.0$", "", regex=True).tolist(), CLASSES[label], path, label_col, "fakeddit")
            frames.append(pd.DataFrame({
                "id": df["id"].astype(str), "text": df[tcol].where(df[tcol].notna(), None),
                "image_path": [f"{images_dir}/{i}.jpg" for i in df["id"].astype(str)],
                "label": df[label_col].astype(str).str.replace(r"\.0$", "", regex=True), "split": split,
            }))
    else:
        if set(simple) != {"train", "val", "test"}:
            raise DatasetError(
                f"fakeddit: simple layout needs train.tsv, val.tsv (or validate.tsv) and test.tsv under {root}; "
                f"found {sorted(p.name for p in simple.values())}."
            )
        for split, path in simple.items():
            df = read_table(path, "fakeddit")
            df = df.loc[:, [c for c in df.columns if not str(c).startswith("Unnamed")]]
            tcol = text_column or ("clean_title" if "clean_title" in df.columns else "title")
            require_columns(df, [tcol, label_col, "local_image_path"], path, "fakeddit")
            labels = df[label_col].astype(str).str.replace(r"\.0$", "", regex=True)
            unknown_values(labels.tolist(), CLASSES[label], path, label_col, "fakeddit")
            ids = df["id"].astype(str) if "id" in df.columns else [f"{split}{i:07d}" for i in range(len(df))]
            frames.append(pd.DataFrame({
                "id": list(ids), "text": df[tcol].where(df[tcol].notna(), None),
                "image_path": df["local_image_path"].astype(str).tolist(), "label": labels, "split": split,
            }))
    df = pd.concat(frames, ignore_index=True)
    if subset:
        df = stratified_subset(df, int(subset), seed).reset_index(drop=True)
    base = image_base if image_base is not None else str(root)
    spec = DatasetSpec(
        name="fakeddit", task="binary" if label == "2_way" else "multiclass", classes=CLASSES[label],
        root=str(Path(base) if Path(base).is_absolute() else root / base), text_template=f"the post title ({text_column or 'clean_title'})",
        variant=variant(label, f"n{subset}-seed{seed}" if subset else "", "simple" if layout == "simple" else ""),
        description=f"Fakeddit {label.replace('_', '-')} labels, {layout} layout",
        extra={"label_names": SIX_WAY_NAMES} if label == "6_way" else {},
    )
    return MultimodalDataset(df, spec)
