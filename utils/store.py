"""The embedding store: one folder per (dataset, modality, extractor).

Layout::

    <embeddings root>/<dataset key>/<modality>/<extractor slug>/
        manifest.json          extractor id + options, dataset fingerprint, versions, dim, count, failures
        shards/000003.npy      float32 [rows, D] for rows [3*S, 4*S) of the dataset (while extracting)
        shards/000003.ids.npy  the ids of those rows;  000003.failed.json  rows that could not be read
        vectors.npy, ids.npy   the consolidated result, memory-mapped on read

Every file is written to a temporary name and renamed into place, so a killed run leaves either a
whole shard or none: running again computes only the missing shards. A shard's vector file is renamed
last, so its presence means the shard is complete. A store whose manifest was made for another
extractor, dataset or input set is refused, never mixed (``overwrite=True`` starts it afresh).
No pickle anywhere: ``.npy`` files are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Sequence, Tuple

import numpy as np

from .io import atomic_save_npy, atomic_write_json

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# manifest fields that must match for a store to be reused
IDENTITY_FIELDS = ("format", "dataset", "modality", "extractor", "fingerprint", "count", "shard_size", "normalized")


class StoreMismatchError(RuntimeError):
    """The folder holds embeddings made from other inputs or by another extractor."""


class IncompleteStoreError(RuntimeError):
    """Reading a store whose extraction has not finished."""


class EmbeddingStore:
    """One store folder. Use :func:`utils.embed.embed` to fill it; :meth:`read` / :meth:`aligned` to use it."""

    def __init__(self, folder: os.PathLike):
        self.folder = Path(folder)

    def __repr__(self) -> str:
        state = "complete" if self.is_complete() else "incomplete"
        return f"EmbeddingStore({str(self.folder)!r}, {state})"

    # ------------------------------------------------------------------------------- manifest
    @property
    def manifest_path(self) -> Path:
        return self.folder / "manifest.json"

    @property
    def shard_dir(self) -> Path:
        return self.folder / "shards"

    def manifest(self) -> Dict[str, Any]:
        try:
            return json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            raise IncompleteStoreError(f"no embeddings at {self.folder} (no manifest.json)") from None

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def is_complete(self) -> bool:
        return self.exists() and bool(self.manifest().get("complete")) and (self.folder / "vectors.npy").is_file()

    def open(self, header: Dict[str, Any], overwrite: bool = False) -> Dict[str, Any]:
        """Create the store with ``header`` or check that an existing one was made for the same thing."""
        header = {"format": FORMAT_VERSION, **header}
        if overwrite and self.folder.exists():
            shutil.rmtree(self.folder)
        if self.exists():
            current = self.manifest()
            diffs = [k for k in IDENTITY_FIELDS if current.get(k) != header.get(k)]
            if diffs:
                detail = "; ".join(f"{k}: stored {current.get(k)!r} vs requested {header.get(k)!r}" for k in diffs)
                raise StoreMismatchError(
                    f"{self.folder} holds embeddings of something else ({detail}). They will not be mixed: "
                    "use another embeddings folder, or pass overwrite=True to recompute."
                )
            return current
        atomic_write_json(self.manifest_path, {**header, "complete": False, "created": _now()})
        return self.manifest()

    # ---------------------------------------------------------------------------------- shards
    def _shard_file(self, k: int, suffix: str) -> Path:
        return self.shard_dir / f"{k:06d}{suffix}"

    def has_shard(self, k: int) -> bool:
        return self._shard_file(k, ".npy").is_file()

    def write_shard(self, k: int, ids: Sequence[str], vectors: np.ndarray, failed: Dict[str, str]) -> None:
        """Write shard ``k`` atomically (ids and failures first; the vector file last marks it done)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape[0] != len(ids):
            raise ValueError(f"shard {k}: {vectors.shape[0]} vectors for {len(ids)} ids")
        atomic_save_npy(self._shard_file(k, ".ids.npy"), np.asarray(list(ids), dtype=str))
        atomic_write_json(self._shard_file(k, ".failed.json"), failed)
        atomic_save_npy(self._shard_file(k, ".npy"), vectors)

    def finalize(self, n_shards: int, keep_shards: bool = False) -> None:
        """Join all shards into ``vectors.npy`` + ``ids.npy`` (streamed: memory stays flat) and mark complete.

        Rows that failed are left out of ``vectors.npy`` and listed in the manifest under ``failed``.
        """
        missing = [k for k in range(n_shards) if not self.has_shard(k)]
        if missing:
            raise IncompleteStoreError(f"{self.folder}: shards {missing[:10]} are not written yet")
        lock = self.folder / ".finalize.lock"
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
        except FileExistsError:
            if time.time() - lock.stat().st_mtime < 3600:
                log.info("%s is being finalised by another job", self.folder)
                return
            lock.unlink()  # stale lock from a killed job
            return self.finalize(n_shards, keep_shards)
        try:
            failed: Dict[str, str] = {}
            n_ok, dim = 0, None
            for k in range(n_shards):
                f = json.loads(self._shard_file(k, ".failed.json").read_text())
                failed.update(f)
                shape = np.load(self._shard_file(k, ".npy"), mmap_mode="r").shape
                dim = shape[1] if dim is None else dim
                n_ok += shape[0] - len(f)
            dim = int(dim or 0)
            tmp_vec = self.folder / ".vectors.npy.tmp"
            out = np.lib.format.open_memmap(tmp_vec, mode="w+", dtype=np.float32, shape=(n_ok, dim))
            all_ids: List[str] = []
            row = 0
            for k in range(n_shards):
                vec = np.load(self._shard_file(k, ".npy"), mmap_mode="r")
                ids = np.load(self._shard_file(k, ".ids.npy"), allow_pickle=False)
                keep = np.array([i not in failed for i in ids.tolist()], dtype=bool)
                chunk = np.asarray(vec[keep])
                out[row : row + len(chunk)] = chunk
                row += len(chunk)
                all_ids.extend(ids[keep].tolist())
            out.flush()
            del out
            os.replace(tmp_vec, self.folder / "vectors.npy")
            atomic_save_npy(self.folder / "ids.npy", np.asarray(all_ids, dtype=str))
            manifest = self.manifest()
            manifest.update(complete=True, dim=dim, dtype="float32", n_vectors=n_ok, failed=failed, finished=_now())
            atomic_write_json(self.manifest_path, manifest)
            if not keep_shards:
                shutil.rmtree(self.shard_dir, ignore_errors=True)
        finally:
            lock.unlink(missing_ok=True)

    # ------------------------------------------------------------------------------------ reading
    def read(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(ids [N], vectors [N, D])``; vectors are memory-mapped (read-only), never loaded whole."""
        if not self.is_complete():
            raise IncompleteStoreError(
                f"{self.folder}: extraction has not finished; run utils.embed.embed(...) again to resume it"
            )
        ids = np.load(self.folder / "ids.npy", allow_pickle=False)
        vectors = np.load(self.folder / "vectors.npy", mmap_mode="r", allow_pickle=False)
        return ids, vectors

    @property
    def failed(self) -> Dict[str, str]:
        """Ids that have no vector (unreadable input), with the reason."""
        return dict(self.manifest().get("failed", {}))

    def aligned(self, ids: Iterable[str], missing: str = "raise") -> np.ndarray:
        """Vectors for ``ids`` in that order: float32 ``[len(ids), D]`` (a copy).

        ``missing="raise"`` names ids with no vector; ``missing="nan"`` fills their rows with NaN.
        """
        have, vectors = self.read()
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
        if ok.any():
            # sorted positions read the memmap sequentially
            order = np.argsort(pos[ok])
            rows = np.flatnonzero(ok)[order]
            out[rows] = vectors[pos[ok][order]]
        return out


def store_for(root: os.PathLike, dataset_key: str, modality: str, extractor_slug: str) -> EmbeddingStore:
    return EmbeddingStore(Path(root) / dataset_key / modality / extractor_slug)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
