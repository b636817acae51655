"""What every part of the store shares: its errors, the fault hook of the reliability probe, time stamps."""

from __future__ import annotations

import sys
import time
from typing import Sequence


class StoreMismatchError(RuntimeError):
    """The folder holds embeddings made from other inputs, by another extractor, or by another format version."""


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


def fault_point(stage: str) -> None:
    """Call ``utils.store.FAULT_HOOK`` (the reliability probe's, ``benchmarks/faults.py``) with ``stage``: a
    point where a crash could leave something behind. The hook is read from the package at each call, so
    setting ``utils.store.FAULT_HOOK`` reaches every module of the store (looked up in ``sys.modules``, not
    imported: the package imports this module, and an import back would be a cycle)."""
    hook = getattr(sys.modules[__package__], "FAULT_HOOK", None)
    if hook is not None:
        hook(stage)


def now() -> str:
    """The local time as the manifest and shard records write it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
