"""Owner-aware lock files: one writer at a time, across processes and hosts, never jammed by a dead job.

A lock is a file created with ``O_EXCL`` that names its owner as JSON: host name, boot id and pid
namespace (together: "this machine"), pid, the process's start time, when the lock was taken and a
random token. Another process takes it over:

- at once when the owner ran on this machine and is gone: its pid is not running, or the pid now
  belongs to a process that started at another time (pid reuse);
- when the owner ran on another machine (a shared folder) and has not refreshed the lock for
  ``STALE_AFTER_S`` seconds, timed by the waiter's own clock (no clock agreement between hosts needed).
  Held locks are refreshed by one daemon thread per process every ``HEARTBEAT_S`` seconds.

A take-over renames the stale file to a unique name before deleting it, so two processes that both
found it stale cannot both win; releasing checks the token, so a job never deletes a lock it lost.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

log = logging.getLogger(__name__)

HEARTBEAT_S = 20.0  # how often a held lock's time stamp is refreshed
STALE_AFTER_S = 300.0  # a lock of another machine with no refresh for this long is taken over
UNREADABLE_GRACE_S = 10.0  # an empty or unreadable lock (owner killed while writing it) is stale after this


def _read_first_line(path: str) -> str:
    try:
        with open(path) as f:
            return f.readline().strip()
    except OSError:
        return ""


def machine() -> Dict[str, str]:
    """What makes two processes "on the same machine" for pid checks: host name, boot id, pid namespace."""
    try:
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = ""
    return {"host": socket.gethostname(), "boot": _read_first_line("/proc/sys/kernel/random/boot_id"), "pid_ns": pid_ns}


def process_start(pid: int) -> Optional[float]:
    """Start time of process ``pid`` (seconds since the epoch), None when it is not running or unknown."""
    try:
        import psutil

        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:  # killed, not yet reaped by its parent: gone
            return None
        return float(proc.create_time())
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 -- NoSuchProcess, AccessDenied, ZombieProcess
        return None if not _pid_running(pid) else -1.0
    try:  # Linux without psutil: field 22 of /proc/<pid>/stat, in clock ticks after boot
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = float(stat.rsplit(")", 1)[1].split()[19])
        btime = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, IndexError, ValueError):
        return -1.0 if _pid_running(pid) else None


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_ME: Dict[str, Any] = {}


def me() -> Dict[str, Any]:
    """This process as a lock owner (computed once per process; a forked child recomputes)."""
    if _ME.get("pid") != os.getpid():
        _ME.clear()
        _ME.update(machine(), pid=os.getpid(), started=process_start(os.getpid()))
    return dict(_ME)


def owner_gone(owner: Dict[str, Any]) -> Optional[str]:
    """Why the owner of a lock on this machine is gone, or None when it is alive (or on another machine)."""
    here = machine()
    if any(owner.get(k) != here[k] for k in ("host", "boot", "pid_ns")):
        return None
    pid = int(owner.get("pid", -1))
    started = process_start(pid) if pid > 0 else None
    if started is None:
        return f"process {pid} is not running"
    recorded = owner.get("started")
    if recorded not in (None, -1.0) and started not in (-1.0,) and abs(float(recorded) - started) > 1.0:
        return f"pid {pid} now belongs to another process"
    return None


class _Heartbeat:
    """One daemon thread per process that refreshes the time stamp of every held lock."""

    def __init__(self) -> None:
        self.held: Dict[str, str] = {}  # path -> token
        self.guard = threading.Lock()
        self.thread: Optional[threading.Thread] = None
        self.pid = os.getpid()

    def add(self, path: str, token: str) -> None:
        with self.guard:
            if self.pid != os.getpid():  # forked: the parent's thread did not come along
                self.held, self.thread, self.pid = {}, None, os.getpid()
            self.held[path] = token
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self.run, name="store-lock-heartbeat", daemon=True)
                self.thread.start()

    def discard(self, path: str) -> None:
        with self.guard:
            self.held.pop(path, None)

    def run(self) -> None:
        while True:
            time.sleep(HEARTBEAT_S)
            with self.guard:
                held = dict(self.held)
            for path in held:
                try:
                    os.utime(path)
                except OSError:
                    pass


HEARTBEAT = _Heartbeat()
_SEEN: Dict[str, Tuple[float, float]] = {}  # lock path -> (its mtime when first seen, our clock then)


def describe_owner(owner: Optional[Dict[str, Any]]) -> str:
    if not owner:
        return "an unknown process"
    taken = owner.get("taken")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(taken)) if isinstance(taken, (int, float)) else "?"
    return f"pid {owner.get('pid')} on {owner.get('host')} (since {when})"


def read_owner(path: Path) -> Optional[Dict[str, Any]]:
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def stale_reason(path: Path, owner: Optional[Dict[str, Any]]) -> Optional[str]:
    """Why the lock at ``path`` may be taken over now, or None while its owner may still be working."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return "it is gone"
    if owner is None or "pid" not in owner:
        age = time.time() - mtime
        return f"it is unreadable and {age:.0f} s old" if age > UNREADABLE_GRACE_S else None
    gone = owner_gone(owner)
    if gone:
        return gone
    here = machine()
    if all(owner.get(k) == here[k] for k in ("host", "boot", "pid_ns")):
        return None  # alive on this machine (owner_gone checked its pid)
    # another machine, or this kernel seen from another pid namespace (a container restarted with the same host
    # name): its pid means nothing here, so only its heartbeat can tell; a lock not refreshed is taken over
    first = _SEEN.get(str(path))
    now = time.monotonic()
    if first is None or first[0] != mtime:
        _SEEN[str(path)] = (mtime, now)
        return None
    if now - first[1] > STALE_AFTER_S:
        return f"its owner on {owner.get('host')} has not refreshed it for {now - first[1]:.0f} s"
    return None


