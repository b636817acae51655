"""Early-fusion head training throughput: our in-memory trainer against the naive DataLoader path.

The setting of the original framework: 50,000 records with 4,096-d text (LLaMA-2) and 768-d image
(DINOv2) embeddings, early fusion, batch 64, AdamW. The naive path is what the original did: a pandas
DataFrame holding the vectors, a torch ``Dataset`` that reads one row at a time, a ``DataLoader`` with 2
workers, and a head that concatenates the modalities in every step. Ours is ``utils.train.fit``: one
feature tensor, one permutation per epoch, ``index_select`` batches, fused AdamW.

Both train the same head from the same initial weights for the same number of epochs, and both are
scored on the same held-out rows, so the F1 columns show the speed-up costs nothing.

    python benchmarks/train_heads.py                 # full size (about 5 minutes here)
    python benchmarks/train_heads.py --n 5000 --repeats 2   # a smoke run

Last line: ``speedup_vs_naive: <ratio of median samples/s>``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import add_device_argument, describe_device  # noqa: E402 -- benchmarks/_timing.py


def make_data(n: int, d_text: int, d_image: int, classes: int, seed: int = 0):
    """Random embeddings with a learnable label: classes are clusters in a random low-rank subspace."""
    rng = np.random.default_rng(seed)
    y = rng.integers(classes, size=n)
    centres = rng.normal(0, 1, (classes, 32)).astype(np.float32)
    lift_t = rng.normal(0, 1 / np.sqrt(32), (32, d_text)).astype(np.float32)
    lift_i = rng.normal(0, 1 / np.sqrt(32), (32, d_image)).astype(np.float32)
    z = centres[y] + rng.normal(0, 1.5, (n, 32)).astype(np.float32)
    text = z @ lift_t + rng.normal(0, 1, (n, d_text)).astype(np.float32)
    image = z @ lift_i + rng.normal(0, 1, (n, d_image)).astype(np.float32)
    return text, image, y


def naive_epoch(df, model, opt, loss_fn, batch_size: int, workers: int, seed: int, device="cpu") -> float:
    """One epoch the original way (each batch copied to the device in the step); returns seconds."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    class RowDataset(Dataset):
        def __init__(self, frame):
            self.frame = frame

        def __len__(self):
            return len(self.frame)

        def __getitem__(self, i):
            row = self.frame.iloc[i]
            return (torch.tensor(row["text_embedding"], dtype=torch.float32),
                    torch.tensor(row["image_embedding"], dtype=torch.float32),
                    torch.tensor(row["label"], dtype=torch.long))

    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(RowDataset(df), batch_size=batch_size, shuffle=True, num_workers=workers, generator=g,
                        drop_last=True)
    model.train()
    t0 = time.perf_counter()
    for t, im, y in loader:
        t, im, y = t.to(device), im.to(device), y.to(device)
        logits = model(torch.cat([t, im], dim=1))
        loss = loss_fn(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if getattr(device, "type", str(device)).startswith("cuda"):
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def macro_f1(model, X, y, device="cpu") -> float:
    import torch
    from sklearn.metrics import f1_score

    model.eval()
    with torch.inference_mode():
        pred = model(torch.from_numpy(X).to(device)).argmax(1).cpu().numpy()
    return float(f1_score(y, pred, average="macro"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--d-text", type=int, default=4096)
    p.add_argument("--d-image", type=int, default=768)
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the naive path")
    p.add_argument("--repeats", type=int, default=5, help="epochs timed per path, alternating (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed epochs per path first (allocator, caches, workers)")
    add_device_argument(p)
    a = p.parse_args(argv)

    import pandas as pd
    import torch

    dev = describe_device(a.device)

    from utils.models import build_head
    from utils.train import TrainConfig, fit

    n_test = max(1000, a.n // 10)
    text, image, y = make_data(a.n + n_test, a.d_text, a.d_image, a.classes)
    X = np.concatenate([text, image], axis=1)
    Xtr, ytr, Xte, yte = X[: a.n], y[: a.n], X[a.n :], y[a.n :]
    dims = {"text": a.d_text, "image": a.d_image}
    print(f"records: {a.n}, dims: text {a.d_text} + image {a.d_image}, batch {a.batch_size}, "
          f"threads {torch.get_num_threads()}, cores {os.cpu_count()}, torch {torch.__version__}")

    # the two paths alternate epoch by epoch, so drift in machine speed hits both alike
    torch.manual_seed(0)
    ours_model = build_head("early_fusion", dims, a.classes)
    init = {k: v.clone() for k, v in ours_model.state_dict().items()}
    naive_model = build_head("early_fusion", dims, a.classes)
    naive_model.load_state_dict(init)
    naive_model.to(dev)
    df = pd.DataFrame({"text_embedding": list(text[: a.n]), "image_embedding": list(image[: a.n]), "label": ytr})
    opt = torch.optim.AdamW(naive_model.parameters(), lr=1e-3, weight_decay=1e-2)
    loss_fn = torch.nn.CrossEntropyLoss()
    classes = [str(c) for c in range(a.classes)]
    ours_rates, ours_secs, naive_rates = [], [], []
    precision = None
    for r in range(-a.warmup, a.repeats):
        # ours: utils.train.fit, one epoch per call, continuing from the same weights
        res = fit(ours_model, Xtr, ytr, Xte[:256], yte[:256], "multiclass", classes,
                  TrainConfig(epochs=1, batch_size=a.batch_size, patience=None, device=str(dev), seed=max(r, 0)))
        precision = res.precision
        # naive: DataFrame of vectors -> Dataset -> DataLoader(2 workers) -> cat in the step
        secs = naive_epoch(df, naive_model, opt, loss_fn, a.batch_size, a.workers, seed=max(r, 0), device=dev)
        label = "warm-up" if r < 0 else f"repeat {r}"
        print(f"{label}: ours {a.n / res.train_seconds:.0f} samples/s, naive {a.n / secs:.0f} samples/s", flush=True)
        if r < 0:
            continue
        ours_secs.append(res.train_seconds)
        ours_rates.append(a.n / res.train_seconds)
        naive_rates.append(a.n / secs)
    ours_f1 = macro_f1(ours_model, Xte, yte, next(ours_model.parameters()).device)
    naive_f1 = macro_f1(naive_model, Xte, yte, dev)

    ours, naive = statistics.median(ours_rates), statistics.median(naive_rates)
    print(f"ours_samples_per_s: {ours:.0f}")
    print(f"naive_samples_per_s: {naive:.0f}")
    print(f"ours_s_per_epoch: {statistics.median(ours_secs):.2f}")
    print(f"naive_s_per_epoch: {a.n / naive:.2f}")
    print(f"ours_precision: {precision}")
    print(f"ours_macro_f1: {ours_f1:.4f}")
    print(f"naive_macro_f1: {naive_f1:.4f}")
    print(f"speedup_vs_naive: {ours / naive:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
