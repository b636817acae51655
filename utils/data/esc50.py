"""``esc50``: ESC-50 environmental sounds (50 classes x 40 clips of 5 s), optionally with per-class
images and texts for three-modality (text, image, audio) work.

Raw layout (the GitHub archive; ``ESC-50-master/`` inside ``root`` is also accepted)::

    <root>/meta/esc50.csv        filename, fold, target, category, esc10, src_file, take
    <root>/audio/<filename>.wav

Folds: ``test_fold`` (default 5) is test, ``val_fold`` (default 4) is val, the rest train.
``esc10=True`` keeps the ESC-10 subset. Per-class inputs you supply (both optional):

    <root>/<class_images>/<category>/*.jpg|png    images of each class; clip k of a class gets image k mod n
    <root>/<class_texts>                          CSV with columns ``class, text``

With them every clip carries its class's text and image: useful to build a unified text-image-audio
space, but the text and image then encode the label (they are chosen by class), so heads trained on
them measure nothing about sound: say so when reporting.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional

import pandas as pd

from . import register
from ._common import read_table, rel, require_columns, require_file, variant
from .schema import DatasetError, DatasetSpec, MultimodalDataset

log = logging.getLogger(__name__)

_IMAGES = (".jpg", ".jpeg", ".png")


@register("esc50", task="multiclass", access="open")
def load_esc50(
    root: Path,
    test_fold: int = 5,
    val_fold: Optional[int] = 4,
    esc10: bool = False,
    class_images: Optional[str] = None,
    class_texts: Optional[str] = None,
) -> MultimodalDataset:
    """Load ESC-50 (audio; plus per-class text and image when ``class_texts`` / ``class_images`` are given)."""
    if not (root / "meta" / "esc50.csv").is_file() and (root / "ESC-50-master" / "meta" / "esc50.csv").is_file():
        root = root / "ESC-50-master"
    path = require_file(root, "meta/esc50.csv", "esc50", "clip metadata")
    meta = read_table(path, "esc50")
    require_columns(meta, ["filename", "fold", "target", "category"], path, "esc50")
    if esc10:
        require_columns(meta, ["esc10"], path, "esc50")
        meta = meta[meta["esc10"].astype(str).str.lower().isin(["true", "1"])].reset_index(drop=True)
    folds = set(meta["fold"].astype(int))
    for f in (test_fold, val_fold):
        if f is not None and f not in folds:
            raise DatasetError(f"esc50: fold {f} is not in {path} (folds {sorted(folds)})")
    order = meta.drop_duplicates("target").sort_values("target")
    classes = order["category"].astype(str).tolist()
    split = ["test" if f == test_fold else "val" if f == val_fold else "train" for f in meta["fold"].astype(int)]
    df = pd.DataFrame({
        "id": meta["filename"].astype(str).str.replace(r"\.wav$", "", regex=True),
        "audio_path": ["audio/" + f for f in meta["filename"].astype(str)],
        "label": meta["category"].astype(str), "split": split, "fold": meta["fold"].astype(int),
    })
    modalities = ["audio"]
    if class_texts:
        tpath = require_file(root, class_texts, "esc50", "per-class texts (columns class, text)")
        t = read_table(tpath, "esc50")
        require_columns(t, ["class", "text"], tpath, "esc50")
        texts: Dict[str, str] = dict(zip(t["class"].astype(str), t["text"].astype(str)))
        lacking = sorted(set(df["label"]) - set(texts))
        if lacking:
            raise DatasetError(f"esc50: {tpath} has no text for class(es) {lacking[:10]}; add a 'class, text' row for each.")
        df["text"] = df["label"].map(texts)
        modalities.insert(0, "text")
    if class_images:
        base = root / class_images
        if not base.is_dir():
            raise DatasetError(f"esc50: class image folder {base} not found; make one sub-folder per class name.")
        per_class: Dict[str, List[str]] = {}
        for c in sorted(set(df["label"])):
            files = sorted(p for p in (base / c).glob("*") if p.suffix.lower() in _IMAGES) if (base / c).is_dir() else []
            if not files:
                raise DatasetError(f"esc50: no image for class {c!r} in {base / c}; add at least one .jpg/.png.")
            per_class[c] = [rel(p, root) for p in files]
        k_in_class = df.groupby("label").cumcount()
        df["image_path"] = [per_class[c][k % len(per_class[c])] for c, k in zip(df["label"], k_in_class)]
        modalities.insert(len(modalities) - 1, "image")
    spec = DatasetSpec(
        name="esc50", task="multiclass", classes=[c for c in classes if c in set(df["label"])], root=str(root),
        modalities=modalities, text_template="the class text from " + class_texts if class_texts else "",
        variant=variant("esc10" if esc10 else "", "classmedia" if (class_texts or class_images) else ""),
        description="ESC-50 environmental sounds, 5 folds",
    )
    return MultimodalDataset(df, spec)
