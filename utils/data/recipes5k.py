"""``recipes5k``: Recipes5k food images with ingredient lists (101 Food-101 classes), multiclass.

Raw layout::

    <root>/annotations/classes_Recipes5k.txt
    <root>/annotations/{train,val,test}_images.txt    one image path per line: <class>/<file>.jpg
    <root>/annotations/{train,val,test}_labels.txt    one index (0-based line) into the ingredients file
    <root>/annotations/ingredients_Recipes5k.txt      one comma-separated ingredient list per line
    <root>/annotations/ingredients_simplified_Recipes5k.txt
    <root>/images/<class>/<file>.jpg

The class is the first part of the image path. Official train / val / test splits.
Text: ``"Ingredients: a, b, c."`` (``ingredients="full"`` or ``"simplified"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import pandas as pd

from . import register
from ._common import require_file, variant
from .schema import DatasetError, DatasetSpec, MultimodalDataset

TEMPLATE = "Ingredients: {ingredients}."


def _lines(path: Path) -> List[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


@register("recipes5k", task="multiclass", access="manual")
def load_recipes5k(root: Path, ingredients: str = "full") -> MultimodalDataset:
    """Load Recipes5k; ``ingredients`` picks the full or the simplified ingredient lists."""
    if ingredients not in ("full", "simplified"):
        raise ValueError(f"recipes5k: ingredients must be 'full' or 'simplified', got {ingredients!r}")
    ann = "annotations"
    classes = _lines(require_file(root, f"{ann}/classes_Recipes5k.txt", "recipes5k"))
    ing_name = "ingredients_Recipes5k.txt" if ingredients == "full" else "ingredients_simplified_Recipes5k.txt"
    ing_path = require_file(root, f"{ann}/{ing_name}", "recipes5k")
    ing = [ln.rstrip("\n") for ln in ing_path.read_text(encoding="utf-8").splitlines()]
    rows = []
    known = set(classes)
    for split in ("train", "val", "test"):
        img_path = require_file(root, f"{ann}/{split}_images.txt", "recipes5k")
        lab_path = require_file(root, f"{ann}/{split}_labels.txt", "recipes5k")
        images, labels = _lines(img_path), _lines(lab_path)
        if len(images) != len(labels):
            raise DatasetError(
                f"recipes5k: {img_path.name} has {len(images)} lines but {lab_path.name} has {len(labels)}; they "
                "must be aligned. Re-extract the annotations."
            )
        for i, (img, lab) in enumerate(zip(images, labels)):
            if not lab.isdigit() or int(lab) >= len(ing):
                raise DatasetError(
                    f"recipes5k: line {i + 1} of {lab_path}: {lab!r} is not an index into {ing_name} "
                    f"({len(ing)} lines)."
                )
            cls = img.split("/")[0]
            if cls not in known:
                raise DatasetError(
                    f"recipes5k: line {i + 1} of {img_path}: class {cls!r} (first part of {img!r}) is not in "
                    "classes_Recipes5k.txt. Fix the path or the class list."
                )
            items = [w.strip() for w in ing[int(lab)].split(",") if w.strip()]
            rows.append({
                "id": f"{split}{i:05d}", "text": TEMPLATE.format(ingredients=", ".join(items)),
                "image_path": f"images/{img}", "label": cls, "split": split, "recipe": int(lab),
            })
    spec = DatasetSpec(
        name="recipes5k", task="multiclass", classes=classes, root=str(root),
        text_template=TEMPLATE + f" ({ingredients} ingredient lists)",
        variant=variant("simplified" if ingredients == "simplified" else ""),
        description="Recipes5k: dish class from image and ingredient list",
    )
    return MultimodalDataset(pd.DataFrame(rows), spec)
