"""File-level helpers of the store: checksums, ``.npy`` headers, atomic writes that hash as they go, and
"no space left" turned into an error that says where and how much.

Checksums are xxHash's XXH3-128 (PyPI ``xxhash``): about 10 GB/s on one core, ten times blake2b, so
checking a whole store costs little next to reading it; it detects accidental damage (bit rot, a
truncated copy, rows overwritten), which is what the store needs, not tampering.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from ..io import give_created_mode, hasher

CHECKSUM = "xxh3_128"
SPACE_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
SPACE_MARGIN = 8 << 20  # bytes kept free beyond what a write needs


def checksum(data: bytes) -> str:
    h = hasher()
    h.update(data)
    return h.hexdigest()


def file_digest(path: Path) -> str:
    """The checksum of a file's bytes, read in 16 MB blocks."""
    h = hasher()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(16 << 20), b""):
            h.update(block)
    return h.hexdigest()


class StoreSpaceError(OSError):
    """The disk is full (or over quota); the message names the device, the path and how much to free."""

    def __str__(self) -> str:
        return str(self.strerror)


def device_of(path: Path) -> str:
    """The device (and mount point) holding ``path``, for messages: ``/dev/sda1 (mounted on /data)``."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    mount = p
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, point = line.split()[:2]
            if point == str(mount):
                return f"{dev} (mounted on {mount})"
    except OSError:
        pass
    return str(mount)


def free_bytes(path: Path) -> int:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def margin(needed: int) -> int:
    """Bytes kept free beyond a write of ``needed`` bytes: as much again, at most ``SPACE_MARGIN``."""
    return min(SPACE_MARGIN, max(needed, 64 << 10))


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f}" if n < (10 << 20) else f"{-(-n // (1 << 20))}"


def space_error(path: Path, needed: int) -> StoreSpaceError:
    free = free_bytes(path)
    short = max(needed + margin(needed) - free, 1 << 20)
    return StoreSpaceError(
        errno.ENOSPC,
        f"no space left on {device_of(path)} for {path}: free {_mb(short)} MB and run again "
        f"(this step writes about {_mb(max(needed, 1))} MB; finished shards are kept)",
    )


def require_space(path: Path, needed: int) -> None:
    """Raise :class:`StoreSpaceError` before writing ``needed`` bytes at ``path`` when they do not fit."""
    if free_bytes(path) < needed + margin(needed):
        raise space_error(path, needed)


def is_space_error(e: BaseException) -> bool:
    return isinstance(e, OSError) and not isinstance(e, StoreSpaceError) and e.errno in SPACE_ERRNOS


class HashingWriter:
    """A write-only file wrapper that hashes every byte written (``np.save`` and ``json`` write through it)."""

    def __init__(self, f: Any):
        self.f, self.h, self.size = f, hasher(), 0

    def write(self, data: Any) -> int:
        b = bytes(data) if not isinstance(data, bytes) else data
        self.h.update(b)
        self.size += len(b)
        return self.f.write(b)

    def flush(self) -> None:
        self.f.flush()


def write_temp(path: Path, write: Callable[[Any], Any], expected: int = 0) -> Tuple[Path, int, str]:
    """Write through ``write(f)`` into a temporary file beside ``path`` (fsynced, not yet in place).

    Returns ``(temporary path, size, checksum)``. Checks ``expected`` bytes of free space first; a full
    disk raises :class:`StoreSpaceError` and leaves no temporary file behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if expected:
        require_space(path.parent, expected)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        give_created_mode(fd)  # the umask's mode, not mkstemp's 0600: stores are shared on servers / Drive
        with os.fdopen(fd, "wb") as f:
            w = HashingWriter(f)
            write(w)
            f.flush()
            os.fsync(f.fileno())
        return Path(tmp), w.size, w.h.hexdigest()
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if is_space_error(e):
            raise space_error(path, expected or 0) from None
        raise


def commit(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)


