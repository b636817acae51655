"""``brset``: BRSET fundus photographs (PhysioNet, credentialed) with patient metadata.

Raw layout::

    <root>/labels.csv                    image_id, patient_id, camera, patient_age, comorbidities, ...
    <root>/fundus_photos/<image_id>.jpg

Tasks: ``DR_2`` (binary: ``DR_ICDR > 0``), ``DR_3`` (0 / 1-3 / 4), or any other ``labels.csv`` column
(its cleaned values become the classes; rows without a value are dropped and counted). There is no
official split: rows are split by ``patient_id`` (stratified, seeded), so one patient stays in one split.

Messy values are cleaned: ages with ``O`` for ``0`` and ``,`` decimals, ``Não`` in ``diabetes_time_y``,
sex and eye codes mapped to words. The default text holds patient metadata only; the retinal findings
(hemorrhage, drusens, ...), the optic disc / vessel / macula notes and the label column itself are left
out because they define or encode the diagnosis. ``text="full"`` adds them (the original framework's
fuller template) with a warning that it leaks.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np
import pandas as pd

from . import register
from ._common import is_missing, read_table, require_columns, require_file, variant, warn_leaky
from .schema import DatasetError, DatasetSpec, MultimodalDataset
from .splits import assign_splits

log = logging.getLogger(__name__)

FINDINGS = [
    "diabetic_retinopathy", "macular_edema", "scar", "nevus", "amd", "vascular_occlusion",
    "hypertensive_retinopathy", "drusens", "hemorrhage", "retinal_detachment", "myopic_fundus",
    "increased_cup_disc", "other",
]
# (source column, sentence part): a part is left out when its column is the label column
DEFAULT_PARTS: List[Tuple[str, str]] = [
    ("exam_eye", "Fundus photograph of the {exam_eye} eye"),
    ("patient_age", " of a {patient_age}-year-old"),
    ("patient_sex", " {patient_sex}"),
    ("", " patient."),
    ("nationality", " Nationality: {nationality}."),
    ("camera", " Camera: {camera}."),
    ("diabetes", " Diabetes: {diabetes}."),
    ("diabetes_time_y", " Years since diabetes diagnosis: {diabetes_time_y}."),
    ("insuline", " Insulin use: {insuline}."),
    ("comorbidities", " Comorbidities: {comorbidities}."),
]
FULL_PARTS: List[Tuple[str, str]] = DEFAULT_PARTS + [
    ("optic_disc", " Optic disc: {optic_disc}."), ("vessels", " Vessels: {vessels}."), ("macula", " Macula: {macula}."),
    ("focus", " Focus: {focus}."), ("iluminaton", " Illumination: {iluminaton}."),
    ("image_field", " Image field: {image_field}."), ("artifacts", " Artifacts: {artifacts}."),
    ("findings", " Findings: {findings}."),
]
TASKS = {"DR_2": ["no_dr", "dr"], "DR_3": ["normal", "non_proliferative", "proliferative"]}
_YES = {"1", "1.0", "yes", "sim", "true", "y", "s"}
_NO = {"0", "0.0", "2", "2.0", "no", "não", "nao", "false", "n"}


def clean_number(v: Any) -> float:
    """``"5O"`` -> 50.0, ``"57,5"`` -> 57.5, ``"Não"`` / blank -> NaN."""
    if is_missing(v):
        return np.nan
    s = str(v).strip().replace(",", ".")
    s = re.sub(r"(?<=\d)[Oo]|[Oo](?=\d)|^[Oo]$", "0", s)
    try:
        return float(s)
    except ValueError:
        return np.nan


def _yes_no(v: Any, yes: str = "yes", no: str = "no") -> Optional[str]:
    if is_missing(v):
        return None
    s = str(v).strip().lower()
    return yes if s in _YES else no if s in _NO else str(v).strip()


def clean_labels_table(df: pd.DataFrame) -> pd.DataFrame:
    """The cleaned copy of ``labels.csv`` that the texts and labels are built from."""
    df = df.copy()
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].map(lambda v: v.strip() if isinstance(v, str) else v)
    if "patient_age" in df:
        df["patient_age"] = df["patient_age"].map(clean_number)
    if "diabetes_time_y" in df:
        df["diabetes_time_y"] = df["diabetes_time_y"].map(clean_number)
    if "patient_sex" in df:
        df["patient_sex"] = df["patient_sex"].map(lambda v: {"1": "male", "2": "female"}.get(str(v).strip().removesuffix(".0")))
    if "exam_eye" in df:
        df["exam_eye"] = df["exam_eye"].map(lambda v: {"1": "right", "2": "left"}.get(str(v).strip().removesuffix(".0")))
    for c in ("diabetes", "insuline"):
        if c in df:
            df[c] = df[c].map(_yes_no)
    if "comorbidities" in df:
        df["comorbidities"] = df["comorbidities"].map(lambda v: None if is_missing(v) or str(v) in ("0", "0.0") else str(v))
    present = [c for c in FINDINGS if c in df.columns]
    df["findings"] = [
        ", ".join(c.replace("_", " ") for c in present if str(row[c]).strip() in ("1", "1.0")) or "none"
        for _, row in df[present].iterrows()
    ] if present else "none"
    return df


def _text(df: pd.DataFrame, parts: List[Tuple[str, str]], skip: set) -> List[str]:
    out = []
    for row in df.to_dict("records"):
        s = ""
        for col, part in parts:
            if col and (col in skip or col not in row):
                continue
            v = row.get(col) if col else None
            if col and is_missing(v):
                v = "unknown"
            elif isinstance(v, float) and v.is_integer():
                v = int(v)
            s += part.format(**{col: v}) if col else part
        out.append(s.strip())
    return out


@register("brset", task="binary", access="physionet")
def load_brset(
    root: Path,
    task: str = "DR_2",
    text: str = "default",
    fractions: Tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> MultimodalDataset:
    """Load BRSET for ``task`` (``DR_2``, ``DR_3`` or a label column); ``text`` is ``default`` or ``full``."""
    if text not in ("default", "full"):
        raise ValueError(f"brset: text must be 'default' or 'full' (leaks the label), got {text!r}")
    path = require_file(root, "labels.csv", "brset")
    raw = read_table(path, "brset", dtype=str)
    require_columns(raw, ["image_id", "patient_id"], path, "brset")
    df = clean_labels_table(raw)
    if task in TASKS:
        require_columns(raw, ["DR_ICDR"], path, "brset")
        grade = raw["DR_ICDR"].map(clean_number)
        bad = [i for i, g in enumerate(grade) if not (g in (0, 1, 2, 3, 4))]
        if bad:
            shown = "; ".join(f"line {i + 2}: {raw['DR_ICDR'].iloc[i]!r}" for i in bad[:10])
            raise DatasetError(f"brset: column 'DR_ICDR' of {path} must be 0-4; {len(bad)} row(s) are not: {shown}.")
        if task == "DR_2":
            labels = ["dr" if g > 0 else "no_dr" for g in grade]
        else:
            labels = ["normal" if g == 0 else "proliferative" if g == 4 else "non_proliferative" for g in grade]
        classes = TASKS[task]
        source = {"DR_ICDR", "DR_SDRG", "diabetic_retinopathy"}
    else:
        require_columns(raw, [task], path, "brset", "task must be DR_2, DR_3 or a column of labels.csv.")
        vals = df[task]
        labels = [None if is_missing(v) else str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in vals]
        classes = sorted({v for v in labels if v is not None})
        source = {task}
    out = pd.DataFrame({
        "id": raw["image_id"].astype(str), "image_path": [f"fundus_photos/{i}.jpg" for i in raw["image_id"]],
        "label": labels, "group": raw["patient_id"].astype(str),
    })
    if text == "full":
        warn_leaky("brset", "the retinal findings (hemorrhage, drusens, ...) and optic disc / vessel / macula notes")
        out["text"] = _text(df, FULL_PARTS, skip={task} if task not in TASKS else set())
    else:
        out["text"] = _text(df, DEFAULT_PARTS, skip=source)
    keep = out["label"].notna()
    if not keep.all():
        log.warning("brset: dropped %d row(s) with no value in %r", int((~keep).sum()), task)
        out = out[keep].reset_index(drop=True)
    if len(classes) < 2:
        raise DatasetError(f"brset: column {task!r} of {path} has fewer than 2 distinct values: {classes}")
    out["split"] = assign_splits(out["label"].tolist(), tuple(fractions), seed, groups=out["group"].tolist())
    spec = DatasetSpec(
        name="brset", task="binary" if len(classes) == 2 else "multiclass", classes=classes, root=str(root),
        text_template="".join(p for c, p in (FULL_PARTS if text == "full" else DEFAULT_PARTS) if c not in source),
        variant=variant(task, "fulltext" if text == "full" else ""),
        description="BRSET fundus photos; patient-grouped splits",
    )
    return MultimodalDataset(out[["id", "text", "image_path", "label", "split", "group"]], spec)
