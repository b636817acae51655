"""IVF-PQ for collections too large for flat vectors: built chunk by chunk from a memmap, exact re-ranking."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from utils.retrieval import (
    FLAT_MAX_BYTES, IVFPQConfig, build_index, choose_kind, exact_search_chunked, knn_recall, load_index,
    pq_subquantizers,
)


def clustered(n, d=32, k=40, spread=0.35, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d))
    x = centers[rng.integers(0, k, n)] + spread * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory):
    both = clustered(12_200)
    folder = tmp_path_factory.mktemp("ivfpq")
    np.save(folder / "vectors.npy", both[:12_000])
    return np.load(folder / "vectors.npy", mmap_mode="r"), both[12_000:], folder


def test_chunked_exact_search_equals_one_pass(on_disk):
    mm, q, _ = on_disk
    s1, r1 = exact_search_chunked(q, mm, 10, chunk_rows=3_001)
    s2, r2 = faiss.knn(q, np.asarray(mm), 10, metric=faiss.METRIC_INNER_PRODUCT)
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_allclose(s1, s2, rtol=1e-5)


def test_ivfpq_from_a_memmap_reaches_its_recall_and_reranking_lifts_it(on_disk, tmp_path):
    mm, q, _ = on_disk
    _, truth = exact_search_chunked(q, mm, 10)
    reranked = build_index(mm, kind="ivfpq", ivfpq=IVFPQConfig(train_size=12_000, chunk_rows=2_500, rerank=4), seed=0)
    assert reranked.kind == "ivfpq" and reranked.params["code_bytes"] == 8 and len(reranked) == 12_000  # 32-d: 8 B
    r_rerank = knn_recall(truth, reranked.search_rows(q, 10)[1])
    reranked.params["rerank"] = 0  # the same index, PQ scores only
    r_plain = knn_recall(truth, reranked.search_rows(q, 10)[1])
    reranked.params["rerank"] = 4
    assert r_plain > 0.3 and r_rerank >= 0.75 and r_rerank > r_plain + 0.1, (r_plain, r_rerank)
    scores, hit_ids = reranked.search(q, 10)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # exact scores, best first
    reranked.save(tmp_path / "index")
    again = load_index(tmp_path / "index")  # the memmap the index re-ranks with is re-opened
    assert isinstance(again.source, np.memmap) and again.params["nprobe"] == reranked.params["nprobe"]
    np.testing.assert_array_equal(again.search(q, 10)[1], hit_ids)


def test_auto_picks_ivfpq_only_when_flat_vectors_would_be_too_large():
    assert choose_kind(10_000_000, d=384) == "ivfpq"  # 15 GB of float32
    assert choose_kind(1_000_000, d=384) == "ivf" and choose_kind(50_000, d=384) == "exact"
    assert choose_kind(FLAT_MAX_BYTES // (4 * 8) + 1, d=8) == "ivfpq"
    assert pq_subquantizers(384) == 96 and pq_subquantizers(100) == 25 and pq_subquantizers(768, 64) == 64
    with pytest.raises(ValueError, match="divide the dimension"):
        pq_subquantizers(100, 30)
    with pytest.raises(ValueError, match="at least 256 vectors"):
        build_index(clustered(200), kind="ivfpq")