class Lock:
    """A held lock file; ``release()`` (or leaving a ``with`` block) frees it."""

    def __init__(self, path: Path, token: str):
        self.path, self.token = path, token
        HEARTBEAT.add(str(path), token)

    def __enter__(self) -> "Lock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def held(self) -> bool:
        owner = read_owner(self.path)
        return bool(owner) and owner.get("token") == self.token

    def release(self) -> None:
        HEARTBEAT.discard(str(self.path))
        if self.held():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __repr__(self) -> str:
        return f"Lock({str(self.path)!r})"


def try_acquire(path: Path, purpose: str = "") -> Tuple[Optional[Lock], Optional[Dict[str, Any]]]:
    """Take the lock at ``path`` now: ``(Lock, None)``, or ``(None, owner)`` while a live owner holds it.

    A lock whose owner is gone is taken over (logged with the reason).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(5):
        token = uuid.uuid4().hex
        body = json.dumps({**me(), "taken": time.time(), "token": token, "purpose": purpose}).encode()
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = read_owner(path)
            reason = stale_reason(path, owner)
            if reason is None:
                return None, owner
            if take_over(path, owner):
                log.warning("took over the lock %s from %s: %s", path, describe_owner(owner), reason)
            continue
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        return Lock(path, token), None
    return None, read_owner(path)


def take_over(path: Path, owner: Optional[Dict[str, Any]]) -> bool:
    """Remove a stale lock, unless another process replaced it meanwhile (then leave theirs in place)."""
    tomb = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, tomb)
    except FileNotFoundError:
        return False
    got = read_owner(tomb)
    same = (got or {}).get("token") == (owner or {}).get("token")
    if not same:  # we moved a fresh lock of a third process: put it back where it was
        try:
            os.link(tomb, path)
        except OSError:
            pass
    try:
        tomb.unlink()
    except FileNotFoundError:
        pass
    return same


def live_locks(folder: Path) -> Dict[str, Dict[str, Any]]:
    """Lock files under ``folder`` whose owner may still be working: name -> owner."""
    out: Dict[str, Dict[str, Any]] = {}
    if not folder.is_dir():
        return out
    for p in folder.glob("*.lock"):
        owner = read_owner(p)
        if stale_reason(p, owner) is None:
            out[p.name] = owner or {}
    return out


def clear_stale(folder: Path) -> List[str]:
    """Delete the lock files under ``folder`` whose owner is gone (a killed job's); returns their names.
    The folder itself goes when it is left empty."""
    removed: List[str] = []
    if not folder.is_dir():
        return removed
    for p in folder.glob("*.lock"):
        owner = read_owner(p)
        if stale_reason(p, owner) is not None and take_over(p, owner):
            removed.append(p.name)
    try:
        folder.rmdir()
    except OSError:
        pass
    return removed
