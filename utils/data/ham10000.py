"""``ham10000``: HAM10000 dermatoscopic images, 7 diagnostic classes, lesion-grouped splits.

Raw layout (Harvard Dataverse)::

    <root>/HAM10000_metadata.csv          lesion_id, image_id, dx, dx_type, age, sex, localization[, dataset]
    <root>/HAM10000_images_part_1/<image_id>.jpg
    <root>/HAM10000_images_part_2/<image_id>.jpg

There is no official split: rows are split by ``lesion_id`` (stratified, seeded) because several images
show one lesion. The default text holds age, sex and body site; ``dx_type`` (histopathology, follow-up,
consensus, confocal) is tied to how the diagnosis was made and so to the label: ``text="full"`` adds it
(the original fuller template) with a warning that it leaks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

import pandas as pd

from . import register
from ._common import fill_template, index_files, read_table, rel, require_columns, require_file, unknown_values, variant, warn_leaky
from .schema import DatasetError, DatasetSpec, MultimodalDataset
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


@register("ham10000", task="multiclass", access="manual")
def load_ham10000(
    root: Path, text: str = "default", fractions: Tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0
) -> MultimodalDataset:
    """Load HAM10000; ``text`` is ``default`` or ``full`` (adds ``dx_type``, which leaks the label)."""
    if text not in ("default", "full"):
        raise ValueError(f"ham10000: text must be 'default' or 'full' (leaks the label), got {text!r}")
    path = require_file(root, "HAM10000_metadata.csv", "ham10000", "metadata")
    meta = read_table(path, "ham10000", dtype={"lesion_id": str, "image_id": str})
    require_columns(meta, ["lesion_id", "image_id", "dx", "age", "sex", "localization"] + (["dx_type"] if text == "full" else []), path, "ham10000")
    unknown_values(meta["dx"].tolist(), CLASSES, path, "dx", "ham10000")
    found = {}
    for d in IMAGE_DIRS:
        found.update({k: v for k, v in index_files(root / d, (".jpg",)).items() if k not in found})
    paths = [rel(found[f"{i}.jpg"], root) if f"{i}.jpg" in found else f"HAM10000_images_part_1/{i}.jpg" for i in meta["image_id"]]
    template = FULL_TEMPLATE if text == "full" else TEMPLATE
    if text == "full":
        warn_leaky("ham10000", "dx_type (how the diagnosis was made)")
    records = meta.assign(sex=meta["sex"].where(meta["sex"] != "unknown"), localization=meta["localization"].where(meta["localization"] != "unknown")).to_dict("records")
    df = pd.DataFrame({
        "id": meta["image_id"], "text": fill_template(template, records), "image_path": paths,
        "label": meta["dx"], "group": meta["lesion_id"],
    })
    if df["id"].duplicated().any():
        dup = df["id"][df["id"].duplicated()].tolist()[:5]
        raise DatasetError(f"ham10000: {path} lists image_id(s) {dup} more than once; remove the duplicate rows.")
    df["split"] = assign_splits(df["label"].tolist(), tuple(fractions), seed, groups=df["group"].tolist())
    spec = DatasetSpec(
        name="ham10000", task="multiclass", classes=CLASSES, root=str(root), text_template=template,
        variant=variant("fulltext" if text == "full" else ""),
        description="HAM10000 dermatoscopy, lesion-grouped splits", extra={"class_names": CLASS_NAMES},
    )
    return MultimodalDataset(df, spec)
