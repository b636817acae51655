"""Early-fusion head training throughput: our trainer against the original DataLoader loop and a plain loop.

The setting of the original framework (its ``classifiers.py``): 50,000 records with 4,096-d text (LLaMA-2)
and 768-d image (DINOv2) embeddings, early fusion, batch 64, AdamW. Three paths train the same head from the
same initial weights, one epoch each in turn (so drift in machine speed hits all alike), after a warm-up:

- ``ours``: ``utils.train.fit`` -- one feature tensor on the device (bf16 where it pays), one permutation per
  epoch, ``index_select`` batches, fused AdamW called through ``OptimizerStep`` (torch.optim's per-step Python
  done once), the loss summed on the device.
- ``original``: what the original framework did -- a pandas DataFrame holding the vectors, a torch
  ``Dataset`` that reads one row at a time, a ``DataLoader`` with 2 workers, the modalities concatenated in
  every step.
- ``naive``: the plain PyTorch loop on tensors already in memory -- fp32, ``X[perm[i:i + 64]]``, torch's
  default AdamW, ``loss.item()`` every step.

All three are scored on the same held-out rows, so the F1 lines show the speed-up costs nothing.
All three run with the same CPU threads: ``--threads N``, or by default what ``TrainConfig(threads=None)``
picks on this machine (one thread on 2 cores; see ``utils.runtime.train_threads``).

    python benchmarks/train_heads.py                          # full size
    python benchmarks/train_heads.py --n 5000 --repeats 2     # a smoke run

Speed-ups are medians over repeats of the per-repeat ratio (each repeat's paths run back to back). Then the
floor of a step (:func:`step_floor`: AdamW's kernel and the first layer's two matmuls, each timed alone, which
every path must do) and ``ceiling_speedup_vs_<path>``: the most any trainer could gain over that path at this
batch size and this arithmetic. Last lines: ``speedup_vs_original`` and ``speedup_vs_naive``.
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

from _timing import add_device_argument, describe_device, median_time, synchronize  # noqa: E402 -- benchmarks/_timing.py


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


def original_epoch(df, model, opt, loss_fn, batch_size: int, workers: int, seed: int, device="cpu") -> float:
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
    synchronize(device)
    t0 = time.perf_counter()
    for t, im, y in loader:
        t, im, y = t.to(device), im.to(device), y.to(device)
        logits = model(torch.cat([t, im], dim=1))
        loss = loss_fn(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    synchronize(device)
    return time.perf_counter() - t0


def naive_epoch(X, y, model, opt, loss_fn, batch_size: int, seed: int, device="cpu") -> float:
    """One epoch of the plain loop over tensors already on the device; returns seconds."""
    import torch

    g = torch.Generator().manual_seed(seed)
    model.train()
    synchronize(device)
    t0 = time.perf_counter()
    perm = torch.randperm(len(X), generator=g).to(device)
    total = 0.0
    for i in range(0, len(X) - batch_size + 1, batch_size):
        idx = perm[i : i + batch_size]
        loss = loss_fn(model(X[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item()
    synchronize(device)
    return time.perf_counter() - t0


def step_floor(model, batch_size: int, device, precision: str, calls: int = 60, blocks: int = 5) -> dict:
    """Milliseconds of the work no trainer of this head at this batch size can skip, each timed alone (median of
    ``blocks`` blocks of ``calls`` calls): AdamW's kernel over every parameter (it reads and writes the weights
    and both moments of the 1.2 M first-layer weights each step), and the first layer's forward and
    weight-gradient matmuls at ours' precision. Their sum bounds a step from below: the ceiling of any
    speed-up is a baseline's ms per step over it."""
    import torch

    from utils.runtime import autocast, cpu_bf16_matmuls, cpu_bf16_matmuls_supported
    from utils.train.loop import OptimizerStep, make_optimizer

    first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    W, b = first.weight.detach(), first.bias.detach()
    params = [p for p in model.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(0)
    copies = [p.detach().clone() for p in params]
    step = OptimizerStep(make_optimizer(copies, 1e-3, 1e-2))
    for p in copies:
        p.grad = (torch.randn(p.shape, generator=gen) * 1e-3).to(device)
    step()  # the state is created here; later calls are the bound kernel alone
    x = torch.randn(batch_size, W.shape[1], generator=gen).to(device)
    d = torch.randn(batch_size, W.shape[0], generator=gen).to(device)
    onednn = device.type == "cpu" and precision == "bf16" and cpu_bf16_matmuls_supported()

    def timed(fn) -> float:  # ms per call: the median over blocks of `calls` calls, after a warm-up
        def block():
            for _ in range(calls):
                fn()

        for _ in range(5):
            fn()
        return median_time(block, blocks, device) / calls * 1e3

    def forward():
        with autocast(device, "fp32" if onednn else precision):
            torch.nn.functional.linear(x, W, b)

    def weight_grad():
        with autocast(device, "fp32" if onednn else precision):
            torch.mm(d.t(), x)

    with cpu_bf16_matmuls(onednn), torch.no_grad():
        parts = {"optimizer": timed(step), "first_forward": timed(forward), "first_weight_grad": timed(weight_grad)}
    parts["total"] = sum(parts.values())
    return parts


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
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the original path")
    p.add_argument("--repeats", type=int, default=5, help="epochs timed per path, in turn (medians reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed epochs per path first (allocator, caches, workers)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for every path (default: what TrainConfig(threads=None) picks here)")
    p.add_argument("--paths", default="ours,original,naive", help="which paths to run (ours is always run)")
    add_device_argument(p)
    a = p.parse_args(argv)

    import pandas as pd
    import torch

    from utils.runtime import train_threads

    # every path runs with the thread count ours trains with (like with like; the baselines would otherwise
    # keep torch's default, which is slower where that spins on shared cores)
    threads = train_threads(a.threads) or torch.get_num_threads()
    torch.set_num_threads(threads)
    dev = describe_device(a.device)

    from utils.models import build_head
    from utils.train import TrainConfig, fit

    paths = ["ours"] + [q for q in a.paths.split(",") if q in ("original", "naive")]
    n_test = max(1000, a.n // 10)
    text, image, y = make_data(a.n + n_test, a.d_text, a.d_image, a.classes)
    X = np.concatenate([text, image], axis=1)
    Xtr, ytr, Xte, yte = X[: a.n], y[: a.n], X[a.n :], y[a.n :]
    dims = {"text": a.d_text, "image": a.d_image}
    print(f"records: {a.n}, dims: text {a.d_text} + image {a.d_image}, batch {a.batch_size}, "
          f"threads {torch.get_num_threads()}, cores {os.cpu_count()}, torch {torch.__version__}")

    torch.manual_seed(0)
    models = {"ours": build_head("early_fusion", dims, a.classes)}
    init = {k: v.clone() for k, v in models["ours"].state_dict().items()}
    opts, loss_fn = {}, torch.nn.CrossEntropyLoss()
    for q in paths[1:]:
        models[q] = build_head("early_fusion", dims, a.classes)
        models[q].load_state_dict(init)
        models[q].to(dev)
        # the original used AdamW with fused=False on the CPU (torch's default there); so does the plain loop
        opts[q] = torch.optim.AdamW(models[q].parameters(), lr=1e-3, weight_decay=1e-2)
    df = pd.DataFrame({"text_embedding": list(text[: a.n]), "image_embedding": list(image[: a.n]), "label": ytr}) \
        if "original" in paths else None
    X_dev, y_dev = torch.from_numpy(Xtr).to(dev), torch.from_numpy(ytr).to(dev)
    classes = [str(c) for c in range(a.classes)]
    rates = {q: [] for q in paths}
    ratios = {q: [] for q in paths[1:]}
    ours_secs = []
    precision = None
    for r in range(-a.warmup, a.repeats):
        seed = max(r, 0)
        secs = {}
        # ours: utils.train.fit, one epoch per call, continuing from the same weights
        res = fit(models["ours"], Xtr, ytr, Xte[:256], yte[:256], "multiclass", classes,
                  TrainConfig(epochs=1, batch_size=a.batch_size, patience=None, device=str(dev), seed=seed,
                              threads=threads))
        precision, secs["ours"] = res.precision, res.train_seconds
        if "original" in paths:  # DataFrame of vectors -> Dataset -> DataLoader(2 workers) -> cat in the step
            secs["original"] = original_epoch(df, models["original"], opts["original"], loss_fn, a.batch_size,
                                              a.workers, seed, dev)
        if "naive" in paths:  # tensors in memory, fp32, default AdamW, .item() every step
            secs["naive"] = naive_epoch(X_dev, y_dev, models["naive"], opts["naive"], loss_fn, a.batch_size, seed, dev)
        label = "warm-up" if r < 0 else f"repeat {r}"
        print(f"{label}: " + ", ".join(f"{q} {a.n / secs[q]:.0f} samples/s" for q in paths), flush=True)
        if r < 0:
            continue
        ours_secs.append(secs["ours"])
        for q in paths:
            rates[q].append(a.n / secs[q])
        for q in paths[1:]:
            ratios[q].append(secs[q] / secs["ours"])

    print(f"threads: {threads}")
    print(f"ours_precision: {precision}")
    print(f"ours_s_per_epoch: {statistics.median(ours_secs):.2f}")
    for q in paths:
        print(f"{q}_samples_per_s: {statistics.median(rates[q]):.0f}")
    # the floor: what a step cannot skip (AdamW over the weights, the first layer's two matmuls), timed alone
    floor = step_floor(models["ours"], a.batch_size, dev, precision)
    for k, v in floor.items():
        print(f"floor_{k}_ms: {v:.4f}")
    for q in paths:
        ms = 1e3 * a.batch_size / statistics.median(rates[q])
        print(f"{q}_ms_per_step: {ms:.4f}")
        if q != "ours":
            print(f"ceiling_speedup_vs_{q}: {ms / floor['total']:.2f}")
    for q in paths:
        model = models[q]
        print(f"{q}_macro_f1: {macro_f1(model, Xte, yte, next(model.parameters()).device):.4f}")
    for q in paths[1:]:
        print(f"speedup_vs_{q}: {statistics.median(ratios[q]):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
