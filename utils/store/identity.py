"""A store's identity: its folder and manifest, what decides whether it may be reused, creating it once.

:class:`StoreFolder` is the part of :class:`~utils.store.EmbeddingStore` every other part stands on: the
paths, the manifest (read, written atomically), the store's locks, and :meth:`StoreFolder.open`, which
creates the store exclusively (two jobs that both find no manifest: one creates it, the other checks it)
or refuses one made for something else. It also keeps ``inputs.npy``, the record of each row's id and
input key that lets a later run reuse the vectors by id (:func:`utils.embed.reusable_by_id`).

A store written in another format version is refused, never upgraded: ``overwrite=True`` rebuilds it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..io import to_jsonable
from .base import IncompleteStoreError, StoreBusyError, StoreIntegrityError, StoreMismatchError, now
from .files import (
    CHECKSUM,
    checksum,
    create_exclusive,
    is_space_error,
    load_npy_bytes,
    read_json_object,
    space_error,
    write_file,
)
from .locks import Lock, clear_stale, describe_owner, live_locks, try_acquire

log = logging.getLogger(__package__)

FORMAT_VERSION = 2  # the only format read: every file and block checksummed (format 1 had no checksums)
# manifest fields that must match for a store to be reused (the extractor compared without its resolved precision)
IDENTITY_FIELDS = ("dataset", "modality", "extractor", "fingerprint", "count", "shard_size", "normalized")


def identity(manifest: Dict[str, Any]) -> Dict[str, Any]:
    """The fields that decide whether a store may be reused (precision is recorded, not compared)."""
    out = {k: manifest.get(k) for k in IDENTITY_FIELDS}
    if isinstance(out["extractor"], dict):
        out["extractor"] = {k: v for k, v in out["extractor"].items() if k != "precision_resolved"}
    return out


def identity_digest(manifest: Dict[str, Any]) -> str:
    """A checksum of :func:`identity`: what each shard is stamped with."""
    return checksum(json.dumps(identity(manifest), sort_keys=True, default=str).encode())


def check_format(folder: Path, manifest: Dict[str, Any]) -> None:
    """Refuse a store of another format version (:class:`StoreMismatchError` naming the folder and the fix)."""
    version = int(manifest.get("format", 1))
    if version > FORMAT_VERSION:
        raise StoreMismatchError(f"{folder} was written by a newer version (format {manifest.get('format')}); "
                                 "update the package or use another embeddings folder.")
    if version < FORMAT_VERSION:
        raise StoreMismatchError(
            f"{folder} was written by an older version of this package (store format {version}, without "
            f"checksums; this version reads format {FORMAT_VERSION} only). Rebuild it: run again with "
            f"overwrite=True (embed(..., overwrite=True)), or delete the folder (rm -r '{folder}').")


def _only_weights_differ(a: Any, b: Any) -> bool:
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return False
    strip = lambda d: {k: v for k, v in d.items() if k != "weights"}  # noqa: E731
    return strip(a) == strip(b) and a.get("weights") != b.get("weights")


def mismatch_message(folder: Path, current: Dict[str, Any], header: Dict[str, Any], diffs: List[str]) -> str:
    """Why the store in ``folder`` (manifest ``current``) cannot serve ``header``: the fields in ``diffs``."""
    have_id, want_id = identity(current), identity(header)
    weights_only = "extractor" in diffs and _only_weights_differ(have_id["extractor"], want_id["extractor"])
    parts = [f"{k}: stored {have_id[k]!r} vs requested {want_id[k]!r}" for k in diffs
             if k != "fingerprint" and not (k == "extractor" and weights_only)]
    if weights_only:
        parts.append("extractor: the same model, but its local weights changed since these vectors were made (a file "
                     "of the model folder has another size or modification time, or other bytes with fingerprint='content')")
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
        parts.append(f"fingerprint: the inputs differ ({why})")
    return (f"{folder} holds embeddings of something else ({'; '.join(parts)}). They will not be mixed: use another "
            "embeddings folder, or pass overwrite=True to recompute.")


class StoreFolder:
    """One store folder: paths, manifest, locks, creation and the identity check (see the module docstring)."""

    INPUTS_FILE = "inputs.npy"

    def __init__(self, folder: os.PathLike):
        self.folder = Path(folder)
        self.reused = False  # set by embed(): the vectors came from an earlier run
        # the identity this job opened the store under (set by open()): its shards are stamped with it, not with
        # whatever the manifest says when they are written, so a store recreated under a running job never
        # takes that job's vectors as its own
        self.job_identity: Optional[str] = None

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

    def stored_identity(self) -> str:
        """:func:`identity_digest` of the manifest as it is now."""
        return identity_digest(self.manifest())

    @staticmethod
    def manifest_bytes(m: Dict[str, Any]) -> bytes:
        return json.dumps(to_jsonable(m), indent=2, sort_keys=True, allow_nan=False).encode()

    def write_manifest(self, m: Dict[str, Any]) -> None:
        """Replace ``manifest.json`` atomically (a full disk is a :class:`~utils.store.StoreSpaceError`)."""
        text = self.manifest_bytes(m)
        try:
            write_file(self.manifest_path, lambda f: f.write(text), expected=len(text))
        except OSError as e:
            if is_space_error(e):
                raise space_error(self.manifest_path, len(text)) from None
            raise

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

    # ----------------------------------------------------------------------------- opening
    def open(self, header: Dict[str, Any], overwrite: bool = False) -> Dict[str, Any]:
        """Create the store with ``header`` or check that an existing one was made for the same thing.

        A store made for something else, or written in another format version, is refused
        (:class:`StoreMismatchError`); ``overwrite=True`` deletes it first (unless a live job is filling it).
        """
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
            text = self.manifest_bytes({**header, "complete": False, "created": now()})
            if create_exclusive(self.manifest_path, text):  # another job that also found no manifest loses here
                return self._opened(self.manifest())
            log.info("%s: another job created this store a moment ago; checking it was made for the same thing",
                     self.folder)
        current = self.manifest()
        check_format(self.folder, current)
        have_id, want_id = identity(current), identity(header)
        diffs = [k for k in IDENTITY_FIELDS if have_id[k] != want_id[k]]
        if diffs:
            raise StoreMismatchError(mismatch_message(self.folder, current, header, diffs))
        if self.is_complete():
            self._tidy()
        return self._opened(self.manifest())

    def _opened(self, m: Dict[str, Any]) -> Dict[str, Any]:
        self.job_identity = identity_digest(m)
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

    # ------------------------------------------------------------------------- inputs (reuse by id)
    @staticmethod
    def inputs_bytes(ids: Sequence[str], keys: np.ndarray) -> bytes:
        """The bytes of ``inputs.npy``: each row's id and the 16-byte key of its input
        (:meth:`~utils.data.schema.MultimodalDataset.row_keys`), in the order the store was made for."""
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
        (the file is missing or fails its checksum): then no reuse by id."""
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
