"""``llamacpp``: text embeddings from GGUF models through llama-cpp-python.

``create("llamacpp:<file.gguf>", pooling="auto", n_ctx=2048, n_threads=None, n_gpu_layers=0)``

- ``model_id`` is a local ``.gguf`` path, or ``<hub repo>/<file.gguf>`` (e.g.
  ``nomic-ai/nomic-embed-text-v1.5-GGUF/nomic-embed-text-v1.5.Q8_0.gguf``), fetched once with
  :func:`fetch_gguf` (needs network; later runs use the local cache).
- The pooling type is always passed explicitly to ``Llama(..., embedding=True)``: ``auto`` takes the
  file's own ``<arch>.pooling_type`` and falls back to ``mean`` when the file has none (decoder LLMs
  such as llama default to NONE, one vector per token, and unpinned setups silently produced NaN or
  per-token output). ``mean`` / ``cls`` / ``last`` force one.
- Texts longer than ``n_ctx`` tokens are truncated (with a warning); texts are sorted by length
  before batching and returned in input order.
- ``n_threads`` (CPU threads), ``n_gpu_layers`` (layers offloaded to a GPU build) change speed only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, List, Optional

import numpy as np

from . import FAMILIES
from .base import Extractor, ExtractorError, length_sorted_batches, progress

log = logging.getLogger(__name__)

POOLINGS = ("auto", "mean", "cls", "last")


def fetch_gguf(repo_id: str, filename: str, revision: Optional[str] = None, cache_dir: Optional[str] = None) -> Path:
    """Download ``filename`` from hub repo ``repo_id`` (once; cached) and return its local path. Needs network."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename, revision=revision, cache_dir=cache_dir))
    except Exception as e:  # noqa: BLE001 -- offline, wrong name, gated repo
        raise ExtractorError(
            f"llamacpp: could not fetch {filename!r} from {repo_id!r} ({type(e).__name__}: {e}). Check the repo and "
            "file names on the hub, or download the .gguf yourself and pass its path."
        ) from e


def resolve_gguf(model_id: str) -> Path:
    """A local .gguf path as given, or ``<owner>/<repo>/<file.gguf>`` fetched from the hub."""
    path = Path(model_id).expanduser()
    if path.is_file():
        return path
    parts = model_id.split("/")
    if len(parts) >= 3 and model_id.endswith(".gguf") and not path.is_absolute():
        return fetch_gguf("/".join(parts[:2]), "/".join(parts[2:]))
    raise ExtractorError(
        f"llamacpp: {model_id!r} is not a .gguf file. Give a local path, or '<owner>/<repo>/<file>.gguf' to fetch "
        "it from the Hugging Face hub."
    )


def gguf_metadata(path: Path, key: str) -> Optional[int]:
    """An integer ``<arch>.<key>`` from a GGUF file's metadata (``pooling_type``, ``context_length``), or None."""
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
        arch_field = reader.fields.get("general.architecture")
        if arch_field is None:
            return None
        arch = bytes(arch_field.parts[arch_field.data[0]]).decode()
        field = reader.fields.get(f"{arch}.{key}")
        return int(field.parts[field.data[0]][0]) if field is not None else None
    except Exception as e:  # noqa: BLE001 -- gguf missing or an unreadable header: fall back
        log.debug("could not read %s from %s: %s", key, path, e)
        return None


def gguf_pooling(path: Path) -> Optional[int]:
    """The pooling type recorded in a GGUF file's metadata (``<arch>.pooling_type``), or None."""
    return gguf_metadata(path, "pooling_type")


@FAMILIES.register("llamacpp", modality="text")
class LlamaCppExtractor(Extractor):
    family = "llamacpp"
    modality = "text"

    def __init__(self, model_id: str, pooling: str = "auto", n_ctx: int = 2048, n_threads: Optional[int] = None,
                 n_gpu_layers: int = 0, seed: int = 0):
        if pooling not in POOLINGS:
            raise ValueError(f"llamacpp: pooling must be one of {POOLINGS}, got {pooling!r}")
        super().__init__(model_id, pooling=pooling, n_ctx=int(n_ctx))
        self.n_threads, self.n_gpu_layers, self.seed = n_threads, int(n_gpu_layers), seed  # speed only
        self._llm = None
        self.pooling_type: Optional[int] = None
        self.n_ctx = int(n_ctx)  # the window used: n_ctx, capped at the model's training context

    def _load(self, dev) -> None:
        """Load the GGUF file (the device does not apply: ``n_gpu_layers`` offloads layers in a GPU build)."""
        try:
            import llama_cpp
        except ImportError:
            raise ExtractorError(
                "the llamacpp family needs llama-cpp-python: pip install 'llama-cpp-python>=0.3.9,<0.4'"
            ) from None
        path = resolve_gguf(self.model_id)
        table = {"mean": llama_cpp.LLAMA_POOLING_TYPE_MEAN, "cls": llama_cpp.LLAMA_POOLING_TYPE_CLS,
                 "last": llama_cpp.LLAMA_POOLING_TYPE_LAST}
        pooling = self.options["pooling"]
        if pooling == "auto":
            found = gguf_pooling(path)
            ptype = found if found in table.values() else table["mean"]
        else:
            ptype = table[pooling]
        n_ctx = self.options["n_ctx"]
        trained = gguf_metadata(path, "context_length")
        if trained and trained < n_ctx:  # an encoder such as BERT (512): longer windows would only mislead
            n_ctx = trained
        self.n_ctx = n_ctx
        kw: dict = {}
        if self.n_threads:
            kw["n_threads"] = int(self.n_threads)
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(path), embedding=True, pooling_type=ptype, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                n_gpu_layers=self.n_gpu_layers, seed=self.seed, verbose=False, **kw,
            )
        except (ValueError, RuntimeError) as e:
            raise ExtractorError(f"llamacpp: could not load {path} ({e}). Is it a valid GGUF model?") from e
        self.pooling_type = int(ptype)
        self.dim = int(self._llm.n_embd())

    def _fit(self, row: int, text: str) -> str:
        """Truncate ``text`` to the context window (tokens), warning when it was cut."""
        llm = self._llm
        limit = self.n_ctx
        toks = llm.tokenize(text.encode("utf-8"), add_bos=True)
        if len(toks) <= limit:
            return text
        log.warning("llamacpp: row %d has %d tokens; truncated to n_ctx=%d", row, len(toks), limit)
        return llm.detokenize(toks[1 : limit - 1]).decode("utf-8", errors="ignore")

    def _encode(self, items: List[Any], batch_size: int, device, show_progress: bool, on_error: str) -> np.ndarray:
        self.load("cpu")
        texts = [self._fit(i, "" if t is None else str(t)) for i, t in enumerate(items)]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        batches = length_sorted_batches([len(t) for t in texts], batch_size)
        for idx in progress(batches, desc=f"embed text ({Path(self.model_id).name})", enabled=show_progress, unit="batch"):
            vecs = self._llm.embed([texts[i] for i in idx], normalize=False)
            arr = np.asarray(vecs, dtype=np.float32)
            if arr.ndim != 2 or arr.shape != (len(idx), self.dim):
                raise ExtractorError(
                    f"llamacpp: expected one {self.dim}-d vector per text, got shape {arr.shape}; "
                    "set pooling='mean' (or 'cls'/'last') explicitly"
                )
            out[idx] = arr
        return out

    def describe(self) -> str:
        return f"{self.id} (pooling={self.options['pooling']}, type {self.pooling_type})"