def create_exclusive(path: Path, data: bytes) -> bool:
    """Write ``path`` only if it does not exist yet, atomically: True when this call created it, False when
    another process got there first (its file is left as it is). Two jobs starting on an empty store both see
    "no manifest"; only one of them may write it, the other must then compare against it.

    The content is written to a temporary file and hard-linked into place (``link`` fails when the name
    exists), so a reader never sees a half-written file. Where hard links are not supported (some network or
    FUSE mounts), ``O_CREAT | O_EXCL`` keeps the creation exclusive."""
    tmp, _, _ = write_temp(path, lambda f: f.write(data), len(data))
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return True
    finally:
        tmp.unlink(missing_ok=True)


def write_file(path: Path, write: Callable[[Any], Any], expected: int = 0) -> Tuple[int, str]:
    """Atomically write ``path`` (temporary file, fsync, rename); returns ``(size, checksum)``."""
    tmp, size, digest = write_temp(path, write, expected)
    commit(tmp, path)
    return size, digest


def npy_writer(array: np.ndarray) -> Callable[[Any], Any]:
    return lambda f: np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)


def npy_nbytes(array: np.ndarray) -> int:
    return int(array.nbytes) + 128


def npy_header(path: Path) -> Tuple[Tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset)`` of a ``.npy`` file, reading only its header."""
    with open(path, "rb") as f:
        return npy_header_of(f)


def npy_header_of(f: Any) -> Tuple[Tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset)``; a damaged header is a ValueError (numpy parses it as Python and can
    raise SyntaxError, or tokenize's TokenError, for some damaged bytes)."""
    import tokenize

    version = np.lib.format.read_magic(f)
    try:
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (SyntaxError, tokenize.TokenError, TypeError, KeyError) as e:
        raise ValueError(f"its header is unreadable ({type(e).__name__}: {e})") from None
    if fortran:
        raise ValueError("Fortran-ordered array")
    return tuple(shape), dtype, f.tell()


def check_npy(path: Path, shape: Tuple[int, ...], dtype: Any, size: Optional[int] = None) -> Optional[str]:
    """What is wrong with ``path`` as a ``.npy`` of ``shape`` and ``dtype`` (header and size only), or None."""
    try:
        got_shape, got_dtype, offset = npy_header(path)
    except FileNotFoundError:
        return "it is missing"
    except (OSError, ValueError, SyntaxError) as e:
        return f"its header is unreadable ({e})"
    if got_dtype.hasobject:
        return "it holds Python objects"
    if tuple(got_shape) != tuple(shape):
        return f"it holds shape {tuple(got_shape)}, expected {tuple(shape)}"
    want_dtype = np.dtype(dtype)
    if (want_dtype.kind == "U" and got_dtype.kind != "U") or (want_dtype.kind != "U" and got_dtype != want_dtype):
        return f"it holds {got_dtype}, expected {'text' if want_dtype.kind == 'U' else want_dtype}"
    want = offset + int(np.prod(shape, dtype=np.int64)) * got_dtype.itemsize
    actual = path.stat().st_size
    if actual != want:
        return f"it is {actual} bytes, expected {want} (truncated or padded)"
    if size is not None and actual != size:
        return f"it is {actual} bytes, the manifest recorded {size}"
    return None


def load_npy_bytes(data: bytes) -> np.ndarray:
    """The array in ``data`` (a ``.npy``'s bytes); damaged bytes are a ValueError, whatever numpy raised."""
    import tokenize

    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (SyntaxError, tokenize.TokenError, TypeError, KeyError, EOFError) as e:
        raise ValueError(f"not a readable .npy ({type(e).__name__}: {e})") from None


def read_json_object(path: Path) -> Dict[str, Any]:
    """A store's JSON file (the manifest, a shard header) as a dict, read through one guarded path: a missing file raises ``FileNotFoundError``; anything else that is not a UTF-8 JSON object (binary
    bytes, a truncated file, a list, an unreadable file) raises ``ValueError`` saying what is wrong, never a raw
    decoding error. Callers turn it into the store's own error naming the file and the repair."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise ValueError(f"unreadable ({e.strerror or type(e).__name__})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text (byte {e.start} is 0x{data[e.start]:02x}): binary or foreign content") from None
    try:
        out = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
                         + ("; empty file" if not text.strip() else "")) from None
    if not isinstance(out, dict):
        raise ValueError(f"a JSON {type(out).__name__}, expected an object")
    return out
