"""The report's bootstrap on a device against numpy on the CPU: same resamples, same samples, how much faster.

    python benchmarks/bootstrap.py [--n 20000] [--models 48] [--classes 5] [--resamples 1000] [--device auto]

``--models`` probability arrays (heads x seeds x stand-ins x Shapley subsets, as the report scores them at once)
on ``--n`` test rows; ``utils.evaluation.ScoreTable.samples`` with numpy, then with ``device=`` (the counts'
matrix product and the ROC-AUC tie-group sums in torch float64 there; the weights are drawn by numpy either
way). On a CPU the device path runs on the CPU through torch, which shows the two agree. Last lines:
``max_abs_difference`` and ``speedup_vs_numpy``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import add_device_argument, describe_device, synchronize  # noqa: E402 -- benchmarks/_timing.py


def make_probas(n: int, models: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    probas = []
    for j in range(models):
        z = rng.normal(size=(n, classes))
        z[np.arange(n), y] += 0.5 + j / models
        probas.append(np.round(np.exp(z) / np.exp(z).sum(1, keepdims=True), 3))  # rounded: ties, as real outputs have
    return y, probas


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20_000, help="test rows")
    p.add_argument("--models", type=int, default=48, help="probability arrays scored together")
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    add_device_argument(p)
    a = p.parse_args(argv)
    dev = describe_device(a.device)

    from utils.evaluation import ScoreTable, label_strata

    y, probas = make_probas(a.n, a.models, a.classes)
    strata = label_strata(y, "multiclass")
    host = ScoreTable(y, probas, "multiclass")
    on_dev = ScoreTable(y, probas, "multiclass", device=dev)
    on_dev.samples(strata, 8, 1)  # warm-up: tensors moved, kernels loaded
    times = {"numpy": [], "device": []}
    out = {}
    for _ in range(a.repeats):
        for name, table in (("numpy", host), ("device", on_dev)):
            synchronize(dev)
            t = time.perf_counter()
            out[name] = table.samples(strata, a.resamples, 0)
            synchronize(dev)
            times[name].append(time.perf_counter() - t)
    diff = max(float(np.nanmax(np.abs(out["numpy"][m] - out["device"][m]))) for m in out["numpy"])
    print(f"rows: {a.n}, arrays: {a.models}, classes: {a.classes}, resamples: {a.resamples}")
    print(f"numpy_s: {statistics.median(times['numpy']):.3f}")
    print(f"device_s: {statistics.median(times['device']):.3f}")
    print(f"max_abs_difference: {diff:.2e}")
    print(f"speedup_vs_numpy: {statistics.median(n / d for n, d in zip(times['numpy'], times['device'])):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
