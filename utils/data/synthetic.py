"""``synthetic``: a built-in image + text dataset where neither modality alone decides the label.

Each record is a small PNG (a coloured shape on a textured background) and a short description of an
object's material. The label joins one fact from each modality:

- the image's colour family: **warm** (reds, oranges, yellows) or **cool** (blues, greens, purples);
- the text's material: **heavy** (iron, granite, ...) or **light** (feather, paper, ...).

Classes: ``warm_heavy, warm_light, cool_heavy, cool_light``. An image-only model can tell warm from cool
but not heavy from light (and the reverse for text), so each single-modality head is capped near 50%
accuracy while a fusion head can reach the ceiling set by the label noise (``label_noise``, 3% by
default). Shapes, sizes, positions, textures and the colour words in the text are distractors.

Generated deterministically from ``seed`` into ``<root>/n<n>_seed<seed>/`` (PNG files plus
``records.csv`` and ``meta.json``) the first time, then read back.

Two metadata columns describe how each image was drawn: ``shape`` (circle, square, triangle, diamond) and
``background`` (noise, stripes, checks). They carry no label information; whether a head does as well on
each is what the subgroup report (``spec.extra["subgroups"]``) measures.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pandas as pd

from . import register
from .quirks import LoadReport, attach
from .schema import DatasetSpec, MultimodalDataset
from .splits import assign_splits

log = logging.getLogger(__name__)

CLASSES = ["warm_heavy", "warm_light", "cool_heavy", "cool_light"]
WARM_HUES = (0.0, 0.14)  # red .. yellow (HSV hue in [0, 1))
COOL_HUES = (0.30, 0.80)  # green .. purple
HEAVY = ["iron", "granite", "lead", "steel", "concrete", "marble", "bronze", "cast stone", "basalt", "tungsten"]
LIGHT = ["feather", "paper", "foam", "cotton", "balsa wood", "silk", "cork", "styrofoam", "tissue", "down"]
SHAPES = ["circle", "square", "triangle", "diamond"]
SHAPE_WORDS = ["block", "figure", "piece", "object", "ornament", "token", "item", "model"]
SIZES = ["small", "large", "tiny", "medium-sized", "compact", "bulky"]
PLACES = [
    "on a shelf", "in a workshop", "near the window", "in a museum case", "on the floor", "in a garden",
    "at the market", "in the attic", "on a desk", "by the door",
]
COLOUR_WORDS = ["red", "blue", "green", "yellow", "orange", "purple", "grey", "white"]  # uncorrelated with the label
TEMPLATES = [
    "A {size} {word} made of {material}, photographed {place}.",
    "{Size} {word} of {material} found {place}; the label says it is {colour}.",
    "This {word} is {size} and made from {material}. It was kept {place}.",
    "Catalogue entry: {material} {word}, {size}, stored {place}.",
    "Someone left a {size} {material} {word} {place}.",
]
TEXT_TEMPLATE_DOC = "one of 5 sentence templates filled with size, object word, material, place and a random colour word"

FORMAT_VERSION = 2  # 2: records.csv gained the shape and background columns (same images and texts)
BACKGROUNDS = ["noise", "stripes", "checks"]
SUBGROUPS = ["shape", "background"]


@register("synthetic", task="multiclass", access="built in (generated locally)")
def load_synthetic(
    root: Path,
    n: int = 3000,
    seed: int = 0,
    image_size: int = 64,
    label_noise: float = 0.03,
    missing_text: float = 0.01,
    fractions=(0.7, 0.15, 0.15),
) -> MultimodalDataset:
    """Generate (once) and load the synthetic dataset. ``n`` records; everything follows from ``seed``."""
    if n < 40:
        raise ValueError(f"synthetic: n must be at least 40 (10 per class), got {n}")
    params = dict(
        format=FORMAT_VERSION, n=int(n), seed=int(seed), image_size=int(image_size),
        label_noise=float(label_noise), missing_text=float(missing_text), fractions=[float(f) for f in fractions],
    )
    folder = Path(root) / f"n{n}_seed{seed}"
    if not _is_complete(folder, params):
        _generate(folder, params)
    df = pd.read_csv(folder / "records.csv", dtype={"id": str, "text": object, "image_path": str})
    report = LoadReport("synthetic", root=str(folder)).finish(len(df))  # generated here: nothing to recover
    spec = DatasetSpec(
        name="synthetic",
        task="multiclass",
        classes=list(CLASSES),
        root=str(folder),
        modalities=["text", "image"],
        text_template=TEXT_TEMPLATE_DOC,
        variant=f"n{n}-seed{seed}" + ("" if image_size == 64 else f"-px{image_size}"),
        description="Built-in synthetic data: colour family from the image x material from the text.",
        extra=attach({"params": params, "subgroups": list(SUBGROUPS)}, report),
    )
    return MultimodalDataset(df, spec)


def _is_complete(folder: Path, params: Dict[str, Any]) -> bool:
    meta = folder / "meta.json"
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()) == params
    except json.JSONDecodeError:
        return False


def _generate(folder: Path, params: Dict[str, Any]) -> None:
    """Write images and ``records.csv`` into a temporary folder, then move it into place."""
    from PIL import Image

    n, seed, size = params["n"], params["seed"], params["image_size"]
    log.info("generating synthetic dataset (n=%d, seed=%d) into %s", n, seed, folder)
    rng = np.random.default_rng(seed)
    tmp = folder.with_name(folder.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "images").mkdir(parents=True)

    true_class = np.arange(n) % len(CLASSES)  # balanced
    rng.shuffle(true_class)
    rows: List[Dict[str, Any]] = []
    for i in range(n):
        c = int(true_class[i])
        warm = c in (0, 1)
        heavy = c in (0, 2)
        rid = f"syn{i:06d}"
        img, shape, background = _draw_image(rng, warm, size)
        Image.fromarray(img).save(tmp / "images" / f"{rid}.png", optimize=False, compress_level=1)
        text = _write_text(rng, heavy) if rng.random() >= params["missing_text"] else None
        label = CLASSES[c]
        if rng.random() < params["label_noise"]:
            label = CLASSES[int(rng.integers(len(CLASSES)))]
        rows.append({"id": rid, "text": text, "image_path": f"images/{rid}.png", "label": label, "shape": shape,
                     "background": background})
    df = pd.DataFrame(rows)
    df["split"] = assign_splits(df["label"].tolist(), tuple(params["fractions"]), seed=seed)
    df.to_csv(tmp / "records.csv", index=False)
    (tmp / "meta.json").write_text(json.dumps(params))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb) * 255


def _draw_image(rng: np.random.Generator, warm: bool, size: int):
    """``(image [size, size, 3] uint8, shape name, background name)``."""
    from PIL import Image, ImageDraw

    # background: grey texture (noise, stripes or checks) -- carries no label information
    base = rng.uniform(60, 200)
    kind = rng.integers(3)
    yy, xx = np.mgrid[0:size, 0:size]
    if kind == 0:
        bg = base + rng.normal(0, 18, (size, size))
    elif kind == 1:
        period = rng.uniform(4, 12)
        bg = base + 25 * np.sin(2 * np.pi * (xx * rng.uniform(-1, 1) + yy) / period)
    else:
        cell = int(rng.integers(4, 12))
        bg = base + 25 * (((xx // cell) + (yy // cell)) % 2 - 0.5)
    bg = np.clip(bg, 0, 255)
    arr = np.repeat(bg[..., None], 3, axis=2).astype(np.uint8)
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img)

    lo, hi = WARM_HUES if warm else COOL_HUES
    hue = rng.uniform(lo, hi)
    colour = tuple(int(x) for x in _hsv_to_rgb(hue, rng.uniform(0.55, 1.0), rng.uniform(0.6, 1.0)))
    r = rng.uniform(0.18, 0.38) * size
    cx, cy = rng.uniform(r, size - r, 2)
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    else:
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    out = np.asarray(img).astype(np.float32) + rng.normal(0, 6, (size, size, 3))
    return np.clip(out, 0, 255).astype(np.uint8), shape, BACKGROUNDS[int(kind)]


def _write_text(rng: np.random.Generator, heavy: bool) -> str:
    material = (HEAVY if heavy else LIGHT)[int(rng.integers(10))]
    size = SIZES[int(rng.integers(len(SIZES)))]
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    return template.format(
        size=size, Size=size.capitalize(), word=SHAPE_WORDS[int(rng.integers(len(SHAPE_WORDS)))],
        material=material, place=PLACES[int(rng.integers(len(PLACES)))],
        colour=COLOUR_WORDS[int(rng.integers(len(COLOUR_WORDS)))],
    )
