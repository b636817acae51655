"""Seconds per training epoch: an embedding head vs the fine-tuned BERT + ViT baseline, on the same records.

The full model is the real `bert_vit_early_finetune` path (utils.models.full): a BERT-base-sized text backbone
and a ViT-base-sized image backbone (architectures from `BertConfig()` / `ViTConfig()`, RANDOM weights, nothing
downloaded), each with its own preprocessing (a word-level BERT tokenizer; `ViTImageProcessor` at 224 px),
images decoded from PNG every epoch, AdamW, batch 16. The embedding head is the early-fusion head on cached
768 + 768-d vectors of the same records, trained with `utils.train.fit` (batch 64).
Timing = training passes only (no validation), median over epochs.

    python benchmarks/full_vs_embed.py --n 200 --full-epochs 1

Prints `name: value` lines; the last is `full_vs_embed_epoch_ratio: x`. The original framework reports about
1.5 s vs 538 s per epoch on BRSET (ratio ~350, GPU).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import add_device_argument, describe_device  # noqa: E402 -- benchmarks/_timing.py


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200, help="records (all used for training)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--full-epochs", type=int, default=1)
    p.add_argument("--head-epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    add_device_argument(p)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = describe_device(a.device)

    from torch.utils.data import DataLoader
    from transformers import BertConfig, BertTokenizer, ViTConfig, ViTImageProcessor

    from utils import data
    from utils.data.synthetic import COLOUR_WORDS, HEAVY, LIGHT, PLACES, SHAPE_WORDS, SIZES
    from utils.models.fusion import build_head
    from utils.models.full import FullFusionModel, load_backbone, param_groups
    from utils.models.losses import targets_tensor
    from utils.train import MultimodalCollator, RecordsDataset, TrainConfig, fit, fit_batches, n_params

    tmp = Path(tempfile.mkdtemp(prefix="full_vs_embed_"))
    ds = data.load("synthetic", root=tmp / "data", n=max(a.n, 40), image_size=a.image_size)
    rows = np.arange(len(ds.df))
    y = ds.labels()
    yt = targets_tensor(y, ds.spec.task)

    # --- the full model: BERT-base + ViT-base sized, random weights, fine-tuned end to end
    words = sorted({w.lower() for s in (HEAVY, LIGHT, SHAPE_WORDS, SIZES, PLACES, COLOUR_WORDS) for t in s for w in t.replace("-", " ").split()})
    words += "a an the of in on at by to is was it this that made from photographed found kept stored left someone label says catalogue entry".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(words), ".", ",", ";", ":"]
    (tmp / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(vocab=str(tmp / "vocab.txt"))
    processor = ViTImageProcessor(size={"height": a.image_size, "width": a.image_size})
    torch.manual_seed(0)
    model = FullFusionModel(load_backbone(BertConfig()), load_backbone(ViTConfig(image_size=a.image_size)), ds.spec.num_outputs,
                            "early_fusion", "finetune")
    collate = MultimodalCollator(tokenizer, processor, 128, pairs=True)
    train = DataLoader(RecordsDataset.from_dataset(ds, rows, yt[rows]), batch_size=a.batch_size, shuffle=True, collate_fn=collate,
                       generator=torch.Generator().manual_seed(0))
    val = DataLoader(RecordsDataset.from_dataset(ds, rows[:4], yt[rows[:4]]), batch_size=4, collate_fn=collate)
    res = fit_batches(model, train, val, ds.spec.task, ds.spec.classes, TrainConfig(epochs=a.full_epochs, patience=None, device=str(dev)),
                      param_groups=param_groups(model, 2e-5, 1e-3), show_progress=True)
    full_s = statistics.median(res.epoch_seconds)
    full_params = n_params(model)

    # --- the embedding head on cached vectors of the same records (768-d text + 768-d image)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(len(rows), 1536)).astype(np.float32)
    head = build_head("early_fusion", {"text": 768, "image": 768}, ds.spec.num_outputs)
    head_times = []
    for e in range(a.head_epochs):  # one-epoch fits: fit() times the training pass only
        r = fit(head, X, y, X[:8], y[:8], ds.spec.task, ds.spec.classes, TrainConfig(epochs=1, patience=None, device=str(dev), seed=e))
        head_times.append(r.train_seconds)
    embed_s = statistics.median(head_times)

    print(f"records: {len(rows)}")
    print(f"image_size: {a.image_size}")
    print(f"torch_threads: {torch.get_num_threads()}")
    print(f"full_trainable_params: {full_params}")
    print(f"embed_trainable_params: {n_params(head)}")
    print(f"full_s_per_epoch: {full_s:.3f}")
    print(f"embed_s_per_epoch: {embed_s:.5f}")
    print(f"full_vs_embed_epoch_ratio: {full_s / embed_s:.1f}")


if __name__ == "__main__":
    main()
