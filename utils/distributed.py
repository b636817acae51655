"""Extraction on Ray Data: the store's missing shards computed by a pool of actors, on one machine or many.

``embed(ds, modality, extractor, engine="ray", ray=RayConfig(...))`` (see :mod:`utils.embed`) sends the
shards it still needs here::

    table rows (shard, row, item)  ->  ray.data.from_pandas([one frame per missing shard])
      .map_batches(ShardEncoder, batch_size=shard_size, compute=ActorPoolStrategy(size=actors),
                   num_cpus=..., num_gpus=...)          # each actor loads the extractor once
      -> rows (shard, row, vector, failed) streamed back to the driver

The driver collects each shard's rows and writes the shard through the store's public API
(:meth:`~utils.store.EmbeddingStore.write_shard`) as soon as the last of its rows arrives, so:

- the store is the very same format as the single-process path's (a Ray-made store is reused by
  ``engine="local"`` and the other way round); a killed job resumes at the shard;
- only the driver writes: the store needs to live where the driver is (local disk, or a shared
  filesystem when other machines read it later); workers only need to read the inputs (a shared
  filesystem, or an object-storage bucket mounted at the same path on every node);
- every map_batches call is one whole shard encoded by one ``extractor.encode`` call with the same
  ``batch_size``, so the vectors equal the single-process path's (exactly, on CPU);
- an actor that dies (killed, out of memory, node lost) is restarted by Ray Data and its shard retried;
  an error raised by the extractor (an unreadable file with ``on_error="raise"``) fails only its shard:
  the other shards are still computed and written, then :class:`ShardError` names the failed shard and
  the original error, and the next run computes only what is missing.

``RAY_ADDRESS`` or ``RayConfig.address`` connects to a running cluster (``"auto"``: the one this machine
belongs to; ``"ray://host:10001"``: Ray Client); otherwise a Ray already started in this process is used,
else a local one is started. Nothing here assumes one node.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, Optional, Sequence

import numpy as np

from .config import merge_config

log = logging.getLogger(__name__)


@dataclass
class RayConfig:
    address: Optional[str] = None  # cluster to join (None: RAY_ADDRESS, else a running Ray, else start a local one)
    actors: int = 2  # actors in the pool; each loads the extractor once (a fixed ActorPoolStrategy)
    num_cpus: float = 1.0  # CPUs reserved per actor; image extractors decode in num_cpus - 1 DataLoader workers
    num_gpus: float = 0.0  # GPUs per actor (1 on a GPU cluster; 0.5 puts two actors on one GPU)
    local_cpus: Optional[int] = None  # CPUs of a Ray started here (None: all of this machine's)
    object_store_mb: Optional[int] = None  # object store of a Ray started here (None: Ray's default, 30% of RAM)
    runtime_env: Dict[str, Any] = field(default_factory=dict)  # for ray.init, e.g. {"py_modules": [...]} on a cluster
    show_ray_progress: bool = False  # Ray Data's own progress bars (ours counts rows written either way)

    def __post_init__(self) -> None:
        if not isinstance(self.actors, int) or self.actors < 1:
            raise ValueError(f"RayConfig.actors must be an integer >= 1, got {self.actors!r}")
        if self.num_cpus <= 0:
            raise ValueError(f"RayConfig.num_cpus must be > 0, got {self.num_cpus!r}")
        if self.num_gpus < 0:
            raise ValueError(f"RayConfig.num_gpus must be >= 0, got {self.num_gpus!r}")


def ray_config(options: Any) -> RayConfig:
    """A :class:`RayConfig` from one, from a dict of its fields, or the defaults for ``None``."""
    if options is None or isinstance(options, RayConfig):
        return options or RayConfig()
    if isinstance(options, dict):
        return merge_config(RayConfig, None, options, "ray options")
    raise TypeError(f"ray options must be a RayConfig, a dict of its fields or None, got {type(options).__name__}")


def connect(config: RayConfig) -> Dict[str, float]:
    """Join the cluster ``config`` names (or start a local Ray); return its resources (``CPU``, ``GPU``, ...)."""
    try:
        import ray
    except ImportError as e:
        raise ImportError('engine="ray" needs Ray Data: pip install "ray[data]"') from e

    if ray.is_initialized():
        if config.address:
            log.info("Ray is already initialised in this process: using it (RayConfig.address=%r is not used)",
                     config.address)
    else:
        address = config.address or os.environ.get("RAY_ADDRESS") or None
        kw: Dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
        if config.runtime_env:
            kw["runtime_env"] = dict(config.runtime_env)
        if address:
            log.info("joining the Ray cluster at %s", address)
            ray.init(address=address, **kw)
        else:
            if config.local_cpus is not None:
                kw["num_cpus"] = int(config.local_cpus)
            if config.object_store_mb is not None:
                kw["object_store_memory"] = int(config.object_store_mb) * 2**20
            log.info("starting a local Ray (no address given and RAY_ADDRESS unset)")
            ray.init(**kw)
    return {k: float(v) for k, v in ray.cluster_resources().items()}


def pool_size(config: RayConfig, resources: Dict[str, float]) -> int:
    """Actors that fit the cluster: ``config.actors``, fewer (with a warning) when CPUs or GPUs are short.

    A request the cluster cannot serve at all (GPUs asked, none there) is an error instead of a silent wait.
    """
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    if config.num_gpus > 0 and gpus < config.num_gpus:
        raise ValueError(f"RayConfig.num_gpus={config.num_gpus} per actor, but the Ray cluster has {gpus:g} GPU(s). "
                         "Use num_gpus=0 on a CPU cluster, or join a cluster with GPUs (address= / RAY_ADDRESS).")
    if cpus < config.num_cpus:
        raise ValueError(f"RayConfig.num_cpus={config.num_cpus} per actor, but the Ray cluster has {cpus:g} CPU(s).")
    fit = int(cpus // config.num_cpus)
    if config.num_gpus > 0:
        fit = min(fit, int(gpus // config.num_gpus))
    if fit < config.actors:
        log.warning("the Ray cluster (%g CPU, %g GPU) fits %d actor(s) of %g CPU / %g GPU, not %d: using %d",
                    cpus, gpus, fit, config.num_cpus, config.num_gpus, config.actors, fit)
    return max(1, min(config.actors, fit))


class ShardEncoder:
    """The map_batches callable class: one extractor per actor, loaded on the first batch.

    A batch is rows ``{shard, row, item}``; each shard in it is encoded by ONE ``encode`` call (the
    single-process path's unit) and comes back as rows ``{shard, row, vector [n, D], failed, error, description}``;
    a shard whose ``encode`` raised comes back as one row with ``row=-1`` and the error's text, so the
    other shards of the job are still computed and written.
    """

    def __init__(self, extractor: Any, encode_options: Dict[str, Any], decode_workers: Optional[int] = None):
        self.extractor = extractor
        self.encode_options = dict(encode_options)
        if decode_workers is not None and hasattr(extractor, "num_workers"):
            extractor.num_workers = decode_workers  # image families: decode in this actor's own CPUs

    def __call__(self, batch: Dict[str, np.ndarray]) -> Iterator[Dict[str, np.ndarray]]:
        shards, rows, items = batch["shard"], batch["row"], batch["item"]
        for k in dict.fromkeys(shards.tolist()):
            sel = np.flatnonzero(shards == k)
            try:
                vec = self.extractor.encode([None if v is None else str(v) for v in items[sel].tolist()],
                                            show_progress=False, **self.encode_options)
            except Exception as e:  # noqa: BLE001 -- reported to the driver, which keeps every other shard
                yield {"shard": shards[sel[:1]], "row": np.array([-1]), "vector": np.zeros((1, 0), np.float32),
                       "failed": np.array([""], dtype=object), "error": np.array([f"{type(e).__name__}: {e}"], dtype=object),
                       "description": np.array([""], dtype=object)}
                continue
            failed = np.array([""] * len(sel), dtype=object)
            for i, reason in self.extractor.last_failures.items():
                failed[i] = reason
            yield {"shard": shards[sel], "row": rows[sel], "vector": vec, "failed": failed,
                   "error": np.array([""] * len(sel), dtype=object),
                   "description": np.array([self.extractor.describe()] * len(sel), dtype=object)}


class ShardBuffer:
    """Rows of one shard as they arrive (a shard may come in several batches if Ray splits it)."""

    def __init__(self, n_rows: int):
        self.n_rows, self.filled = n_rows, 0
        self.vectors: Optional[np.ndarray] = None
        self.failed: Dict[int, str] = {}
        self.seen = np.zeros(n_rows, dtype=bool)

    def add(self, rows: np.ndarray, vectors: np.ndarray, failed: np.ndarray) -> bool:
        """Store the rows; True once every row of the shard is in."""
        if self.vectors is None:
            self.vectors = np.empty((self.n_rows, vectors.shape[1]), dtype=np.float32)
        new = ~self.seen[rows]  # a retried task may deliver rows twice: count each row once
        self.vectors[rows] = vectors
        self.seen[rows] = True
        self.filled += int(new.sum())
        for r, reason in zip(rows.tolist(), failed.tolist()):
            if reason:
                self.failed[r] = str(reason)
        return self.filled == self.n_rows


def encode_shards(
    store: Any,
    extractor: Any,
    items: Sequence[Any],
    ids: Sequence[str],
    shards: Sequence[int],
    shard_size: int,
    encode_options: Dict[str, Any],
    config: Optional[RayConfig] = None,
    show_progress: bool = True,
    info: Optional[Dict[str, Any]] = None,
) -> Optional[str]:
    """Compute ``shards`` (indices into ``items`` by ``shard_size``) on Ray and write each into ``store``.

    ``encode_options``: ``batch_size``, ``device``, ``normalize``, ``on_error`` for ``extractor.encode``.
    ``info``: what each shard records about how it was made (the model's description as the actors saw it
    replaces the driver's).
    Returns the extractor's description as the actors saw it once loaded (None when nothing ran).
    """
    import pandas as pd
    import ray
    import ray.data
    from .runtime import progress_bar as tqdm

    config = ray_config(config)
    shards = sorted(int(k) for k in shards)
    if not shards:
        return None
    resources = connect(config)
    actors = pool_size(config, resources)
    n = len(items)
    bounds = {k: (k * shard_size, min(n, (k + 1) * shard_size)) for k in shards}
    frames = [pd.DataFrame({"shard": np.full(hi - lo, k, dtype=np.int64), "row": np.arange(hi - lo, dtype=np.int64),
                            "item": pd.Series(list(items[lo:hi]), dtype=object)})
              for k, (lo, hi) in bounds.items()]
    ctx = ray.data.DataContext.get_current()
    ray_bars, ctx.enable_progress_bars = ctx.enable_progress_bars, bool(config.show_ray_progress)
    decode_workers = max(0, int(config.num_cpus) - 1)
    results = ray.data.from_pandas(frames).map_batches(
        ShardEncoder,
        fn_constructor_kwargs={"extractor": extractor, "encode_options": encode_options,
                               "decode_workers": decode_workers},
        batch_size=shard_size,  # blocks are whole shards, so each call gets exactly one shard
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=config.num_cpus,
        num_gpus=config.num_gpus or None,
    )
    log.info("Ray: %d shard(s) of %s on %d actor(s) (%g CPU, %g GPU each; cluster: %g CPU, %g GPU)",
             len(shards), extractor.id, actors, config.num_cpus, config.num_gpus,
             resources.get("CPU", 0), resources.get("GPU", 0))
    pending: Dict[int, ShardBuffer] = {}
    errors: Dict[int, str] = {}
    description: Optional[str] = None
    bar = tqdm(total=sum(hi - lo for lo, hi in bounds.values()), disable=not show_progress,
               desc=f"{extractor.modality} -> {extractor.id} (ray x{actors})", unit="row")
    written = 0
    try:
        for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
            for k in dict.fromkeys(batch["shard"].tolist()):
                sel = batch["shard"] == k
                if batch["error"][sel][0]:
                    errors[k] = str(batch["error"][sel][0])
                    continue
                description = description or str(batch["description"][sel][0])
                lo, hi = bounds[k]
                buf = pending.setdefault(k, ShardBuffer(hi - lo))
                if buf.add(batch["row"][sel], batch["vector"][sel], batch["failed"][sel]):
                    failed = {ids[lo + r]: reason for r, reason in sorted(buf.failed.items())}
                    if failed:
                        log.warning("shard %d: %d row(s) could not be read and were recorded as failed", k, len(failed))
                    store.write_shard(k, ids[lo:hi], buf.vectors, failed, info={**(info or {}), "description": description})
                    del pending[k]
                    written += 1
                    bar.update(hi - lo)
    finally:
        bar.close()
        ctx.enable_progress_bars = ray_bars
    if errors:
        first = min(errors)
        lo, hi = bounds[first]
        raise ShardError(
            f"{len(errors)} shard(s) failed on the Ray actors; shard {first} (table rows {lo}-{hi - 1}, row numbers "
            f"below count from {lo}): {errors[first]} [{written} of {len(shards)} shard(s) of this run were written "
            f"to {store.folder}; running again resumes with the missing ones]")
    return description


class ShardError(RuntimeError):
    """An extractor error on the Ray actors (the original's type and text); the other shards were written."""
