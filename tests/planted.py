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
