"""``ham10000``: HAM10000 dermatoscopic images, 7 diagnostic classes, lesion-grouped splits.

Raw layout (Harvard Dataverse)::

    <root>/HAM10000_metadata.csv          lesion_id, image_id, dx, dx_type, age, sex, localization[, dataset]
    <root>/HAM10000_images_part_1/<image_id>.jpg
    <root>/HAM10000_images_part_2/<image_id>.jpg

There is no official split: rows are split by ``lesion_id`` (stratified, seeded) because several images
show one lesion. The default text holds age, sex and body site; ``dx_type`` (histopathology, follow-up,
consensus, confocal) is tied to how the diagnosis was made and so to the label: ``text="full"`` adds it
(the original fuller template) with a warning that it leaks. The table keeps ``sex``, ``age`` and
``localization`` for per-subgroup metrics (listed in ``spec.extra["subgroups"]``).

Quirks (counted in ``ds.spec.extra["load_report"]``): ``dx`` in another case or written as its name
(``melanoma``), sex / site in another case, ages written ``45,0``, stray whitespace, blank lines and exact
duplicate rows are recovered (an age that does not read is left unknown and counted); a row with no
image_id or lesion_id, an unknown ``dx``, too many fields, or rows sharing an image_id that disagree, are
skipped (``strict=True`` raises instead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from . import register
from ._common import (canonical, drop_duplicates, fill_template, fold_map, index_files, is_missing, read_table, rel,
                      require_columns, require_file, to_number, variant, warn_leaky)
from .quirks import LoadReport, attach
from .schema import DatasetSpec, MultimodalDataset
from .splits import assign_splits

CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
CLASS_NAMES = {
    "akiec": "actinic keratoses / intraepithelial carcinoma", "bcc": "basal cell carcinoma",
    "bkl": "benign keratosis-like lesions", "df": "dermatofibroma", "mel": "melanoma", "nv": "melanocytic nevi",
    "vasc": "vascular lesions",
}
IMAGE_DIRS = ("HAM10000_images_part_1", "HAM10000_images_part_2", "images", "HAM10000_images")
TEMPLATE = "Dermatoscopic image of a skin lesion on the {localization} of a {age}-year-old {sex} patient."
FULL_TEMPLATE = TEMPLATE + " The diagnosis was confirmed by {dx_type}."
SUBGROUPS = ("sex", "age", "localization")  # metadata columns kept for per-group metrics


def _dx(meta: pd.DataFrame, path: Path, report: LoadReport) -> List[Optional[str]]:
    """``dx`` as a class code: case, whitespace and the full class name (``melanoma``) are recovered."""
    known = fold_map(CLASSES)
    names = {" ".join(n.split()).casefold(): c for c, n in CLASS_NAMES.items()}
    names.update({"melanoma": "mel", "nevus": "nv", "nevi": "nv", "dermatofibroma": "df"})
    out: List[Optional[str]] = []
    for line, v in zip(meta.index, meta["dx"]):
        code, how = canonical(v, known)
        if code is None and not is_missing(v):
            code = names.get(" ".join(str(v).split()).casefold())
            how = "class written as its name" if code else how
        if code is None:
            report.skipped(path, line, "missing dx" if how == "missing" else f"unknown dx (classes {CLASSES})", v)
        elif how:
            report.recovered(path, line, how, v)
        out.append(code)
    return out


def _words(meta: pd.DataFrame, column: str, path: Path, report: LoadReport, codes: Dict[str, str]) -> List[Optional[str]]:
    """Lower-case words (``unknown`` / blank -> None); other spellings in ``codes``, case and whitespace
    differences recovered."""
    out: List[Optional[str]] = []
    for line, v in zip(meta.index, meta[column]):
        if is_missing(v) or str(v).strip().lower() == "unknown":
            out.append(None)
            continue
        t = " ".join(str(v).split()).lower()
        t = codes.get(t, t)
        if t != str(v):
            report.recovered(path, line, "inconsistent case" if str(v).strip().lower() == t else f"{column} spelt another way", v)
        out.append(t)
    return out


@register("ham10000", task="multiclass", access="manual")
def load_ham10000(
    root: Path, text: str = "default", fractions: Tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0,
    strict: bool = False,
) -> MultimodalDataset:
    """Load HAM10000; ``text`` is ``default`` or ``full`` (adds ``dx_type``, which leaks the label).

    ``strict``: raise on a row that would be skipped instead of skipping it (see the module docstring).
    """
    if text not in ("default", "full"):
        raise ValueError(f"ham10000: text must be 'default' or 'full' (leaks the label), got {text!r}")
    report = LoadReport("ham10000", root=str(root), strict=strict)
    path = require_file(root, "HAM10000_metadata.csv", "ham10000", "metadata")
    meta = read_table(path, "ham10000", dtype={"lesion_id": str, "image_id": str, "age": str}, report=report)
    require_columns(meta, ["lesion_id", "image_id", "dx", "age", "sex", "localization"] + (["dx_type"] if text == "full" else []), path, "ham10000")
    keep = []
    for line, img, les in zip(meta.index, meta["image_id"], meta["lesion_id"]):
        if is_missing(img) or is_missing(les):
            report.skipped(path, line, "missing image_id" if is_missing(img) else "missing lesion_id (the split needs it)")
            continue
        if str(img) != str(img).strip() or str(les) != str(les).strip():
            report.recovered(path, line, "stray whitespace", img if str(img) != str(img).strip() else les)
        keep.append(line)
    meta = meta.loc[keep].assign(image_id=lambda d: d["image_id"].str.strip(), lesion_id=lambda d: d["lesion_id"].str.strip())
    meta = drop_duplicates(meta, "image_id", report, path, "image_id")
    meta = meta.assign(dx=_dx(meta, path, report))
    meta = meta[meta["dx"].notna()]
    ages = []
    for line, v in zip(meta.index, meta["age"]):
        x, how = to_number(v)
        if how == "bad number" or how == "not a number":
            report.recovered(path, line, "bad number in 'age'" if x is not None else "'age' not a number (left unknown)", v)
        ages.append(np.nan if x is None else x)
    meta = meta.assign(age=ages, sex=_words(meta, "sex", path, report, {"m": "male", "f": "female"}),
                       localization=_words(meta, "localization", path, report, {}))
    found = {}
    for d in IMAGE_DIRS:
        found.update({k: v for k, v in index_files(root / d, (".jpg",)).items() if k not in found})
    paths = [rel(found[f"{i}.jpg"], root) if f"{i}.jpg" in found else f"HAM10000_images_part_1/{i}.jpg" for i in meta["image_id"]]
    template = FULL_TEMPLATE if text == "full" else TEMPLATE
    if text == "full":
        warn_leaky("ham10000", "dx_type (how the diagnosis was made)")
    df = pd.DataFrame({
        "id": meta["image_id"].tolist(), "text": fill_template(template, meta.to_dict("records")), "image_path": paths,
        "label": meta["dx"].tolist(), "group": meta["lesion_id"].tolist(),
        # subgroup columns (spec.extra["subgroups"]); the default text already holds them
        "sex": meta["sex"].tolist(), "age": meta["age"].tolist(), "localization": meta["localization"].tolist(),
    })
    report.finish(len(df))
    df["split"] = assign_splits(df["label"].tolist(), tuple(fractions), seed, groups=df["group"].tolist())
    spec = DatasetSpec(
        name="ham10000", task="multiclass", classes=CLASSES, root=str(root), text_template=template,
        variant=variant("fulltext" if text == "full" else ""),
        description="HAM10000 dermatoscopy, lesion-grouped splits",
        extra=attach({"class_names": CLASS_NAMES, "subgroups": list(SUBGROUPS)}, report),
    )
    return MultimodalDataset(df, spec)
