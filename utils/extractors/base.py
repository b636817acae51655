"""The extractor contract.

``create("family:model_id", **options)`` returns an :class:`Extractor`;
``encode(items, batch_size=..., device=..., normalize=..., show_progress=...)`` returns float32
``[N, D]`` in input order. A family owns its preprocessing (tokenizer, image size, crop, mean/std,
pooling). Models load lazily on the first ``encode`` call, onto the device that call asks for, through
one path: :meth:`Extractor.load` resolves the device, returns at once when the model is already there,
calls the family's ``_load(device)`` and turns a loading ``OSError`` into an :class:`ExtractorError` that
says what to give instead (the family's ``load_hint``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

log = logging.getLogger(__name__)


class ExtractorError(RuntimeError):
    """A model could not be loaded or produced unusable vectors."""


class MediaError(ExtractorError):
    """An input file (image, audio) could not be read; names the row and the path."""

    def __init__(self, row: int, path: Any, reason: str):
        self.row, self.path, self.reason = row, path, reason
        super().__init__(
            f"could not read input row {row} ({path}): {reason}. Fix or remove the file, or pass "
            "on_error='skip' to record this row as failed and go on."
        )


class Extractor(ABC):
    """Base class of every family. Subclasses set ``family`` and ``modality`` and implement ``_encode``."""

    family: str = ""
    modality: str = ""  # "text", "image" or "audio"
    auto_batch: bool = False  # True: _encode resolves batch_size="auto" itself (from free GPU memory)
    # appended to "could not load <id> (<error>)." when loading fails: what the user should give instead
    load_hint: str = ("Give a Hugging Face hub id (needs network or a filled cache) or a local folder saved "
                      "with save_pretrained.")

    def __init__(self, model_id: str, **options: Any):
        self.model_id = model_id
        self.options: Dict[str, Any] = dict(options)
        self.dim: Optional[int] = None  # known after the model is loaded
        self.last_failures: Dict[int, str] = {}  # row -> reason, filled by encode(on_error="skip")
        self._device = None  # where the model is loaded (None: not loaded)

    # ---------------------------------------------------------------------------------- loading
    def load(self, device: Optional[str] = "auto") -> "Extractor":
        """Load the model onto ``device`` (once; a second call on the same device does nothing)."""
        from ..runtime import resolve_device

        dev = resolve_device(device)
        if self._device is not None and self._device == dev:
            return self
        try:
            self._load(dev)
        except OSError as e:
            raise ExtractorError(f"{self.family}: could not load {self.model_id!r} ({e}). {self.load_hint}") from e
        self._device = dev
        log.info("%s: loaded %s on %s (%s)", self.family, self.model_id, dev, self.describe())
        return self

    def _load(self, device) -> None:
        """Load model and preprocessing onto ``device`` (a ``torch.device``); set ``self.dim`` when known.
        Families with a model override it; an extractor without one (a fixed function) needs nothing."""

    # ---------------------------------------------------------------- identity (for the store manifest)
    @property
    def id(self) -> str:
        return f"{self.family}:{self.model_id}"

    def config(self) -> Dict[str, Any]:
        """The extractor's identity, compared by the store before reusing vectors: its id and the options the
        user set. The precision they resolve to on this machine (bf16 on a GPU, fp32 on a laptop) is recorded
        with each shard and shown (``store.precision``), but is not part of the identity: a store made on a
        GPU is reused on a laptop."""
        return {"id": self.id, "modality": self.modality, "options": _jsonable(self.options)}

    # options that may name a local weights file (timm's weights_file, a GGUF path, a checkpoint)
    WEIGHT_OPTIONS = ("weights_file", "checkpoint", "model_path", "gguf")

    def local_weights(self) -> List[str]:
        """Local files or folders the model's weights are read from (a folder saved with ``save_pretrained``, a
        ``.pt`` / ``.gguf`` file): the model id when it is a path on this machine, and weight-file options.
        Empty for hub ids."""
        found = []
        for v in [self.model_id] + [self.options.get(k) for k in self.WEIGHT_OPTIONS]:
            if isinstance(v, str) and v and not v.startswith(("http://", "https://")):
                p = Path(v).expanduser()
                if p.exists():
                    found.append(str(p.resolve()))
        return found

    def weights_fingerprint(self, mode: str = "stat") -> Optional[str]:
        """Fingerprint of the local weights (see :meth:`local_weights`), None for a hub model. ``"stat"``: every
        file's relative name, size and modification time (cheap: a model edited and saved in place gets
        another one); ``"content"``: a sha256 of every byte (survives copies that do not keep times)."""
        roots = self.local_weights()
        if not roots:
            return None
        h = hashlib.sha256(f"weights\0{mode}\0".encode())
        for root in roots:
            r = Path(root)
            files = sorted(p for p in r.rglob("*") if p.is_file() and not any(
                part.startswith(".") for part in p.relative_to(r).parts)) if r.is_dir() else [r]
            for f in files:
                st = f.stat()
                rel = f.relative_to(r).as_posix() if r.is_dir() else f.name
                h.update(f"{rel}\0{st.st_size}\0".encode())
                if mode == "content":
                    with open(f, "rb") as fh:
                        for chunk in iter(lambda: fh.read(1 << 22), b""):
                            h.update(chunk)
                else:
                    h.update(f"{st.st_mtime_ns}\0".encode())
        return f"{mode}:{h.hexdigest()[:32]}"

    def resolved_precision(self, device: Optional[str] = None) -> str:
        """The precision ``options["precision"]`` means on ``device`` (default: the loaded or auto device)."""
        from ..runtime import resolve_device, resolve_precision

        dev = self._device if device is None else resolve_device(device)
        return resolve_precision(self.options["precision"], dev if dev is not None else resolve_device("auto"))

    @property
    def slug(self) -> str:
        """Folder-safe name: the id, plus a short hash of the options when there are any."""
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", self.id).strip("_")
        if self.options:
            digest = hashlib.sha1(json.dumps(_jsonable(self.options), sort_keys=True).encode()).hexdigest()[:8]
            base = f"{base}-{digest}"
        return base

    def describe(self) -> str:
        """One honest line for tables and logs (for example that weights are random)."""
        return self.id

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({self.id!r}{', ' + opts if opts else ''})"

    # ---------------------------------------------------------------------------------- encoding
    def encode(
        self,
        items: Sequence[Any],
        batch_size: Union[int, str] = "auto",
        device: Optional[str] = "auto",
        normalize: bool = False,
        show_progress: bool = True,
        on_error: str = "raise",
    ) -> np.ndarray:
        """Embed ``items`` (texts, or image/audio paths) into float32 ``[N, D]``, in input order.

        ``normalize`` L2-normalises each row; NUL bytes are dropped from texts. ``on_error="skip"`` turns an
        unreadable file into a row of NaN and records ``row -> reason`` in ``self.last_failures`` instead of raising.
        ``batch_size="auto"``: chosen from free GPU memory on CUDA by the families that can (``auto_batch``), else
        :data:`utils.runtime.DEFAULT_BATCH_SIZE`.
        """
        from ..runtime import DEFAULT_BATCH_SIZE

        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if batch_size == "auto":
            batch_size = "auto" if self.auto_batch else DEFAULT_BATCH_SIZE
        elif isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1 or 'auto', got {batch_size!r}")
        self.last_failures = {}
        items = list(items)
        if self.modality == "text":  # a NUL byte is no text (a C tokenizer would stop at it): dropped for every family
            items = [t.replace("\x00", "") if isinstance(t, str) and "\x00" in t else t for t in items]
        if not items:
            dim = self.dim if self.dim is not None else 0
            return np.zeros((0, dim), dtype=np.float32)
        out = self._encode(items, batch_size=batch_size, device=device, show_progress=show_progress, on_error=on_error)
        out = np.ascontiguousarray(out, dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(items):
            raise ExtractorError(f"{self.id}: expected [{len(items)}, D] vectors, got shape {out.shape}")
        self.dim = out.shape[1]
        ok = np.ones(len(items), dtype=bool)
        if self.last_failures:
            ok[list(self.last_failures)] = False
            out[~ok] = np.nan
        bad = ~np.isfinite(out[ok]).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(ok)[bad][:10].tolist()
            raise ExtractorError(
                f"{self.id} produced NaN/inf vectors for {int(bad.sum())} input(s) (rows {rows}). "
                "For GGUF models set the pooling type explicitly; for fp16 try precision='fp32'."
            )
        if normalize:
            norms = np.linalg.norm(out[ok], axis=1, keepdims=True)
            out[ok] = out[ok] / np.maximum(norms, 1e-12)
        return out

    @abstractmethod
    def _encode(
        self, items: List[Any], batch_size: int, device: Optional[str], show_progress: bool, on_error: str
    ) -> np.ndarray:
        """Return ``[N, D]`` vectors for ``items`` in input order (rows for failed items may be anything)."""


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in sorted(obj.items())}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> List[np.ndarray]:
    """Index batches over items sorted by length (longest first), so padding is minimal.

    Callers write each batch's output back at its indices, which restores input order.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def progress(iterable, total: Optional[int] = None, desc: str = "", enabled: bool = True, unit: str = "it"):
    """A progress bar (:func:`utils.runtime.progress_bar`) that can be switched off."""
    from ..runtime import progress_bar as tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not enabled, unit=unit, leave=False)
