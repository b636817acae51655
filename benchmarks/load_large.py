"""Loading a large table and fingerprinting its media: checked once and cached, against the naive way.

A table of 400,000 rows whose image files all exist (one small file each, in 400 folders, the layout of a
MIMIC-CXR-sized dataset). Each measurement runs in a fresh Python process (as a rerun of a notebook would):

- ``naive``: what the code did before: a ``pathlib`` existence check per row, then a ``stat`` per row for the
  fingerprint (and again for every modality and every call);
- ``cold``: ``utils.data.load`` + ``fingerprint`` with no media cache (every file is stat'ed once);
- ``warm``: the same with the cache from the cold run (the 400 folders are stat'ed, not the files).

"media" is the time spent checking files and fingerprinting; "load" adds reading and validating the
table (the ``table`` loader's own parsing is reported apart: ``table_parse_s``). On a network disk (Google
Drive) a ``stat`` costs milliseconds instead of microseconds, so there the cached path saves minutes.

Run: ``python benchmarks/load_large.py [--rows 400000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MEASURE = r"""
import json, os, sys, time
from pathlib import Path
root, mode = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
import utils.data as data
t_import = time.perf_counter() - t0
opts = dict(root=root, file="records.csv", split_column="split", id_column="id")
if mode == "naive":
    t0 = time.perf_counter()
    ds = data.load("table", on_missing_image="ignore", **opts)
    t_table = time.perf_counter() - t0
    import hashlib
    t0 = time.perf_counter()
    items = [None if v is None else Path(ds.spec.root) / v for v in ds.df["image_path"]]
    missing = [i for i, p in enumerate(items) if p is None or not p.is_file()]  # the old check_media
    h = hashlib.sha256(ds.spec.key.encode())  # the old fingerprint: file name and size, one stat per row
    for rid, p in zip(ds.df["id"], items):
        h.update(f"{rid}\0{p.name}:{p.stat().st_size}\1".encode())
    t_media = time.perf_counter() - t0
else:
    t0 = time.perf_counter()
    ds = data.load("table", on_missing_image="ignore", **opts)
    t_table = time.perf_counter() - t0
    t0 = time.perf_counter()
    data.check_media(ds)
    ds.fingerprint("image")
    t_media = time.perf_counter() - t0
print(json.dumps({"table": t_table, "media": t_media, "import": t_import, "checked": getattr(ds.media_stats("image"), "checked", "") if mode != "naive" else ""}))
"""


def make_table(root: Path, rows: int) -> None:
    import pandas as pd

    if (root / "records.csv").is_file() and len(pd.read_csv(root / "records.csv", usecols=["id"])) == rows:
        return
    shutil.rmtree(root, ignore_errors=True)
    records = []
    for d in range(-(-rows // 1000)):
        (root / "img" / f"{d:04d}").mkdir(parents=True, exist_ok=True)
    for i in range(rows):
        rel = f"img/{i // 1000:04d}/{i}.png"
        with open(root / rel, "wb") as f:
            f.write(b"x")
        records.append((f"id{i}", f"report text {i}", rel, "ab"[i % 2], ("train", "val", "test")[i % 3]))
    pd.DataFrame(records, columns=["id", "text", "image", "label", "split"]).to_csv(root / "records.csv", index=False)


def measure(root: Path, mode: str, cache: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MMFUSION_EMBEDDINGS_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", MEASURE, str(root), mode], capture_output=True, text=True, env=env,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", default=None, help="folder for the table and its files (kept between runs)")
    a = ap.parse_args()
    work = Path(a.work) if a.work else Path(tempfile.gettempdir()) / f"mmfusion-load-large-{a.rows}"
    t0 = time.perf_counter()
    make_table(work / "data", a.rows)
    print(f"table with {a.rows:,} rows and files ready in {time.perf_counter() - t0:.1f} s ({work / 'data'})")
    cache = work / "cache"
    runs = {"naive": [], "cold": [], "warm": []}
    for _ in range(a.repeats):
        runs["naive"].append(measure(work / "data", "naive", cache))
        shutil.rmtree(cache, ignore_errors=True)
        runs["cold"].append(measure(work / "data", "cold", cache))
        runs["warm"].append(measure(work / "data", "warm", cache))
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("table", "media")} for k, v in runs.items()}
    print(f"warm check: {runs['warm'][-1]['checked']}")
    print(f"rows: {a.rows}")
    print(f"table_parse_s: {med['cold']['table']:.2f}")
    print(f"naive_media_s: {med['naive']['media']:.2f}")
    print(f"cold_media_s: {med['cold']['media']:.2f}")
    print(f"warm_media_s: {med['warm']['media']:.2f}")
    print(f"naive_load_s: {med['naive']['table'] + med['naive']['media']:.2f}")
    print(f"cold_load_s: {med['cold']['table'] + med['cold']['media']:.2f}")
    print(f"warm_load_s: {med['warm']['table'] + med['warm']['media']:.2f}")
    print(f"speedup_warm_media_vs_naive: {med['naive']['media'] / max(med['warm']['media'], 1e-9):.1f}")


if __name__ == "__main__":
    main()
