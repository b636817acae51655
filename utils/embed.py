"""``embed(dataset, modality, extractor)``: extract one modality of a dataset into the embedding store.

Work is cut into shards of ``shard_size`` rows. A sound shard already on disk is never recomputed, so a
run that was killed resumes where it stopped, and a finished store is reused without loading the model
(after checking it; a damaged one is repaired). Two jobs started on the same store share the work: each
shard is claimed by one job (an owner-aware lock), the other waits for it and reuses it.
``shard=i, num_shards=n`` makes this job take every n-th shard, so several jobs or machines can fill
one store together; the job that writes the last shard consolidates it.

:class:`Embeddings` holds the vectors of several modalities aligned to a dataset's rows (what the heads,
the alignment study and retrieval read).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from .config import embeddings_dir, library_versions, merge_config
from .data.schema import FINGERPRINT_MODES, MultimodalDataset
from .extractors import Extractor, create
from .store import DamagedShardsError, EmbeddingStore, StoreIntegrityError, StoreMismatchError, store_for
from .store.files import load_npy_bytes
from .store.locks import describe_owner

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often a job waiting for another job's shards (or merge) looks again
ENGINES = ("local", "ray")


@dataclass
class EmbedConfig:
    root: Optional[str] = None  # embeddings folder (None: MMFUSION_EMBEDDINGS_DIR, .env or ./embeddings)
    batch_size: Union[int, str] = "auto"  # rows per forward pass; "auto": from free GPU memory on CUDA, else 32
    device: Optional[str] = "auto"  # "auto": CUDA, then MPS, then CPU
    normalize: bool = False  # L2-normalise the stored vectors
    shard_size: int = 1024  # rows per shard: the unit of resume, of repair and of parallel jobs
    shard: int = 0  # this job's share: shards k with k % num_shards == shard
    num_shards: int = 1  # how many jobs fill the store together
    on_error: str = "raise"  # "raise" stops at an unreadable file; "skip" records it as failed and goes on
    overwrite: bool = False  # discard what the store folder held
    show_progress: bool = True  # a progress bar over rows
    verify: str = "auto"  # reuse check: "auto" headers and sizes (every byte when the store is read whole), "full" every byte now, "header"
    fingerprint: str = "stat"  # inputs' identity: "stat" (path, size, modification time) or "content" (a hash of each file)
    wait: bool = True  # wait for shards (and a merge) another live job is writing, then reuse them
    engine: str = "local"  # "local": this process; "ray": actors on a Ray cluster (utils.distributed), same store
    ray: Any = None  # engine="ray": a utils.distributed.RayConfig or a dict of its fields (None: its defaults)

    def __post_init__(self) -> None:
        if self.batch_size != "auto" and (isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int)
                                          or self.batch_size < 1):
            raise ValueError(f"batch_size must be an integer >= 1 or 'auto', got {self.batch_size!r}")
        if not isinstance(self.shard_size, int) or self.shard_size < 1:
            raise ValueError(f"shard_size must be an integer >= 1, got {self.shard_size!r}")
        if not 0 <= self.shard < self.num_shards:
            raise ValueError(f"shard must be in [0, num_shards), got shard={self.shard}, num_shards={self.num_shards}")
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")
        if self.verify not in ("auto", "full", "header"):
            raise ValueError(f"verify must be 'auto', 'full' or 'header', got {self.verify!r}")
        if self.fingerprint not in FINGERPRINT_MODES:
            raise ValueError(f"fingerprint must be one of {FINGERPRINT_MODES}, got {self.fingerprint!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")


@dataclass
class Embeddings:
    """Per-modality vectors with the ids of their rows: ``vectors[m][i]`` belongs to record ``ids[i]``.

    The ids travel with the vectors, so nothing is ever matched by position: :meth:`for_dataset` puts the
    rows in a dataset's order (or refuses, naming the first id it lacks), and every step that reads
    embeddings with a dataset (heads, baselines, the alignment study) calls it. ``sources[m]`` records
    where modality ``m`` came from (extractor spec and options, store folder, precision), which a saved
    model keeps.
    """

    vectors: Dict[str, np.ndarray]
    extractors: Dict[str, str] = field(default_factory=dict)  # modality -> honest description of the extractor
    stores: Dict[str, str] = field(default_factory=dict)  # modality -> store folder
    reused: Dict[str, bool] = field(default_factory=dict)
    ids: Any = None  # [N] record ids of every modality's rows (required)
    sources: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # modality -> spec, options, identity, precision

    def __post_init__(self) -> None:
        if self.ids is None:
            raise TypeError("Embeddings need the ids of their rows: Embeddings(vectors, ..., ids=ids) with ids[i] the "
                            "record of vectors[m][i] (e.g. ids=ds.df['id']); vectors are never matched by position")
        self.ids = np.asarray(self.ids).astype(str)
        n = len(self.ids)
        for m, v in self.vectors.items():
            if getattr(v, "ndim", 2) != 2 or len(v) != n:
                raise ValueError(f"Embeddings: {m} vectors have shape {getattr(v, 'shape', None)} but there are {n} ids: "
                                 f"give one row per id ([{n}, D])")
        if n and len(np.unique(self.ids)) != n:
            u, counts = np.unique(self.ids, return_counts=True)
            raise ValueError(f"Embeddings: id {str(u[counts > 1][0])!r} appears {int(counts.max())} times; ids must be unique")
        for m in self.vectors:
            self.extractors.setdefault(m, m)

    @property
    def modalities(self) -> List[str]:
        return list(self.vectors)

    def dims(self) -> Dict[str, int]:
        return {m: int(v.shape[1]) for m, v in self.vectors.items()}

    def for_dataset(self, dataset: Union[MultimodalDataset, Any]) -> "Embeddings":
        """These embeddings with their rows in ``dataset``'s order (``self`` when they already are).

        ``dataset``: a :class:`MultimodalDataset` or a sequence of ids. Raises ``KeyError`` naming the first
        record the embeddings have no row for (and how many more).
        """
        want = np.asarray((dataset.df["id"] if isinstance(dataset, MultimodalDataset) else list(dataset)), dtype=str)
        if len(want) == len(self.ids) and np.array_equal(want, self.ids):
            return self
        order = np.argsort(self.ids, kind="stable")
        pos = np.searchsorted(self.ids, want, sorter=order)
        pos = np.minimum(pos, max(len(order) - 1, 0))
        found = order[pos] if len(order) else np.zeros(len(want), np.int64)
        ok = (self.ids[found] == want) if len(order) else np.zeros(len(want), bool)
        if not ok.all():
            miss = np.flatnonzero(~ok)
            name = getattr(getattr(dataset, "spec", None), "key", "the dataset")
            raise KeyError(f"Embeddings have no row for id {want[miss[0]]!r} of {name} (row {int(miss[0])}; {len(miss)} "
                           f"id(s) missing in all): embed or import vectors for every record, or drop those rows")
        return Embeddings({m: v[found] for m, v in self.vectors.items()}, dict(self.extractors), dict(self.stores),
                          dict(self.reused), want, dict(self.sources))


def store_path(dataset: MultimodalDataset, modality: str, extractor: Extractor,
               root: Optional[os.PathLike] = None) -> EmbeddingStore:
    return store_for(embeddings_dir(root), dataset.spec.key, modality, extractor.slug)


def extractor_identity(extractor: Extractor, mode: str = "stat") -> Dict[str, Any]:
    """The extractor's config, plus a fingerprint of its weights when they are local files (a folder saved with
    ``save_pretrained``, a checkpoint): a model edited and saved in place must not reuse the old vectors.
    ``mode`` is the run's ``fingerprint`` setting (``"content"`` hashes the weights' bytes)."""
    config = dict(extractor.config())
    weights = extractor.weights_fingerprint("content" if mode == "content" else "stat")
    if weights is not None:
        config["weights"] = weights
    return config


def store_inputs(dataset: MultimodalDataset, modality: str, cfg: EmbedConfig) -> bytes:
    """The bytes of the store's ``inputs.npy``: every row's id and input key (what lets a later run reuse
    its vectors by id, from another order, a subset, or a table with some rows edited)."""
    return EmbeddingStore.inputs_bytes(dataset.df["id"].astype(str).tolist(), dataset.row_keys(modality, cfg.fingerprint))


def store_header(dataset: MultimodalDataset, modality: str, extractor: Extractor, cfg: EmbedConfig,
                 inputs: Optional[bytes] = None) -> Dict[str, Any]:
    """What a store of ``dataset``'s ``modality`` by ``extractor`` records, and compares before reuse
    (``inputs``: :func:`store_inputs`, recorded by size and checksum so the file can be trusted later).

    Imported vectors (the ``imported`` family) were made from no file of the dataset: their input
    fingerprint is the ids alone.
    """
    if getattr(extractor, "imported", False):
        import hashlib

        h = hashlib.sha256(f"imported\0{dataset.spec.key}\0".encode())
        h.update("\0".join(dataset.df["id"].astype(str).tolist()).encode("utf-8", "surrogatepass"))
        fingerprint, detail = h.hexdigest(), {"mode": "ids"}
    else:
        fingerprint = dataset.fingerprint(modality, mode=cfg.fingerprint)
        detail = dataset.fingerprint_detail(modality, mode=cfg.fingerprint)
    return {
        "dataset": dataset.spec.key,
        "modality": modality,
        "extractor": extractor_identity(extractor, cfg.fingerprint),
        "fingerprint": fingerprint,
        "fingerprint_detail": detail,
        "count": len(dataset),
        "shard_size": int(cfg.shard_size),
        "normalized": bool(cfg.normalize),
        "versions": library_versions(),
        "description": extractor.describe(),
        **({"inputs": EmbeddingStore.inputs_entry(inputs)} if inputs is not None else {}),
    }


def is_finished(store: EmbeddingStore) -> bool:
    """The store is complete (False for a damaged one too: :func:`embed` says what is wrong and repairs it)."""
    try:
        return store.is_complete()
    except Exception:  # noqa: BLE001 -- a damaged store: open() below says what is wrong
        return False


def embed(
    dataset: MultimodalDataset,
    modality: str,
    extractor: Union[str, Extractor],
    config: Optional[EmbedConfig] = None,
    extractor_options: Optional[Dict[str, Any]] = None,
    **options: Any,
) -> EmbeddingStore:
    """Embed ``dataset``'s ``modality`` ("text", "image", "audio") with ``extractor`` into the store.

    ``config`` (an :class:`EmbedConfig`) and keyword ``options`` (its field names: ``root``,
    ``batch_size``, ``device``, ``normalize``, ``shard_size``, ``shard``, ``num_shards``, ``on_error``,
    ``overwrite``, ``show_progress``, ``verify``, ``fingerprint``, ``wait``, ``engine``, ``ray``) set how.
    Returns the :class:`~utils.store.EmbeddingStore`; ``store.aligned(dataset.df["id"])`` gives the vectors in
    table order. ``engine="ray"`` computes the missing shards on a Ray cluster (:mod:`utils.distributed`) into
    the same store, under the same per-shard claims.

    A finished store is checked and reused; a damaged one is repaired (its damaged shards recomputed, or
    the whole store when its index is damaged). Shards another live job is writing are waited for, not
    computed twice.
    """
    cfg = merge_config(EmbedConfig, config, options, "embed")
    if isinstance(extractor, str):
        extractor = create(extractor, **(extractor_options or {}))
    elif extractor_options:
        raise ValueError("extractor_options only applies when extractor is given as a string")
    if extractor.modality != modality:
        raise ValueError(f"extractor {extractor.id} embeds {extractor.modality}, not {modality}")

    store = store_path(dataset, modality, extractor, cfg.root)
    n = len(dataset)
    if cfg.engine != "ray" and not is_finished(store):
        extractor.load(cfg.device)  # fail fast: a model that cannot load leaves no store folder behind
    inputs = store_inputs(dataset, modality, cfg)
    header = store_header(dataset, modality, extractor, cfg, inputs)
    seeds: Dict[str, np.ndarray] = {}
    try:
        store.open(header, overwrite=cfg.overwrite)
    except StoreMismatchError as refused:
        if reusable_by_id(store, header, cfg, inputs, seeds, refused):
            return store
        if cfg.engine != "ray":
            extractor.load(cfg.device)  # fail fast, before the store is rebuilt
        store.open(header, overwrite=True)  # rebuilt for these rows, seeded with the vectors that still hold
    store.write_inputs(inputs)
    if store.manifest().get("complete") and not store.is_complete():
        store.reset(f"{store.folder / 'vectors.npy'} is missing although the manifest says the store is finished")
    job = _Job(dataset, modality, extractor, store, cfg, seeds)
    if store.is_complete() and job.reuse():
        return store

    n_shards = max(1, math.ceil(n / cfg.shard_size))
    mine = [k for k in range(n_shards) if k % cfg.num_shards == cfg.shard]
    done = [k for k in mine if store.shard_sound(k)]
    if 0 < len(done) < len(mine):
        log.info("resuming %s: %d of %d shard(s) already on disk", store.folder, len(done), len(mine))
    todo = [k for k in mine if k not in done]
    if cfg.engine == "ray" and todo:
        job.fill_on_ray(todo)  # the shards nobody else is writing, on Ray actors; fill() below waits for the rest
    job.fill(todo)
    store.reused = not job.rows_computed
    if store.is_complete():
        if job.rows_computed:
            log.info("embedded %d %s rows of %s with %s (the store was finished by another job) -> %s",
                     job.rows_computed, modality, dataset.spec.key, extractor.id, store.folder)
        else:
            log.info("reusing %s embeddings of %s that another job finished: %s", modality, dataset.spec.key, store.folder)
        return store
    missing = store.missing_shards(n_shards)
    if missing:
        log.info("this job's shards are done; %d other shard(s) of %s are not written yet (other jobs: shard=..., "
                 "num_shards=%d)", len(missing), store.folder, cfg.num_shards)
        return store
    if job.merge(n_shards):
        m = store.manifest()
        if m.get("failed"):
            log.warning("%d row(s) have no vector (see store.failed)", len(m["failed"]))
        log.info("embedded %d %s rows of %s with %s (%d computed by this job) -> %s", m.get("n_vectors", 0), modality,
                 dataset.spec.key, extractor.id, job.rows_computed, store.folder)
    return store


BY_ID_DIFFS = {"fingerprint", "count", "shard_size"}  # a store differing only in these may be reused by id


def reusable_by_id(store: EmbeddingStore, header: Dict[str, Any], cfg: EmbedConfig, inputs: bytes,
                   seeds: Dict[str, np.ndarray], refused: Exception) -> bool:
    """A finished store made by the same extractor and settings for other rows (another order, a subset or
    superset, another ``shard_size``, some rows edited): True when it holds a vector for every row of
    the dataset (``header``: what this run would record) whose input is unchanged (it is then used as it is; vectors are looked up by id). Otherwise
    ``seeds`` gets the vectors that still hold (by id and input key) and False is returned: the caller
    rebuilds the store for these rows and computes only the others. Raises ``refused`` when nothing can be
    reused (another model, settings or dataset, a store still being written, or no row in common)."""
    from .store import FORMAT_VERSION, identity

    modality = header["modality"]
    try:
        current = store.manifest()
        want = identity({**header, "format": FORMAT_VERSION})
        diffs = {k for k, v in identity(current).items() if v != want[k]}
        stored = store.inputs() if store.is_complete() and diffs <= BY_ID_DIFFS else None
    except Exception:  # noqa: BLE001 -- a damaged store: refuse as before (overwrite=True rebuilds it)
        stored = None
    if stored is None:
        raise refused
    arr = load_npy_bytes(inputs)
    ids, keys = arr["id"].tolist(), arr["key"].tolist()
    have = set(store.read()[0].tolist())  # rows with a vector (failed rows are recomputed)
    same = [i for i, k in zip(ids, keys) if stored.get(i) == k and i in have]
    if not same:
        raise refused
    kept, asked = set(stored), set(ids)
    what = ("the same rows" + (" in another order" if "fingerprint" in diffs else "") if asked == kept
            else f"{len(ids)} of its {len(stored)} rows" if asked < kept else f"{len(same)} rows in common with these {len(ids)}")
    if "shard_size" in diffs:
        what += f", shard_size {current.get('shard_size')}"
    if len(same) == len(ids):
        report = store.verify(full=cfg.verify == "full")
        if report.ok:
            log.info("reusing %d %s vectors of %s by id (it was made for %s); no extraction needed", len(same),
                     modality, store.folder, what)
            store.reused = True
            return True
        log.warning("%s; it is rebuilt for these rows", report)
        return False
    vectors = store.aligned(same, verify="full")
    seeds.update(zip(same, vectors))
    log.info("%s was made for %s: reusing %d vector(s) by id and computing %d new or changed row(s); the store "
             "is rebuilt for these rows", store.folder, what, len(same), len(ids) - len(same))
    return False


class _Job:
    """One embed() call's work on a store: compute shards under claims, merge, check and repair."""

    def __init__(self, dataset: MultimodalDataset, modality: str, extractor: Extractor, store: EmbeddingStore,
                 cfg: EmbedConfig, seeds: Optional[Dict[str, np.ndarray]] = None):
        self.ds, self.modality, self.ext, self.store, self.cfg = dataset, modality, extractor, store, cfg
        self.seeds = seeds or {}  # id -> vector from a store made for other rows (same model, same input)
        self.rows_computed = 0
        self._items: Optional[List[Any]] = None
        self._ids: List[str] = []

    def compute(self, k: int) -> Tuple[List[str], np.ndarray, Dict[str, str]]:
        """``(ids, vectors [rows, D], failed)`` of shard ``k``."""
        if self._items is None:
            self._items = self.ds.items(self.modality)
            self._ids = self.ds.df["id"].astype(str).tolist()
        size, n = self.cfg.shard_size, len(self.ds)
        lo, hi = k * size, min(n, (k + 1) * size)
        ids = self._ids[lo:hi]
        new = [j for j, i in enumerate(ids) if i not in self.seeds]
        vectors = np.stack([self.seeds[i] for i in ids]) if not new else None  # every row of the shard reused
        failed: Dict[str, str] = {}
        if new:
            got = self.ext.encode([self._items[lo + j] for j in new], batch_size=self.cfg.batch_size,
                                  device=self.cfg.device, normalize=self.cfg.normalize, show_progress=False,
                                  on_error=self.cfg.on_error)
            failed = {ids[new[j]]: reason for j, reason in self.ext.last_failures.items()}
            if failed:
                log.warning("shard %d: %d row(s) could not be read and were recorded as failed", k, len(failed))
            if len(new) == len(ids):
                vectors = got
            else:
                vectors = np.empty((len(ids), got.shape[1]), dtype=got.dtype)
                vectors[new] = got
                old = [j for j in range(len(ids)) if ids[j] in self.seeds]
                vectors[old] = np.stack([self.seeds[ids[j]] for j in old])
        self.rows_computed += len(new)
        return ids, vectors, failed

    def info(self) -> Dict[str, Any]:
        """What the shard records about how it was made: the model's description, the resolved precision."""
        out: Dict[str, Any] = {"description": self.ext.describe()}
        if "precision" in self.ext.options:
            out["precision"] = self.ext.resolved_precision()
        return out

    def fill(self, todo: List[int]) -> None:
        """Compute every shard in ``todo`` that nobody else has written or is writing; wait for the others."""
        from .runtime import progress_bar as tqdm

        size, n = self.cfg.shard_size, len(self.ds)
        bar = tqdm(total=sum(min(size, n - k * size) for k in todo), disable=not self.cfg.show_progress,
                   desc=f"{self.modality} -> {self.ext.id}", unit="row")
        last_log = 0.0
        try:
            while todo:
                waiting = []
                for k in todo:
                    if self.store.shard_sound(k):
                        bar.update(min(size, n - k * size))
                        continue
                    lock = self.store.claim(k)
                    if lock is None:
                        waiting.append(k)
                        continue
                    with lock:
                        if not self.store.shard_sound(k):
                            if self.store.has_shard(k):
                                self.store.remove_shard(k, self.store.check_shard(k) or "damaged")
                            ids, vectors, failed = self.compute(k)
                            self.store.write_shard(k, ids, vectors, failed, info=self.info())
                    bar.update(min(size, n - k * size))
                if not waiting or not self.cfg.wait:
                    if waiting:
                        log.info("%d shard(s) of %s are being written by another job; not waiting (wait=False)",
                                 len(waiting), self.store.folder)
                    return
                if time.monotonic() - last_log > 30:
                    log.info("waiting for %d shard(s) of %s that %s is writing", len(waiting), self.store.folder,
                             describe_owner(self.store.shard_owner(waiting[0])))
                    last_log = time.monotonic()
                todo = waiting
                time.sleep(POLL_S)
        finally:
            bar.close()

    def fill_on_ray(self, todo: List[int]) -> None:
        """Claim every shard in ``todo`` that nobody else is writing and compute the claimed ones on Ray actors
        (:func:`utils.distributed.encode_shards`); the claims are held until the shards are written."""
        import contextlib

        from .distributed import encode_shards

        if self._items is None:
            self._items = self.ds.items(self.modality)
            self._ids = self.ds.df["id"].astype(str).tolist()
        with contextlib.ExitStack() as held:
            mine = []
            for k in todo:
                if self.store.shard_sound(k):
                    continue
                lock = self.store.claim(k)
                if lock is None:
                    continue
                held.enter_context(lock)
                if self.store.has_shard(k):
                    self.store.remove_shard(k, self.store.check_shard(k) or "damaged")
                mine.append(k)
            if not mine:
                return
            options = dict(batch_size=self.cfg.batch_size, device=self.cfg.device, normalize=self.cfg.normalize,
                           on_error=self.cfg.on_error)
            encode_shards(self.store, self.ext, self._items, self._ids, mine, self.cfg.shard_size, options, self.cfg.ray,
                          self.cfg.show_progress, info=self.info())
            self.rows_computed += sum(min(self.cfg.shard_size, len(self.ds) - k * self.cfg.shard_size) for k in mine)

    def merge(self, n_shards: int) -> bool:
        """Merge the shards (recomputing any found damaged); True when the store is complete."""
        for _ in range(3):
            try:
                if self.store.finalize(n_shards):
                    return True
                if not self.cfg.wait:
                    log.info("%s is being merged by another job (wait=False)", self.store.folder)
                    return False
                self.store.wait_complete(n_shards, poll=POLL_S)
                return True
            except DamagedShardsError as e:
                self.fill(e.shards)
        raise StoreIntegrityError(f"{self.store.folder}: shards keep failing their check after being recomputed; "
                                  "check the disk, then run again with overwrite=True")

    def reuse(self) -> bool:
        """Check a finished store and repair it when damaged. True when it can be used now without extraction."""
        store, m = self.store, self.store.manifest()
        report = store.verify(full=self.cfg.verify == "full")
        if report.ok:
            log.info("reusing cached %s embeddings of %s by %s: %d vectors at %s (no extraction needed; %s checked)",
                     self.modality, self.ds.spec.key, self.ext.id, m.get("n_vectors", 0), store.folder,
                     "every byte" if report.full else "headers and sizes")
            if report.nan_ids:
                log.warning("%s", report)
            store.reused = True
            return True
        if report.damaged_shards and not report.rebuild:
            log.warning("%s; recomputing shard(s) %s", report, report.damaged_shards)
            for k in report.damaged_shards:
                store.rewrite_block(k, *self.compute(k))
            again = store.verify(full=True)
            if again.ok:
                store.reused = False
                return True
            report = again
        store.reset(str(report))
        return False
