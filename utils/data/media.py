"""Media files of a table: where they are (confined to the dataset root), whether they exist, their size and
modification time, optionally a hash of their bytes; checked once, cached on disk, reused.

On a slow disk (Google Drive on Colab) a ``stat`` costs milliseconds, so checking 377,110 MIMIC-CXR images
on every call took minutes. :func:`media_stats` stats each file once and caches the result in
``<embeddings dir>/.media-cache/``, keyed by the dataset root, the modality and the table's paths. A later
call reuses it after checking, depending on ``check``:

- ``"full"``: stat every file again (exact; a file replaced in place is seen by its new time);
- ``"folders"``: stat only the folders that hold the files. Adding, deleting or renaming a file changes its
  folder's time, and the files of a changed folder are stat'ed again; a file overwritten in place
  (same name) is *not* seen: touch its folder, or use ``"full"`` once;
- ``"auto"`` (default): ``"full"`` up to ``FULL_CHECK_MAX_FILES`` files, ``"folders"`` above.

Content hashes (for ``fingerprint="content"``) are recomputed only for files whose size, modification time,
inode change time or inode changed (the inode change time cannot be set back, so a file rewritten in place
with its old modification time restored is hashed again).
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..io import file_hash, hasher

log = logging.getLogger(__name__)

CHECKS = ("auto", "full", "folders")
FULL_CHECK_MAX_FILES = 100_000  # "auto" stats every file up to this many (about 0.3 s on a local disk)
CACHE_VERSION = 2  # 2: folders told from missing files, symbolic links marked
FOLDER = -2  # MediaStats.size of a path that is a folder, not a file
STAT_THREADS = 16  # parallel stats: on network disks each one waits on the network, not the CPU


@dataclass
class MediaStats:
    """Per-row facts about the files of one modality (``[N]`` arrays, in table order)."""

    paths: List[Optional[str]]  # absolute paths (None: no path in this row)
    size: np.ndarray  # int64 bytes, -1 when the file is missing
    mtime_ns: np.ndarray  # int64 modification time in ns, -1 when missing
    content: Optional[List[str]] = None  # XXH3-128 of each file's bytes ("" when missing), for fingerprint="content"
    checked: str = ""  # how the last check was done ("full", "folders", "cached")
    change: Optional[np.ndarray] = None  # int64 [N, 2]: inode change time and inode (a rewrite with its time set back)
    link: Optional[np.ndarray] = None  # bool [N]: the path is a symbolic link (see links_outside)

    @property
    def missing(self) -> np.ndarray:
        """Rows without a readable file: no file, a folder, or an empty (0-byte) file."""
        return self.size <= 0

    def problem(self, row: int) -> str:
        """What is wrong with ``row``'s file in words ("" when nothing is)."""
        size = int(self.size[row])
        return ("" if size > 0 else "is empty (0 bytes)" if size == 0 else "is a folder, not a file" if size == FOLDER
                else "not found")

    def subset(self, rows: np.ndarray) -> "MediaStats":
        """The same facts for ``rows`` (positions) only."""
        rows = np.asarray(rows, dtype=np.int64)
        return MediaStats([self.paths[i] for i in rows.tolist()], self.size[rows], self.mtime_ns[rows],
                          None if self.content is None else [self.content[i] for i in rows.tolist()], self.checked,
                          None if self.change is None else self.change[rows],
                          None if self.link is None else self.link[rows])


def cache_dir(embeddings: Optional[str] = None) -> Path:
    """Where file facts are cached: ``<embeddings>/.media-cache`` (default: the embeddings folder of
    :func:`utils.config.embeddings_dir`, so ``MMFUSION_EMBEDDINGS_DIR`` and ``.env`` apply)."""
    from ..config import embeddings_dir

    return embeddings_dir(embeddings) / ".media-cache"


