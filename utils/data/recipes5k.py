r"""``recipes5k``: Recipes5k food images with ingredient lists (101 Food-101 classes), multiclass.

Raw layout::

    <root>/annotations/classes_Recipes5k.txt
    <root>/annotations/{train,val,test}_images.txt    one image path per line: <class>/<file>.jpg
    <root>/annotations/{train,val,test}_labels.txt    one index (0-based line) into the ingredients file
    <root>/annotations/ingredients_Recipes5k.txt      one comma-separated ingredient list per line
    <root>/annotations/ingredients_simplified_Recipes5k.txt
    <root>/images/<class>/<file>.jpg

The class is the first part of the image path. Official train / val / test splits.
Text: ``"Ingredients: a, b, c."`` (``ingredients="full"`` or ``"simplified"``).

Quirks (counted in ``ds.spec.extra["load_report"]``): stray whitespace, blank lines (also those that put
``*_images.txt`` and ``*_labels.txt`` out of step), a class written in another case, Windows ``\`` in
paths and indices written ``12.0`` are recovered; a label that is not an index into the ingredients file
(or past its end) and a class not in ``classes_Recipes5k.txt`` are skipped (``strict=True`` raises
instead). Image and label files whose line counts differ even without blank lines are an error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Tuple

import pandas as pd

from . import register
from ._common import canonical, fold_map, require_file, variant
from .quirks import LoadReport, attach
from .schema import DatasetError, DatasetSpec, MultimodalDataset

TEMPLATE = "Ingredients: {ingredients}."


def _numbered(path: Path, report: LoadReport) -> List[Tuple[int, str]]:
    """``(line number, text)`` of a one-item-per-line file without its trailing blank lines (recovered)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    n = len(lines)
    while n and not lines[n - 1].strip():
        n -= 1
    for k in range(n, len(lines)):
        report.recovered(path, k + 1, "blank line")
    return list(enumerate(lines[:n], start=1))


def aligned(img_path: Path, lab_path: Path, report: LoadReport) -> List[Tuple[Tuple[int, str], Tuple[int, str]]]:
    """Pairs of (image line, label line); blank lines that put the two files out of step are dropped
    (recovered); files that still disagree are an error (no pair could be trusted)."""
    images, labels = _numbered(img_path, report), _numbered(lab_path, report)
    if len(images) != len(labels):
        for path, lines in ((img_path, images), (lab_path, labels)):
            for k, ln in lines:
                if not ln.strip():
                    report.recovered(path, k, "blank line")
        images = [x for x in images if x[1].strip()]
        labels = [x for x in labels if x[1].strip()]
        if len(images) != len(labels):
            raise DatasetError(
                f"recipes5k: {img_path.name} has {len(images)} lines but {lab_path.name} has {len(labels)} (blank "
                "lines aside); they must be aligned, and no line can be paired with confidence. Re-extract the annotations."
            )
    return list(zip(images, labels))


@register("recipes5k", task="multiclass", access="manual")
def load_recipes5k(root: Path, ingredients: str = "full", strict: bool = False) -> MultimodalDataset:
    """Load Recipes5k; ``ingredients`` picks the full or the simplified ingredient lists.

    ``strict``: raise on a line that would be skipped instead of skipping it (see the module docstring).
    """
    if ingredients not in ("full", "simplified"):
        raise ValueError(f"recipes5k: ingredients must be 'full' or 'simplified', got {ingredients!r}")
    report = LoadReport("recipes5k", root=str(root), strict=strict)
    ann = "annotations"
    cpath = require_file(root, f"{ann}/classes_Recipes5k.txt", "recipes5k")
    classes = []
    for k, ln in _numbered(cpath, report):
        if not ln.strip():
            report.recovered(cpath, k, "blank line")
        elif ln.strip() not in classes:
            if ln != ln.strip():
                report.recovered(cpath, k, "stray whitespace", ln)
            classes.append(ln.strip())
    ing_name = "ingredients_Recipes5k.txt" if ingredients == "full" else "ingredients_simplified_Recipes5k.txt"
    ing_path = require_file(root, f"{ann}/{ing_name}", "recipes5k")
    ing = [ln.rstrip("\n") for ln in ing_path.read_text(encoding="utf-8").splitlines()]
    rows = []
    folded = fold_map(classes)
    for split in ("train", "val", "test"):
        img_path = require_file(root, f"{ann}/{split}_images.txt", "recipes5k")
        lab_path = require_file(root, f"{ann}/{split}_labels.txt", "recipes5k")
        for i, ((il, img), (ll, lab)) in enumerate(aligned(img_path, lab_path, report)):
            if img != img.strip():
                report.recovered(img_path, il, "stray whitespace", img)
            if lab != lab.strip():
                report.recovered(lab_path, ll, "stray whitespace", lab)
            img, lab = img.strip(), lab.strip()
            if "\\" in img:
                report.recovered(img_path, il, "Windows path separators", img)
                img = img.replace("\\", "/")
            if not lab.isdigit():
                m = re.fullmatch(r"(\d+)\.0+", lab)
                if m is None:
                    report.skipped(lab_path, ll, f"not an index into {ing_name}", lab)
                    continue
                report.recovered(lab_path, ll, "bad number", lab)
                lab = m.group(1)
            if int(lab) >= len(ing):
                report.skipped(lab_path, ll, f"index past the end of {ing_name} ({len(ing)} lines)", lab)
                continue
            head, _, tail = img.partition("/")
            cls, how = canonical(head, folded)
            if cls is None:
                report.skipped(img_path, il, "class (first part of the path) not in classes_Recipes5k.txt", img)
                continue
            if how:
                report.recovered(img_path, il, how, img)
                img = f"{cls}/{tail}"
            items = [w.strip() for w in ing[int(lab)].split(",") if w.strip()]
            rows.append({
                "id": f"{split}{i:05d}", "text": TEMPLATE.format(ingredients=", ".join(items)),
                "image_path": f"images/{img}", "label": cls, "split": split, "recipe": int(lab),
            })
    report.finish(len(rows))
    spec = DatasetSpec(
        name="recipes5k", task="multiclass", classes=classes, root=str(root),
        text_template=TEMPLATE + f" ({ingredients} ingredient lists)",
        variant=variant("simplified" if ingredients == "simplified" else ""),
        description="Recipes5k: dish class from image and ingredient list",
        extra=attach({}, report),
    )
    return MultimodalDataset(pd.DataFrame(rows), spec)
