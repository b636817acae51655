"""Shards: claiming one, writing it atomically, checking it, removing a damaged one.

A shard is four files under ``shards/``: ``000003.ids.npy`` (its ids), ``000003.failed.json`` (rows that
could not be read), ``000003.meta.json`` (rows, width, the checksum of the three others, the identity
it was computed for, who wrote it) and ``000003.npy`` (float32 ``[rows, D]``), renamed into place last:
its presence means the shard is whole.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..io import to_jsonable
from .base import StoreMismatchError, fault_point, now
from .files import (
    CHECKSUM,
    check_npy,
    commit,
    file_digest,
    is_space_error,
    npy_nbytes,
    npy_writer,
    read_json_object,
    require_space,
    space_error,
    write_file,
    write_temp,
)
from .identity import StoreFolder
from .locks import Lock, live_locks

log = logging.getLogger(__package__)

SHARD_SUFFIXES = (".npy", ".meta.json", ".ids.npy", ".failed.json")


class StoreShards(StoreFolder):
    """The shard half of :class:`~utils.store.EmbeddingStore`: what one job of a parallel extraction calls."""

    def claim(self, k: int) -> Optional[Lock]:
        """The right to write shard ``k`` (a :class:`~utils.store.locks.Lock`), or None while another live job
        writes it. Use as ``with store.claim(k) as lock: ...`` after checking it is not None."""
        return self.lock(f"shard-{k:06d}")

    def shard_owner(self, k: int) -> Optional[Dict[str, Any]]:
        """Who writes shard ``k`` now (None when nobody)."""
        return live_locks(self.lock_dir).get(f"shard-{k:06d}.lock")

    def shard_file(self, k: int, suffix: str) -> Path:
        """The file of shard ``k`` with ``suffix`` (one of ``SHARD_SUFFIXES``)."""
        return self.shard_dir / f"{k:06d}{suffix}"

    def shard_meta(self, k: int) -> Dict[str, Any]:
        """Shard ``k``'s ``meta.json`` (rows, dim, the size and checksum of each file, identity, writer)."""
        return read_json_object(self.shard_file(k, ".meta.json"))

    def missing_shards(self, n_shards: int) -> List[int]:
        """Shards among ``range(n_shards)`` whose files are not written (empty once the store is finished)."""
        if self.is_complete():
            return []
        return [k for k in range(n_shards) if not self.shard_file(k, ".npy").is_file()]

    def shard_sound(self, k: int) -> bool:
        """Shard ``k`` is written and passes the header/size check (or the store is finished)."""
        if self.is_complete():
            return True
        return self.shard_file(k, ".npy").is_file() and self.check_shard(k) is None

    def has_shard(self, k: int) -> bool:
        """Shard ``k`` is written (or the store is finished, so every shard is in ``vectors.npy``)."""
        return self.shard_file(k, ".npy").is_file() or self.is_complete()

    def write_shard(self, k: int, ids: Sequence[str], vectors: np.ndarray, failed: Dict[str, str],
                    info: Optional[Dict[str, Any]] = None) -> None:
        """Write shard ``k`` atomically: ids, failures, checksums, then the vector file (its presence marks it done).

        ``failed``: id -> reason for rows that could not be read (their vectors are ignored). Every other
        row must be finite. ``info`` (optional): ``precision``, ``description`` recorded with the shard.
        A finished store is never written to (the call does nothing).
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = [str(i) for i in ids]
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise ValueError(f"shard {k}: {vectors.shape} vectors for {len(ids)} ids (expected [{len(ids)}, D])")
        bad = [ids[i] for i in np.flatnonzero(~np.isfinite(vectors).all(axis=1)) if ids[i] not in failed]
        if bad:
            raise ValueError(f"shard {k}: vectors of {len(bad)} id(s) are NaN/inf ({bad[:5]}); record them in "
                             "`failed` with the reason, or fix the extractor")
        if self.is_complete():
            log.info("%s is complete; shard %d is not written again", self.folder, k)
            return
        ids_arr = np.asarray(ids, dtype=str) if ids else np.zeros(0, dtype="<U1")
        failed_text = json.dumps(to_jsonable(failed), sort_keys=True).encode()
        need = npy_nbytes(vectors) + npy_nbytes(ids_arr) + len(failed_text) + 4096
        require_space(self.shard_dir, need)
        try:
            self._write_shard_files(k, ids, ids_arr, vectors, failed_text, info)
        except OSError as e:
            if is_space_error(e):
                raise space_error(self.shard_file(k, ".npy"), need) from None
            raise
        fault_point("shard.done")

    def _write_shard_files(self, k: int, ids: List[str], ids_arr: np.ndarray, vectors: np.ndarray, failed_text: bytes,
                           info: Optional[Dict[str, Any]]) -> None:
        files: Dict[str, List[Any]] = {}
        files[".ids.npy"] = list(write_file(self.shard_file(k, ".ids.npy"), npy_writer(ids_arr)))
        fault_point("shard.ids")
        files[".failed.json"] = list(write_file(self.shard_file(k, ".failed.json"), lambda f: f.write(failed_text)))
        tmp, size, digest = write_temp(self.shard_file(k, ".npy"), npy_writer(vectors))
        files[".npy"] = [size, digest]
        try:
            stamp = self.job_identity or self.stored_identity()
            if stamp != self.stored_identity():
                raise StoreMismatchError(
                    f"{self.folder} was recreated by another job for other inputs or options while this one was "
                    f"computing shard {k}; its vectors are not written there. Run again (or use another folder).")
            meta = {"shard": k, "rows": len(ids), "dim": int(vectors.shape[1]), "files": files, "checksum": CHECKSUM,
                    "identity": stamp, "written": now(), "host": os.uname().nodename, "pid": os.getpid(),
                    **to_jsonable(info or {})}
            text = json.dumps(meta, sort_keys=True).encode()
            write_file(self.shard_file(k, ".meta.json"), lambda f: f.write(text))
            fault_point("shard.meta")
            commit(tmp, self.shard_file(k, ".npy"))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def check_shard(self, k: int, full: bool = False) -> Optional[str]:
        """What is wrong with shard ``k`` (header and sizes; every byte with ``full``), or None when it is sound."""
        try:
            meta = self.shard_meta(k)
            files, rows, dim = meta["files"], int(meta["rows"]), int(meta["dim"])
        except FileNotFoundError:
            return f"{self.shard_file(k, '.meta.json')} is missing (no checksums)"
        except (ValueError, KeyError, TypeError) as e:
            return f"{self.shard_file(k, '.meta.json')} is damaged ({e})"
        if meta.get("identity") != self.stored_identity():
            return f"shard {k} was computed for other inputs or another extractor"
        if meta.get("shard", k) != k:  # another shard's files copied over this one's: their checksums agree
            return f"{self.shard_file(k, '.meta.json')} belongs to shard {meta.get('shard')!r} (a copy of its files)"
        for suffix, shape, dtype in ((".npy", (rows, dim), np.float32), (".ids.npy", (rows,), "U")):
            problem = check_npy(self.shard_file(k, suffix), shape, dtype, files[suffix][0])
            if problem:
                return f"{self.shard_file(k, suffix)}: {problem}"
        p = self.shard_file(k, ".failed.json")
        if not p.is_file() or p.stat().st_size != files[".failed.json"][0]:
            return f"{p} is missing or has another size than recorded"
        if full:
            for suffix in (".npy", ".ids.npy", ".failed.json"):
                if file_digest(self.shard_file(k, suffix)) != files[suffix][1]:
                    return f"{self.shard_file(k, suffix)} does not match its checksum (changed after it was written)"
        return None

    def remove_shard(self, k: int, reason: str = "") -> None:
        """Delete shard ``k``'s files (a damaged shard: the next run recomputes it)."""
        if reason:
            log.warning("%s: shard %d is damaged (%s); it will be recomputed", self.folder, k, reason)
        for suffix in SHARD_SUFFIXES:
            self.shard_file(k, suffix).unlink(missing_ok=True)
