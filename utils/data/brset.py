"""``brset``: BRSET fundus photographs (PhysioNet, credentialed) with patient metadata.

Raw layout::

    <root>/labels.csv                    image_id, patient_id, camera, patient_age, comorbidities, ...
    <root>/fundus_photos/<image_id>.jpg

Tasks: ``DR_2`` (binary: ``DR_ICDR > 0``), ``DR_3`` (0 / 1-3 / 4), or any other ``labels.csv`` column
(its cleaned values become the classes; rows without a value are dropped and counted). There is no
official split: rows are split by ``patient_id`` (stratified, seeded), so one patient stays in one split.

Messy values are cleaned: ages with ``O`` for ``0`` and ``,`` decimals, ``Não`` in ``diabetes_time_y``,
sex and eye codes mapped to words. The table keeps ``sex``, ``age`` (years, float) and ``camera`` for
per-subgroup metrics (listed in ``spec.extra["subgroups"]``).

Quirks (counted in ``ds.spec.extra["load_report"]``): numbers written ``5O`` / ``57,5``, stray whitespace,
blank lines and exact duplicate rows are recovered (an age that does not read at all is left unknown and
counted); a row with no image_id or patient_id, a grade that is not 0-4 (``DR_2`` / ``DR_3``) or no value
in the label column, too many fields, or rows sharing an image_id that disagree, are skipped
(``strict=True`` raises instead). The default text holds patient metadata only; the retinal findings
(hemorrhage, drusens, ...), the optic disc / vessel / macula notes and the label column itself are left
out because they define or encode the diagnosis. ``text="full"`` adds them (the original framework's
fuller template) with a warning that it leaks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from . import register
from ._common import drop_duplicates, is_missing, read_table, require_columns, require_file, to_number, variant, warn_leaky
from .quirks import LoadReport, attach
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
SEX_CODES = {"1": "male", "2": "female", "m": "male", "f": "female", "male": "male", "female": "female",
             "masculino": "male", "feminino": "female"}
EYE_CODES = {"1": "right", "2": "left", "right": "right", "left": "left", "od": "right", "os": "left"}
SUBGROUPS = ("sex", "age", "camera")  # metadata columns kept for per-group metrics
_YES = {"1", "1.0", "yes", "sim", "true", "y", "s"}
_NO = {"0", "0.0", "2", "2.0", "no", "não", "nao", "false", "n"}


def clean_number(v: Any) -> float:
    """``"5O"`` -> 50.0, ``"57,5"`` -> 57.5, ``"Não"`` / blank -> NaN."""
    x, _ = to_number(v)
    return np.nan if x is None else x


def _yes_no(v: Any, yes: str = "yes", no: str = "no") -> Optional[str]:
    if is_missing(v):
        return None
    s = str(v).strip().lower()
    return yes if s in _YES else no if s in _NO else str(v).strip()


def _numbers(values: pd.Series, column: str, path: Any, report: Optional[LoadReport], missing_words: set) -> pd.Series:
    """A numeric column cleaned with :func:`clean_number`; fixes and unreadable values counted in ``report``."""
    out = []
    for line, v in zip(values.index, values):
        x, how = to_number(v)
        if how == "bad number" and report is not None:
            report.recovered(path, line, f"bad number in {column!r}", v)
        if how == "not a number" and str(v).strip().lower() not in missing_words and report is not None:
            report.recovered(path, line, f"{column!r} not a number (left unknown)", v)
        out.append(np.nan if x is None else x)
    return pd.Series(out, index=values.index, dtype=float)


def _coded(v: Any, codes: Dict[str, str]) -> Optional[str]:
    if is_missing(v):
        return None
    s = str(v).strip().lower().removesuffix(".0")
    return codes.get(s)


def clean_labels_table(df: pd.DataFrame, report: Optional[LoadReport] = None, path: Any = "labels.csv") -> pd.DataFrame:
    """The cleaned copy of ``labels.csv`` that the texts and labels are built from (same index).

    Ages and diabetes times written ``5O`` or ``57,5`` are read as numbers and counted in ``report`` as
    recovered; an unreadable one is left unknown (counted too); ``Não`` in ``diabetes_time_y`` means no
    diabetes and is not a quirk. Sex and eye codes (1 / 2, or words such as ``F`` / ``male``) become words.
    """
    df = df.copy()
    for c in df.columns:
        if df[c].dtype == object or str(df[c].dtype) == "str":
            df[c] = df[c].map(lambda v: v.strip() if isinstance(v, str) else v)
    if "patient_age" in df:
        df["patient_age"] = _numbers(df["patient_age"], "patient_age", path, report, set())
    if "diabetes_time_y" in df:
        df["diabetes_time_y"] = _numbers(df["diabetes_time_y"], "diabetes_time_y", path, report, {"não", "nao"})
    if "patient_sex" in df:
        df["patient_sex"] = df["patient_sex"].map(lambda v: _coded(v, SEX_CODES))
    if "exam_eye" in df:
        df["exam_eye"] = df["exam_eye"].map(lambda v: _coded(v, EYE_CODES))
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


def _keys(raw: pd.DataFrame, path: Path, report: LoadReport) -> pd.DataFrame:
    """``image_id`` and ``patient_id`` stripped (recovered); a row missing either is skipped (no file to
    read, or no patient to split by)."""
    raw = raw.copy()
    keep = []
    for line, img, pat in zip(raw.index, raw["image_id"], raw["patient_id"]):
        if is_missing(img) or is_missing(pat):
            report.skipped(path, line, "missing image_id" if is_missing(img) else "missing patient_id (the split needs it)")
            continue
        for v in (img, pat):
            if str(v) != str(v).strip():
                report.recovered(path, line, "stray whitespace", v)
        keep.append(line)
    raw = raw.loc[keep]
    raw["image_id"] = raw["image_id"].astype(str).str.strip()
    raw["patient_id"] = raw["patient_id"].astype(str).str.strip()
    return raw


@register("brset", task="binary", access="physionet")
def load_brset(
    root: Path,
    task: str = "DR_2",
    text: str = "default",
    fractions: Tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    strict: bool = False,
) -> MultimodalDataset:
    """Load BRSET for ``task`` (``DR_2``, ``DR_3`` or a label column); ``text`` is ``default`` or ``full``.

    ``strict``: raise on a row that would be skipped instead of skipping it (see the module docstring).
    """
    if text not in ("default", "full"):
        raise ValueError(f"brset: text must be 'default' or 'full' (leaks the label), got {text!r}")
    report = LoadReport("brset", root=str(root), strict=strict)
    path = require_file(root, "labels.csv", "brset")
    raw = read_table(path, "brset", dtype=str, report=report)
    require_columns(raw, ["image_id", "patient_id"], path, "brset")
    if task in TASKS:
        require_columns(raw, ["DR_ICDR"], path, "brset")
    else:
        require_columns(raw, [task], path, "brset", "task must be DR_2, DR_3 or a column of labels.csv.")
    raw = drop_duplicates(_keys(raw, path, report), "image_id", report, path, "image_id")
    df = clean_labels_table(raw, report, path)
    labels: List[Optional[str]] = []
    if task in TASKS:
        for line, v in zip(raw.index, raw["DR_ICDR"]):
            g, how = to_number(v)
            if g not in (0, 1, 2, 3, 4):
                report.skipped(path, line, "DR_ICDR missing" if how == "missing" else "DR_ICDR not 0-4", v)
                labels.append(None)
                continue
            if how:
                report.recovered(path, line, "bad number in 'DR_ICDR'", v)
            if task == "DR_2":
                labels.append("dr" if g > 0 else "no_dr")
            else:
                labels.append("normal" if g == 0 else "proliferative" if g == 4 else "non_proliferative")
        classes = TASKS[task]
        source = {"DR_ICDR", "DR_SDRG", "diabetic_retinopathy"}
    else:
        for line, v in zip(df.index, df[task]):
            if is_missing(v):
                report.skipped(path, line, f"no value in {task!r}")
                labels.append(None)
            else:
                labels.append(str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
        classes = sorted({v for v in labels if v is not None})
        source = {task}
    out = pd.DataFrame({
        "id": raw["image_id"], "image_path": [f"fundus_photos/{i}.jpg" for i in raw["image_id"]],
        "label": labels, "group": raw["patient_id"],
        # subgroup columns (utils.data: spec.extra["subgroups"]); the text already holds them
        "sex": df["patient_sex"] if "patient_sex" in df else None,
        "age": df["patient_age"] if "patient_age" in df else np.nan,
        "camera": df["camera"].where(df["camera"].map(lambda v: not is_missing(v)), None) if "camera" in df else None,
    }, index=raw.index)
    if text == "full":
        warn_leaky("brset", "the retinal findings (hemorrhage, drusens, ...) and optic disc / vessel / macula notes")
        out["text"] = _text(df, FULL_PARTS, skip={task} if task not in TASKS else set())
    else:
        out["text"] = _text(df, DEFAULT_PARTS, skip=source)
    out = out[out["label"].notna()].reset_index(drop=True)
    report.finish(len(out))
    if len(classes) < 2:
        raise DatasetError(f"brset: column {task!r} of {path} has fewer than 2 distinct values: {classes}")
    out["split"] = assign_splits(out["label"].tolist(), tuple(fractions), seed, groups=out["group"].tolist())
    spec = DatasetSpec(
        name="brset", task="binary" if len(classes) == 2 else "multiclass", classes=classes, root=str(root),
        text_template="".join(p for c, p in (FULL_PARTS if text == "full" else DEFAULT_PARTS) if c not in source),
        variant=variant(task, "fulltext" if text == "full" else ""),
        description="BRSET fundus photos; patient-grouped splits",
        extra=attach({"subgroups": list(SUBGROUPS)}, report),
    )
    return MultimodalDataset(out[["id", "text", "image_path", "label", "split", "group", *SUBGROUPS]], spec)
