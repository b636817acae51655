"""``mimic_cxr``: MIMIC-CXR-JPG chest radiographs with the 14 CheXpert labels (multilabel) and report text.

Raw layout (PhysioNet, credentialed)::

    <root>/mimic-cxr-2.0.0-metadata.csv.gz   dicom_id, subject_id, study_id, ViewPosition, ...
    <root>/mimic-cxr-2.0.0-chexpert.csv.gz   subject_id, study_id + 14 labels (1.0, 0.0, -1.0 uncertain, blank)
    <root>/mimic-cxr-2.0.0-split.csv.gz      dicom_id, study_id, subject_id, split (train / validate / test)
    <root>/files/p10/p10000032/s50414267/<dicom_id>.jpg
    <root>/files/p10/p10000032/s50414267.txt      the report (from MIMIC-CXR, ``mimic-cxr-reports.zip``)

One row per image; the official split. ``uncertain``: ``"negative"`` (U-zeros, default), ``"positive"``
(U-ones). Blank means not mentioned (negative). Studies without a CheXpert row are left out (counted).
The table keeps ``view`` (``ViewPosition``: PA, AP, LATERAL, ...) for per-subgroup metrics
(``spec.extra["subgroups"]``).

Quirks (counted in ``ds.spec.extra["load_report"]``): stray whitespace, blank lines, ids or labels written
``10000032.0`` / ``1,0``, split names in another case and exact duplicate rows are recovered; a row with
an id that does not parse, a label other than 1 / 0 / -1 / blank, an unknown split name, too many fields,
rows for one key that disagree, and images with no split or CheXpert row, are skipped (``strict=True``
raises instead).

Text: the report ``sections`` joined. The CheXpert labels were extracted FROM the FINDINGS and
IMPRESSION sections, so those sections encode the label; the default uses the INDICATION and HISTORY
(why the image was taken) only. ``sections=("findings", "impression")`` reproduces the fuller text with
a warning. ``sections=("full",)`` uses the whole report (also leaks).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Dict, Optional, Sequence

import pandas as pd

from . import register
from ._common import drop_duplicates, is_missing, normalise_split, read_table, require_columns, to_number, variant, warn_leaky
from .quirks import LoadReport, attach
from .schema import DatasetError, DatasetSpec, MultimodalDataset

log = logging.getLogger(__name__)

LABELS = [
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
    "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
    "Pneumothorax", "Support Devices",
]
LEAKY_SECTIONS = {"findings", "impression", "full"}
_HEADER = re.compile(r"^\s*([A-Z][A-Z /&]+):", re.MULTILINE)


def report_sections(text: str) -> Dict[str, str]:
    """``{"findings": ..., "impression": ..., ...}`` from a report's upper-case ``HEADER:`` lines."""
    out: Dict[str, str] = {"full": " ".join(text.split())}
    matches = list(_HEADER.finditer(text))
    for k, m in enumerate(matches):
        end = matches[k + 1].start() if k + 1 < len(matches) else len(text)
        name = m.group(1).strip().lower()
        body = " ".join(text[m.end():end].split())
        if name.startswith("clinical history") or name == "history":
            name = "history"
        if name.startswith("indication"):
            name = "indication"
        out[name] = (out.get(name, "") + " " + body).strip()
    return out


def _find(root: Path, stem: str) -> Path:
    for name in (f"{stem}.csv.gz", f"{stem}.csv"):
        if (root / name).is_file():
            return root / name
    raise DatasetError(
        f"mimic_cxr: {stem}.csv.gz not found under {root}. Download it from "
        "https://physionet.org/content/mimic-cxr-jpg/2.0.0/ (utils.data.download.fetch('mimic_cxr'))."
    )


