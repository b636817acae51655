"""Automatic FAISS index against exact (brute-force) search on clustered unit vectors.

    python benchmarks/retrieval.py              # 1,000,000 x 256 (a few minutes on 2 cores, ~3 GB RAM)
    python benchmarks/retrieval.py --n 50000    # smoke run

Data: ``--clusters`` random unit centres in 256-d; each vector is a centre plus Gaussian noise of norm
about ``--spread``, re-normalised. Queries are fresh draws from the same clusters (not indexed rows).
Exact search is ``faiss.knn`` (BLAS matrix product over every vector, the naive way); the automatic index
is :func:`utils.retrieval.build_index` with its defaults (exact up to 100,000 vectors, IVF above, nprobe
calibrated to recall@10 >= 0.95). Latency: median over ``--repeats`` runs of one batch of ``--queries``
queries, per query. Ends with ``name: value`` lines; the last two are recall_at_10 and speedup_vs_exact.
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

from utils.retrieval import build_index, knn_recall  # noqa: E402


def clustered_unit_vectors(n: int, d: int, clusters: int, spread: float, seed: int, chunk: int = 100_000) -> np.ndarray:
    """``[n, d]`` float32 unit vectors around ``clusters`` random centres (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, d), dtype=np.float32)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        x = centres[rng.integers(0, clusters, hi - lo)] + rng.standard_normal((hi - lo, d), dtype=np.float32) * (spread / np.sqrt(d))
        out[lo:hi] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def timed(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="database size")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--spread", type=float, default=0.8, help="noise norm relative to the unit centre")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--exact-max", type=int, default=None, help="override the exact/IVF threshold (smoke runs)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    import faiss

    t0 = time.perf_counter()
    data = clustered_unit_vectors(a.n + a.queries, a.dim, a.clusters, a.spread, a.seed)
    xb, xq = data[: a.n], np.ascontiguousarray(data[a.n :])
    gen_s = time.perf_counter() - t0
    print(f"data: {a.n} x {a.dim} unit vectors, {a.clusters} clusters, {a.queries} queries "
          f"({gen_s:.1f} s to generate); faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, "
          f"{os.cpu_count()} cpus", flush=True)

    exact_s, (_, truth) = timed(lambda: faiss.knn(xq, xb, a.k, metric=faiss.METRIC_INNER_PRODUCT), a.repeats)
    print(f"exact: {exact_s:.3f} s per batch of {a.queries}", flush=True)

    opts = {} if a.exact_max is None else {"exact_max": a.exact_max}
    t0 = time.perf_counter()
    index = build_index(xb, **opts)
    build_s = time.perf_counter() - t0
    print(f"auto index: kind {index.kind}, params {index.params}, built in {build_s:.1f} s", flush=True)
    index.search_rows(xq[:10], a.k)  # warm up
    auto_s, (_, found) = timed(lambda: index.search_rows(xq, a.k), a.repeats)
    recall = knn_recall(truth, found)

    print(f"index_kind: {index.kind}")
    print(f"n_vectors: {a.n}")
    print(f"build_s: {build_s:.2f}")
    print(f"exact_ms_per_query: {1000 * exact_s / a.queries:.4f}")
    print(f"auto_ms_per_query: {1000 * auto_s / a.queries:.4f}")
    print(f"recall_at_10: {recall:.4f}")
    print(f"speedup_vs_exact: {exact_s / auto_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
