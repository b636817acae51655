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
them measure nothing about sound: say so when reporting. ``class_texts`` may also be a folder with one
sub-folder of ``.txt`` files per class (``<root>/<class_texts>/<category>/*.txt``, one text per file):
clip k of a class then gets text k mod n, as with the images.

**The seed's recipe** (the three-modality unified space): clips merged per class, one text folder and one
image folder per class. ``merged="merged"`` builds it as far as ESC-50 allows: :func:`merge_clips` joins the
clips of each class *within each fold* (8 clips of 5 s per class and fold in the release; folds are never
mixed, so the test fold stays unseen) into ``<root>/merged/*.wav`` with their metadata in
``<root>/meta/esc50_merged.csv`` (same columns as ``esc50.csv``, plus ``n_clips`` and ``sources``), made once
and reused while the clips it lists are unchanged; the records are then the merged clips. ``clips_per_merge``
joins that many clips at a time instead (more, shorter records).

Quirks (counted in ``ds.spec.extra["load_report"]``): stray whitespace, blank lines, a category in another
case or misspelt (its target number says which class it is), numbers written ``5.0``, exact duplicate rows
and class names of ``class_texts`` in another case are recovered; a row whose fold or target is not a
whole number, whose category names another target's class, or that shares a file name with a different
row, is skipped (``strict=True`` raises instead).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional

import pandas as pd

from . import register
from ._common import (canonical, drop_duplicates, fold_map, is_missing, read_table, rel, require_columns, require_file,
                      to_number, variant)
from .quirks import LoadReport, attach
from .schema import DatasetError, DatasetSpec, MultimodalDataset

log = logging.getLogger(__name__)

_IMAGES = (".jpg", ".jpeg", ".png")


def _clips(meta: pd.DataFrame, path: Path, report: LoadReport) -> pd.DataFrame:
    """Rows of ``esc50.csv`` with a clean file name, whole fold and target, and a category that agrees with
    the target (a misspelt one is recovered from the target, a different class skips the row)."""
    rows = []
    for line, r in zip(meta.index, meta.to_dict("records")):
        fname, cat = r["filename"], r["category"]
        if is_missing(fname) or is_missing(cat):
            report.skipped(path, line, "missing filename" if is_missing(fname) else "missing category")
            continue
        fold, fhow = to_number(r["fold"])
        target, thow = to_number(r["target"])
        if fold is None or fold != int(fold) or target is None or target != int(target):
            report.skipped(path, line, "fold not a whole number" if fold is None or fold != int(fold) else "target not a whole number",
                           r["fold"] if fold is None else r["target"])
            continue
        if fhow or thow:
            report.recovered(path, line, "bad number", r["fold"] if fhow else r["target"])
        name = str(fname)
        if name != name.strip():
            report.recovered(path, line, "stray whitespace", name)
        rows.append({"line": line, "filename": name.strip(), "fold": int(fold), "target": int(target),
                     "category": str(cat), "esc10": r.get("esc10")})
    df = pd.DataFrame(rows, columns=["line", "filename", "fold", "target", "category", "esc10"])
    # the name of each target: its most common spelling (ESC-50 names are lower case)
    clean = df["category"].str.strip().str.lower()
    names = {t: part.value_counts().index[0] for t, part in clean.groupby(df["target"])}
    known = set(names.values())
    keep = []
    for k, (line, raw, c, t) in enumerate(zip(df["line"], df["category"], clean, df["target"])):
        if c == names[t]:
            if raw != c:
                report.recovered(path, line, "inconsistent case" if raw.strip() == raw else "stray whitespace", raw)
        elif c in known:
            report.skipped(path, line, f"category {c!r} is the name of another target than {t}", raw)
            continue
        else:
            report.recovered(path, line, f"category misspelt (target {t} is {names[t]!r})", raw)
        keep.append(k)
    df = df.iloc[keep].assign(category=lambda d: d["target"].map(names)).set_index("line")
    return drop_duplicates(df, "filename", report, path, "filename")


def merge_clips(root: Path, out: str = "merged", clips_per_merge: Optional[int] = None,
                report: Optional[LoadReport] = None) -> Path:
    """Join the clips of each class within each fold into one WAV per (fold, class) (the seed's "clips merged
    per class"; folds never mix). ``clips_per_merge``: join that many consecutive clips (by file name) at a time
    instead. Writes ``<root>/<out>/<fold>-<target>-<k>.wav`` and ``<root>/meta/esc50_<out>.csv`` (the columns of
    ``esc50.csv`` plus ``n_clips`` and ``sources``) and returns the CSV. Clips of another sample rate or channel
    count than the first are an error naming the file. A CSV listing the same source clips is reused as it is.
    ``esc50.csv``'s quirks are handled as the loader does and counted in ``report`` (logged when not given)."""
    import numpy as np
    import soundfile as sf

    root = Path(root)
    if not (root / "meta" / "esc50.csv").is_file() and (root / "ESC-50-master" / "meta" / "esc50.csv").is_file():
        root = root / "ESC-50-master"
    if clips_per_merge is not None and int(clips_per_merge) < 1:
        raise ValueError(f"esc50: clips_per_merge must be None or >= 1, got {clips_per_merge!r}")
    path = require_file(root, "meta/esc50.csv", "esc50", "clip metadata")
    own = report is None
    report = report or LoadReport("esc50", root=str(root))
    meta = _clips(read_table(path, "esc50", report=report, dtype={"filename": str, "category": str}), path, report)
    if own:
        report.finish(len(meta))
    groups = []
    for (fold, target), part in meta.sort_values("filename").groupby(["fold", "target"], sort=True):
        names = part["filename"].tolist()
        step = int(clips_per_merge) if clips_per_merge else len(names)
        for k in range(0, len(names), step):
            groups.append({"filename": f"{fold}-{target}-{k // step}.wav", "fold": fold, "target": target,
                           "category": part["category"].iloc[0], "esc10": part["esc10"].iloc[0],
                           "n_clips": len(names[k:k + step]), "sources": " ".join(names[k:k + step])})
    table = pd.DataFrame(groups, columns=["filename", "fold", "target", "category", "esc10", "n_clips", "sources"])
    csv_path = root / "meta" / f"esc50_{out}.csv"
    folder = root / out
    if csv_path.is_file():
        old = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
        if old.get("sources") is not None and old["sources"].tolist() == table["sources"].tolist() \
                and all((folder / f).is_file() for f in old["filename"]):
            log.info("esc50: merged clips in %s are up to date (%d files)", folder, len(old))
            return csv_path
    folder.mkdir(parents=True, exist_ok=True)
    rate = channels = None
    for g in table.to_dict("records"):
        parts = []
        for name in g["sources"].split(" "):
            audio, sr = sf.read(str(root / "audio" / name), dtype="float32", always_2d=True)
            if rate is None:
                rate, channels = sr, audio.shape[1]
            if sr != rate or audio.shape[1] != channels:
                raise DatasetError(f"esc50: {root / 'audio' / name} is {sr} Hz x {audio.shape[1]} channel(s), the "
                                   f"other clips {rate} Hz x {channels}: convert it before merging")
            parts.append(audio)
        tmp = folder / (g["filename"] + ".tmp")
        sf.write(str(tmp), np.concatenate(parts), rate, format="WAV")
        tmp.replace(folder / g["filename"])
    tmp_csv = csv_path.with_suffix(".csv.tmp")
    table.to_csv(tmp_csv, index=False)
    tmp_csv.replace(csv_path)
    log.info("esc50: %d clips merged into %d files in %s (%s)", int(table["n_clips"].sum()), len(table), folder,
             f"{clips_per_merge} clips each" if clips_per_merge else "one per class and fold")
    return csv_path


def _class_text_folder(folder: Path, classes: List[str]) -> Dict[str, List[str]]:
    """``<folder>/<class>/*.txt``: the texts of each class (one per file, sorted by file name)."""
    out: Dict[str, List[str]] = {}
    for c in classes:
        files = sorted((folder / c).glob("*.txt")) if (folder / c).is_dir() else []
        texts = [t for t in (f.read_text(encoding="utf-8").strip() for f in files) if t]
        if not texts:
            raise DatasetError(f"esc50: no text for class {c!r} in {folder / c}; add at least one non-empty .txt file.")
        out[c] = texts
    return out


@register("esc50", task="multiclass", access="open")
def load_esc50(
    root: Path,
    test_fold: int = 5,
    val_fold: Optional[int] = 4,
    esc10: bool = False,
    class_images: Optional[str] = None,
    class_texts: Optional[str] = None,
    merged: Optional[str] = None,
    clips_per_merge: Optional[int] = None,
    strict: bool = False,
) -> MultimodalDataset:
    """Load ESC-50 (audio; plus per-class text and image when ``class_texts`` / ``class_images`` are given).

    ``merged``: the seed's recipe, records are the clips merged per class and fold (:func:`merge_clips` writes
    them into ``<root>/<merged>`` on first use). ``strict``: raise on a line that would be skipped instead of
    skipping it (see the module docstring).
    """
    if not (root / "meta" / "esc50.csv").is_file() and (root / "ESC-50-master" / "meta" / "esc50.csv").is_file():
        root = root / "ESC-50-master"
    report = LoadReport("esc50", root=str(root), strict=strict)
    audio_dir = "audio"
    if merged:
        path = merge_clips(root, merged, clips_per_merge, report)
        audio_dir = merged
    elif clips_per_merge is not None:
        raise DatasetError("esc50: clips_per_merge needs merged='<folder>' (the seed's merged clips)")
    else:
        path = require_file(root, "meta/esc50.csv", "esc50", "clip metadata")
    meta = read_table(path, "esc50", report=report, dtype={"filename": str, "category": str})
    require_columns(meta, ["filename", "fold", "target", "category"], path, "esc50")
    if esc10:
        require_columns(meta, ["esc10"], path, "esc50")
    meta = _clips(meta, path, report)
    if esc10:
        meta = meta[meta["esc10"].astype(str).str.strip().str.lower().isin(["true", "1"])]
    folds = set(meta["fold"])
    for f in (test_fold, val_fold):
        if f is not None and f not in folds:
            raise DatasetError(f"esc50: fold {f} is not in {path} (folds {sorted(folds)})")
    order = meta.drop_duplicates("target").sort_values("target")
    classes = order["category"].astype(str).tolist()
    split = ["test" if f == test_fold else "val" if f == val_fold else "train" for f in meta["fold"]]
    df = pd.DataFrame({
        "id": meta["filename"].str.replace(r"\.wav$", "", regex=True).tolist(),
        "audio_path": [f"{audio_dir}/{f}" for f in meta["filename"]],
        "label": meta["category"].tolist(), "split": split, "fold": meta["fold"].tolist(),
    })
    modalities = ["audio"]
    k_in_class = df.groupby("label").cumcount()
    if class_texts and (root / class_texts).is_dir():  # one folder of .txt files per class
        per_class_texts = _class_text_folder(root / class_texts, sorted(set(df["label"])))
        df["text"] = [per_class_texts[c][k % len(per_class_texts[c])] for c, k in zip(df["label"], k_in_class)]
        modalities.insert(0, "text")
    elif class_texts:
        tpath = require_file(root, class_texts, "esc50", "per-class texts (columns class, text; or a folder per class)")
        t = read_table(tpath, "esc50", report=report)
        require_columns(t, ["class", "text"], tpath, "esc50")
        known = fold_map(classes)
        texts: Dict[str, str] = {}
        for line, c, text in zip(t.index, t["class"], t["text"]):
            name, how = canonical(c, known)
            if name is None or is_missing(text):
                report.skipped(tpath, line, "class not in esc50.csv" if name is None else "missing text", c)
                continue
            if how:
                report.recovered(tpath, line, how, c)
            texts[name] = str(text)
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
        df["image_path"] = [per_class[c][k % len(per_class[c])] for c, k in zip(df["label"], k_in_class)]
        modalities.insert(len(modalities) - 1, "image")
    report.finish(len(df))
    spec = DatasetSpec(
        name="esc50", task="multiclass", classes=[c for c in classes if c in set(df["label"])], root=str(root),
        modalities=modalities, text_template="the class text from " + class_texts if class_texts else "",
        variant=variant("esc10" if esc10 else "", "classmedia" if (class_texts or class_images) else "",
                        f"{merged}{clips_per_merge or ''}" if merged else ""),
        description="ESC-50 environmental sounds, 5 folds", extra=attach({}, report),
    )
    return MultimodalDataset(df, spec)
