"""The embedding store: one folder per (dataset, modality, extractor), that cannot lie or jam.

Layout::

    <embeddings root>/<dataset key>/<modality>/<extractor slug>/
        manifest.json          extractor id + options, input fingerprint, versions, dim, count, failures,
                               precision, and the checksum of every consolidated file and block
        shards/000003.npy      float32 [rows, D] for rows [3*S, 4*S) of the dataset (while extracting)
        shards/000003.ids.npy  the ids of those rows;  000003.failed.json  rows that could not be read
        shards/000003.meta.json  rows, width, checksums of the three files, who wrote it, precision
        locks/*.lock           who is writing what (pid, host, start time), see :mod:`utils.store.locks`
        vectors.npy, ids.npy   the consolidated result, memory-mapped on read

Guarantees:

- Atomic: every file is written to a temporary name, fsynced and renamed; a shard's vector file is renamed
  last, so its presence means the shard is whole. A killed run resumes and gives bit-identical vectors.
- One writer per shard (:meth:`EmbeddingStore.claim`) and one merger per store, across processes and
  hosts; a lock whose owner is gone is taken over at once. A job that finds the work done reuses it.
- Checked: each file carries an XXH3-128 checksum. The header and size of every file are checked on each
  reuse; the full check (every byte, and NaN rows) runs when the whole store is read anyway
  (:meth:`aligned` over most rows), at the merge (every shard), and on demand (:meth:`verify`).
  A damaged shard is recomputed; a damaged block of a finished store names the shards to recompute
  (``embed(..., verify="full")`` does it); anything else names the file and the fix.
- The merge streams shards into ``vectors.npy`` with plain writes (no memory map) after checking free
  space; a full disk is reported as "no space left on DEVICE for PATH: free N MB and run again".
- A store made for another extractor, extractor options or input set is refused, never mixed
  (``overwrite=True`` starts it afresh); so is a store written in another format version (an older one is
  not upgraded: rebuild it). The precision a store was computed in is recorded and shown, not compared: a
  bf16 store made on a GPU is reused on a laptop.
- No pickle anywhere: ``.npy`` files are read with ``allow_pickle=False``.

Modules, one concern each (every name below stays importable from ``utils.store``):

- :mod:`~utils.store.base`      errors, the fault hook of the reliability probe
- :mod:`~utils.store.files`     checksums, ``.npy`` headers, atomic writes, "no space left" messages
- :mod:`~utils.store.locks`     owner-aware lock files
- :mod:`~utils.store.identity`  :class:`StoreFolder`: paths, manifest, locks, creating the store exclusively
  and refusing one made for something else; ``inputs.npy`` (reuse by id)
- :mod:`~utils.store.shards`    :class:`StoreShards`: claiming, writing, checking and removing shards
- :mod:`~utils.store.merge`     :class:`StoreMerge`: shards into ``vectors.npy`` + ``ids.npy``; repairs
- :mod:`~utils.store.read`      :class:`StoreRead`: ``read``, ``aligned`` / ``lookup``, ``verify``
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

from .base import (
    DamagedShardsError,
    IncompleteStoreError,
    StoreBusyError,
    StoreIntegrityError,
    StoreMismatchError,
    fault_point,
)
from .files import (  # noqa: F401 -- kept importable from here as before; their home is files / locks
    CHECKSUM,
    StoreSpaceError,
    check_npy,
    checksum,
    commit,
    create_exclusive,
    hasher,
    is_space_error,
    load_npy_bytes,
    npy_header_of,
    npy_nbytes,
    npy_writer,
    read_json_object,
    require_space,
    space_error,
    write_file,
    write_temp,
)
from .identity import FORMAT_VERSION, IDENTITY_FIELDS, StoreFolder, check_format, identity, identity_digest
from .locks import Lock, clear_stale, describe_owner, live_locks, try_acquire  # noqa: F401
from .merge import StoreMerge
from .read import AlignedVectors, StoreRead, StoreReport
from .shards import StoreShards

__all__ = [
    "EmbeddingStore", "IncompleteStoreError", "StoreBusyError", "StoreIntegrityError", "DamagedShardsError",
    "StoreMismatchError", "StoreReport", "StoreSpaceError", "store_for", "FAULT_HOOK", "fault_point",
    "AlignedVectors", "FORMAT_VERSION", "IDENTITY_FIELDS", "identity", "identity_digest", "check_format",
    "StoreFolder", "StoreShards", "StoreMerge", "StoreRead",
]

# Fault injection for the reliability probe (benchmarks/faults.py): called with a stage name at every point
# where a crash could leave something behind (fault_point reads it here at each call). None in normal use.
FAULT_HOOK: Optional[Callable[[str], None]] = None


class EmbeddingStore(StoreMerge, StoreRead):
    """One store folder. Use :func:`utils.embed.embed` to fill it; :meth:`read` / :meth:`aligned` to use it.

    The API a parallel engine needs: :meth:`open`, :meth:`claim`, :meth:`has_shard`, :meth:`write_shard`,
    :meth:`finalize`, :meth:`wait_complete`, then :meth:`read` / :meth:`aligned` (or :meth:`lookup`, which
    also returns the ids whose stored vector is NaN).

    A thin facade over one class per concern, layered by inheritance rather than composition: every
    part works on the same folder and manifest, and the callers (``embed``, ``imported``, ``distributed``,
    the probe) use one object with one flat API. :class:`StoreFolder` (``identity.py``) is the base: paths,
    manifest, locks, ``open``, ``inputs``. :class:`StoreShards` (``shards.py``) builds on it, and
    :class:`StoreMerge` (``merge.py``) on that (the merge checks and removes shards); :class:`StoreRead`
    (``read.py``) needs only the base. No part reaches another's private methods.
    """

    def __repr__(self) -> str:
        try:
            state = "complete" if self.is_complete() else "incomplete"
        except StoreIntegrityError:
            state = "damaged"
        return f"EmbeddingStore({str(self.folder)!r}, {state})"


def store_for(root: os.PathLike, dataset_key: str, modality: str, extractor_slug: str) -> EmbeddingStore:
    """The store of one (dataset, modality, extractor) under the embeddings ``root``."""
    return EmbeddingStore(Path(root) / dataset_key / modality / extractor_slug)
