"""``embed(dataset, modality, extractor)``: extract one modality of a dataset into the embedding store.

Work is cut into shards of ``shard_size`` rows. A shard already on disk is never recomputed, so a run
that was killed resumes where it stopped, and a finished store is reused without loading the model.
``shard=i, num_shards=n`` makes this job take every n-th shard, so several jobs or machines can fill
one store together; the job that writes the last shard consolidates it.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Dict, Optional, Union

from .config import embeddings_dir, library_versions
from .data.schema import MultimodalDataset
from .extractors import Extractor, create
from .store import EmbeddingStore, atomic_write_json, store_for

log = logging.getLogger(__name__)


def store_path(
    dataset: MultimodalDataset, modality: str, extractor: Extractor, root: Optional[os.PathLike] = None
) -> EmbeddingStore:
    return store_for(embeddings_dir(root), dataset.spec.key, modality, extractor.slug)


def embed(
    dataset: MultimodalDataset,
    modality: str,
    extractor: Union[str, Extractor],
    root: Optional[os.PathLike] = None,
    batch_size: int = 32,
    device: Optional[str] = "auto",
    normalize: bool = False,
    shard_size: int = 1024,
    shard: int = 0,
    num_shards: int = 1,
    on_error: str = "raise",
    overwrite: bool = False,
    show_progress: bool = True,
    extractor_options: Optional[Dict[str, Any]] = None,
) -> EmbeddingStore:
    """Embed ``dataset``'s ``modality`` ("text", "image", "audio") with ``extractor`` into the store.

    Returns the :class:`~utils.store.EmbeddingStore`; ``store.aligned(dataset.df["id"])`` gives the
    vectors in table order. ``on_error="skip"`` records unreadable files as failed (see
    ``store.failed``) instead of stopping. ``overwrite=True`` discards what the folder held.
    """
    if isinstance(extractor, str):
        extractor = create(extractor, **(extractor_options or {}))
    elif extractor_options:
        raise ValueError("extractor_options only applies when extractor is given as a string")
    if extractor.modality != modality:
        raise ValueError(f"extractor {extractor.id} embeds {extractor.modality}, not {modality}")
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in [0, num_shards), got shard={shard}, num_shards={num_shards}")

    store = store_path(dataset, modality, extractor, root)
    n = len(dataset)
    header = {
        "dataset": dataset.spec.key,
        "modality": modality,
        "extractor": extractor.config(),
        "fingerprint": dataset.fingerprint(modality),
        "count": n,
        "shard_size": int(shard_size),
        "normalized": bool(normalize),
        "versions": library_versions(),
        "description": extractor.describe(),
    }
    store.open(header, overwrite=overwrite)
    if store.is_complete():
        m = store.manifest()
        log.info(
            "reusing cached %s embeddings of %s by %s: %d vectors at %s (no extraction needed)",
            modality, dataset.spec.key, extractor.id, m.get("n_vectors", 0), store.folder,
        )
        store.reused = True  # type: ignore[attr-defined]
        return store

    n_shards = max(1, math.ceil(n / shard_size))
    mine = [k for k in range(n_shards) if k % num_shards == shard]
    todo = [k for k in mine if not store.has_shard(k)]
    if len(todo) < len(mine):
        log.info("resuming %s: %d of %d shard(s) already on disk", store.folder, len(mine) - len(todo), len(mine))
    items = dataset.items(modality)
    ids = dataset.df["id"].astype(str).tolist()
    from tqdm.auto import tqdm

    bar = tqdm(total=sum(min(shard_size, n - k * shard_size) for k in todo), disable=not show_progress,
               desc=f"{modality} -> {extractor.id}", unit="row")
    for k in todo:
        lo, hi = k * shard_size, min(n, (k + 1) * shard_size)
        vectors = extractor.encode(
            items[lo:hi], batch_size=batch_size, device=device, normalize=normalize,
            show_progress=False, on_error=on_error,
        )
        failed = {ids[lo + i]: reason for i, reason in extractor.last_failures.items()}
        if failed:
            log.warning("shard %d: %d row(s) could not be read and were recorded as failed", k, len(failed))
        store.write_shard(k, ids[lo:hi], vectors, failed)
        bar.update(hi - lo)
    bar.close()
    store.reused = False  # type: ignore[attr-defined]
    if todo:  # the model is loaded now, so its description is complete (e.g. the resolved pooling)
        m = store.manifest()
        if m.get("description") != extractor.describe():
            m["description"] = extractor.describe()
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