def _ids(df: pd.DataFrame, columns: Sequence[str], path: Path, report: LoadReport) -> pd.DataFrame:
    """Keep rows whose ``columns`` read as whole numbers (``10000032``; ``10000032.0`` and stray whitespace
    recovered), as digit strings; skip the others. Clean rows take a vectorised path."""
    clean = pd.Series(True, index=df.index)
    for c in columns:
        clean &= df[c].astype("string").str.fullmatch(r"\d+").fillna(False).astype(bool)
    out = df.copy()
    for c in columns:
        out.loc[clean, c] = out.loc[clean, c].astype(str).str.lstrip("0").replace("", "0")
    drop = []
    for line in df.index[~clean]:
        vals = []
        for c in columns:
            v = df.at[line, c]
            x, how = to_number(v)
            if x is None or x != int(x) or x < 0:
                report.skipped(path, line, f"{c} missing" if how == "missing" else f"{c} not a number", v)
                break
            if how or re.fullmatch(r"\d+", str(v).strip()) is None:
                report.recovered(path, line, "bad number", v)
            elif str(v) != str(v).strip():
                report.recovered(path, line, "stray whitespace", v)
            vals.append(str(int(x)))
        else:
            for c, v in zip(columns, vals):
                out.at[line, c] = v
            continue
        drop.append(line)
    return out.drop(index=drop)


def _strip_ids(df: pd.DataFrame, column: str, path: Path, report: LoadReport) -> pd.DataFrame:
    """``column`` stripped (recovered); rows where it is missing skipped."""
    keep = []
    for line, v in zip(df.index, df[column]):
        if is_missing(v):
            report.skipped(path, line, f"{column} missing")
            continue
        if str(v) != str(v).strip():
            report.recovered(path, line, "stray whitespace", v)
        keep.append(line)
    df = df.loc[keep].copy()
    df[column] = df[column].astype(str).str.strip()
    return df


def _chexpert_values(chex: pd.DataFrame, path: Path, report: LoadReport) -> pd.DataFrame:
    """The 14 label columns as 1.0 / 0.0 / -1.0 / NaN; a row with any other value is skipped. Rows whose
    cells all read cleanly take a vectorised path; only the others are looked at one by one."""
    block = chex[LABELS].astype("string")
    num = block.apply(lambda col: pd.to_numeric(col.str.strip(), errors="coerce"))
    blank = block.isna() | (block.apply(lambda col: col.str.strip()) == "").fillna(False)
    odd = (~blank & (num.isna() | ~num.isin([1.0, 0.0, -1.0]))) | (block != block.apply(lambda col: col.str.strip())).fillna(False)
    values = num.where(~blank)
    drop = []
    for line in chex.index[odd.any(axis=1).to_numpy()]:
        for c in LABELS:
            v = chex.at[line, c]
            x, how = to_number(v)
            if x is None and how == "missing":
                continue
            if x not in (1.0, 0.0, -1.0):
                report.skipped(path, line, f"{c!r} not 1, 0, -1 or blank", v)
                drop.append(line)
                break
            if how:
                report.recovered(path, line, f"bad number in {c!r}", v)
            values.at[line, c] = x
    out = chex[["subject_id", "study_id"]].copy()
    out[LABELS] = values.astype(float)
    return out.drop(index=drop)


