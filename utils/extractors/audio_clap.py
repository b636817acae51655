"""``clap``: CLAP audio and text towers, giving projected embeddings both modalities share.

``create("clap:<hub id or folder>", modality="audio" | "text", precision="auto")``, e.g.
``create("clap:laion/larger_clap_general")`` for audio files and ``modality="text"`` for captions.

- Audio files are read with ``soundfile`` (WAV, FLAC, OGG), mixed down to mono and resampled to the
  model's rate (48 kHz for LAION CLAP) with ``scipy.signal.resample_poly`` (polyphase, anti-aliased).
- Clips longer than the model's window are cut the way the model was trained: ``fusion`` for models
  built with ``enable_fusion``, else ``rand_trunc``. The random crop is drawn from a generator seeded by
  the clip's own samples, one clip at a time, so the same file gives the same vector whatever its batch
  or its position in the batch.
- An unreadable file raises :class:`MediaError` naming the row and path, or with ``on_error="skip"`` is
  recorded as failed.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from typing import Any, List, Optional

import numpy as np

from ..runtime import autocast, check_precision
from . import FAMILIES
from .base import Extractor, MediaError, progress
from .clip import encode_texts_with, features

log = logging.getLogger(__name__)


def read_audio(path: Any, rate: int) -> np.ndarray:
    """Mono float32 samples of ``path`` at ``rate`` Hz: ``[T]``."""
    import soundfile as sf

    if path is None:
        raise FileNotFoundError("no audio path in this row")
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [T, channels]
    wave = data.mean(axis=1)
    if len(wave) == 0:
        raise ValueError("the file holds no samples")
    return resample(wave, int(sr), rate)


def resample(wave: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Resample ``wave`` [T] from ``src`` to ``dst`` Hz (polyphase filter; exact rational ratio)."""
    if src == dst:
        return wave.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    ratio = Fraction(dst, src).limit_denominator(1000)
    return resample_poly(wave, ratio.numerator, ratio.denominator).astype(np.float32)


@FAMILIES.register("clap", modality="audio")
class CLAPExtractor(Extractor):
    family = "clap"
    load_hint = ("Give a CLAP hub id such as laion/larger_clap_general (network or a filled cache) or a "
                 "folder saved with save_pretrained.")

    def __init__(self, model_id: str, modality: str = "audio", precision: str = "auto", truncation: Optional[str] = None,
                 revision: Optional[str] = None):
        if modality not in ("audio", "text"):
            raise ValueError(f"clap: modality must be 'audio' or 'text', got {modality!r}")
        options: dict = {"modality": modality, "precision": check_precision(precision)}
        if truncation:
            options["truncation"] = truncation
        if revision:
            options["revision"] = revision
        super().__init__(model_id, **options)
        self.modality = modality
        self._model = self._processor = None

    def _load(self, dev) -> None:
        from transformers import AutoProcessor, ClapModel

        kw = {"revision": self.options["revision"]} if self.options.get("revision") else {}
        model = ClapModel.from_pretrained(self.model_id, **kw)
        processor = AutoProcessor.from_pretrained(self.model_id, **kw)
        self._processor = processor
        fusion = bool(getattr(model.config.audio_config, "enable_fusion", False))
        self._truncation = self.options.get("truncation") or ("fusion" if fusion else "rand_trunc")
        self.sampling_rate = int(processor.feature_extractor.sampling_rate)
        self._model = model.to(dev).eval()

    def features_of(self, wave: np.ndarray):
        """The feature extractor's output for one clip, with its random crop seeded by the clip itself."""
        import hashlib

        fe = self._processor.feature_extractor
        seed = int.from_bytes(hashlib.blake2b(np.ascontiguousarray(wave).tobytes(), digest_size=4).digest(), "little")
        state = np.random.get_state()  # rand_trunc draws crops from numpy's global RNG
        np.random.seed(seed)
        try:
            return fe([wave], sampling_rate=self.sampling_rate, truncation=self._truncation, return_tensors="pt")
        finally:
            np.random.set_state(state)

    def _encode(self, items: List[Any], batch_size: int, device, show_progress: bool, on_error: str) -> np.ndarray:
        import torch

        self.load(device)
        precision = self.resolved_precision()
        model = self._model
        if self.modality == "text":
            tok = self._processor.tokenizer

            def tokenize(batch):
                return tok(batch, padding=True, truncation=True, max_length=min(512, tok.model_max_length or 512),
                           return_tensors="pt")

            def embed(input_ids, attention_mask=None, **_):
                return features(model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))

            texts = ["" if t is None else str(t) for t in items]
            return encode_texts_with(tokenize, embed, texts, batch_size, self._device, precision,
                                     f"embed text ({self.model_id})", show_progress)

        out: Optional[np.ndarray] = None
        starts = list(range(0, len(items), batch_size))
        with torch.inference_mode():
            for lo in progress(starts, desc=f"embed audio ({self.model_id})", enabled=show_progress, unit="batch"):
                rows, waves = [], []
                for i in range(lo, min(lo + batch_size, len(items))):
                    try:
                        waves.append(read_audio(items[i], self.sampling_rate))
                        rows.append(i)
                    except Exception as e:  # noqa: BLE001 -- reported per row
                        reason = f"{type(e).__name__}: {e}"
                        if on_error == "raise":
                            raise MediaError(i, items[i], reason) from e
                        self.last_failures[i] = reason
                if not waves:
                    continue
                per_clip = [self.features_of(w) for w in waves]
                inputs = {k: torch.cat([f[k] for f in per_clip]).to(self._device)
                          for k in ("input_features", "is_longer") if k in per_clip[0]}
                with autocast(self._device, precision):
                    vec = features(model.get_audio_features(**inputs)).float().cpu().numpy()
                if out is None:
                    out = np.full((len(items), vec.shape[1]), np.nan, dtype=np.float32)
                out[rows] = vec
        if out is None:  # every file failed (and was recorded): rows of NaN, marked failed by encode()
            out = np.full((len(items), int(model.config.projection_dim)), np.nan, dtype=np.float32)
        return out

    def describe(self) -> str:
        return f"{self.id} ({self.modality} tower, projected)"
