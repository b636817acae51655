"""Cross-modal retrieval with FAISS: build, search, save/load with ids, and retrieval metrics.

    index = build_index(image_vectors, ids=df.id)                 # exact below `exact_max`, IVF above, IVF-PQ
                                                                  # when the flat vectors would pass 4 GiB
    scores, hit_ids = index.search(text_vectors, k=10)
    index.save("results/index_image"); index = load_index("results/index_image")
    coll = Collection.build({"text": T, "image": I}, ids)          # any-to-any, one index per modality + one over all
    recall_at_k(query_ids, hit_ids, ks=(1, 5, 10))

Vectors are L2-normalised and searched by inner product (cosine). IVF-PQ (10M+ vectors) reads its input
chunk by chunk (a memory-mapped store matrix is never loaded whole), keeps ``m`` bytes per vector, and can
re-rank its candidates exactly from the memory-mapped vectors (``IVFPQConfig.rerank``). Saved as ``index.faiss``
(``faiss.write_index``), ``ids.npy`` (``np.save``, no pickle), ``modalities.npy`` and ``meta.json``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

EXACT_MAX = 100_000  # collections up to this size get an exact (flat) index by default
FLAT_MAX_BYTES = 4 * 2**30  # above this many bytes of float32 vectors, "auto" compresses them (IVF-PQ)
KINDS = ("auto", "exact", "ivf", "hnsw", "ivfpq")


@dataclass
class IVFPQConfig:
    """Knobs of the IVF-PQ index (``kind="ivfpq"``): inverted lists over product-quantised codes."""

    nlist: Optional[int] = None  # coarse lists (None: 2 sqrt(N) as for IVF, at most N / 39; FAISS suggests 4-16 sqrt(N))
    m: Optional[int] = None  # bytes per vector = sub-quantisers (None: D / 4, rounded to a divisor of D: 1/16 of float32)
    nbits: int = 8  # bits per sub-quantiser code (8: 256 centroids each)
    train_size: int = 200_000  # rows sampled for k-means and the PQ codebooks (at least 39 per list)
    chunk_rows: int = 200_000  # rows read, normalised and added at a time (memory: one chunk)
    rerank: int = 0  # > 0: fetch rerank * k candidates, re-score them exactly from the original vectors
    kmeans_iter: int = 10  # k-means iterations for the coarse lists


def pq_subquantizers(d: int, m: Optional[int] = None) -> int:
    """``m`` (bytes per code at 8 bits) for dimension ``d``: as asked, else the divisor of ``d`` nearest D / 4."""
    if m is not None:
        if d % m:
            raise ValueError(f"IVF-PQ needs m to divide the dimension: {d} % {m} != 0")
        return int(m)
    want = max(1, d // 4)
    return min((k for k in range(1, d + 1) if d % k == 0), key=lambda k: (abs(k - want), -k))


def _faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - faiss-cpu is a requirement
        raise ImportError("utils.retrieval needs FAISS: pip install faiss-cpu") from e
    return faiss


def normalize(x: np.ndarray) -> np.ndarray:
    """Float32, C-contiguous, unit rows: ``[N, D] -> [N, D]``."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


