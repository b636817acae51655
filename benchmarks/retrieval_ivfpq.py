"""IVF-PQ at 10M vectors: recall@10 and speed against exact search, with the vectors on disk (memory-mapped).

    nice python benchmarks/retrieval_ivfpq.py                  # 10,000,000 x 256 (10 GB file; about an hour on 2 cores)
    python benchmarks/retrieval_ivfpq.py --n 1000000           # 1M: a few minutes

Data: ``--clusters`` random unit centres in ``--dim`` dimensions; each vector is a centre plus Gaussian
noise of norm about ``--spread``, re-normalised (the generator of ``benchmarks/retrieval.py``, written
chunk by chunk into a ``.npy`` file and memory-mapped, as a store's ``vectors.npy`` is). Queries are fresh
draws from the same clusters. Synthetic data: real embeddings have other structure, so recall on them
will differ; the figures show how the index behaves at this size on this machine.

- ``exact``: :func:`utils.retrieval.exact_search_chunked` (BLAS over every vector, read from the file in
  chunks): the naive way and the ground truth. One timed run (it is the slow one).
- ``ivfpq``: :func:`utils.retrieval.build_index` with ``kind="ivfpq"`` and its defaults (nlist 2 sqrt(N),
  D/4 bytes per vector, nprobe calibrated), then an nprobe sweep, each without and with exact re-ranking
  of 4k and 16k candidates read from the memory-mapped file. Latency: median of ``--repeats`` runs of the whole
  query batch, per query.

Memory: the index's own size (FAISS serialised) against the float32 matrix, and the process's peak
anonymous memory while building and searching (file pages of the memmap are the kernel's page cache,
not counted). Last lines ``name: value``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.retrieval import IVFPQConfig, build_index, exact_search_chunked, knn_recall  # noqa: E402


def write_clustered(path: Path, n: int, d: int, clusters: int, spread: float, seed: int, chunk: int = 250_000):
    """``[n, d]`` float32 unit vectors written chunk by chunk to ``path`` (deterministic in ``seed``)."""
    centres = np.random.default_rng(seed).standard_normal((clusters, d), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for i, lo in enumerate(range(0, n, chunk)):
        rng = np.random.default_rng([seed, i + 1])
        hi = min(n, lo + chunk)
        x = centres[rng.integers(0, clusters, hi - lo)] + rng.standard_normal((hi - lo, d), dtype=np.float32) * (spread / np.sqrt(d))
        out[lo:hi] = x / np.linalg.norm(x, axis=1, keepdims=True)
    out.flush()
    del out
    return centres


def queries(centres: np.ndarray, q: int, spread: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 0])
    d = centres.shape[1]
    x = centres[rng.integers(0, len(centres), q)] + rng.standard_normal((q, d), dtype=np.float32) * (spread / np.sqrt(d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class PeakAnon:
    """Peak RssAnon (MB) of this process, sampled every 0.5 s."""

    def __init__(self):
        self.peak, self._stop = 0.0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            self._stop.wait(0.5)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()


def median_time(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10_000_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--spread", type=float, default=0.8)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rerank", type=int, default=4)
    p.add_argument("--nlist", type=int, default=None, help="coarse lists (default: the library's, 2 sqrt(N))")
    p.add_argument("--dir", default=None, help="where the vector file goes (default: a temporary folder)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    import faiss

    tmp = tempfile.TemporaryDirectory(dir=a.dir)
    path = Path(tmp.name) / "vectors.npy"
    with PeakAnon() as mem:
        t = time.perf_counter()
        centres = write_clustered(path, a.n, a.dim, a.clusters, a.spread, a.seed)
        gen_s = time.perf_counter() - t
        mm = np.load(path, mmap_mode="r")
        xq = queries(centres, a.queries, a.spread, a.seed)
        flat_gb = mm.nbytes / 1e9
        print(f"data: {a.n:,} x {a.dim} float32 ({flat_gb:.1f} GB on disk, {gen_s:.0f} s to write), "
              f"{a.queries} queries; faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, "
              f"{os.cpu_count()} cpus", flush=True)
        t = time.perf_counter()
        _, truth = exact_search_chunked(xq, mm, a.k, normalized=True)
        exact_s = time.perf_counter() - t
        print(f"exact: {exact_s:.1f} s for {a.queries} queries ({1000 * exact_s / a.queries:.1f} ms/query)", flush=True)

        mem.peak = mem.now()  # from here on: the index's own memory (the data generation above needs more)
        t = time.perf_counter()
        index = build_index(mm, kind="ivfpq", ivfpq=IVFPQConfig(rerank=a.rerank, nlist=a.nlist), seed=a.seed)
        build_s = time.perf_counter() - t
        index_mb = len(faiss.serialize_index(index.faiss_index)) / 2**20
        print(f"ivfpq: built in {build_s:.0f} s, params {index.params}, index {index_mb:.0f} MB", flush=True)
        calibrated = index.params["nprobe"]
        lines = []
        for nprobe in sorted({8, 16, 32, 64, 128, calibrated}):
            index.faiss_index.nprobe = nprobe
            row = {"nprobe": nprobe}
            for factor in (0, a.rerank, 4 * a.rerank):
                index.params["rerank"] = factor
                index.search_rows(xq[:20], a.k)  # warm-up
                s, (_, found) = median_time(lambda: index.search_rows(xq, a.k), a.repeats)
                row[f"recall_r{factor}"] = knn_recall(truth, found)
                row[f"ms_r{factor}"] = 1000 * s / a.queries
            lines.append(row)
            print(f"  nprobe {nprobe:4d}: recall@{a.k} {row['recall_r0']:.3f} ({row['ms_r0']:.2f} ms/query), " + ", ".join(
                  f"re-ranked x{f}: {row[f'recall_r{f}']:.3f} ({row[f'ms_r{f}']:.2f} ms/query)" for f in (a.rerank, 4 * a.rerank)),
                  flush=True)
        index.faiss_index.nprobe = calibrated
        index.params["rerank"] = a.rerank
    at = next(r for r in lines if r["nprobe"] == calibrated)
    print(f"n_vectors: {a.n}")
    print(f"dim: {a.dim}")
    print(f"flat_gb: {flat_gb:.2f}")
    print(f"index_mb: {index_mb:.0f}")
    print(f"compression: {mm.nbytes / 2**20 / index_mb:.1f}")
    print(f"peak_anon_mb: {mem.peak:.0f}")
    print(f"build_s: {build_s:.0f}")
    print(f"nprobe: {calibrated}")
    print(f"exact_ms_per_query: {1000 * exact_s / a.queries:.2f}")
    print(f"ivfpq_ms_per_query: {at['ms_r0']:.3f}")
    print(f"ivfpq_rerank_ms_per_query: {at[f'ms_r{a.rerank}']:.3f}")
    print(f"recall_at_10: {at['recall_r0']:.4f}")
    print(f"recall_at_10_reranked: {at[f'recall_r{a.rerank}']:.4f}")
    print(f"speedup_vs_exact: {exact_s / a.queries * 1000 / at['ms_r0']:.1f}")
    print(f"speedup_vs_exact_reranked: {exact_s / a.queries * 1000 / at[f'ms_r{a.rerank}']:.1f}")
    print(f"recall_at_10_reranked_x{4 * a.rerank}: {at[f'recall_r{4 * a.rerank}']:.4f}")
    print(f"ivfpq_rerank_x{4 * a.rerank}_ms_per_query: {at[f'ms_r{4 * a.rerank}']:.3f}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
