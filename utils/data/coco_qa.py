"""``coco_qa``: COCO-QA (one-word answers on MS-COCO images) as a multiclass task.

Raw layout (``cocoqa-2015-05-17.zip`` unpacked, COCO images beside it)::

    <root>/train/questions.txt  answers.txt  img_ids.txt  types.txt   (aligned, one per line)
    <root>/test/...
    <root>/images/  COCO_train2014_%012d.jpg / COCO_val2014_%012d.jpg (2014) or %012d.jpg (2017),
                    in any sub-folders (train2014/, val2014/, train2017/ ...)

The question type (object / number / color / location) is kept in ``question_type``. Official train /
test; val is carved from train (stratified, seeded, grouped by image).

Quirks (counted in ``ds.spec.extra["load_report"]``): stray whitespace, upper-case answers, image ids
written ``123.0`` or as a COCO file name, types written ``1.0``, and blank lines that put the four files
out of step are recovered; a record with an image id or type that does not parse, or blank in some files
only, is skipped (``strict=True`` raises instead). Files whose line counts differ even without blank
lines are an error: every later line would be paired wrongly.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pandas as pd

from . import register
from ._common import index_files, rel, require_file
from .quirks import LoadReport, attach
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


def read_parallel(folder: Path, report: LoadReport) -> List[Dict[str, Any]]:
    """The aligned lines of ``questions / answers / img_ids / types.txt`` in ``folder``: one dict per record
    with each part and ``line`` (its line in ``questions.txt``).

    Blank lines at the end of a file are dropped. When the files then have equally many lines, a record
    that is blank in every file is dropped (recovered) and one blank in some files only is skipped. When
    they do not, blank lines are what put them out of step: they are dropped (recovered) and the files
    must then agree; if they still do not, no line can be paired with confidence and this is an error.
    """
    raw = {p: (folder / f"{p}.txt").read_text(encoding="utf-8").splitlines() for p in PARTS}
    numbered: Dict[str, List[Tuple[int, str]]] = {}
    for p, lines in raw.items():
        n = len(lines)
        while n and not lines[n - 1].strip():
            n -= 1
        for k in range(n, len(lines)):
            report.recovered(folder / f"{p}.txt", k + 1, "blank line")
        numbered[p] = list(enumerate(lines[:n], start=1))
    counts = {p: len(v) for p, v in numbered.items()}
    if len(set(counts.values())) != 1:
        for p in PARTS:
            for k, ln in numbered[p]:
                if not ln.strip():
                    report.recovered(folder / f"{p}.txt", k, "blank line")
            numbered[p] = [(k, ln) for k, ln in numbered[p] if ln.strip()]
        after = {p: len(v) for p, v in numbered.items()}
        if len(set(after.values())) != 1:
            raise DatasetError(
                f"coco_qa: the files of {folder} are not aligned (line counts {counts}, {after} without blank "
                "lines); each must have one line per question, and no line can be paired with confidence. "
                "Re-extract cocoqa-2015-05-17.zip."
            )
    out = []
    for i in range(len(numbered["questions"])):
        rec = {p: numbered[p][i][1] for p in PARTS}
        line = numbered["questions"][i][0]
        blank = [p for p in PARTS if not rec[p].strip()]
        if len(blank) == len(PARTS):
            report.recovered(folder / "questions.txt", line, "blank line")
            continue
        if blank:
            report.skipped(folder / f"{blank[0]}.txt", numbered[blank[0]][i][0], "blank line where the other files have one")
            continue
        out.append({**rec, "line": line, "index": i, "lines": {p: numbered[p][i][0] for p in PARTS}})
    return out


def _record(rec: Dict[str, Any], folder: Path, report: LoadReport) -> Optional[Tuple[str, str, int, str]]:
    """``(question, answer, image id, type)`` of one record, fixed where unambiguous; None when skipped."""
    where = rec["lines"]
    fixed = {}
    for p in PARTS:
        v = rec[p]
        if v != v.strip():
            report.recovered(folder / f"{p}.txt", where[p], "stray whitespace", v)
        fixed[p] = v.strip()
    answer = fixed["answers"]
    if answer != answer.lower():
        report.recovered(folder / "answers.txt", where["answers"], "inconsistent case", answer)
        answer = answer.lower()
    img = fixed["img_ids"]
    if not img.isdigit():
        m = _COCO_NAME.fullmatch(img) or re.fullmatch(r"(\d+)\.0+", img)
        if m is None:
            report.skipped(folder / "img_ids.txt", where["img_ids"], "image id does not parse", img)
            return None
        report.recovered(folder / "img_ids.txt", where["img_ids"], "bad number", img)
        img = m.group(1)
    t = fixed["types"]
    if t not in TYPES:
        m = re.fullmatch(r"([0-3])\.0+", t)
        if m is None:
            report.skipped(folder / "types.txt", where["types"], "question type not 0-3", t)
            return None
        report.recovered(folder / "types.txt", where["types"], "bad number", t)
        t = m.group(1)
    return fixed["questions"], answer, int(img), t


@register("coco_qa", task="multiclass", access="open")
def load_coco_qa(root: Path, images_dir: str = "images", val_fraction: float = 0.1, seed: int = 0,
                 strict: bool = False) -> MultimodalDataset:
    """Load COCO-QA. Images are looked up by COCO id under ``root/images_dir`` (2014 or 2017 names).

    ``strict``: raise on a record that would be skipped instead of skipping it (see the module docstring).
    """
    index = image_index(root / images_dir)
    report = LoadReport("coco_qa", root=str(root), strict=strict)
    rows = []
    for split in ("train", "test"):
        for p in PARTS:
            require_file(root, f"{split}/{p}.txt", "coco_qa")
        folder = root / split
        for rec in read_parallel(folder, report):
            parsed = _record(rec, folder, report)
            if parsed is None:
                continue
            question, answer, img, t = parsed
            i = rec["index"]
            found = index.get(img)
            default = f"{images_dir}/{'train' if split == 'train' else 'val'}2014/COCO_{'train' if split == 'train' else 'val'}2014_{img:012d}.jpg"
            rows.append({
                "id": f"{split}{i:06d}", "text": question, "label": answer,
                "image_path": rel(found, root) if found is not None else default, "split": split,
                "image_id": img, "question_type": TYPES[t],
            })
    report.finish(len(rows))
    df = carve_validation(pd.DataFrame(rows), val_fraction, seed, group_column="image_id")
    spec = DatasetSpec(
        name="coco_qa", task="multiclass", classes=sorted(df["label"].unique()), root=str(root),
        text_template="the question as published", variant="",  # the seed only moves rows between train and val
        description="COCO-QA: one-word answers (object, number, color, location questions)",
        extra=attach({}, report),
    )
    return MultimodalDataset(df, spec)
