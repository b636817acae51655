"""``mimic_cxr``: MIMIC-CXR-JPG chest radiographs with the 14 CheXpert labels (multilabel) and report text.

Raw layout (PhysioNet, credentialed)::

    <root>/mimic-cxr-2.0.0-metadata.csv.gz   dicom_id, subject_id, study_id, ViewPosition, ...
    <root>/mimic-cxr-2.0.0-chexpert.csv.gz   subject_id, study_id + 14 labels (1.0, 0.0, -1.0 uncertain, blank)
    <root>/mimic-cxr-2.0.0-split.csv.gz      dicom_id, study_id, subject_id, split (train / validate / test)
    <root>/files/p10/p10000032/s50414267/<dicom_id>.jpg
    <root>/files/p10/p10000032/s50414267.txt      the report (from MIMIC-CXR, ``mimic-cxr-reports.zip``)

One row per image; the official split. ``uncertain``: ``"negative"`` (U-zeros, default), ``"positive"``
(U-ones). Blank means not mentioned (negative). Studies without a CheXpert row are left out (counted).

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
from ._common import read_table, require_columns, variant, warn_leaky
from .schema import DatasetError, DatasetSpec, MultimodalDataset
from ._common import normalise_split

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


@register("mimic_cxr", task="multilabel", access="physionet")
def load_mimic_cxr(
    root: Path,
    uncertain: str = "negative",
    sections: Sequence[str] = ("indication", "history"),
    views: Optional[Sequence[str]] = None,
    reports_dir: Optional[str] = None,
) -> MultimodalDataset:
    """Load MIMIC-CXR-JPG (see the module docstring for the options)."""
    if uncertain not in ("negative", "positive"):
        raise ValueError(f"mimic_cxr: uncertain must be 'negative' or 'positive', got {uncertain!r}")
    sections = [s.lower() for s in sections]
    if LEAKY_SECTIONS & set(sections):
        warn_leaky("mimic_cxr", "the report's FINDINGS / IMPRESSION (the CheXpert labels were extracted from them)")
    mpath, cpath, spath = (_find(root, f"mimic-cxr-2.0.0-{k}") for k in ("metadata", "chexpert", "split"))
    meta = read_table(mpath, "mimic_cxr", dtype={"dicom_id": str})
    chex = read_table(cpath, "mimic_cxr")
    split = read_table(spath, "mimic_cxr", dtype={"dicom_id": str})
    require_columns(meta, ["dicom_id", "subject_id", "study_id"], mpath, "mimic_cxr")
    require_columns(chex, ["subject_id", "study_id"] + LABELS, cpath, "mimic_cxr")
    require_columns(split, ["dicom_id", "split"], spath, "mimic_cxr")
    for c in LABELS:
        bad = chex.index[~(chex[c].isna() | chex[c].isin([1.0, 0.0, -1.0]))].tolist()
        if bad:
            raise DatasetError(
                f"mimic_cxr: column {c!r} of {cpath} holds values other than 1, 0, -1, blank on line(s) "
                f"{[b + 2 for b in bad[:10]]}: {chex[c].iloc[bad[:5]].tolist()}."
            )
    df = meta.merge(split[["dicom_id", "split"]], on="dicom_id", how="left")
    nosplit = df["split"].isna()
    if nosplit.any():
        raise DatasetError(
            f"mimic_cxr: {int(nosplit.sum())} dicom_id(s) of {mpath.name} are not in {spath.name} "
            f"(e.g. {df.loc[nosplit, 'dicom_id'].iloc[0]!r}); use the files of one release."
        )
    if views:
        if "ViewPosition" not in df.columns:
            raise DatasetError(f"mimic_cxr: views= needs the ViewPosition column of {mpath}")
        df = df[df["ViewPosition"].isin(list(views))]
    n0 = len(df)
    df = df.merge(chex, on=["subject_id", "study_id"], how="inner")
    if len(df) < n0:
        log.warning("mimic_cxr: %d image(s) of studies without CheXpert labels left out", n0 - len(df))
    pos = 1.0 if uncertain == "positive" else None
    labels = [
        [c for c in LABELS if r[c] == 1.0 or (pos is not None and r[c] == -1.0)] for r in df[LABELS].to_dict("records")
    ]
    subj = df["subject_id"].astype(int).astype(str)
    study = df["study_id"].astype(int).astype(str)
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
    out = pd.DataFrame({
        "id": df["dicom_id"].astype(str).tolist(), "text": texts,
        "image_path": [f"{f}/{d}.jpg" for f, d in zip(folder, df["dicom_id"])], "label": labels,
        "split": normalise_split(df["split"].tolist(), spath, "split", "mimic_cxr"),
        "subject_id": subj.tolist(), "study_id": study.tolist(),
    })
    spec = DatasetSpec(
        name="mimic_cxr", task="multilabel", classes=LABELS, root=str(root),
        text_template="report sections: " + ", ".join(s.upper() for s in sections),
        variant=variant("uones" if uncertain == "positive" else "", "" if sections == ["indication", "history"] else "+".join(sections),
                        "views" + "".join(views) if views else ""),
        description="MIMIC-CXR-JPG, 14 CheXpert labels, official split",
    )
    return MultimodalDataset(out, spec)
