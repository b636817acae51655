"""Small datasets with planted structure for the report tests: an informative and an uninformative modality,
and a subgroup on which the informative modality says less (no files, no extractors: vectors are made here)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from utils.data.schema import DatasetSpec, MultimodalDataset
from utils.embed import Embeddings


def planted(n: int = 600, classes: int = 3, seed: int = 0, scramble_b: float = 0.7, small_group: int = 6,
            redundant: bool = False, dim: int = 16, noise: float = 6.0):
    """``(ds, emb)``: text vectors carry the label, image vectors are noise (or a second noisy copy of the label
    when ``redundant``). Rows of site ``B`` get their text signal from a random class with chance
    ``scramble_b`` (the planted subgroup gap); ``small_group`` rows of site ``C`` are too few to score."""
    rng = np.random.default_rng(seed)
    y = rng.integers(classes, size=n)
    site = rng.choice(np.array(["A", "B"]), size=n)
    site[rng.choice(n, size=small_group, replace=False)] = "C"
    centres = rng.normal(0, 1, (classes, dim)) * 2.0
    shown = np.where((site == "B") & (rng.random(n) < scramble_b), rng.integers(classes, size=n), y)
    text = centres[shown] + rng.normal(0, 1, (n, dim))
    if redundant:  # two noisy views of the label, each weaker alone than together
        text = centres[y] + rng.normal(0, noise, (n, dim))
        image = rng.normal(0, 1, (classes, dim))[y] * 2.0 + rng.normal(0, noise, (n, dim))
    else:
        image = rng.normal(0, 1, (n, dim))
    split = rng.choice(np.array(["train", "val", "test"]), size=n, p=[0.6, 0.2, 0.2])
    names = [f"c{c}" for c in range(classes)]
    df = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "text": None, "image_path": None,
                       "label": [names[c] for c in y], "split": split, "site": site,
                       "age": rng.integers(20, 90, size=n)})
    spec = DatasetSpec(name="planted", task="binary" if classes == 2 else "multiclass", classes=names,
                       variant=f"s{seed}", extra={"subgroups": ["site"]})
    ds = MultimodalDataset(df, spec)
    emb = Embeddings({"text": text.astype(np.float32), "image": image.astype(np.float32)},
                     {"text": "planted text (label signal)", "image": "planted image (noise)"}, ids=ds.df["id"])
    return ds, emb


COLOURS = ("red", "blue", "green", "yellow")
FILLERS = ("a", "small", "large", "iron", "silk", "block", "figure", "piece", "on", "the", "shelf", "desk", "window")


def congruence(n: int = 400, seed: int = 0, widths=(6, 5), noise: float = 0.5):
    """``(ds, images)`` for a MUSTI-like binary task: does the text's colour word name the image's colour?

    Each text holds one colour word among filler words (the tiny BERT's vocabulary); each image branch
    (``image_a``, ``image_b``: ``widths``) is a fixed random prototype of the image's colour plus noise. Half the
    pairs agree ("yes"); neither modality alone says anything about the label (chance 0.5), together they
    decide it."""
    rng = np.random.default_rng(seed)
    text_colour = rng.integers(len(COLOURS), size=n)
    yes = rng.random(n) < 0.5
    image_colour = np.where(yes, text_colour, (text_colour + rng.integers(1, len(COLOURS), size=n)) % len(COLOURS))
    texts = []
    for c in text_colour:
        words = list(rng.choice(FILLERS, size=5))
        words.insert(int(rng.integers(6)), COLOURS[c])
        texts.append(" ".join(words))
    images = {}
    for name, d in zip(("image_a", "image_b"), widths):
        protos = rng.normal(0, 1, (len(COLOURS), d)) * 2.0
        images[name] = (protos[image_colour] + rng.normal(0, noise, (n, d))).astype(np.float32)
    split = rng.choice(np.array(["train", "val", "test"]), size=n, p=[0.6, 0.2, 0.2])
    df = pd.DataFrame({"id": [f"p{i}" for i in range(n)], "text": texts, "image_path": None,
                       "label": np.where(yes, "yes", "no"), "split": split})
    spec = DatasetSpec(name="congruence", task="binary", classes=["no", "yes"], variant=f"s{seed}")
    return MultimodalDataset(df, spec), images
