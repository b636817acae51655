"""``daquar``: DAQUAR visual question answering (NYU-Depth V2 indoor scenes) as a multilabel task.

Raw layout (as published)::

    <root>/qa.894.raw.train.txt     lines alternate: question (naming its image: "... in the image3 ?") / answer
    <root>/qa.894.raw.test.txt
    <root>/nyu_depth_images/image3.png

Answers listing several objects ("book, scissor, papers") become several labels. The image reference is
stripped from the question text. Official train/test; val is carved from train (stratified, seeded,
grouped by image so one scene never sits in train and val).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List

import pandas as pd

from . import register
from ._common import require_file
from .schema import DatasetError, DatasetSpec, MultimodalDataset
from .splits import carve_validation

FILES = {"train": "qa.894.raw.train.txt", "test": "qa.894.raw.test.txt"}
IMAGE_DIR = "nyu_depth_images"
_IMAGE_REF = re.compile(r"\bimage(\d+)\b")
_STRIP = re.compile(r"\s*(?:\b(?:in|of|on|at|from)\s+)?(?:\b(?:the|this)\s+)?\bimage\d+\b")


def strip_image_reference(question: str) -> str:
    """``"what is on the table in the image3 ?"`` -> ``"what is on the table?"``."""
    q = _STRIP.sub("", question)
    q = re.sub(r"\s+\?", "?", q)
    return re.sub(r"\s{2,}", " ", q).strip()


def parse_qa_file(path: Path) -> List[Dict[str, Any]]:
    """Question/answer records of one DAQUAR file (blank lines ignored)."""
    lines = [(i + 1, ln.strip()) for i, ln in enumerate(path.read_text(encoding="utf-8").splitlines())]
    lines = [(n, ln) for n, ln in lines if ln]
    if len(lines) % 2:
        raise DatasetError(
            f"daquar: {path} has an odd number of non-empty lines ({len(lines)}): questions and answers must "
            f"alternate. The last one (line {lines[-1][0]}) has no partner; re-download the file."
        )
    out = []
    for k in range(0, len(lines), 2):
        (qn, q), (_, a) = lines[k], lines[k + 1]
        m = _IMAGE_REF.search(q)
        if m is None:
            raise DatasetError(
                f"daquar: line {qn} of {path} names no image ('... in the imageN ?'): {q!r}. "
                "Questions and answers may be out of step; re-download the file."
            )
        answers = [w.strip() for w in a.split(",") if w.strip()]
        if not answers:
            raise DatasetError(f"daquar: empty answer after line {qn} of {path}")
        out.append({"question": q, "image": f"image{m.group(1)}", "answers": answers})
    return out


@register("daquar", task="multilabel", access="open")
def load_daquar(root: Path, val_fraction: float = 0.1, seed: int = 0) -> MultimodalDataset:
    """Load DAQUAR-894 (full). ``val_fraction`` of train (grouped by image) becomes val."""
    rows = []
    for split, fname in FILES.items():
        for i, r in enumerate(parse_qa_file(require_file(root, fname, "daquar", "question/answer file"))):
            rows.append({
                "id": f"{split}{i:05d}", "text": strip_image_reference(r["question"]),
                "image_path": f"{IMAGE_DIR}/{r['image']}.png", "label": r["answers"], "split": split,
                "image_id": r["image"], "question_raw": r["question"],
            })
    df = pd.DataFrame(rows)
    df = carve_validation(df, val_fraction, seed, group_column="image_id")
    classes = sorted({a for lab in df["label"] for a in lab})
    spec = DatasetSpec(
        name="daquar", task="multilabel", classes=classes, root=str(root),
        text_template="the question with its image reference ('in the imageN') removed",
        variant="",  # the seed only moves rows between train and val
        description="DAQUAR-894 VQA: answer words as multilabel targets",
    )
    return MultimodalDataset(df, spec)