@register("mimic_cxr", task="multilabel", access="physionet")
def load_mimic_cxr(
    root: Path,
    uncertain: str = "negative",
    sections: Sequence[str] = ("indication", "history"),
    views: Optional[Sequence[str]] = None,
    reports_dir: Optional[str] = None,
    strict: bool = False,
) -> MultimodalDataset:
    """Load MIMIC-CXR-JPG (see the module docstring for the options).

    ``strict``: raise on a line that would be skipped instead of skipping it.
    """
    if uncertain not in ("negative", "positive"):
        raise ValueError(f"mimic_cxr: uncertain must be 'negative' or 'positive', got {uncertain!r}")
    sections = [s.lower() for s in sections]
    if LEAKY_SECTIONS & set(sections):
        warn_leaky("mimic_cxr", "the report's FINDINGS / IMPRESSION (the CheXpert labels were extracted from them)")
    report = LoadReport("mimic_cxr", root=str(root), strict=strict)
    mpath, cpath, spath = (_find(root, f"mimic-cxr-2.0.0-{k}") for k in ("metadata", "chexpert", "split"))
    meta = read_table(mpath, "mimic_cxr", dtype={"dicom_id": str, "subject_id": str, "study_id": str}, report=report)
    chex = read_table(cpath, "mimic_cxr", dtype=str, report=report)
    split = read_table(spath, "mimic_cxr", dtype={"dicom_id": str}, report=report)
    require_columns(meta, ["dicom_id", "subject_id", "study_id"], mpath, "mimic_cxr")
    require_columns(chex, ["subject_id", "study_id"] + LABELS, cpath, "mimic_cxr")
    require_columns(split, ["dicom_id", "split"], spath, "mimic_cxr")

    meta = _ids(_strip_ids(meta, "dicom_id", mpath, report), ["subject_id", "study_id"], mpath, report)
    meta = drop_duplicates(meta, "dicom_id", report, mpath, "dicom_id")
    split = _strip_ids(split, "dicom_id", spath, report)
    split["split"] = normalise_split(split["split"].tolist(), spath, "split", "mimic_cxr", report, split.index)
    dropped_split = set(split.loc[split["split"].isna(), "dicom_id"])
    split = drop_duplicates(split[split["split"].notna()], "dicom_id", report, spath, "dicom_id")
    chex = _ids(chex, ["subject_id", "study_id"], cpath, report)
    known_studies = set(zip(chex["subject_id"], chex["study_id"]))  # a study whose line is skipped is counted there
    chex = _chexpert_values(chex, cpath, report)
    chex = drop_duplicates(chex.assign(study=chex["subject_id"] + "/" + chex["study_id"]), "study", report, cpath,
                           "study").drop(columns="study")

    df = meta.assign(line=meta.index).merge(split[["dicom_id", "split"]], on="dicom_id", how="left")
    for line, d in df.loc[df["split"].isna(), ["line", "dicom_id"]].itertuples(index=False):
        if d not in dropped_split:  # an image whose split line was skipped is counted there
            report.skipped(mpath, line, f"dicom_id not in {spath.name}", d)
    df = df[df["split"].notna()]
    if views:
        if "ViewPosition" not in df.columns:
            raise DatasetError(f"mimic_cxr: views= needs the ViewPosition column of {mpath}")
        df = df[df["ViewPosition"].isin(list(views))]
    merged = df.merge(chex, on=["subject_id", "study_id"], how="left", indicator=True)
    lost = merged["_merge"] == "left_only"
    for line, s_, st, d in merged.loc[lost, ["line", "subject_id", "study_id", "dicom_id"]].itertuples(index=False):
        if (s_, st) not in known_studies:
            report.skipped(mpath, line, f"study has no row in {cpath.name}", d)
    df = merged[~lost].drop(columns="_merge")
    report.finish(len(df))
    pos = 1.0 if uncertain == "positive" else None
    labels = [
        [c for c in LABELS if r[c] == 1.0 or (pos is not None and r[c] == -1.0)] for r in df[LABELS].to_dict("records")
    ]
    subj, study = df["subject_id"], df["study_id"]
    folder = [f"files/p{s[:2]}/p{s}/s{st}" for s, st in zip(subj, study)]
    rdir = root / reports_dir if reports_dir else root
    texts, missing = [], 0
    cache: Dict[str, Optional[str]] = {}
    for f in folder:
        if f not in cache:
            p = rdir / f"{f}.txt"
            if p.is_file():
                secs = report_sections(p.read_text(encoding="utf-8", errors="replace"))
                cache[f] = " ".join(f"{s.upper()}: {secs[s]}" for s in sections if secs.get(s)) or None
            else:
                cache[f] = None
                missing += 1
        texts.append(cache[f])
    if missing:
        log.warning("mimic_cxr: %d study report(s) not found under %s (text left empty); get mimic-cxr-reports.zip", missing, rdir)
    view = (df["ViewPosition"].map(lambda v: None if is_missing(v) else str(v).strip().upper()).tolist()
            if "ViewPosition" in df.columns else [None] * len(df))
    out = pd.DataFrame({
        "id": df["dicom_id"].tolist(), "text": texts,
        "image_path": [f"{f}/{d}.jpg" for f, d in zip(folder, df["dicom_id"])], "label": labels,
        "split": df["split"].tolist(), "subject_id": subj.tolist(), "study_id": study.tolist(),
        "view": view,  # subgroup column (spec.extra["subgroups"])
    })
    spec = DatasetSpec(
        name="mimic_cxr", task="multilabel", classes=LABELS, root=str(root),
        text_template="report sections: " + ", ".join(s.upper() for s in sections),
        variant=variant("uones" if uncertain == "positive" else "", "" if sections == ["indication", "history"] else "+".join(sections),
                        "views" + "".join(views) if views else ""),
        description="MIMIC-CXR-JPG, 14 CheXpert labels, official split",
        extra=attach({"subgroups": ["view"]}, report),
    )
    return MultimodalDataset(out, spec)
