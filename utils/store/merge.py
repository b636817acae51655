"""Merging: every shard checked and streamed into ``vectors.npy`` + ``ids.npy``, then the store marked complete;
and the repairs of a finished store (a block rewritten in place, or the consolidated files discarded).

One merger per store (the ``store`` lock); the others wait (:meth:`StoreMerge.wait_complete`) or take over
when the merger disappears. The merge writes with plain writes (no memory map, so a full disk is an
error, never a SIGBUS) after checking free space.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from typing import Any, Dict, List, Sequence

import numpy as np

from .base import DamagedShardsError, IncompleteStoreError, StoreIntegrityError, fault_point, now
from .files import (
    CHECKSUM,
    checksum,
    commit,
    is_space_error,
    load_npy_bytes,
    npy_header_of,
    npy_nbytes,
    npy_writer,
    require_space,
    space_error,
    write_temp,
)
from .locks import clear_stale, describe_owner, live_locks
from .shards import StoreShards

log = logging.getLogger(__package__)


class StoreMerge(StoreShards):
    """The merge and repair half of :class:`~utils.store.EmbeddingStore`."""

    def finalize(self, n_shards: int, keep_shards: bool = False) -> bool:
        """Join all shards into ``vectors.npy`` + ``ids.npy`` and mark the store complete.

        Returns True when the store is complete (this call or an earlier one finished it) and False when
        another live job is merging it right now (:meth:`wait_complete` waits for it). Every shard is checked
        byte for byte while it is copied; damaged ones are deleted and :class:`DamagedShardsError` names them
        (run again to recompute them). Rows that failed are left out of ``vectors.npy`` and listed in the
        manifest under ``failed``. A full disk raises :class:`StoreSpaceError` and leaves nothing behind.
        """
        if self.is_complete():
            return True
        missing = [k for k in range(n_shards) if not self.shard_file(k, ".npy").is_file()]
        if missing:
            raise IncompleteStoreError(f"{self.folder}: shards {missing[:10]} are not written yet")
        lock = self.lock("store")
        if lock is None:
            log.info("%s is being merged by another job", self.folder)
            return False
        with lock:
            fault_point("merge.locked")
            if self.is_complete():
                return True
            for p in self.folder.glob(".*.tmp"):  # left by a merge that was killed (we hold the store lock)
                p.unlink(missing_ok=True)
            self._merge(n_shards, keep_shards)
        clear_stale(self.lock_dir)
        return True

    def wait_complete(self, n_shards: int, poll: float = 0.5, log_every: float = 30.0) -> None:
        """Wait while another job merges the store; merge it ourselves if that job disappears."""
        last = time.monotonic()
        while not self.finalize(n_shards):
            if time.monotonic() - last > log_every:
                owner = live_locks(self.lock_dir).get("store.lock")
                log.info("waiting for %s to finish merging %s", describe_owner(owner), self.folder)
                last = time.monotonic()
            time.sleep(poll)

    def _merge(self, n_shards: int, keep_shards: bool) -> None:
        damaged = {k: p for k in range(n_shards) if (p := self.check_shard(k)) is not None}
        if damaged:
            self._drop_damaged(damaged)
        metas = [self.shard_meta(k) for k in range(n_shards)]
        dims = {int(m["dim"]) for m in metas if int(m["rows"])}
        if len(dims) > 1:
            raise StoreIntegrityError(f"{self.folder}: shards have different widths {sorted(dims)}; run again with "
                                      "overwrite=True to recompute this store", rebuild=True)
        dim = dims.pop() if dims else 0
        failed: Dict[str, str] = {}
        failed_by_shard: List[Dict[str, str]] = []
        for k, meta in enumerate(metas):
            data = self.shard_file(k, ".failed.json").read_bytes()
            if checksum(data) != meta["files"][".failed.json"][1]:
                damaged[k] = "failed.json does not match its checksum"
                failed_by_shard.append({})
                continue
            f = json.loads(data)
            failed_by_shard.append(f)
            failed.update(f)
        if damaged:
            self._drop_damaged(damaged)
        n_ok = sum(int(m["rows"]) - len(f) for m, f in zip(metas, failed_by_shard))
        tmp_vec = self.folder / ".vectors.npy.tmp"
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False, "shape": (n_ok, dim)}
        need = n_ok * dim * 4 + 4096
        require_space(self.folder, need + n_ok * 64)
        blocks: List[Dict[str, Any]] = []
        all_ids: List[str] = []
        owner_of: Dict[str, int] = {}  # id -> the shard that holds it: an id in two shards is a copied shard
        try:
            with open(tmp_vec, "wb") as out:
                np.lib.format.write_array_header_1_0(out, header)
                row = 0
                for k, meta in enumerate(metas):
                    data = self.shard_file(k, ".npy").read_bytes()
                    ids_data = self.shard_file(k, ".ids.npy").read_bytes()
                    if checksum(data) != meta["files"][".npy"][1] or checksum(ids_data) != meta["files"][".ids.npy"][1]:
                        damaged[k] = "its bytes do not match the checksums"
                        continue
                    if damaged:  # keep checking the others, write nothing more
                        continue
                    vec = load_npy_bytes(data)
                    ids = load_npy_bytes(ids_data).tolist()
                    seen_here = [i for i in ids if i in owner_of]
                    if seen_here or len(set(ids)) != len(ids):
                        other = owner_of.get(seen_here[0]) if seen_here else k
                        reason = f"id {seen_here[0] if seen_here else ids[0]!r} is also in shard {other}"
                        damaged[k] = reason
                        if other != k:
                            damaged[other] = reason
                        continue
                    owner_of.update((i, k) for i in ids)
                    keep = np.array([i not in failed_by_shard[k] for i in ids], dtype=bool)
                    chunk = np.ascontiguousarray(vec[keep]).tobytes()
                    out.write(chunk)
                    blocks.append({"shard": k, "start": row, "rows": int(keep.sum()), CHECKSUM: checksum(chunk)})
                    row += int(keep.sum())
                    all_ids.extend(i for i, ok in zip(ids, keep) if ok)
                    fault_point("merge.block")
                out.flush()
                os.fsync(out.fileno())
            if damaged:
                tmp_vec.unlink(missing_ok=True)
                self._drop_damaged(damaged)
            fault_point("merge.written")
            ids_arr = np.asarray(all_ids, dtype=str) if all_ids else np.zeros(0, dtype="<U1")
            ids_tmp, ids_size, ids_digest = write_temp(self.folder / "ids.npy", npy_writer(ids_arr), npy_nbytes(ids_arr))
        except BaseException as e:
            tmp_vec.unlink(missing_ok=True)
            if is_space_error(e):
                raise space_error(self.folder / "vectors.npy", need) from None
            raise
        vec_size = tmp_vec.stat().st_size
        commit(tmp_vec, self.folder / "vectors.npy")
        fault_point("merge.vectors_in_place")
        commit(ids_tmp, self.folder / "ids.npy")
        fault_point("merge.ids_in_place")
        precisions = sorted({str(m["precision"]) for m in metas if m.get("precision")})
        descriptions = [m["description"] for m in metas if m.get("description")]
        manifest = self.manifest()
        manifest.update(
            complete=True, dim=dim, dtype="float32", n_vectors=n_ok, failed=failed, finished=now(), checksum=CHECKSUM,
            files={"vectors.npy": {"size": vec_size}, "ids.npy": {"size": ids_size, CHECKSUM: ids_digest}}, blocks=blocks,
        )
        if precisions:
            manifest["precision"] = ", ".join(precisions)
        if descriptions:
            manifest["description"] = descriptions[-1]
        self.write_manifest(manifest)
        fault_point("merge.manifest")
        if not keep_shards:
            for i, p in enumerate(sorted(self.shard_dir.iterdir())):
                p.unlink(missing_ok=True)
                if i == 0:
                    fault_point("merge.removing")
            shutil.rmtree(self.shard_dir, ignore_errors=True)

    def _drop_damaged(self, damaged: Dict[int, str]) -> None:
        for k, reason in damaged.items():
            self.remove_shard(k, reason)
        shown = "; ".join(f"shard {k}: {r}" for k, r in list(damaged.items())[:5])
        raise DamagedShardsError(
            f"{self.folder}: {len(damaged)} shard(s) failed their check and were deleted ({shown}). Run the "
            "extraction again: it recomputes them.", shards=sorted(damaged),
        )

    # --------------------------------------------------------------------------- repairs
    def reset(self, reason: str) -> None:
        """Discard a finished store's consolidated files (kept shards stay) so that it is computed again."""
        with self.lock("store", wait=True):
            log.warning("%s: %s; recomputing it", self.folder, reason)
            m = self.manifest()
            for name in ("vectors.npy", "ids.npy"):
                (self.folder / name).unlink(missing_ok=True)
            for key in ("files", "blocks", "failed", "finished", "n_vectors", "dim", "dtype"):
                m.pop(key, None)
            m["complete"] = False
            self.write_manifest(m)

    def rewrite_block(self, k: int, ids: Sequence[str], vectors: np.ndarray, failed: Dict[str, str]) -> None:
        """Repair the rows of shard ``k`` inside a finished ``vectors.npy`` with freshly computed ``vectors``.

        The kept ids must be exactly the stored ones; the block's checksum is updated when the new bytes
        differ (another device or precision), and the fix is logged.
        """
        with self.lock("store", wait=True):
            m = self.manifest()
            block = next((b for b in m.get("blocks") or [] if b.get("shard") == k), None)
            if block is None:
                raise StoreIntegrityError(f"{self.folder}: no block records shard {k}; recompute with overwrite=True",
                                          rebuild=True)
            ids = [str(i) for i in ids]
            keep = np.array([i not in failed for i in ids], dtype=bool)
            new = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32)[keep])
            lo, rows, dim = int(block["start"]), int(block["rows"]), int(m["dim"])
            stored = np.load(self.folder / "ids.npy", mmap_mode="r", allow_pickle=False)[lo : lo + rows].tolist()
            kept = [i for i, ok in zip(ids, keep) if ok]
            if kept != stored or new.shape != (rows, dim):
                raise StoreIntegrityError(
                    f"{self.folder}: recomputed shard {k} has other rows than the stored block ({len(kept)} vs {rows}); "
                    "run again with overwrite=True to recompute the whole store.", rebuild=True)
            data = new.tobytes()
            with open(self.folder / "vectors.npy", "r+b") as f:
                _, _, offset = npy_header_of(f)
                f.seek(offset + lo * dim * 4)
                f.write(data)
                fault_point("repair.written")
                f.flush()
                os.fsync(f.fileno())
            digest = checksum(data)
            if digest != block[CHECKSUM]:
                log.warning("%s: shard %d recomputed with different bytes (another device or precision?); its "
                            "checksum is updated", self.folder, k)
                block[CHECKSUM] = digest
                self.write_manifest(m)
            log.warning("%s: repaired the rows of shard %d in vectors.npy", self.folder, k)