@dataclass
class Index:
    """A FAISS inner-product index and the ids (and modality) of its rows."""

    faiss_index: Any
    ids: np.ndarray  # [N] ids of the indexed rows, in index order
    kind: str  # exact | ivf | hnsw
    params: Dict[str, Any] = field(default_factory=dict)
    modalities: Optional[np.ndarray] = None  # [N] modality of each row (for any-to-any collections)
    source: Optional[Any] = None  # [N, D] original vectors (a memmap) that IVF-PQ re-ranks its candidates with

    def __len__(self) -> int:
        return int(self.faiss_index.ntotal)

    def search(self, queries: np.ndarray, k: int = 10) -> Tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows for each query ``[Q, D]``: ``(scores [Q, k], ids [Q, k])``.

        Where FAISS found fewer than ``k`` rows (it pads with row -1), the id is ``None`` and the score
        ``-inf``: a padded slot never matches a query and never counts as a hit.
        """
        scores, rows = self.search_rows(queries, k)
        return np.where(rows >= 0, scores, -np.inf), take_rows(self.ids, rows)

    def search_rows(self, queries: np.ndarray, k: int = 10) -> Tuple[np.ndarray, np.ndarray]:
        """Like :meth:`search` but returns row positions (``-1`` where fewer than ``k`` rows exist)."""
        q = normalize(queries)
        if q.shape[1] != self.faiss_index.d:
            raise ValueError(f"queries have dimension {q.shape[1]}, the index {self.faiss_index.d}")
        k = min(k, len(self))
        factor = int(self.params.get("rerank") or 0)
        if factor > 0 and self.source is not None:
            _, cand = self.faiss_index.search(q, min(len(self), factor * k))
            return rerank(q, cand, self.source, k)
        return self.faiss_index.search(q, k)

    def save(self, folder: Union[str, Path]) -> Path:
        """Write ``index.faiss``, ``ids.npy``, ``modalities.npy`` (if any) and ``meta.json`` into ``folder``."""
        faiss = _faiss()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.faiss_index, str(folder / "index.faiss"))
        np.save(folder / "ids.npy", _plain(self.ids), allow_pickle=False)
        if self.modalities is not None:
            np.save(folder / "modalities.npy", _plain(self.modalities), allow_pickle=False)
        meta = {"kind": self.kind, "params": self.params, "count": len(self), "dim": int(self.faiss_index.d)}
        if isinstance(self.source, np.memmap) and self.source.filename:
            meta["source"] = str(self.source.filename)  # re-opened (memory-mapped) by load_index
        (folder / "meta.json").write_text(json.dumps(meta, indent=1))
        return folder


def take_rows(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``values[rows]`` with ``None`` where ``rows`` is -1 (FAISS's padding): an object array when padded."""
    rows = np.asarray(rows)
    got = np.asarray(values)[np.maximum(rows, 0)]
    if (rows >= 0).all():
        return got
    out = got.astype(object)
    out[rows < 0] = None
    return out


def _plain(a: np.ndarray) -> np.ndarray:
    """Object arrays of str become fixed-width unicode so np.save never needs pickle."""
    a = np.asarray(a)
    return a.astype(str) if a.dtype == object else a


def load_index(folder: Union[str, Path]) -> Index:
    """Read an index written by :meth:`Index.save` (ids come back in the same order)."""
    faiss = _faiss()
    folder = Path(folder)
    for name in ("index.faiss", "ids.npy", "meta.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing: not an index folder written by Index.save")
    meta = json.loads((folder / "meta.json").read_text())
    index = faiss.read_index(str(folder / "index.faiss"))
    ids = np.load(folder / "ids.npy", allow_pickle=False)
    mods = np.load(folder / "modalities.npy", allow_pickle=False) if (folder / "modalities.npy").is_file() else None
    if len(ids) != index.ntotal:
        raise ValueError(f"{folder}: ids.npy has {len(ids)} ids but the index holds {index.ntotal} vectors")
    if meta["kind"] in ("ivf", "ivfpq"):
        index.nprobe = int(meta["params"].get("nprobe", 1))
    elif meta["kind"] == "hnsw":
        index.hnsw.efSearch = int(meta["params"].get("ef_search", 64))
    source = None
    if meta.get("source") and Path(meta["source"]).is_file():
        source = np.load(meta["source"], mmap_mode="r", allow_pickle=False)
    elif meta.get("source"):
        log.warning("%s: the vectors IVF-PQ re-ranks with (%s) are gone; searching without re-ranking", folder,
                    meta["source"])
    return Index(index, ids, meta["kind"], meta["params"], mods, source)


def choose_kind(n: int, exact_max: int = EXACT_MAX, d: Optional[int] = None,
                flat_max_bytes: int = FLAT_MAX_BYTES) -> str:
    """``exact`` for up to ``exact_max`` vectors, ``ivf`` above (fast to build on few cores; HNSW on request),
    ``ivfpq`` when the float32 vectors (``n * d * 4`` bytes) would pass ``flat_max_bytes``."""
    if d is not None and n * d * 4 > flat_max_bytes:
        return "ivfpq"
    return "exact" if n <= exact_max else "ivf"


