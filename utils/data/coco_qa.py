"""``coco_qa``: COCO-QA (one-word answers on MS-COCO images) as a multiclass task.

Raw layout (``cocoqa-2015-05-17.zip`` unpacked, COCO images beside it)::

    <root>/train/questions.txt  answers.txt  img_ids.txt  types.txt   (aligned, one per line)
    <root>/test/...
    <root>/images/  COCO_train2014_%012d.jpg / COCO_val2014_%012d.jpg (2014) or %012d.jpg (2017),
                    in any sub-folders (train2014/, val2014/, train2017/ ...)

The question type (object / number / color / location) is kept in ``question_type``. Official train /
test; val is carved from train (stratified, seeded, grouped by image).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List

import pandas as pd

from . import register
from ._common import index_files, rel, require_file
from .schema import DatasetError, DatasetSpec, MultimodalDataset
from .splits import carve_validation

PARTS = ("questions", "answers", "img_ids", "types")
TYPES = {"0": "object", "1": "number", "2": "color", "3": "location"}
_COCO_NAME = re.compile(r"(?:COCO_(?:train|val|test)2014_)?(\d{12})\.jpg$")


def image_index(folder: Path) -> Dict[int, Path]:
    """COCO image id -> file, for 2014 (``COCO_train2014_%012d.jpg``) and 2017 (``%012d.jpg``) names."""
    out: Dict[int, Path] = {}
    for name, path in index_files(folder, (".jpg",)).items():
        m = _COCO_NAME.fullmatch(name)
        if m:
            out.setdefault(int(m.group(1)), path)
    return out


def _read_lines(path: Path) -> List[str]:
    return [ln.rstrip("\n").strip() for ln in path.read_text(encoding="utf-8").splitlines()]


@register("coco_qa", task="multiclass", access="open")
def load_coco_qa(root: Path, images_dir: str = "images", val_fraction: float = 0.1, seed: int = 0) -> MultimodalDataset:
    """Load COCO-QA. Images are looked up by COCO id under ``root/images_dir`` (2014 or 2017 names)."""
    index = image_index(root / images_dir)
    rows = []
    for split in ("train", "test"):
        cols = {p: _read_lines(require_file(root, f"{split}/{p}.txt", "coco_qa")) for p in PARTS}
        n = {p: len(v) for p, v in cols.items()}
        if len(set(n.values())) != 1:
            raise DatasetError(
                f"coco_qa: the files of {root / split} are not aligned (line counts {n}); each must have one "
                "line per question. Re-extract cocoqa-2015-05-17.zip."
            )
        for i in range(n["questions"]):
            t, img = cols["types"][i], cols["img_ids"][i]
            if t not in TYPES:
                raise DatasetError(f"coco_qa: line {i + 1} of {root / split / 'types.txt'}: type {t!r} is not 0-3")
            if not img.isdigit():
                raise DatasetError(f"coco_qa: line {i + 1} of {root / split / 'img_ids.txt'}: {img!r} is not a COCO id")
            found = index.get(int(img))
            default = f"{images_dir}/{'train' if split == 'train' else 'val'}2014/COCO_{'train' if split == 'train' else 'val'}2014_{int(img):012d}.jpg"
            rows.append({
                "id": f"{split}{i:06d}", "text": cols["questions"][i], "label": cols["answers"][i],
                "image_path": rel(found, root) if found is not None else default, "split": split,
                "image_id": int(img), "question_type": TYPES[t],
            })
    df = carve_validation(pd.DataFrame(rows), val_fraction, seed, group_column="image_id")
    spec = DatasetSpec(
        name="coco_qa", task="multiclass", classes=sorted(df["label"].unique()), root=str(root),
        text_template="the question as published", variant="",  # the seed only moves rows between train and val
        description="COCO-QA: one-word answers (object, number, color, location questions)",
    )
    return MultimodalDataset(df, spec)
