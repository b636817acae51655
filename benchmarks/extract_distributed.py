"""Extraction on one process vs on Ray Data actors: rows/s, peak memory, and memory at N vs 4N records.

    python benchmarks/extract_distributed.py [--n 1024] [--repeats 3] [--extractor minilm-offline] [--shard-size 128]

Same records (generated sentences of 3 to 40 words), same extractor (default: the real all-MiniLM-L6-v2
shipped on PyPI), same store format, on this machine's cores:

- ``local``: ``embed(..., engine="local")`` in one process (torch uses every core);
- ``ray1``: ``engine="ray"`` with one actor holding every core (``RayConfig(actors=1, num_cpus=cores)``);
- ``ray2``: two actors of half the cores each (``RayConfig(actors=2, num_cpus=cores/2)``).

Each run is a fresh process (a local Ray is started there, outside the timing), the engines alternating
``--repeats`` times at N, then once each at 4N. A timed run is one whole ``embed`` call into an empty
store: model loading (per actor for Ray), encoding, writing shards and consolidating. rows/s and peak
memory at N are medians over the repeats. Peak memory is the peak of the
summed proportional set size (PSS: shared pages split between the processes that map them) of the
process and every child -- Ray's own daemons and actors included -- sampled every 0.1 s. Each
configuration's 4N run shows that memory does not grow with N: rows stream
through shards, and only the table of inputs (ids, texts or paths) is held whole.

On a 2-core machine expect about 1x for Ray: it proves the path, not the speed. Vectors: bit for bit where
an actor has the local process's thread count (ray1); with one thread per actor (ray2) bf16 matmuls on a
CPU may round some rows differently, exactly as the local path does under ``OMP_NUM_THREADS=1``.
Last lines: ``name: value``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ("the a of in on by small large red blue iron paper feather granite cat dog man eating food bread car road "
         "music sky window shelf workshop found kept made from object figure piece block quickly slowly under over "
         "river mountain city night morning painting light heavy soft hard old new").split()


def make_dataset(n: int, seed: int = 0):
    import pandas as pd

    from utils.data import DatasetSpec, MultimodalDataset

    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 41, n)
    df = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "text": [" ".join(rng.choice(WORDS, k)) + "." for k in lengths],
                       "label": "a", "split": "train"})
    return MultimodalDataset(df, DatasetSpec(name=f"bench{n}", task="multiclass", classes=["a"], modalities=["text"]))


class PeakMemory:
    """Peak summed PSS (MB) of this process and all its children, sampled in a thread every 0.1 s.

    PSS is read from ``/proc/<pid>/smaps_rollup`` (cheap enough to sample a dozen Ray processes often)."""

    def __init__(self, interval: float = 0.1):
        import psutil

        self.me, self.interval, self.peak, self.samples = psutil.Process(), interval, 0.0, 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.at_peak: list = []  # "process=MB" at the peak

    @staticmethod
    def pss_kb(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def sample(self) -> float:
        import psutil

        parts, total = [], 0
        try:
            procs = [self.me, *self.me.children(recursive=True)]
        except psutil.Error:
            procs = [self.me]
        for p in procs:
            kb = self.pss_kb(p.pid)
            total += kb
            parts.append((p.pid, kb))
        mb = total / 1024
        self.samples += 1
        if mb > self.peak:
            self.peak, self.at_peak = mb, [f"{pid}={kb / 1024:.0f}" for pid, kb in parts]
        return mb

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join()
        self.sample()


def child(a) -> None:
    """One configuration in this process: start Ray if needed, run ``repeats`` extractions, print JSON."""
    import torch

    from utils.distributed import RayConfig
    from utils.embed import embed
    from utils.extractors import create

    cores = os.cpu_count() or 2
    ds = make_dataset(a.n)
    with PeakMemory() as mem:
        ray_start = 0.0
        options = {}
        if a.child != "local":
            import ray

            t = time.perf_counter()
            ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 2**20)
            ray_start = time.perf_counter() - t
            actors = 1 if a.child == "ray1" else 2
            options = {"engine": "ray", "ray": RayConfig(actors=actors, num_cpus=cores / actors)}
        times, store = [], None
        for r in range(a.repeats):
            root = Path(a.out) / f"{a.child}-{a.n}-{os.getpid()}-{r}"  # a fresh store for every run
            t = time.perf_counter()
            store = embed(ds, "text", create(a.extractor), root=root, shard_size=a.shard_size, batch_size=32,
                          device="cpu", show_progress=False, **options)
            times.append(time.perf_counter() - t)
            assert not store.reused, "the benchmark must extract, not reuse a store"
    print(json.dumps({"engine": a.child, "n": a.n, "seconds": times, "rows_per_s": a.n / statistics.median(times),
                      "peak_mb": mem.peak, "ray_start_s": ray_start, "store": str(store.folder),
                      "torch_threads": torch.get_num_threads(),
                      "at_peak": mem.at_peak, "samples": mem.samples,
                      "self_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_child(engine: str, n: int, repeats: int, a, out: str) -> dict:
    cmd = [sys.executable, __file__, "--child", engine, "--n", str(n), "--repeats", str(repeats),
           "--extractor", a.extractor, "--shard-size", str(a.shard_size), "--out", out]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{engine} n={n} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--extractor", default="minilm-offline")
    ap.add_argument("--shard-size", type=int, default=128)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a)

    from utils.store import EmbeddingStore

    engines = ("local", "ray1", "ray2")
    print(f"{os.cpu_count()} cores; extractor {a.extractor}; N={a.n}, 4N={4 * a.n}; shard size {a.shard_size}")
    with tempfile.TemporaryDirectory() as tmp:
        runs = {e: [] for e in engines}
        for _ in range(a.repeats):  # engines alternate, so a busy spell of the machine hits each alike
            for e in engines:
                runs[e].append(run_child(e, a.n, 1, a, tmp))
        at_n = {e: {"rows_per_s": statistics.median(r["rows_per_s"] for r in runs[e]),
                    "peak_mb": statistics.median(r["peak_mb"] for r in runs[e]),
                    "seconds": [r["seconds"][0] for r in runs[e]], "ray_start_s": runs[e][0]["ray_start_s"],
                    "store": runs[e][0]["store"]} for e in engines}
        mem_n = at_n
        at_4n = {e: run_child(e, 4 * a.n, 1, a, tmp) for e in engines}
        ref_ids, ref = EmbeddingStore(at_n["local"]["store"]).read()
        diffs = {}
        for e in ("ray1", "ray2"):
            ids, vec = EmbeddingStore(at_n[e]["store"]).read()
            assert ids.tolist() == ref_ids.tolist()
            diffs[e] = float(np.max(np.abs(np.asarray(vec) - np.asarray(ref))))
        dim = ref.shape[1]
    print(f"{'engine':8s} {'rows/s @N':>10s} {'rows/s @4N':>11s} {'peak MB @N':>11s} {'peak MB @4N':>12s} {'ray start s':>12s}")
    for e in engines:
        print(f"{e:8s} {at_n[e]['rows_per_s']:10.1f} {at_4n[e]['rows_per_s']:11.1f} {mem_n[e]['peak_mb']:11.0f} "
              f"{at_4n[e]['peak_mb']:12.0f} {at_n[e]['ray_start_s']:12.1f}")
    vectors_4n_mb = 4 * a.n * dim * 4 / 2**20
    print(f"(the 4N vectors themselves are {vectors_4n_mb:.1f} MB; per-run seconds at N: "
          + "; ".join(f"{e} {', '.join(f'{s:.1f}' for s in at_n[e]['seconds'])}" for e in engines) + ")")
    for e in engines:
        print(f"{e}_rows_per_s: {at_n[e]['rows_per_s']:.2f}")
    for e in engines:
        print(f"{e}_peak_mb_N: {mem_n[e]['peak_mb']:.0f}")
        print(f"{e}_peak_mb_4N: {at_4n[e]['peak_mb']:.0f}")
        print(f"{e}_memory_ratio_4N_vs_N: {at_4n[e]['peak_mb'] / mem_n[e]['peak_mb']:.3f}")
    print(f"ray1_vs_local: {at_n['ray1']['rows_per_s'] / at_n['local']['rows_per_s']:.3f}")
    print(f"ray2_vs_local: {at_n['ray2']['rows_per_s'] / at_n['local']['rows_per_s']:.3f}")
    for e in ("ray1", "ray2"):  # ray1's actor has as many threads as the local process, ray2's actors half
        print(f"max_abs_diff_{e}_vs_local: {diffs[e]:.3g}")


if __name__ == "__main__":
    main()
