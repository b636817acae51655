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
  (``overwrite=True`` starts it afresh). The precision a store was computed in is recorded and shown,
  not compared: a bf16 store made on a GPU is reused on a laptop.
- No pickle anywhere: ``.npy`` files are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .files import (
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
from .locks import Lock, clear_stale, describe_owner, live_locks, try_acquire

log = logging.getLogger(__name__)

__all__ = [
    "EmbeddingStore", "IncompleteStoreError", "StoreBusyError", "StoreIntegrityError", "DamagedShardsError",
    "StoreMismatchError", "StoreReport", "StoreSpaceError", "store_for", "FAULT_HOOK", "fault_point",
]

FORMAT_VERSION = 2
# manifest fields that must match for a store to be reused (the extractor compared without its resolved precision)
IDENTITY_FIELDS = ("dataset", "modality", "extractor", "fingerprint", "count", "shard_size", "normalized")
LEGACY_BLOCK_ROWS = 4096  # block size of the checksums recorded for a store written before checksums existed

# Fault injection for the reliability probe (benchmarks/faults.py): called with a stage name at every point
# where a crash could leave something behind. None in normal use.
FAULT_HOOK: Optional[Callable[[str], None]] = None


def fault_point(stage: str) -> None:
    if FAULT_HOOK is not None:
        FAULT_HOOK(stage)


class StoreMismatchError(RuntimeError):
    """The folder holds embeddings made from other inputs or by another extractor."""


class IncompleteStoreError(RuntimeError):
    """Reading a store whose extraction has not finished."""


class StoreBusyError(RuntimeError):
    """Another live job holds the lock this operation needs."""


class StoreIntegrityError(RuntimeError):
    """A file of the store is damaged; the message names it and the fix. ``shards``: shards to recompute."""

    def __init__(self, message: str, shards: Sequence[int] = (), rebuild: bool = False):
        super().__init__(message)
        self.shards, self.rebuild = list(shards), rebuild


class DamagedShardsError(StoreIntegrityError):
    """Shards failed their check at the merge; they were deleted so that the next run recomputes them."""


@dataclass
class StoreReport:
    """What :meth:`EmbeddingStore.verify` found. ``ok`` when nothing is wrong."""

    folder: str
    full: bool  # every byte checked (else header and size only)
    problems: List[str] = field(default_factory=list)  # one line each, naming the file
    damaged_shards: List[int] = field(default_factory=list)  # blocks whose bytes changed, by shard
    rebuild: bool = False  # damage only a full recompute fixes (header, size, ids, manifest)
    nan_ids: List[str] = field(default_factory=list)  # stored rows that are NaN / inf (reported, not a defect of the file)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        nan = f"; {len(self.nan_ids)} stored row(s) are NaN/inf (ids {self.nan_ids[:5]})" if self.nan_ids else ""
        if self.ok:
            return f"{self.folder}: ok ({'every byte' if self.full else 'headers and sizes'} checked){nan}"
        return f"{self.folder}:\n- " + "\n- ".join(self.problems) + nan


def identity(manifest: Dict[str, Any]) -> Dict[str, Any]:
    """The fields that decide whether a store may be reused (precision is recorded, not compared)."""
    out = {k: manifest.get(k) for k in IDENTITY_FIELDS}
    if isinstance(out["extractor"], dict):
        out["extractor"] = {k: v for k, v in out["extractor"].items() if k != "precision_resolved"}
    return out


def _only_weights_differ(a: Any, b: Any) -> bool:
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return False
    strip = lambda d: {k: v for k, v in d.items() if k != "weights"}  # noqa: E731
    return strip(a) == strip(b) and a.get("weights") != b.get("weights")


def identity_digest(manifest: Dict[str, Any]) -> str:
    return checksum(json.dumps(identity(manifest), sort_keys=True, default=str).encode())


class EmbeddingStore:
    """One store folder. Use :func:`utils.embed.embed` to fill it; :meth:`read` / :meth:`aligned` to use it.

    The API a parallel engine needs: :meth:`open`, :meth:`claim`, :meth:`has_shard`, :meth:`write_shard`,
    :meth:`finalize`, :meth:`wait_complete`, then :meth:`read` / :meth:`aligned`.
    """

    def __init__(self, folder: os.PathLike):
        self.folder = Path(folder)
        self.reused = False  # set by embed(): the vectors came from an earlier run
        self.nan_ids: List[str] = []  # stored rows found NaN by the last full read

    def __repr__(self) -> str:
        try:
            state = "complete" if self.is_complete() else "incomplete"
        except StoreIntegrityError:
            state = "damaged"
        return f"EmbeddingStore({str(self.folder)!r}, {state})"

    # ------------------------------------------------------------------------------- manifest
    @property
    def manifest_path(self) -> Path:
        return self.folder / "manifest.json"

    @property
    def shard_dir(self) -> Path:
        return self.folder / "shards"

    @property
    def lock_dir(self) -> Path:
        return self.folder / "locks"

    def manifest(self) -> Dict[str, Any]:
        try:
            m = read_json_object(self.manifest_path)
        except FileNotFoundError:
            raise IncompleteStoreError(f"no embeddings at {self.folder} (no manifest.json)") from None
        except ValueError as e:
            raise StoreIntegrityError(
                f"{self.manifest_path} is damaged ({e}); the vectors beside it cannot be checked. Restore the file, "
                f"or recompute this store: run again with overwrite=True (or delete the folder: rm -r '{self.folder}').",
                rebuild=True,
            ) from None
        return m

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def is_complete(self) -> bool:
        return self.exists() and bool(self.manifest().get("complete")) and (self.folder / "vectors.npy").is_file()

    @staticmethod
    def _manifest_bytes(m: Dict[str, Any]) -> bytes:
        return json.dumps(_jsonable(m), indent=2, sort_keys=True, allow_nan=False).encode()

    def _write_manifest(self, m: Dict[str, Any]) -> None:
        text = self._manifest_bytes(m)
        try:
            write_file(self.manifest_path, lambda f: f.write(text), expected=len(text))
        except OSError as e:
            if is_space_error(e):
                raise space_error(self.manifest_path, len(text)) from None
            raise

    def open(self, header: Dict[str, Any], overwrite: bool = False) -> Dict[str, Any]:
        """Create the store with ``header`` or check that an existing one was made for the same thing.

        ``header["fingerprint_legacy"]`` (optional, not stored) is the input fingerprint as an older version
        computed it: a store it wrote is accepted when that matches, and upgraded (checksums recorded).
        """
        header = dict(header)
        legacy_fp = header.pop("fingerprint_legacy", None)  # a value, or a function computing it (only when needed)
        header = {**header, "format": FORMAT_VERSION}
        if overwrite and self.folder.exists():
            busy = live_locks(self.lock_dir)
            if busy:
                name, owner = next(iter(busy.items()))
                raise StoreBusyError(
                    f"{self.folder} is being filled by {describe_owner(owner)} ({name}); overwrite=True would destroy "
                    "its work. Wait for it or stop it first."
                )
            shutil.rmtree(self.folder)
        if not self.exists():
            if self.folder.exists() and ((self.folder / "vectors.npy").exists() or self.shard_dir.exists()):
                raise StoreIntegrityError(
                    f"{self.manifest_path} is missing but vectors are present: they cannot be checked. Restore "
                    "manifest.json, or run again with overwrite=True to recompute this store.", rebuild=True,
                )
            self.folder.mkdir(parents=True, exist_ok=True)
            text = self._manifest_bytes({**header, "complete": False, "created": _now()})
            if create_exclusive(self.manifest_path, text):  # another job that also found no manifest loses here
                return self._opened(self.manifest())
            log.info("%s: another job created this store a moment ago; checking it was made for the same thing",
                     self.folder)
        current = self.manifest()
        if int(current.get("format", 1)) > FORMAT_VERSION:
            raise StoreMismatchError(f"{self.folder} was written by a newer version (format {current.get('format')}); "
                                     "update the package or use another embeddings folder.")
        legacy = int(current.get("format", 1)) < 2
        want = dict(header)
        if legacy and legacy_fp is not None:
            want["fingerprint"] = legacy_fp() if callable(legacy_fp) else legacy_fp
        have_id, want_id = identity(current), identity(want)
        diffs = [k for k in IDENTITY_FIELDS if have_id[k] != want_id[k]]
        if diffs:
            raise StoreMismatchError(self._mismatch_message(current, header, diffs))
        if legacy:
            self._upgrade(header)
        elif self.is_complete():
            self._tidy()
        return self._opened(self.manifest())

    def _opened(self, m: Dict[str, Any]) -> Dict[str, Any]:
        """Remember the identity this job opened the store under: its shards are stamped with it (not with
        whatever the manifest says when they are written), so a store recreated under a running job never
        takes its vectors as its own."""
        self._job_identity = identity_digest(m)
        return m

    def _tidy(self) -> None:
        """Remove what killed jobs left in a finished store: their lock files, temporary files, shards."""
        clear_stale(self.lock_dir)
        if live_locks(self.lock_dir):
            return
        for p in self.folder.glob(".*.tmp"):
            p.unlink(missing_ok=True)
        if self.shard_dir.exists():  # a merge killed while removing its shards
            shutil.rmtree(self.shard_dir, ignore_errors=True)

    def _mismatch_message(self, current: Dict[str, Any], header: Dict[str, Any], diffs: List[str]) -> str:
        have_id, want_id = identity(current), identity(header)
        detail = "; ".join(f"{k}: stored {have_id[k]!r} vs requested {want_id[k]!r}" for k in diffs
                           if k != "fingerprint" and not (k == "extractor" and _only_weights_differ(have_id[k], want_id[k])))
        if "extractor" in diffs and _only_weights_differ(have_id["extractor"], want_id["extractor"]):
            detail = "; ".join(x for x in (detail, (
                "extractor: the same model, but its local weights changed since these vectors were made (a file of "
                "the model folder has another size or modification time, or other bytes with fingerprint='content')"))
                if x)
        hint = ""
        if "fingerprint" in diffs:
            a, b = current.get("fingerprint_detail") or {}, header.get("fingerprint_detail") or {}
            if a.get("mode") and b.get("mode") and a.get("mode") != b.get("mode"):
                why = f"it was fingerprinted by {a['mode']}, this run asks for {b['mode']}"
            elif a.get("mode") == "content" and a.get("without_times") and a.get("without_times") == b.get("without_times"):
                why = "files with the same names and sizes now hold other bytes"
            elif a.get("without_times") and a.get("without_times") == b.get("without_times"):
                why = ("the same files with the same sizes, but their modification times changed: files replaced in "
                       "place, or copied without keeping times (cp -p and rsync -t keep them), or touched; "
                       "fingerprint='content' compares the bytes instead and survives copies")
            else:
                why = "the rows, texts or media files differ"
            hint = f"fingerprint: the inputs differ ({why})"
            detail = "; ".join(x for x in (detail, hint) if x)
        return (f"{self.folder} holds embeddings of something else ({detail}). They will not be mixed: use another "
                "embeddings folder, or pass overwrite=True to recompute.")

    # ---------------------------------------------------------------------------------- locks
    def lock(self, name: str = "store", wait: bool = False, timeout: Optional[float] = None,
             poll: float = 0.25) -> Optional[Lock]:
        """Take the store-wide (``"store"``) or a named lock; None when a live job holds it (``wait=False``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            lock, owner = try_acquire(self.lock_dir / f"{name}.lock", purpose=f"{name} of {self.folder}")
            if lock is not None or not wait:
                return lock
            if deadline is not None and time.monotonic() > deadline:
                raise StoreBusyError(f"{self.folder}: {name} is held by {describe_owner(owner)}; try again later")
            time.sleep(poll)

    def claim(self, k: int) -> Optional[Lock]:
        """The right to write shard ``k`` (a :class:`~utils.store.locks.Lock`), or None while another live job
        writes it. Use as ``with store.claim(k) as lock: ...`` after checking it is not None."""
        return self.lock(f"shard-{k:06d}")

    def shard_owner(self, k: int) -> Optional[Dict[str, Any]]:
        """Who writes shard ``k`` now (None when nobody)."""
        return live_locks(self.lock_dir).get(f"shard-{k:06d}.lock")

    # ---------------------------------------------------------------------------------- shards
    def _shard_file(self, k: int, suffix: str) -> Path:
        return self.shard_dir / f"{k:06d}{suffix}"

    def missing_shards(self, n_shards: int) -> List[int]:
        """Shards among ``range(n_shards)`` whose files are not written (empty once the store is finished)."""
        if self.is_complete():
            return []
        return [k for k in range(n_shards) if not self._shard_file(k, ".npy").is_file()]

    def shard_sound(self, k: int) -> bool:
        """Shard ``k`` is written and passes the header/size check (or the store is finished)."""
        if self.is_complete():
            return True
        return self._shard_file(k, ".npy").is_file() and self.check_shard(k) is None

    def has_shard(self, k: int) -> bool:
        """Shard ``k`` is written (or the store is finished, so every shard is in ``vectors.npy``)."""
        return self._shard_file(k, ".npy").is_file() or self.is_complete()

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
        failed_text = json.dumps(_jsonable(failed), sort_keys=True).encode()
        need = npy_nbytes(vectors) + npy_nbytes(ids_arr) + len(failed_text) + 4096
        require_space(self.shard_dir, need)
        try:
            self._write_shard_files(k, ids, ids_arr, vectors, failed_text, info)
        except OSError as e:
            if is_space_error(e):
                raise space_error(self._shard_file(k, ".npy"), need) from None
            raise
        fault_point("shard.done")

    def _write_shard_files(self, k: int, ids: List[str], ids_arr: np.ndarray, vectors: np.ndarray, failed_text: bytes,
                           info: Optional[Dict[str, Any]]) -> None:
        files: Dict[str, List[Any]] = {}
        files[".ids.npy"] = list(write_file(self._shard_file(k, ".ids.npy"), npy_writer(ids_arr)))
        fault_point("shard.ids")
        files[".failed.json"] = list(write_file(self._shard_file(k, ".failed.json"), lambda f: f.write(failed_text)))
        tmp, size, digest = write_temp(self._shard_file(k, ".npy"), npy_writer(vectors))
        files[".npy"] = [size, digest]
        try:
            stamp = getattr(self, "_job_identity", None) or self._identity()
            if stamp != self._identity():
                raise StoreMismatchError(
                    f"{self.folder} was recreated by another job for other inputs or options while this one was "
                    f"computing shard {k}; its vectors are not written there. Run again (or use another folder).")
            meta = {"shard": k, "rows": len(ids), "dim": int(vectors.shape[1]), "files": files, "checksum": CHECKSUM,
                    "identity": stamp, "written": _now(), "host": os.uname().nodename, "pid": os.getpid(),
                    **_jsonable(info or {})}
            text = json.dumps(meta, sort_keys=True).encode()
            write_file(self._shard_file(k, ".meta.json"), lambda f: f.write(text))
            fault_point("shard.meta")
            commit(tmp, self._shard_file(k, ".npy"))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _identity(self) -> str:
        return identity_digest(self.manifest())

    def _shard_meta(self, k: int) -> Dict[str, Any]:
        return read_json_object(self._shard_file(k, ".meta.json"))

    def check_shard(self, k: int, full: bool = False) -> Optional[str]:
        """What is wrong with shard ``k`` (header and sizes; every byte with ``full``), or None when it is sound."""
        try:
            meta = self._shard_meta(k)
            files, rows, dim = meta["files"], int(meta["rows"]), int(meta["dim"])
        except FileNotFoundError:
            return f"{self._shard_file(k, '.meta.json')} is missing (no checksums)"
        except (ValueError, KeyError, TypeError) as e:
            return f"{self._shard_file(k, '.meta.json')} is damaged ({e})"
        if meta.get("identity") != self._identity():
            return f"shard {k} was computed for other inputs or another extractor"
        if meta.get("shard", k) != k:  # another shard's files copied over this one's: their checksums agree
            return f"{self._shard_file(k, '.meta.json')} belongs to shard {meta.get('shard')!r} (a copy of its files)"
        for suffix, shape, dtype in ((".npy", (rows, dim), np.float32), (".ids.npy", (rows,), "U")):
            problem = check_npy(self._shard_file(k, suffix), shape, dtype, files[suffix][0])
            if problem:
                return f"{self._shard_file(k, suffix)}: {problem}"
        p = self._shard_file(k, ".failed.json")
        if not p.is_file() or p.stat().st_size != files[".failed.json"][0]:
            return f"{p} is missing or has another size than recorded"
        if full:
            for suffix in (".npy", ".ids.npy", ".failed.json"):
                if _file_digest(self._shard_file(k, suffix)) != files[suffix][1]:
                    return f"{self._shard_file(k, suffix)} does not match its checksum (changed after it was written)"
        return None

    def remove_shard(self, k: int, reason: str = "") -> None:
        """Delete shard ``k``'s files (a damaged shard: the next run recomputes it)."""
        if reason:
            log.warning("%s: shard %d is damaged (%s); it will be recomputed", self.folder, k, reason)
        for suffix in (".npy", ".meta.json", ".ids.npy", ".failed.json"):
            self._shard_file(k, suffix).unlink(missing_ok=True)

    # --------------------------------------------------------------------------------- merging
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
        missing = [k for k in range(n_shards) if not self._shard_file(k, ".npy").is_file()]
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

    def _merge(self, n_shards: int, keep_shards: bool) -> None:
        damaged = {k: p for k in range(n_shards) if (p := self.check_shard(k)) is not None}
        if damaged:
            self._drop_damaged(damaged)
        metas = [self._shard_meta(k) for k in range(n_shards)]
        dims = {int(m["dim"]) for m in metas if int(m["rows"])}
        if len(dims) > 1:
            raise StoreIntegrityError(f"{self.folder}: shards have different widths {sorted(dims)}; run again with "
                                      "overwrite=True to recompute this store", rebuild=True)
        dim = dims.pop() if dims else 0
        failed: Dict[str, str] = {}
        failed_by_shard: List[Dict[str, str]] = []
        for k, meta in enumerate(metas):
            data = self._shard_file(k, ".failed.json").read_bytes()
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
                    data = self._shard_file(k, ".npy").read_bytes()
                    ids_data = self._shard_file(k, ".ids.npy").read_bytes()
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
            complete=True, dim=dim, dtype="float32", n_vectors=n_ok, failed=failed, finished=_now(), checksum=CHECKSUM,
            files={"vectors.npy": {"size": vec_size}, "ids.npy": {"size": ids_size, CHECKSUM: ids_digest}}, blocks=blocks,
        )
        if precisions:
            manifest["precision"] = ", ".join(precisions)
        if descriptions:
            manifest["description"] = descriptions[-1]
        self._write_manifest(manifest)
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

    def wait_complete(self, n_shards: int, poll: float = 0.5, log_every: float = 30.0) -> None:
        """Wait while another job merges the store; merge it ourselves if that job disappears."""
        last = time.monotonic()
        while not self.finalize(n_shards):
            if time.monotonic() - last > log_every:
                owner = live_locks(self.lock_dir).get("store.lock")
                log.info("waiting for %s to finish merging %s", describe_owner(owner), self.folder)
                last = time.monotonic()
            time.sleep(poll)

    # --------------------------------------------------------------------------- checks, repair
    def verify(self, full: bool = True) -> StoreReport:
        """Check a finished store: headers and sizes; with ``full`` every byte against its checksum and NaN rows."""
        report = StoreReport(str(self.folder), full)
        try:
            m = self.manifest()
        except (IncompleteStoreError, StoreIntegrityError) as e:
            report.problems.append(str(e))
            report.rebuild = True
            return report
        if not m.get("complete"):
            report.problems.append(f"{self.folder}: extraction has not finished")
            return report
        n, dim = int(m.get("n_vectors", 0)), int(m.get("dim", 0))
        files = m.get("files") or {}
        vec, ids = self.folder / "vectors.npy", self.folder / "ids.npy"
        problem = check_npy(vec, (n, dim), np.float32, (files.get("vectors.npy") or {}).get("size"))
        if problem:
            report.problems.append(f"{vec}: {problem}")
        problem = check_npy(ids, (n,), "U", (files.get("ids.npy") or {}).get("size"))
        if problem:
            report.problems.append(f"{ids}: {problem}")
        if report.problems:
            report.rebuild = True
            return report
        if full:
            if _file_digest(ids) != (files.get("ids.npy") or {}).get(CHECKSUM):
                report.problems.append(f"{ids} does not match its checksum")
                report.rebuild = True
                return report
            have = np.load(ids, allow_pickle=False)
            uniq, counts = np.unique(have, return_counts=True)
            if (counts > 1).any():
                report.problems.append(f"{ids}: {int((counts > 1).sum())} id(s) appear more than once (first: "
                                       f"{str(uniq[counts > 1][0])!r}): a shard's files were copied over another's")
                report.rebuild = True
                return report
            bad, nan_rows = self._scan_blocks(m, lambda lo, hi, arr: None)
            self._report_blocks(report, m, bad)
            if nan_rows:
                report.nan_ids = [str(have[r]) for r in nan_rows]
        return report

    def _report_blocks(self, report: StoreReport, m: Dict[str, Any], bad: List[Dict[str, Any]]) -> None:
        if not bad:
            return
        shards = [b["shard"] for b in bad if b.get("shard") is not None]
        if len(shards) < len(bad):
            report.rebuild = True
        report.damaged_shards = shards
        rows = ", ".join(f"{b['start']}-{b['start'] + b['rows'] - 1}" for b in bad[:5])
        report.problems.append(f"{self.folder / 'vectors.npy'}: rows {rows} do not match their checksums "
                               f"(shard(s) {shards[:10] if shards else 'unknown'})")

    def _scan_blocks(self, m: Dict[str, Any], visit: Callable[[int, int, np.ndarray], None]
                     ) -> Tuple[List[Dict[str, Any]], List[int]]:
        """Read ``vectors.npy`` block by block: check each block's checksum, find NaN rows, call ``visit``."""
        dim = int(m["dim"])
        bad: List[Dict[str, Any]] = []
        nan_rows: List[int] = []
        with open(self.folder / "vectors.npy", "rb") as f:
            _, _, offset = npy_header_of(f)
            for b in m.get("blocks") or []:
                lo, rows = int(b["start"]), int(b["rows"])
                f.seek(offset + lo * dim * 4)
                data = f.read(rows * dim * 4)
                if checksum(data) != b[CHECKSUM]:
                    bad.append(b)
                    continue
                arr = np.frombuffer(data, dtype=np.float32).reshape(rows, dim)
                finite = np.isfinite(arr).all(axis=1)
                if not finite.all():
                    nan_rows.extend((lo + np.flatnonzero(~finite)).tolist())
                visit(lo, lo + rows, arr)
        return bad, nan_rows

    def reset(self, reason: str) -> None:
        """Discard a finished store's consolidated files (kept shards stay) so that it is computed again."""
        with self.lock("store", wait=True):
            log.warning("%s: %s; recomputing it", self.folder, reason)
            try:
                m = self.manifest()
            except StoreIntegrityError:
                raise
            for name in ("vectors.npy", "ids.npy"):
                (self.folder / name).unlink(missing_ok=True)
            for key in ("files", "blocks", "failed", "finished", "n_vectors", "dim", "dtype"):
                m.pop(key, None)
            m["complete"] = False
            self._write_manifest(m)

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
                self._write_manifest(m)
            log.warning("%s: repaired the rows of shard %d in vectors.npy", self.folder, k)

    def _upgrade(self, header: Dict[str, Any]) -> None:
        """Record checksums for a store written before they existed (format 1), once."""
        with self.lock("store", wait=True):
            m = self.manifest()
            if int(m.get("format", 1)) >= 2:
                return
            old_precision = (m.get("extractor") or {}).get("precision_resolved")
            if old_precision and not m.get("precision"):
                m["precision"] = old_precision
            m.update({k: v for k, v in header.items() if k in ("fingerprint", "fingerprint_detail", "extractor")})
            m["format"] = FORMAT_VERSION
            m["checksum"] = CHECKSUM
            if m.get("complete") and (self.folder / "vectors.npy").is_file():
                vec, ids = self.folder / "vectors.npy", self.folder / "ids.npy"
                n, dim = int(m.get("n_vectors", 0)), int(m.get("dim", 0))
                problem = check_npy(vec, (n, dim), np.float32) or check_npy(ids, (n,), "U")
                if problem:
                    raise StoreIntegrityError(f"{self.folder}: a store written by an older version is damaged "
                                              f"({problem}); run again with overwrite=True to recompute it", rebuild=True)
                blocks = []
                with open(vec, "rb") as f:
                    _, _, offset = npy_header_of(f)
                    for lo in range(0, n, LEGACY_BLOCK_ROWS):
                        rows = min(LEGACY_BLOCK_ROWS, n - lo)
                        blocks.append({"shard": None, "start": lo, "rows": rows, CHECKSUM: checksum(f.read(rows * dim * 4))})
                m["blocks"] = blocks
                m["files"] = {"vectors.npy": {"size": vec.stat().st_size},
                              "ids.npy": {"size": ids.stat().st_size, CHECKSUM: _file_digest(ids)}}
            self._write_manifest(m)
            if self.shard_dir.is_dir():
                for p in sorted(self.shard_dir.glob("*[0-9].npy")):
                    self._adopt_shard(int(p.name[:6]))
            log.info("%s: a store written by an older version: checksums recorded", self.folder)

    def _adopt_shard(self, k: int) -> None:
        """Record checksums for shard ``k`` written before they existed (its files are checked first)."""
        try:
            vec = np.load(self._shard_file(k, ".npy"), allow_pickle=False)
            ids = np.load(self._shard_file(k, ".ids.npy"), allow_pickle=False)
            json.loads(self._shard_file(k, ".failed.json").read_text())
            assert vec.ndim == 2 and vec.dtype == np.float32 and ids.shape == (vec.shape[0],)
        except Exception as e:  # noqa: BLE001 -- any defect: recompute the shard
            self.remove_shard(k, f"unreadable ({type(e).__name__})")
            return
        files = {s: [self._shard_file(k, s).stat().st_size, _file_digest(self._shard_file(k, s))]
                 for s in (".npy", ".ids.npy", ".failed.json")}
        meta = {"shard": k, "rows": int(vec.shape[0]), "dim": int(vec.shape[1]), "files": files, "checksum": CHECKSUM,
                "identity": self._identity(), "written": _now(), "adopted": True}
        text = json.dumps(meta, sort_keys=True).encode()
        write_file(self._shard_file(k, ".meta.json"), lambda f: f.write(text))

    # ------------------------------------------------------------------------------------ reading
    def _complete_manifest(self) -> Dict[str, Any]:
        m = self.manifest()
        if not (m.get("complete") and (self.folder / "vectors.npy").is_file()):
            raise IncompleteStoreError(
                f"{self.folder}: extraction has not finished; run utils.embed.embed(...) again to resume it"
            )
        return m

    def read(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(ids [N], vectors [N, D])``; vectors are memory-mapped (read-only), never loaded whole.

        Checks the headers and sizes of both files and every byte of ``ids.npy`` (read whole anyway);
        :meth:`verify` or :meth:`aligned` check the vectors' bytes.
        """
        m = self._complete_manifest()
        n, dim = int(m.get("n_vectors", 0)), int(m.get("dim", 0))
        files = m.get("files") or {}
        vec, ids_path = self.folder / "vectors.npy", self.folder / "ids.npy"
        for path, shape, dtype in ((vec, (n, dim), np.float32), (ids_path, (n,), "U")):
            problem = check_npy(path, shape, dtype, (files.get(path.name) or {}).get("size"))
            if problem:
                raise StoreIntegrityError(f"{path}: {problem}. Run the extraction again (embed(...) recomputes a "
                                          "damaged store), or delete the folder.", rebuild=True)
        data = ids_path.read_bytes()
        want = (files.get("ids.npy") or {}).get(CHECKSUM)
        if want is not None and checksum(data) != want:
            raise StoreIntegrityError(f"{ids_path} does not match its checksum (changed after it was written). Run "
                                      "the extraction again (embed(...) recomputes a damaged store).", rebuild=True)
        ids = load_npy_bytes(data)
        vectors = np.load(vec, mmap_mode="r", allow_pickle=False)
        return ids, vectors

    @property
    def failed(self) -> Dict[str, str]:
        """Ids that have no vector (unreadable input), with the reason."""
        return dict(self.manifest().get("failed", {}))

    @property
    def precision(self) -> Optional[str]:
        """The precision the vectors were computed in (``"bf16"``, ``"fp32"``, ...; several if shards differ)."""
        m = self.manifest()
        return m.get("precision") or (m.get("extractor") or {}).get("precision_resolved")

    # ------------------------------------------------------------------------- inputs (reuse by id)
    INPUTS_FILE = "inputs.npy"

    @staticmethod
    def inputs_bytes(ids: Sequence[str], keys: np.ndarray) -> bytes:
        """The bytes of ``inputs.npy``: each row's id and the 16-byte key of its input
        (:meth:`~utils.data.schema.MultimodalDataset.row_keys`), in the order the store was made for."""
        import io

        ids = [str(i) for i in ids]
        arr = np.empty(len(ids), dtype=[("id", f"U{max([1, *map(len, ids)])}"), ("key", "S16")])
        arr["id"], arr["key"] = ids, keys
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        return buf.getvalue()

    @staticmethod
    def inputs_entry(data: bytes) -> Dict[str, Any]:
        """What the manifest records of ``inputs.npy`` (its size and checksum)."""
        return {"size": len(data), CHECKSUM: checksum(data)}

    def write_inputs(self, data: bytes) -> None:
        """Write ``inputs.npy`` (atomically) when it is missing or is not the one the manifest names."""
        path = self.folder / self.INPUTS_FILE
        want = self.manifest().get("inputs") or {}
        if not want or (path.is_file() and path.stat().st_size == want.get("size")
                        and checksum(path.read_bytes()) == want.get(CHECKSUM)):
            return
        if checksum(data) != want.get(CHECKSUM):
            return  # the manifest was written for other inputs (another job's): leave it to that job
        try:
            write_file(path, lambda f: f.write(data), expected=len(data))
        except OSError as e:  # the inputs only allow reuse by id later: the store works without them
            log.warning("%s: could not write %s (%s); this store will only be reused for exactly these rows",
                        self.folder, path.name, e)

    def inputs(self) -> Optional[Dict[str, bytes]]:
        """``{id: input key}`` of the rows this store was made for, or None when it has no sound record of them
        (made by an older version, or the file is missing or fails its checksum): then no reuse by id."""
        want = self.manifest().get("inputs") or {}
        path = self.folder / self.INPUTS_FILE
        try:
            data = path.read_bytes()
            if not want or len(data) != want.get("size") or checksum(data) != want.get(CHECKSUM):
                return None
            arr = load_npy_bytes(data)
            return dict(zip(arr["id"].tolist(), arr["key"].tolist()))
        except Exception:  # noqa: BLE001 -- any damage means: no reuse by id (the vectors are recomputed)
            return None

    def aligned(self, ids: Iterable[str], missing: str = "raise", verify: str = "auto") -> np.ndarray:
        """Vectors for ``ids`` in that order: float32 ``[len(ids), D]`` (a copy).

        ``missing="raise"`` names ids with no vector; ``missing="nan"`` fills their rows with NaN.
        ``verify``: ``"auto"`` checks every byte when at least half the store is read (the read costs the
        same), ``"full"`` always, ``"header"`` never. A block that fails raises :class:`StoreIntegrityError`
        naming its shards; stored NaN rows are reported (logged, ``self.nan_ids``), never dropped silently.
        """
        if verify not in ("auto", "full", "header"):
            raise ValueError(f"verify must be 'auto', 'full' or 'header', got {verify!r}")
        have, vectors = self.read()
        m = self.manifest()
        index = {k: i for i, k in enumerate(have.tolist())}
        ids = [str(i) for i in ids]
        pos = np.fromiter((index.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        absent = np.flatnonzero(pos < 0)
        if len(absent) and missing == "raise":
            failed = self.failed
            shown = ", ".join(f"{ids[j]!r}" + (f" ({failed[ids[j]]})" if ids[j] in failed else "") for j in absent[:5])
            raise KeyError(
                f"{len(absent)} id(s) have no vector in {self.folder}: {shown}. Drop those rows, or use missing='nan'."
            )
        out = np.full((len(ids), vectors.shape[1]), np.nan, dtype=np.float32)
        ok = pos >= 0
        order = np.argsort(pos[ok], kind="stable")
        rows, src = np.flatnonzero(ok)[order], pos[ok][order]  # output rows sorted by their stored row
        full = verify == "full" or (verify == "auto" and ok.sum() * 2 >= len(have))
        if full and m.get("blocks") is not None and len(have):
            def visit(lo: int, hi: int, arr: np.ndarray) -> None:
                a, b = np.searchsorted(src, [lo, hi])
                if b > a:
                    out[rows[a:b]] = arr[src[a:b] - lo]

            bad, nan_rows = self._scan_blocks(m, visit)
            if bad:
                report = StoreReport(str(self.folder), True)
                self._report_blocks(report, m, bad)
                raise StoreIntegrityError(
                    report.problems[0] + ". Run embed(..., verify='full') to recompute "
                    + ("those shards" if not report.rebuild else "the store") + " (extract_embeddings does it for you).",
                    shards=report.damaged_shards, rebuild=report.rebuild)
            self.nan_ids = [str(have[r]) for r in nan_rows]
        else:
            if len(src):
                out[rows] = vectors[src]
            bad_rows = rows[~np.isfinite(out[rows]).all(axis=1)] if len(rows) else rows
            self.nan_ids = [ids[r] for r in bad_rows]
        if self.nan_ids:
            log.warning("%s: %d stored vector(s) are NaN/inf (ids %s): they count as missing and are left out of "
                        "training (rows_without_vectors). Recompute with overwrite=True.", self.folder,
                        len(self.nan_ids), self.nan_ids[:5])
        return out


def store_for(root: os.PathLike, dataset_key: str, modality: str, extractor_slug: str) -> EmbeddingStore:
    return EmbeddingStore(Path(root) / dataset_key / modality / extractor_slug)


def _file_digest(path: Path) -> str:
    h = hasher()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(16 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _jsonable(obj: Any) -> Any:
    from ..io import to_jsonable

    return to_jsonable(obj)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
