"""Image extraction speed: our pipeline (automatic settings) vs a naive loop vs the forward-pass ceiling.

    python benchmarks/extract_images.py [--n 256] [--repeats 3] [--batch-size 32|auto] [--decode auto|pil|device]
                                        [--threads N] [--device auto]

On ``--n`` generated JPEGs (224-320 px photos-like noise), for a convolutional model (resnet50) and a
ViT (vit_small_patch16_224), both with random weights (``pretrained=False``: speed does not depend on
the weights, and nothing is downloaded):

- ``ours``: ``utils.extractors.create("timm:<model>", pretrained=False)`` with its defaults
  (precision auto, channels_last auto, DataLoader workers decoding while the model runs), ``encode``.
- ``naive``: open, transform and run an fp32 copy of the model one image at a time.
- ``ceiling``: the forward pass alone on pre-decoded tensors, with our settings (precision,
  channels_last, batch size): the best any loader could reach for that model here.

The three run in turn ``--repeats`` times (drift in machine speed hits all alike); rates and per-repeat ratios
are medians. ``--threads N`` sets torch's threads for all three (on a shared 2-core machine 1 avoids OpenMP
threads spinning against other jobs). Last lines: ``fraction_of_ceiling`` and ``speedup_vs_naive`` for the
first model, and ``bf16_cosine_vs_fp32`` (the lowest cosine of our vectors to fp32 ones).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from _timing import add_device_argument, describe_device  # benchmarks/_timing.py (the script's folder is on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_jpegs(folder: Path, n: int, seed: int = 0) -> list:
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        h, w = rng.integers(224, 321, size=2)
        base = rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        arr = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))[:h, :w]  # blocky, JPEG-friendly content
        arr = np.clip(arr.astype(np.int16) + rng.integers(-20, 20, arr.shape), 0, 255).astype(np.uint8)
        p = folder / f"img{i:04d}.jpg"
        Image.fromarray(arr).save(p, quality=90)
        paths.append(p)
    return paths



def bench(model_name: str, paths: list, batch_size, repeats: int, device="cpu", naive_n: int = 64,
          decode: str = "auto") -> dict:
    """ours, naive and ceiling in turn, ``repeats`` times (so drift in machine speed hits all three alike)."""
    import statistics
    import time

    import timm
    import torch
    from PIL import Image

    from _timing import synchronize
    from utils import extractors
    from utils.runtime import autocast

    n = len(paths)
    dev = torch.device(device)
    ext = extractors.create(f"timm:{model_name}", pretrained=False, seed=0, decode=decode)
    ext.load(dev)
    precision = ext.resolved_precision()
    if batch_size == "auto":
        batch_size = ext.auto_batch_size()  # from free GPU memory; 32 on a CPU
    ext.encode(paths[: 2 * batch_size], batch_size=batch_size, device=dev, show_progress=False)  # warm-up
    ours_vecs = {}

    def ours():
        ours_vecs["v"] = ext.encode(paths, batch_size=batch_size, device=dev, show_progress=False)

    # naive: its own fp32 model (same weights, contiguous layout), one image at a time, no autocast
    naive_model = timm.create_model(model_name, pretrained=False, num_classes=0).eval().to(dev)
    naive_model.load_state_dict(ext._model.state_dict())
    tf = ext._transform
    n_naive = min(n, naive_n)  # the slow loop on a subset; rates are per image

    def naive(limit=n_naive):
        with torch.inference_mode():
            for p in paths[:limit]:
                x = tf(Image.open(p).convert("RGB"))[None].to(dev)
                naive_model(x).cpu()

    naive(4)
    n_cos = min(n, 64)  # fp32 reference vectors on a subset
    with torch.inference_mode():
        fp32 = np.concatenate([naive_model(torch.stack([tf(Image.open(p).convert("RGB")) for p in paths[i:min(i + 32, n_cos)]])
                                           .to(dev)).float().cpu().numpy() for i in range(0, n_cos, 32)])

    batches = [torch.stack([tf(Image.open(p).convert("RGB")) for p in paths[i:i + batch_size]]).to(dev)
               for i in range(0, n, batch_size)]  # decoded and on the device already: the model alone
    if ext._channels_last:
        batches = [b.contiguous(memory_format=torch.channels_last) for b in batches]

    def ceiling():
        with torch.inference_mode(), autocast(dev, precision):
            for b in batches:
                ext._forward(b)

    ceiling()  # warm-up (kernels, autotuning)
    times = {"ours": [], "naive": [], "ceiling": []}
    for _ in range(repeats):
        for name, fn in (("ours", ours), ("naive", naive), ("ceiling", ceiling)):
            synchronize(dev)
            t = time.perf_counter()
            fn()
            synchronize(dev)
            times[name].append(time.perf_counter() - t)
    rate = {"ours": [n / t for t in times["ours"]], "naive": [n_naive / t for t in times["naive"]],
            "ceiling": [n / t for t in times["ceiling"]]}
    a, b = ours_vecs["v"][:n_cos], fp32
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"model": model_name, "precision": precision, "channels_last": ext._channels_last, "batch_size": batch_size,
            **{k: statistics.median(v) for k, v in rate.items()},
            "speedup": statistics.median(o / nv for o, nv in zip(rate["ours"], rate["naive"])),
            "fraction": statistics.median(o / c for o, c in zip(rate["ours"], rate["ceiling"])),
            "cosine": float(cos.min())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", default="32", help="an integer, or auto (from free GPU memory; 32 on a CPU)")
    ap.add_argument("--models", default="resnet50,vit_small_patch16_224")
    ap.add_argument("--naive-n", type=int, default=64, help="images the slow naive loop is timed on (rates per image)")
    ap.add_argument("--decode", default="auto", help="ours: auto, pil or device (JPEGs decoded on the model's device)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads for every path (0: torch's default)")
    add_device_argument(ap)
    a = ap.parse_args()
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    dev = describe_device(a.device)
    batch = a.batch_size if a.batch_size == "auto" else int(a.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_jpegs(Path(tmp), a.n)
        results = [bench(m, paths, batch, a.repeats, dev, a.naive_n, a.decode) for m in a.models.split(",")]
    print(f"threads: {torch.get_num_threads()}")
    print(f"decode: {a.decode}")
    print(f"{'model':28s} {'precision':9s} {'ours':>8s} {'naive':>8s} {'ceiling':>8s}  images/s")
    for r in results:
        print(f"{r['model']:28s} {r['precision']:9s} {r['ours']:8.1f} {r['naive']:8.1f} {r['ceiling']:8.1f}"
              f"  fraction {r['fraction']:.2f}, speedup {r['speedup']:.2f}, cosine {r['cosine']:.4f}, batch {r['batch_size']}")
    for r in results:
        m = r["model"].replace(".", "_")
        print(f"{m}_precision: {r['precision']}")
        print(f"{m}_batch_size: {r['batch_size']}")
        print(f"{m}_ours_images_per_s: {r['ours']:.1f}")
        print(f"{m}_naive_fp32_images_per_s: {r['naive']:.1f}")
        print(f"{m}_ceiling_images_per_s: {r['ceiling']:.1f}")
        print(f"{m}_fraction_of_ceiling: {r['fraction']:.3f}")
        print(f"{m}_speedup_vs_naive: {r['speedup']:.3f}")
        print(f"{m}_cosine_vs_fp32: {r['cosine']:.4f}")
    conv = results[0]
    print(f"fraction_of_ceiling: {conv['fraction']:.3f}")
    print(f"speedup_vs_naive: {conv['speedup']:.3f}")
    print(f"bf16_cosine_vs_fp32: {min(r['cosine'] for r in results):.4f}")


if __name__ == "__main__":
    main()
