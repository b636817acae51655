"""The two image-guided text selection models side by side on planted data: which scores better?

- ``guided_tsf``: the published MUSTI block (image tokens mixed into the text encoder's input embeddings,
  cosine scores, a vote over two image branches), end to end; also with the encoder frozen, the footing
  of the gated variant;
- ``guided_gated``: our variant (the image gates the encoder's output token features), on cached tokens.

Data: ``tests/planted.py::congruence``, a MUSTI-like binary task (does the text's colour word name the
image's colour? neither modality alone says anything), two image branches, at two noise levels of the image
features. Text encoder: the tests' tiny random BERT (2 layers, 32 wide), built here; nothing is downloaded.
Each model at the settings its test uses (TSF: 10 epochs, batch 32, lr 3e-3; gated: 30 epochs, batch 32,
lr 1e-2, hidden 64), no early stopping, test split.

    python benchmarks/guided_variants.py              # a few minutes on 2 CPU cores

Prints ``<model>_noise<x>_macro_f1: mean`` (and the per-seed values) lines.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--noise", type=float, nargs="+", default=[0.5, 1.5])
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    import torch

    from tests.conftest import make_tiny_bert
    from tests.planted import congruence
    from utils.experiment import train_guided, train_tsf
    from utils.token_features import cache_token_features

    torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp(prefix="guided-variants-"))
    bert = make_tiny_bert(tmp / "tiny-bert")
    print("device: cpu")
    print("text_encoder: tiny random BERT (2 layers, 32 wide)")
    tsf = dict(epochs=10, batch_size=32, lr=3e-3, head_lr=3e-3, patience=None, max_length=16, device="cpu")
    for noise in a.noise:
        scores = {"guided_tsf": [], "guided_tsf_frozen_encoder": [], "guided_gated": []}
        for seed in a.seeds:
            ds, images = congruence(a.n, seed=seed, noise=noise)
            scores["guided_tsf"] += [r["macro_f1"] for r in train_tsf(ds, bert, images, seeds=[seed], **tsf)]
            scores["guided_tsf_frozen_encoder"] += [r["macro_f1"] for r in train_tsf(
                ds, bert, images, seeds=[seed], train_encoder=False, **tsf)]
            folder = cache_token_features(ds.items("text"), list(ds.df["id"]), str(bert), tmp / f"tok{seed}_{noise}",
                                          max_length=16, show_progress=False)
            img = np.concatenate(list(images.values()), axis=1)
            scores["guided_gated"] += [r["macro_f1"] for r in train_guided(
                ds, folder, img, seeds=[seed], epochs=30, batch_size=32, hidden=64, device="cpu", lr=1e-2, patience=None)]
        for name, vals in scores.items():
            print(f"{name}_noise{noise:g}_macro_f1: {statistics.mean(vals):.3f}")
            print(f"{name}_noise{noise:g}_macro_f1_per_seed: {' '.join(f'{v:.3f}' for v in vals)}")


if __name__ == "__main__":
    main()
