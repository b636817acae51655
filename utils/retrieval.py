"""Cross-modal retrieval with FAISS: build, search, save/load with ids, and retrieval metrics.

    index = build_index(image_vectors, ids=df.id)                 # exact below `exact_max`, IVF above
    scores, hit_ids = index.search(text_vectors, k=10)
    index.save("results/index_image"); index = load_index("results/index_image")
    coll = Collection.build({"text": T, "image": I}, ids)          # any-to-any, one index per modality + one over all
    recall_at_k(query_ids, hit_ids, ks=(1, 5, 10))

Vectors are L2-normalised and searched by inner product (cosine). Saved as ``index.faiss``
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
KINDS = ("auto", "exact", "ivf", "hnsw")


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
        return self.faiss_index.search(q, min(k, len(self)))

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
    if meta["kind"] == "ivf":
        index.nprobe = int(meta["params"].get("nprobe", 1))
    elif meta["kind"] == "hnsw":
        index.hnsw.efSearch = int(meta["params"].get("ef_search", 64))
    return Index(index, ids, meta["kind"], meta["params"], mods)


def choose_kind(n: int, exact_max: int = EXACT_MAX) -> str:
    """``exact`` for up to ``exact_max`` vectors, ``ivf`` above (fast to build on few cores; HNSW on request)."""
    return "exact" if n <= exact_max else "ivf"


def build_index(
    vectors: np.ndarray,
    ids: Optional[Sequence] = None,
    kind: str = "auto",
    exact_max: int = EXACT_MAX,
    nlist: Optional[int] = None,
    nprobe: Optional[int] = None,
    target_recall: float = 0.95,
    hnsw_m: int = 32,
    ef_search: Optional[int] = None,
    train_size: int = 50_000,
    kmeans_iter: int = 10,
    seed: int = 0,
    modalities: Optional[Sequence[str]] = None,
    show_progress: bool = False,
) -> Index:
    """Index ``vectors [N, D]`` (normalised here) for inner-product search.

    ``kind="auto"`` picks :func:`choose_kind`. IVF: ``nlist`` lists (default ``2 sqrt(N)``) trained by k-means
    (``kmeans_iter`` iterations) on ``max(train_size, 30 nlist)`` rows; when ``nprobe`` is not given it is calibrated: the smallest power of two whose
    recall@10 against exact search, on 200 indexed rows searched leave-one-out, reaches ``target_recall``.
    HNSW: ``hnsw_m`` links, ``ef_search`` calibrated the same way when not given.
    """
    faiss = _faiss()
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
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


def _calibrate(index, x: np.ndarray, knob: str, upper: int, target: float, seed: int, k: int = 10, n_queries: int = 200) -> int:
    """Smallest power-of-two setting of ``knob`` whose recall@k against exact search reaches ``target``.

    Queries are indexed rows searched leave-one-out (their own row is dropped from both result lists),
    which behaves like fresh queries from the same distribution.
    """
    faiss = _faiss()
    rng = np.random.default_rng(seed + 1)
    rows = rng.choice(len(x), min(n_queries, len(x)), replace=False)
    q = np.ascontiguousarray(x[rows])
    _, truth = faiss.knn(q, x, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    truth = _drop_self(truth, rows, k)
    value = 1 if knob == "nprobe" else 16
    while True:
        if knob == "nprobe":
            index.nprobe = value
        else:
            index.hnsw.efSearch = value
        _, found = index.search(q, k + 1)
        r = knn_recall(truth, _drop_self(found, rows, k))
        if r >= target or value >= upper:
            log.info("calibrated %s = %d (leave-one-out recall@%d %.3f on %d queries)", knob, value, k, r, len(q))
            return value
        value *= 2


def _drop_self(found: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Each line of ``found [Q, k+1]`` without the query's own row, cut to ``k``."""
    return np.stack([[f for f in line if f != r][:k] for line, r in zip(found, rows)])


def knn_recall(truth: np.ndarray, found: np.ndarray) -> float:
    """Share of the true top-k rows ``truth [Q, k]`` that appear in ``found [Q, k']`` (ANN recall@k)."""
    hits = sum(len(set(t.tolist()) & set(f.tolist())) for t, f in zip(truth, found))
    return hits / truth.size


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
