"""Writing results and metadata: JSON that never holds NaN or numpy types, atomic files, JSON + CSV rows.

- :func:`to_jsonable`: numpy scalars and arrays, paths, dataclasses, sets and tuples to plain JSON values;
  NaN and infinities become ``None`` (JSON has no NaN).
- :func:`atomic_write_bytes`, :func:`atomic_write_json`, :func:`atomic_save_npy`: write to a temporary file
  in the same folder, fsync, then rename, so a reader never sees half a file.
- :func:`write_json`, :func:`write_rows`: a list of result rows as JSON, and a table beside it as CSV.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values (dict / list / str / int / float / bool / None); NaN -> None."""
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, bool):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [to_jsonable(v) for v in items]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def hasher():
    """A fresh XXH3-128 hasher (``update(bytes)``, ``hexdigest()``): the checksum of the store and the content
    fingerprint of media files (PyPI ``xxhash``, about ten times blake2b's speed)."""
    import xxhash

    return xxhash.xxh3_128()


def file_hash(path: PathLike, chunk: int = 1 << 20) -> str:
    """XXH3-128 of a file's bytes, read in ``chunk``-byte blocks."""
    h = hasher()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def dumps(obj: Any, indent: Optional[int] = 1, sort_keys: bool = False) -> str:
    """``json.dumps(to_jsonable(obj))``: strict JSON (no NaN)."""
    return json.dumps(to_jsonable(obj), indent=indent, sort_keys=sort_keys, allow_nan=False)


def process_umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux ``/proc``); elsewhere by
    setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def created_mode(is_dir: bool = False) -> int:
    """The mode a plain ``open()`` / ``mkdir()`` would give: 0o666 / 0o777 less the umask. Temporary files
    (``mkstemp`` / ``mkdtemp``) are made 0600 / 0700, which collaborators on a shared server or Drive cannot
    read; files written through one are given this mode before they are put in place."""
    return (0o777 if is_dir else 0o666) & ~process_umask()


def give_created_mode(fd: int) -> None:
    """Give the temporary file open as ``fd`` the mode :func:`created_mode` names (no-op where modes or
    ``fchmod`` do not exist)."""
    try:
        os.fchmod(fd, created_mode())
    except (AttributeError, OSError):
        pass


def atomic_write_bytes(path: PathLike, write: Callable[[Any], Any]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync it, then rename it over ``path`` (with the
    mode the umask gives a new file, not the temporary file's 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        give_created_mode(fd)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path: PathLike, obj: Any, indent: Optional[int] = 2, sort_keys: bool = True) -> None:
    atomic_write_bytes(path, lambda f: f.write(dumps(obj, indent=indent, sort_keys=sort_keys).encode()))


def atomic_save_npy(path: PathLike, array: np.ndarray) -> None:
    atomic_write_bytes(path, lambda f: np.save(f, array, allow_pickle=False))


def write_json(obj: Any, path: PathLike) -> Path:
    """Write ``obj`` as strict JSON to ``path`` (atomically; folders created)."""
    path = Path(path)
    atomic_write_json(path, obj, indent=1, sort_keys=False)
    return path


def write_rows(rows: Sequence[Mapping[str, Any]], json_path: PathLike, table: Any = None,
               csv_path: Optional[PathLike] = None) -> Path:
    """Result rows as JSON (a list) at ``json_path`` and ``table`` (a DataFrame, default: the rows) as CSV
    beside it (``csv_path``, default the same name with ``.csv``)."""
    import pandas as pd

    json_path = write_json(list(rows), json_path)
    frame = table if table is not None else pd.DataFrame([to_jsonable(r) for r in rows])
    csv_path = Path(csv_path) if csv_path else json_path.with_suffix(".csv")
    atomic_write_bytes(csv_path, lambda f: f.write(frame.to_csv(index=False, float_format="%.4f").encode()))
    log.info("results written to %s and %s", json_path, csv_path)
    return json_path