def table_key(root: Optional[str], modality: str, values: Sequence[Optional[str]]) -> str:
    """Key of a table's media column: the root, the modality and every path, in order."""
    h = hasher()
    h.update(f"{CACHE_VERSION}\0{root}\0{modality}\0".encode())
    h.update("\0".join("\1" if v is None else v for v in values).encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def stat_files(paths: Sequence[Optional[str]], threads: int = STAT_THREADS) -> tuple:
    """``(size, mtime_ns, change, link)`` for ``paths``: int64 arrays, ``size`` -1 where missing and ``FOLDER``
    where the path is a folder (both with time -1); ``change`` is ``[N, 2]``: inode change time (ns) and inode
    number; ``link`` (bool) marks paths that are themselves symbolic links (their target's facts are given)."""
    n = len(paths)
    size = np.full(n, -1, dtype=np.int64)
    mtime = np.full(n, -1, dtype=np.int64)
    change = np.full((n, 2), -1, dtype=np.int64)
    link = np.zeros(n, dtype=bool)

    def work(lo: int, hi: int) -> None:
        lst, st = os.lstat, os.stat
        for i in range(lo, hi):
            p = paths[i]
            if p is None:
                continue
            try:
                s = lst(p)  # the same cost as stat; a link costs one more call
                if s.st_mode & 0o170000 == 0o120000:
                    link[i] = True
                    s = st(p)
            except (OSError, ValueError):
                continue
            kind = s.st_mode & 0o170000
            if kind == 0o100000:  # a regular file
                size[i], mtime[i] = s.st_size, s.st_mtime_ns
                change[i, 0], change[i, 1] = s.st_ctime_ns, s.st_ino & 0x7FFFFFFFFFFFFFFF
            elif kind == 0o040000:
                size[i] = FOLDER

    chunk = 4096
    if n <= 4 * chunk or threads <= 1:
        work(0, n)
    else:
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(lambda lo: work(lo, min(n, lo + chunk)), range(0, n, chunk)))
    return size, mtime, change, link


def links_outside(paths: Sequence[Optional[str]], link: np.ndarray, root: str) -> List[int]:
    """Rows whose file leads outside ``root`` through a symbolic link: the file itself is a link (``link``, from
    :func:`stat_files`) or a folder between the root and the file is one, resolving outside the root. Each folder
    is checked once (an ``lstat``), so the cost grows with the folders, not the files."""
    base = os.path.realpath(root)
    inside = base.rstrip(os.sep) + os.sep
    top = os.path.abspath(root).rstrip(os.sep)
    verdict: Dict[str, bool] = {}

    def folder_ok(d: str) -> bool:
        got = verdict.get(d)
        if got is None:
            if d == top or not d.startswith(top + os.sep):
                got = True  # the root itself (already resolved by load) or a path not under it (refused elsewhere)
            else:
                got = folder_ok(os.path.dirname(d))
                if got and os.path.islink(d):
                    real = os.path.realpath(d)
                    got = real == base or real.startswith(inside)
            verdict[d] = got
        return got

    bad = []
    for i, p in enumerate(paths):
        if p is None:
            continue
        if not folder_ok(p[: p.rfind(os.sep)]) or link[i] and not os.path.realpath(p).startswith(inside):
            bad.append(i)
    return bad


def folder_times(folders: Sequence[str]) -> np.ndarray:
    out = np.full(len(folders), -1, dtype=np.int64)
    for i, d in enumerate(folders):
        try:
            out[i] = os.stat(d).st_mtime_ns
        except OSError:
            pass
    return out


