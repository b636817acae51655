"""``embed(dataset, modality, extractor)``: extract one modality of a dataset into the embedding store.

Work is cut into shards of ``shard_size`` rows. A shard already on disk is never recomputed, so a run
that was killed resumes where it stopped, and a finished store is reused without loading the model.
``shard=i, num_shards=n`` makes this job take every n-th shard, so several jobs or machines can fill
one store together; the job that writes the last shard consolidates it.

:class:`Embeddings` holds the vectors of several modalities aligned to a dataset's rows (what the heads,
the alignment study and retrieval read).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

import numpy as np

from .config import embeddings_dir, library_versions, merge_config
from .data.schema import MultimodalDataset
from .extractors import Extractor, create
from .io import atomic_write_json
from .store import EmbeddingStore, store_for

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")


@dataclass
class EmbedConfig:
    root: Optional[str] = None  # embeddings folder (None: MMFUSION_EMBEDDINGS_DIR, .env or ./embeddings)
    batch_size: int = 32  # rows per forward pass
    device: Optional[str] = "auto"  # "auto": CUDA, then MPS, then CPU
    normalize: bool = False  # L2-normalise the stored vectors
    shard_size: int = 1024  # rows per shard: the unit of resume and of parallel jobs
    shard: int = 0  # this job's share: shards k with k % num_shards == shard
    num_shards: int = 1  # how many jobs fill the store together
    on_error: str = "raise"  # "raise" stops at an unreadable file; "skip" records it as failed and goes on
    overwrite: bool = False  # discard what the store folder held
    show_progress: bool = True  # a progress bar over rows
    engine: str = "local"  # "local": this process; "ray": actors on a Ray cluster (utils.distributed), same store
    ray: Any = None  # engine="ray": a utils.distributed.RayConfig or a dict of its fields (None: its defaults)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")
        if not 0 <= self.shard < self.num_shards:
            raise ValueError(f"shard must be in [0, num_shards), got shard={self.shard}, num_shards={self.num_shards}")
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")


@dataclass
class Embeddings:
    """Per-modality vectors aligned to the dataset rows (``vectors[m][i]`` belongs to ``ds.df.id[i]``)."""

    vectors: Dict[str, np.ndarray]
    extractors: Dict[str, str]  # modality -> honest description of the extractor
    stores: Dict[str, str] = field(default_factory=dict)  # modality -> store folder
    reused: Dict[str, bool] = field(default_factory=dict)

    @property
    def modalities(self) -> List[str]:
        return list(self.vectors)

    def dims(self) -> Dict[str, int]:
        return {m: int(v.shape[1]) for m, v in self.vectors.items()}


def store_path(dataset: MultimodalDataset, modality: str, extractor: Extractor,
               root: Optional[os.PathLike] = None) -> EmbeddingStore:
    return store_for(embeddings_dir(root), dataset.spec.key, modality, extractor.slug)


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
    ``overwrite``, ``show_progress``, ``engine``, ``ray``) set how; ``engine="ray"`` computes the missing
    shards on a Ray cluster (:mod:`utils.distributed`) into the same store. Returns the :class:`~utils.store.EmbeddingStore`;
    ``store.aligned(dataset.df["id"])`` gives the vectors in table order.
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
    header = {
        "dataset": dataset.spec.key,
        "modality": modality,
        "extractor": extractor.config(),
        "fingerprint": dataset.fingerprint(modality),
        "count": n,
        "shard_size": int(cfg.shard_size),
        "normalized": bool(cfg.normalize),
        "versions": library_versions(),
        "description": extractor.describe(),
    }
    store.open(header, overwrite=cfg.overwrite)
    if store.is_complete():
        m = store.manifest()
        log.info(
            "reusing cached %s embeddings of %s by %s: %d vectors at %s (no extraction needed)",
            modality, dataset.spec.key, extractor.id, m.get("n_vectors", 0), store.folder,
        )
        store.reused = True  # type: ignore[attr-defined]
        return store

    n_shards = max(1, math.ceil(n / cfg.shard_size))
    mine = [k for k in range(n_shards) if k % cfg.num_shards == cfg.shard]
    todo = [k for k in mine if not store.has_shard(k)]
    if len(todo) < len(mine):
        log.info("resuming %s: %d of %d shard(s) already on disk", store.folder, len(mine) - len(todo), len(mine))
    items = dataset.items(modality)
    ids = dataset.df["id"].astype(str).tolist()
    from tqdm.auto import tqdm

    size = cfg.shard_size
    described, here = None, todo
    if cfg.engine == "ray" and todo:  # the same shards, computed by actors on a Ray cluster
        from .distributed import encode_shards

        described = encode_shards(store, extractor, items, ids, todo, size, dict(
            batch_size=cfg.batch_size, device=cfg.device, normalize=cfg.normalize, on_error=cfg.on_error),
            cfg.ray, cfg.show_progress)
        here = []
    bar = tqdm(total=sum(min(size, n - k * size) for k in here), disable=not cfg.show_progress or not here,
               desc=f"{modality} -> {extractor.id}", unit="row")
    for k in here:
        lo, hi = k * size, min(n, (k + 1) * size)
        vectors = extractor.encode(items[lo:hi], batch_size=cfg.batch_size, device=cfg.device, normalize=cfg.normalize,
                                   show_progress=False, on_error=cfg.on_error)
        failed = {ids[lo + i]: reason for i, reason in extractor.last_failures.items()}
        if failed:
            log.warning("shard %d: %d row(s) could not be read and were recorded as failed", k, len(failed))
        store.write_shard(k, ids[lo:hi], vectors, failed)
        bar.update(hi - lo)
    bar.close()
    store.reused = False  # type: ignore[attr-defined]
    if todo:  # the model is loaded now, so its description is complete (e.g. the resolved pooling)
        m = store.manifest()
        if m.get("description") != (described or extractor.describe()):
            m["description"] = described or extractor.describe()
            atomic_write_json(store.manifest_path, m)
    if all(store.has_shard(k) for k in range(n_shards)):
        store.finalize(n_shards)
        m = store.manifest()
        if m.get("failed"):
            log.warning("%d row(s) have no vector (see store.failed)", len(m["failed"]))
        log.info("embedded %d %s rows of %s with %s -> %s", n, modality, dataset.spec.key, extractor.id, store.folder)
    else:
        log.info("this job's shards are done; other shards of %s are still missing", store.folder)
    return store
