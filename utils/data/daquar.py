"""``daquar``: DAQUAR visual question answering (NYU-Depth V2 indoor scenes) as a multilabel task.

Raw layout (as published)::

    <root>/qa.894.raw.train.txt     lines alternate: question (naming its image: "... in the image3 ?") / answer
    <root>/qa.894.raw.test.txt
    <root>/nyu_depth_images/image3.png

Answers listing several objects ("book, scissor, papers") become several labels. The image reference is
stripped from the question text. Official train/test; val is carved from train (stratified, seeded,
grouped by image so one scene never sits in train and val).

Quirks (counted in ``ds.spec.extra["load_report"]``): blank lines, stray whitespace, ``Image3`` /
``image 3``, a reference glued to the word before it
(``in th eimage999 ?``, a real line of the training file) and upper-case answers are recovered; a question with no answer (or the reverse), a question
naming no image and an empty answer are skipped; ``strict=True`` raises instead of skipping.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pandas as pd

from . import register
from ._common import require_file
from .quirks import LoadReport, attach
from .schema import DatasetSpec, MultimodalDataset
from .splits import carve_validation

FILES = {"train": "qa.894.raw.train.txt", "test": "qa.894.raw.test.txt"}
IMAGE_DIR = "nyu_depth_images"
_IMAGE_REF = re.compile(r"\bimage(\d+)\b")
_LOOSE_REF = re.compile(r"\bimage\s*(\d+)\b", re.IGNORECASE)  # "Image3", "image 3"
# "in th eimage999 ?" (a real line of the published training file): the space slipped one letter, gluing the
# image reference to the letters before it. The image number is still certain.
_GLUED_REF = re.compile(r"(?:\b([a-z]+)\s+)?\b([a-z]+?)image(\d+)\b", re.IGNORECASE)
_STRIP = re.compile(r"\s*(?:\b(?:in|of|on|at|from)\s+)?(?:\b(?:the|this)\s+)?\bimage\s*\d+\b", re.IGNORECASE)


def strip_image_reference(question: str) -> str:
    """``"what is on the table in the image3 ?"`` -> ``"what is on the table?"``."""
    q = _STRIP.sub("", question)
    q = re.sub(r"\s+\?", "?", q)
    return re.sub(r"\s{2,}", " ", q).strip()


def _is_question(line: str) -> bool:
    return line.endswith("?") or _LOOSE_REF.search(line) is not None


def unglue_image_reference(question: str) -> Optional[Tuple[str, str]]:
    """``"how many drawers are visible in th eimage999 ?"`` -> ``("how many drawers are visible in the image999 ?",
    "image999")``: the question with a reference glued to the letters before it separated again (the slipped
    letter returned to its word when that makes ``the`` / ``this``), and the image. None unless exactly one
    glued reference is present (only a certain reading is recovered)."""
    found = list(_GLUED_REF.finditer(question))
    if len(found) != 1:
        return None
    m = found[0]
    before, glued, number = m.group(1), m.group(2), m.group(3)
    if before and (before + glued).lower() in ("the", "this"):
        fixed = f"{before}{glued} image{number}"
    else:
        fixed = (f"{before} " if before else "") + f"{glued} image{number}"
    return question[: m.start()] + fixed + question[m.end():], f"image{number}"


def parse_qa_file(path: Path, report: Optional[LoadReport] = None) -> List[Dict[str, Any]]:
    """Question/answer records of one DAQUAR file.

    Lines alternate question / answer. A question ends with ``?`` or names an image; every other line is an
    answer. Recovered (counted in ``report``): blank lines, stray whitespace, an image reference written
    ``Image3`` or ``image 3``, answers in upper case. Skipped: a question with no answer, an answer with no
    question, a question that names no image, an empty answer. Without a ``report`` a skip is an error.
    """
    rep = report if report is not None else LoadReport("daquar", strict=True)
    lines = path.read_text(encoding="utf-8").splitlines()
    out: List[Dict[str, Any]] = []
    pending: Optional[Tuple[int, str, int]] = None  # (line, question, how many questions came before)
    n_questions = 0
    for n, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            rep.recovered(path, n, "blank line")
            continue
        if line != raw:
            rep.recovered(path, n, "stray whitespace", raw)
        if _is_question(line):
            if pending is not None:
                rep.skipped(path, pending[0], "question without an answer", pending[1])
            pending = (n, line, n_questions)
            n_questions += 1
            continue
        if pending is None:
            rep.skipped(path, n, "answer without a question", line)
            continue
        qn, q, k = pending
        pending = None
        m = _IMAGE_REF.search(q)
        if m is None:
            m = _LOOSE_REF.search(q)
            if m is None:
                unglued = unglue_image_reference(q)
                if unglued is None:
                    rep.skipped(path, qn, "question names no image ('... in the imageN ?')", q)
                    continue
                rep.recovered(path, qn, "image reference glued to the word before it", q)
                q = unglued[0]
                m = _IMAGE_REF.search(q)
            else:
                rep.recovered(path, qn, "image reference misspelt", m.group(0))
        answers = [w.strip() for w in line.split(",") if w.strip()]
        if not answers:
            rep.skipped(path, n, "empty answer", line)
            continue
        if any(a != a.lower() for a in answers):
            rep.recovered(path, n, "inconsistent case", line)
            answers = [a.lower() for a in answers]
        out.append({"question": q, "image": f"image{m.group(1)}", "answers": answers, "line": qn, "index": k})
    if pending is not None:
        rep.skipped(path, pending[0], "question without an answer", pending[1])
    if report is None:
        rep.check()
    return out


@register("daquar", task="multilabel", access="open")
def load_daquar(root: Path, val_fraction: float = 0.1, seed: int = 0, strict: bool = False) -> MultimodalDataset:
    """Load DAQUAR-894 (full). ``val_fraction`` of train (grouped by image) becomes val.

    ``strict``: raise on a line that would be skipped (see :func:`parse_qa_file`) instead of skipping it.
    Ids are ``<split><k>`` for the k-th question of the file (counting skipped ones), so a skipped or fixed
    line does not renumber the others.
    """
    report = LoadReport("daquar", root=str(root), strict=strict)
    rows = []
    for split, fname in FILES.items():
        for r in parse_qa_file(require_file(root, fname, "daquar", "question/answer file"), report):
            rows.append({
                "id": f"{split}{r['index']:05d}", "text": strip_image_reference(r["question"]),
                "image_path": f"{IMAGE_DIR}/{r['image']}.png", "label": r["answers"], "split": split,
                "image_id": r["image"], "question_raw": r["question"],
            })
    report.finish(len(rows))
    df = pd.DataFrame(rows)
    df = carve_validation(df, val_fraction, seed, group_column="image_id")
    classes = sorted({a for lab in df["label"] for a in lab})
    spec = DatasetSpec(
        name="daquar", task="multilabel", classes=classes, root=str(root),
        text_template="the question with its image reference ('in the imageN') removed",
        variant="",  # the seed only moves rows between train and val
        description="DAQUAR-894 VQA: answer words as multilabel targets",
        extra=attach({}, report),
    )
    return MultimodalDataset(df, spec)
