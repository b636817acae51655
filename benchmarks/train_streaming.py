"""Head training on memory-mapped embeddings: in memory vs streamed in shuffled windows under a budget.

    python benchmarks/train_streaming.py [--n 1000000] [--dim 256] [--budget-mb 128] [--epochs 3]

Data: ``--n`` rows of ``--dim`` float32 features (Gaussian blobs, 4 classes, rows stored class by class as a
store written in table order can be: the hard case for a chunked shuffle) in a ``.npy`` file, memory-mapped;
2,000 validation and 20,000 test rows apart. The same early-fusion head (``utils.models.fusion``), seed and
:class:`~utils.train.TrainConfig` train through :func:`utils.train.fit` twice, each in a fresh process:

- ``in_memory``: ``memory_budget_mb`` above the data size, so the features are loaded into one tensor
  (the default path). In bf16 (``--precision``, default; what ``precision="auto"`` picks on CUDA and for
  inputs of 2,048+ features on bf16 CPUs) that is a copy of the whole matrix. In fp32 on a CPU the tensor
  maps the file without a copy: memory is then the page cache, and random batches over a file larger than
  RAM read the disk at random (not measurable on this 24 GB machine);
- ``streamed``: ``memory_budget_mb=--budget-mb``: :class:`~utils.train.StreamingBatches` reads windows
  of about budget/4 bytes, shuffled by chunks, the next window read while the model trains.

Figures: seconds per epoch (median over epochs), peak anonymous memory of the process (RssAnon, sampled:
the memmap's file pages are the kernel's page cache and are not counted), test accuracy. Last lines ``name: value``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import add_device_argument, describe_device  # noqa: E402 -- benchmarks/_timing.py


def rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_data(folder: Path, n: int, d: int, seed: int = 0, chunk: int = 200_000):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1.0, (4, d)).astype(np.float32) / np.sqrt(d) * 2.5
    counts = np.bincount(rng.integers(0, 4, n), minlength=4)
    y = np.repeat(np.arange(4), counts)  # sorted by class
    X = np.lib.format.open_memmap(folder / "train.npy", mode="w+", dtype=np.float32, shape=(n, d))
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        X[lo:hi] = centers[y[lo:hi]] + rng.normal(0, 1.0, (hi - lo, d)).astype(np.float32)
    X.flush()
    np.save(folder / "y.npy", y)
    for name, m in (("val", 2000), ("test", 20000)):
        yy = rng.integers(0, 4, m)
        np.save(folder / f"{name}_x.npy", (centers[yy] + rng.normal(0, 1.0, (m, d))).astype(np.float32))
        np.save(folder / f"{name}_y.npy", yy)


def child(folder: Path, mode: str, budget_mb: float, epochs: int, precision: str, device: str = "cpu") -> None:
    import torch

    from utils.models.fusion import build_head
    from utils.train import TrainConfig, fit, predict_proba

    peak = [0.0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_anon_mb())
            stop.wait(0.2)

    threading.Thread(target=sample, daemon=True).start()
    X = np.load(folder / "train.npy", mmap_mode="r")
    y = np.load(folder / "y.npy")
    Xv, yv = np.load(folder / "val_x.npy"), np.load(folder / "val_y.npy")
    Xt, yt = np.load(folder / "test_x.npy"), np.load(folder / "test_y.npy")
    base = rss_anon_mb()
    budget = X.nbytes / 2**20 * 4 if mode == "in_memory" else budget_mb
    cfg = TrainConfig(epochs=epochs, batch_size=256, seed=0, device=device, precision=precision, patience=None,
                      memory_budget_mb=budget)
    torch.manual_seed(0)
    model = build_head("early_fusion", {"x": X.shape[1]}, 4)
    res = fit(model, X, y, Xv, yv, "multiclass", ["a", "b", "c", "d"], cfg)
    acc = float((predict_proba(res.model, Xt, "multiclass").argmax(1) == yt).mean())
    stop.set()
    print(json.dumps({"mode": mode, "epoch_s": statistics.median(res.epoch_seconds), "peak_anon_mb": peak[0],
                      "base_anon_mb": base, "test_accuracy": acc, "val_loss": res.history[-1]["val_loss"]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--budget-mb", type=float, default=128)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    add_device_argument(ap)
    a = ap.parse_args()
    if a.child:
        return child(Path(a.folder), a.child, a.budget_mb, a.epochs, a.precision, a.device)
    dev = describe_device(a.device, a.precision)
    with tempfile.TemporaryDirectory() as tmp:
        make_data(Path(tmp), a.n, a.dim)
        out = {}
        for mode in ("in_memory", "streamed"):
            proc = subprocess.run([sys.executable, __file__, "--child", mode, "--folder", tmp, "--budget-mb",
                                   str(a.budget_mb), "--epochs", str(a.epochs), "--precision", a.precision,
                                   "--device", str(dev)],
                                  capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode or not lines:
                raise RuntimeError(proc.stderr[-3000:])
            out[mode] = json.loads(lines[-1])
    data_mb = a.n * a.dim * 4 / 2**20
    print(f"{a.n:,} x {a.dim} float32 = {data_mb:.0f} MB on disk; budget {a.budget_mb:g} MB; {a.epochs} epochs, "
          f"batch 256, precision {a.precision}")
    print(f"{'mode':10s} {'s/epoch':>8s} {'peak anon MB':>13s} {'test acc':>9s} {'val loss':>9s}")
    for m, r in out.items():
        print(f"{m:10s} {r['epoch_s']:8.2f} {r['peak_anon_mb']:13.0f} {r['test_accuracy']:9.4f} {r['val_loss']:9.4f}")
    for m, r in out.items():
        print(f"{m}_s_per_epoch: {r['epoch_s']:.3f}")
        print(f"{m}_peak_anon_mb: {r['peak_anon_mb']:.0f}")
        print(f"{m}_test_accuracy: {r['test_accuracy']:.4f}")
    print(f"data_mb: {data_mb:.0f}")
    print(f"streamed_epoch_time_ratio: {out['streamed']['epoch_s'] / out['in_memory']['epoch_s']:.3f}")
    print(f"memory_saved_mb: {out['in_memory']['peak_anon_mb'] - out['streamed']['peak_anon_mb']:.0f}")
    print(f"accuracy_difference: {out['streamed']['test_accuracy'] - out['in_memory']['test_accuracy']:.4f}")


if __name__ == "__main__":
    main()