def _load_cache(path: Path) -> Optional[Dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        if int(data["version"]) != CACHE_VERSION:
            return None
        return data
    except (OSError, ValueError, KeyError, EOFError):
        return None


def _save_cache(path: Path, **arrays: np.ndarray) -> None:
    from ..io import atomic_write_bytes

    try:
        atomic_write_bytes(path, lambda f: np.savez(f, version=np.int64(CACHE_VERSION), **arrays))
    except OSError as e:  # a read-only or full disk: the cache is an optimisation, never a failure
        log.warning("media cache not written (%s): the next run checks the files again", e)


def media_stats(paths: Sequence[Optional[str]], key: str, check: str = "auto", content: bool = False,
                use_cache: bool = True, embeddings: Optional[str] = None) -> MediaStats:
    """Existence, size and time of every file in ``paths`` (and content hashes with ``content``), cached.

    ``key`` identifies the table (see :func:`table_key`); ``check`` says how a cached result is re-checked
    (module docstring); ``embeddings``: the embeddings folder whose ``.media-cache`` holds the cache
    (default :func:`utils.config.embeddings_dir`).
    """
    if check not in CHECKS:
        raise ValueError(f"media_check must be one of {CHECKS}, got {check!r}")
    paths = list(paths)
    n = len(paths)
    mode = check if check != "auto" else ("full" if n <= FULL_CHECK_MAX_FILES else "folders")
    t0 = time.perf_counter()
    file = cache_dir(embeddings) / f"{key}.npz"
    cached = _load_cache(file) if use_cache else None
    if cached is not None and len(cached["size"]) != n:
        cached = None
    parents = [None if p is None else p[: p.rfind(os.sep)] for p in paths]
    dirs = sorted({d for d in parents if d is not None})
    if cached is not None and ("change" not in cached or "link" not in cached):
        cached = None
    if cached is not None and mode == "folders":
        size, mtime, change = cached["size"].copy(), cached["mtime_ns"].copy(), cached["change"].copy()
        link = cached["link"].copy()
        old_dirs = dict(zip(cached["dirs"].tolist(), cached["dir_mtime_ns"].tolist()))
        now_dirs = folder_times(dirs)
        changed = {d for d, t in zip(dirs, now_dirs.tolist()) if old_dirs.get(d) != t}
        if changed:
            rows = [i for i, d in enumerate(parents) if d is not None and d in changed]
            s, m, c, k = stat_files([paths[i] for i in rows])
            size[rows], mtime[rows], change[rows], link[rows] = s, m, c, k
        how = f"folders ({len(dirs)} checked, {len(changed)} changed)"
    else:
        now_dirs = folder_times(dirs)
        size, mtime, change, link = stat_files(paths)
        how = "full"
    hashes: Optional[List[str]] = None
    if content:
        old: Optional[List[str]] = None
        if cached is not None and "content" in cached and len(cached["content"]) == n:
            old = [h.decode() for h in cached["content"].tolist()]
        hashes = []
        for i, p in enumerate(paths):
            same = old is not None and old[i] and cached is not None and cached["size"][i] == size[i] \
                and cached["mtime_ns"][i] == mtime[i] and (cached["change"][i] == change[i]).all()
            if same:
                hashes.append(old[i])  # type: ignore[index]
            elif size[i] >= 0:
                try:
                    hashes.append(file_hash(p))  # type: ignore[arg-type]
                except OSError:
                    size[i] = mtime[i] = -1
                    hashes.append("")
            else:
                hashes.append("")
    unchanged = (cached is not None and np.array_equal(cached["size"], size) and np.array_equal(cached["mtime_ns"], mtime)
                 and np.array_equal(cached["change"], change) and np.array_equal(cached["link"], link)
                 and (not content or ("content" in cached and [h.decode() for h in cached["content"].tolist()] == hashes))
                 and cached["dirs"].tolist() == dirs and np.array_equal(cached["dir_mtime_ns"], now_dirs))
    if use_cache and not unchanged:
        arrays = dict(size=size, mtime_ns=mtime, change=change, link=link, dirs=np.asarray(dirs, dtype=str) if dirs else np.zeros(0, "<U1"),
                      dir_mtime_ns=now_dirs, written=np.asarray(json.dumps({"time": time.time()})))
        if hashes is not None:
            arrays["content"] = np.asarray(hashes, dtype="S32")  # hex digests as bytes: a quarter of "<U32"
        _save_cache(file, **arrays)
    log.debug("media of %d rows checked (%s) in %.2f s", n, how, time.perf_counter() - t0)
    return MediaStats(paths, size, mtime, hashes, how if cached is not None else "full (first time)", change, link)