@dataclass
class IndexConfig:
    """How :func:`build_index` indexes: the kind, and the knobs of each kind."""

    kind: str = "auto"  # "auto" (exact up to exact_max, IVF above, IVF-PQ above FLAT_MAX_BYTES), "exact", "ivf", "hnsw", "ivfpq"
    exact_max: int = EXACT_MAX  # "auto": collections up to this size get an exact (flat) index
    nlist: Optional[int] = None  # IVF lists (None: 2 sqrt(N), at most N / 30)
    nprobe: Optional[int] = None  # lists searched (None: calibrated to target_recall)
    target_recall: float = 0.95  # leave-one-out recall@10 the calibration aims for
    hnsw_m: int = 32  # HNSW links per node
    ef_search: Optional[int] = None  # HNSW search breadth (None: calibrated to target_recall)
    train_size: int = 50_000  # rows sampled for IVF's k-means (at least 30 per list)
    kmeans_iter: int = 10  # k-means iterations for IVF's lists
    seed: int = 0  # sampling and k-means seed
    ivfpq: Optional[IVFPQConfig] = None  # IVF-PQ knobs (None: IVFPQConfig())

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")


def build_index(
    vectors: np.ndarray,
    ids: Optional[Sequence] = None,
    config: Optional[IndexConfig] = None,
    modalities: Optional[Sequence[str]] = None,
    show_progress: bool = False,
    **options: Any,
) -> Index:
    """Index ``vectors [N, D]`` (normalised here) for inner-product search.

    ``config`` (an :class:`IndexConfig`) and keyword ``options`` (its fields: ``kind``, ``nlist``, ``nprobe``,
    ``target_recall``, ...) set how. ``kind="auto"`` picks :func:`choose_kind`. IVF: ``nlist`` lists (default
    ``2 sqrt(N)``) trained by k-means (``kmeans_iter`` iterations) on ``max(train_size, 30 nlist)`` rows; when
    ``nprobe`` is not given it is calibrated: the smallest power of two whose recall@10 against exact search, on
    200 indexed rows searched leave-one-out, reaches ``target_recall``. HNSW: ``hnsw_m`` links, ``ef_search``
    calibrated the same way when not given. IVF-PQ (``kind="ivfpq"``, or ``"auto"`` when the vectors pass
    :data:`FLAT_MAX_BYTES`): see :func:`build_ivfpq` and :class:`IVFPQConfig`; ``vectors`` may be a memmap, read
    chunk by chunk.
    """
    from .config import merge_config

    cfg = merge_config(IndexConfig, config, options, "build_index")
    kind, exact_max, nlist, nprobe = cfg.kind, cfg.exact_max, cfg.nlist, cfg.nprobe
    target_recall, hnsw_m, ef_search, seed = cfg.target_recall, cfg.hnsw_m, cfg.ef_search, cfg.seed
    train_size, kmeans_iter, ivfpq = cfg.train_size, cfg.kmeans_iter, cfg.ivfpq
    faiss = _faiss()
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if np.ndim(vectors) == 2 and (kind == "ivfpq" or (kind == "auto" and choose_kind(
            len(vectors), exact_max, np.shape(vectors)[1]) == "ivfpq")):
        return build_ivfpq(vectors, ids, ivfpq or IVFPQConfig(), nprobe, target_recall, seed, modalities)
    x = normalize(vectors)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"expected a non-empty [N, D] matrix, got shape {x.shape}")
    n, d = x.shape
    ids = np.arange(n) if ids is None else np.asarray(ids)
    if len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} vectors")
    kind = choose_kind(n, exact_max) if kind == "auto" else kind
    params: Dict[str, Any] = {}
    t0 = time.perf_counter()
    if kind == "exact":
        index = faiss.IndexFlatIP(d)
        index.add(x)
    elif kind == "ivf":
        nlist = int(nlist or max(1, min(int(2 * math.sqrt(n)), n // 30)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = x[rng.choice(n, min(n, max(train_size, 30 * nlist)), replace=False)]
        index.cp.seed = seed
        index.cp.niter = kmeans_iter
        index.cp.min_points_per_centroid = 5  # 30 per list is enough for coarse lists; silences faiss' warning
        index.train(sample)
        for lo in range(0, n, 200_000):
            index.add(x[lo : lo + 200_000])
        params["nlist"] = nlist
        index.nprobe = int(nprobe) if nprobe else _calibrate(index, x, "nprobe", nlist, target_recall, seed)
        params["nprobe"] = int(index.nprobe)
    else:  # hnsw
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.add(x)
        params["hnsw_m"] = hnsw_m
        index.hnsw.efSearch = int(ef_search) if ef_search else _calibrate(index, x, "ef_search", 4096, target_recall, seed)
        params["ef_search"] = int(index.hnsw.efSearch)
    params["build_s"] = round(time.perf_counter() - t0, 3)
    log.info("built %s index over %d x %d vectors in %.1f s %s", kind, n, d, params["build_s"], params)
    return Index(index, ids, kind, params, None if modalities is None else np.asarray(modalities))


def _calibrate(index, x: np.ndarray, knob: str, upper: int, target: float, seed: int, k: int = 10, n_queries: int = 200,
               search=None, plateau: bool = False, normalized: bool = True) -> int:
    """Smallest power-of-two setting of ``knob`` whose recall@k against exact search reaches ``target``.

    Queries are indexed rows searched leave-one-out (their own row is dropped from both result lists),
    which behaves like fresh queries from the same distribution.
    """
    rng = np.random.default_rng(seed + 1)
    rows = np.sort(rng.choice(len(x), min(n_queries, len(x)), replace=False))
    q = normalize(np.asarray(x[rows]))
    _, truth = exact_search_chunked(q, x, k + 1, normalized=normalized)
    truth = _drop_self(truth, rows, k)
    value = 1 if knob == "nprobe" else 16
    best = -1.0
    while True:
        if knob == "nprobe":
            index.nprobe = value
        else:
            index.hnsw.efSearch = value
        found = search(q, k + 1) if search is not None else index.search(q, k + 1)[1]
        r = knn_recall(truth, _drop_self(found, rows, k))
        # IVF-PQ: compression caps recall, so also stop once doubling gains less than half a point
        if r >= target or value >= upper or (plateau and r - best < 0.005):
            log.info("calibrated %s = %d (leave-one-out recall@%d %.3f on %d queries)", knob, value, k, r, len(q))
            return value
        best = r
        value *= 2


def _drop_self(found: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Each line of ``found [Q, k+1]`` without the query's own row, cut to ``k``."""
    return np.stack([[f for f in line if f != r][:k] for line, r in zip(found, rows)])


def knn_recall(truth: np.ndarray, found: np.ndarray) -> float:
    """Share of the true top-k rows ``truth [Q, k]`` that appear in ``found [Q, k']`` (ANN recall@k)."""
    hits = sum(len(set(t.tolist()) & set(f.tolist())) for t, f in zip(truth, found))
    return hits / truth.size


def exact_search_chunked(queries: np.ndarray, vectors: Any, k: int = 10, chunk_rows: int = 200_000,
                         normalized: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-``k`` over ``vectors [N, D]`` read ``chunk_rows`` at a time (a memmap is never
    loaded whole): ``(scores, rows)`` ``[Q, k]``. Rows are normalised per chunk unless ``normalized``."""
    faiss = _faiss()
    q = normalize(queries)
    best_s = np.full((len(q), k), -np.inf, dtype=np.float32)
    best_r = np.full((len(q), k), -1, dtype=np.int64)
    for lo in range(0, len(vectors), chunk_rows):
        block = np.asarray(vectors[lo : lo + chunk_rows], dtype=np.float32)
        block = np.ascontiguousarray(block) if normalized else normalize(block)
        s, r = faiss.knn(q, block, min(k, len(block)), metric=faiss.METRIC_INNER_PRODUCT)
        s, r = np.concatenate([best_s, s], 1), np.concatenate([best_r, np.where(r >= 0, r + lo, -1)], 1)
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]
        best_s, best_r = np.take_along_axis(s, top, 1), np.take_along_axis(r, top, 1)
    return best_s, best_r


def rerank(q: np.ndarray, candidates: np.ndarray, source: Any, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Exact scores of each query's ``candidates [Q, C]`` (rows of ``source``, -1 = none), best ``k`` kept.

    The candidate rows are read from ``source`` (a memmap) once, in ascending order."""
    flat = np.unique(candidates[candidates >= 0])
    vec = normalize(np.asarray(source[flat], dtype=np.float32)) if len(flat) else np.zeros((0, q.shape[1]), np.float32)
    pos = np.searchsorted(flat, np.maximum(candidates, 0))
    scores = np.einsum("qd,qcd->qc", q, vec[pos]) if len(flat) else np.zeros(candidates.shape, np.float32)
    scores = np.where(candidates >= 0, scores, -np.inf).astype(np.float32)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, top, 1), np.take_along_axis(candidates, top, 1)


def build_ivfpq(vectors: Any, ids: Optional[Sequence], config: IVFPQConfig, nprobe: Optional[int] = None,
                target_recall: float = 0.95, seed: int = 0, modalities: Optional[Sequence[str]] = None) -> Index:
    """An IVF-PQ index over ``vectors [N, D]`` (an array or a memmap, read ``config.chunk_rows`` at a time).

    k-means lists and PQ codebooks are trained on ``config.train_size`` sampled rows; every vector is then
    stored as ``m`` bytes. ``nprobe``, when not given, is calibrated like IVF's (leave-one-out recall@10
    against exact search, which runs chunk by chunk), stopping at ``target_recall`` or where doubling it no
    longer helps (compression caps the recall; ``config.rerank`` re-scores candidates exactly to lift it).
    """
    faiss = _faiss()
    n, d = len(vectors), int(np.shape(vectors)[1])
    ids = np.arange(n) if ids is None else np.asarray(ids)
    if len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} vectors")
    nlist = int(config.nlist or max(1, min(int(2 * math.sqrt(n)), n // 39)))
    m = pq_subquantizers(d, config.m)
    if n < 2**config.nbits:
        raise ValueError(f"IVF-PQ with nbits={config.nbits} needs at least {2 ** config.nbits} vectors, got {n}; "
                         "use kind='exact' or 'ivf' for small collections")
    t0 = time.perf_counter()
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFPQ(quantizer, d, nlist, m, config.nbits, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, min(n, max(config.train_size, 39 * nlist)), replace=False))
    train = normalize(np.asarray(vectors[sample], dtype=np.float32))
    index.cp.seed = seed
    index.cp.niter = config.kmeans_iter
    index.cp.min_points_per_centroid = 5
    index.train(train)
    del train
    for lo in range(0, n, config.chunk_rows):
        index.add(normalize(np.asarray(vectors[lo : lo + config.chunk_rows], dtype=np.float32)))
    params: Dict[str, Any] = {"nlist": nlist, "m": m, "nbits": config.nbits, "rerank": int(config.rerank),
                              "code_bytes": m * config.nbits // 8}
    out = Index(index, ids, "ivfpq", params, None if modalities is None else np.asarray(modalities),
                vectors if config.rerank else None)
    if nprobe:
        index.nprobe = int(nprobe)
    else:
        index.nprobe = _calibrate(index, vectors, "nprobe", nlist, target_recall, seed,
                                  search=lambda q, k: out.search_rows(q, k)[1], plateau=True, normalized=False)
    params["nprobe"] = int(index.nprobe)
    params["build_s"] = round(time.perf_counter() - t0, 3)
    log.info("built ivfpq index over %d x %d vectors (%d bytes each) in %.1f s %s", n, d, m, params["build_s"], params)
    return out


def exact_search(queries: np.ndarray, vectors: np.ndarray, k: int = 10) -> Tuple[np.ndarray, np.ndarray]:
    """Brute-force inner-product top-``k`` without building an index: ``(scores, rows)`` ``[Q, k]``."""
    faiss = _faiss()
    return faiss.knn(normalize(queries), normalize(vectors), k, metric=faiss.METRIC_INNER_PRODUCT)


@dataclass
class Collection:
    """Any-to-any retrieval: one index per modality plus one over all of them (rows tagged by modality)."""

    indexes: Dict[str, Index]  # modality -> index of that modality's rows, and "all" -> every row

    @classmethod
    def build(cls, vectors: Mapping[str, np.ndarray], ids: Sequence, **index_options: Any) -> "Collection":
        """``vectors``: modality -> ``[N, D]`` in one shared space (rows aligned to ``ids``; NaN rows skipped)."""
        ids = np.asarray(ids)
        dims = {m: v.shape[1] for m, v in vectors.items()}
        if len(set(dims.values())) != 1:
            raise ValueError(f"any-to-any retrieval needs one shared space; dimensions differ: {dims}")
        out, all_x, all_ids, all_mods = {}, [], [], []
        for m, v in vectors.items():
            ok = np.isfinite(v).all(1)
            out[m] = build_index(v[ok], ids[ok], modalities=[m] * int(ok.sum()), **index_options)
            all_x.append(v[ok]); all_ids.append(ids[ok]); all_mods += [m] * int(ok.sum())
        out["all"] = build_index(np.concatenate(all_x), np.concatenate(all_ids), modalities=all_mods, **index_options)
        return cls(out)

    def search(self, queries: np.ndarray, k: int = 10, target: str = "all") -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-``k`` in ``target`` (a modality or ``"all"``): ``(scores, ids, modalities)``, each ``[Q, k]``."""
        if target not in self.indexes:
            raise ValueError(f"unknown target {target!r}; choose from {sorted(self.indexes)}")
        idx = self.indexes[target]
        scores, rows = idx.search_rows(queries, k)
        return np.where(rows >= 0, scores, -np.inf), take_rows(idx.ids, rows), take_rows(idx.modalities, rows)


# ---------------------------------------------------------------- metrics

def recall_at_k(query_keys: Sequence, hit_keys: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> Dict[int, float]:
    """Share of queries with a hit among their first ``k`` results whose key equals the query's key.

    Keys are ids (find the paired record) or class labels (find any record of the class).
    """
    q = np.asarray(query_keys)
    hit = np.asarray(hit_keys) == q[:, None]  # [Q, K]
    return {int(k): float(hit[:, :k].any(axis=1).mean()) for k in ks}


def average_precision(relevant: np.ndarray, n_relevant: Optional[np.ndarray] = None) -> np.ndarray:
    """AP of each ranked list: ``relevant [Q, K]`` booleans; ``n_relevant [Q]`` relevant items in the collection
    (default: those in the list). Returns ``[Q]``."""
    rel = np.asarray(relevant, dtype=np.float64)
    ranks = np.arange(1, rel.shape[1] + 1)
    prec = np.cumsum(rel, axis=1) / ranks
    denom = rel.sum(1) if n_relevant is None else np.minimum(np.asarray(n_relevant, dtype=np.float64), rel.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (prec * rel).sum(1) / denom
    return np.where(denom > 0, ap, 0.0)


def map_by_class(
    query_labels: Sequence, hit_labels: np.ndarray, collection_labels: Optional[Sequence] = None,
) -> pd.DataFrame:
    """mAP per query class (relevant = same label); ``collection_labels`` gives the number of relevant items.

    Returns a table with one line per class (``class, n_queries, mAP``) plus an ``all`` line (mean over queries).
    """
    ql = np.asarray(query_labels)
    rel = np.asarray(hit_labels) == ql[:, None]
    n_rel = None
    if collection_labels is not None:
        vals, counts = np.unique(np.asarray(collection_labels), return_counts=True)
        lookup = dict(zip(vals.tolist(), counts.tolist()))
        n_rel = np.array([lookup.get(v, 0) for v in ql.tolist()])
    ap = average_precision(rel, n_rel)
    df = pd.DataFrame({"class": ql, "ap": ap})
    out = df.groupby("class").agg(n_queries=("ap", "size"), mAP=("ap", "mean")).reset_index()
    out.loc[len(out)] = {"class": "all", "n_queries": len(ap), "mAP": float(ap.mean()) if len(ap) else float("nan")}
    return out


def modality_share(hit_modalities: np.ndarray, ks: Sequence[int] = (1, 5, 10, 20, 50)) -> pd.DataFrame:
    """Share of each modality among the top-``k`` hit slots, for each ``k``: one line per k, one column per
    modality. Padded slots (``None``: fewer than ``k`` rows were found) belong to no modality."""
    hm = np.asarray(hit_modalities)
    mods = sorted({m for m in hm.ravel().tolist() if m is not None})
    lines = []
    for k in ks:
        top = hm[:, : min(k, hm.shape[1])]
        lines.append({"k": int(k), **{m: float((top == m).mean()) for m in mods}})
    return pd.DataFrame(lines)


def retrieval_report(
    coll: Collection, vectors: Mapping[str, np.ndarray], ids: Sequence, labels: Sequence,
    rows: Optional[np.ndarray] = None, ks: Sequence[int] = (1, 5, 10),
) -> pd.DataFrame:
    """Every ordered pair of modalities (query -> target): pair Recall@k (same id), class Recall@1 and mAP@max(k)."""
    ids, labels = np.asarray(ids), np.asarray(labels)
    label_of = dict(zip(ids.tolist(), labels.tolist()))
    rows = np.arange(len(ids)) if rows is None else np.asarray(rows)
    lines = []
    for qm, qv in vectors.items():
        ok = rows[np.isfinite(qv[rows]).all(1)]
        for tm in vectors:
            if tm == qm:
                continue
            _, hit_ids, _ = coll.search(qv[ok], max(ks), target=tm)
            rec = recall_at_k(ids[ok], hit_ids, ks)
            hit_labels = np.vectorize(label_of.get, otypes=[object])(hit_ids)
            target_labels = [label_of[i] for i in coll.indexes[tm].ids.tolist()]
            m = map_by_class(labels[ok], hit_labels, target_labels)
            lines.append({
                "query": qm, "target": tm, "n_queries": len(ok), **{f"R@{k}": v for k, v in rec.items()},
                "class_R@1": recall_at_k(labels[ok], hit_labels, (1,))[1],
                f"mAP@{max(ks)}": float(m.loc[m["class"] == "all", "mAP"].iloc[0]),
            })
    return pd.DataFrame(lines)


def compare_spaces(
    spaces: Mapping[str, Mapping[str, np.ndarray]], ids: Sequence, labels: Sequence, rows: Optional[np.ndarray] = None,
    ks: Sequence[int] = (1, 5, 10), **index_options: Any,
) -> pd.DataFrame:
    """:func:`retrieval_report` for several embedding spaces (name -> {modality: [N, D]}), one table."""
    parts = []
    for name, vectors in spaces.items():
        coll = Collection.build(vectors, ids, **index_options)
        rep = retrieval_report(coll, vectors, ids, labels, rows, ks)
        rep.insert(0, "space", name)
        parts.append(rep)
    return pd.concat(parts, ignore_index=True)


def hit_share(vectors: Mapping[str, np.ndarray], ids: Sequence, query_modality: str, rows: Optional[np.ndarray] = None,
              ks: Sequence[int] = (1, 5, 10, 20, 50), **index_options: Any) -> pd.DataFrame:
    """Share of each modality among the top-k hits of ``query_modality`` queries over all modalities.

    The query's own vector (same id, same modality) is left out of its hits.
    """
    coll = Collection.build(vectors, ids, **index_options)
    ids = np.asarray(ids)
    q = np.asarray(vectors[query_modality])
    rows = np.arange(len(q)) if rows is None else np.asarray(rows)
    rows = rows[np.isfinite(q[rows]).all(1)]
    _, hit_ids, mods = coll.search(q[rows], max(ks) + 1, target="all")
    is_self = (hit_ids == ids[rows][:, None]) & (mods == query_modality)
    keep = np.stack([m[~s][: max(ks)] for m, s in zip(mods, is_self)]) if len(rows) else mods[:, : max(ks)]
    return modality_share(keep, [k for k in ks if k <= keep.shape[1]])


def save_report(table: pd.DataFrame, json_path: Union[str, Path]) -> Path:
    """Write a retrieval table as JSON rows (a list) and CSV beside it."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(table.to_json(orient="records", indent=1))
    table.to_csv(json_path.with_suffix(".csv"), index=False, float_format="%.4f")
    return json_path
