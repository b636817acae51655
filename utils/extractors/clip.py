"""``clip``: CLIP and SigLIP image and text towers, giving projected embeddings both modalities share.

``create("clip:<hub id or folder>", modality="image" | "text", precision="auto", max_length=None,
num_workers="auto")``

One extractor embeds one modality (the store keeps one folder per modality); build two from the same id
to get comparable image and text vectors, e.g. ``create("clip-vit-b16")`` and
``create("clip-vit-b16", modality="text")``. Vectors are the *projected* features
(``get_image_features`` / ``get_text_features``), the space in which CLIP/SigLIP compare images with
texts. Images use the model's own processor (CLIP's and SigLIP's mean/std, not ImageNet's); SigLIP
texts are padded to ``max_length`` (64) as in its training, CLIP texts to the longest in the batch.
"""

from __future__ import annotations

import logging
from typing import Any, List, Optional, Union

import numpy as np

from ..runtime import DEFAULT_BATCH_SIZE, autocast, check_precision
from . import FAMILIES
from .base import ExtractorError, length_sorted_batches, progress
from .image_hf import ProcessorTransform, check_against_catalog, processor_stats
from .images import ImageExtractor

log = logging.getLogger(__name__)


def features(out):
    """transformers 5 returns an output object from ``get_*_features``; older versions a tensor."""
    if hasattr(out, "pooler_output") and not hasattr(out, "shape"):
        return out.pooler_output
    return out


def encode_texts_with(tokenize, embed, texts: List[str], batch_size: int, device, precision: str,
                      desc: str, show_progress: bool) -> np.ndarray:
    """Length-sorted batches of ``texts`` through ``embed(**tokenize(batch)) -> [B, D]``, in input order."""
    import torch

    out: Optional[np.ndarray] = None
    with torch.inference_mode():
        for idx in progress(length_sorted_batches([len(t) for t in texts], batch_size), desc=desc,
                            enabled=show_progress, unit="batch"):
            enc = {k: v.to(device, non_blocking=True) for k, v in tokenize([texts[i] for i in idx]).items()}
            with autocast(device, precision):
                vec = embed(**enc).float().cpu().numpy()
            if out is None:
                out = np.empty((len(texts), vec.shape[1]), dtype=np.float32)
            out[idx] = vec
    assert out is not None
    return out


@FAMILIES.register("clip", modality="image")
class CLIPExtractor(ImageExtractor):
    family = "clip"
    load_hint = ("Give a CLIP/SigLIP hub id (network or a filled cache) or a folder with the model and its "
                 "processor saved with save_pretrained.")

    def __init__(
        self,
        model_id: str,
        modality: str = "image",
        precision: str = "auto",
        max_length: Optional[int] = None,
        num_workers: Union[int, str] = "auto",
        revision: Optional[str] = None,
    ):
        if modality not in ("image", "text"):
            raise ValueError(f"clip: modality must be 'image' or 'text', got {modality!r}")
        options: dict = {"modality": modality, "precision": check_precision(precision)}
        if max_length:
            options["max_length"] = int(max_length)
        if revision:
            options["revision"] = revision
        super().__init__(model_id, **options)
        self.modality = modality
        self.num_workers = num_workers
        self._model = self._processor = None
        self.preprocessing: Optional[dict] = None

    def _load(self, dev) -> None:
        from transformers import AutoModel, AutoProcessor

        kw = {"revision": self.options["revision"]} if self.options.get("revision") else {}
        model = AutoModel.from_pretrained(self.model_id, **kw)
        processor = AutoProcessor.from_pretrained(self.model_id, **kw)
        if not hasattr(model, "get_image_features") or not hasattr(model, "get_text_features"):
            raise ExtractorError(
                f"clip: {self.model_id!r} ({type(model).__name__}) has no image and text towers; use "
                "hf-image: for vision-only models or hf: for text models."
            )
        self._model_type = getattr(model.config, "model_type", "")
        self._processor = processor
        self.preprocessing = processor_stats(processor.image_processor)
        check_against_catalog(self.model_id, processor.image_processor)
        self._model = model.to(dev).eval()
        self._transform = ProcessorTransform(processor.image_processor)
        self._input_shape = self._transform.output_shape()
        self._forward = lambda x: features(self._model.get_image_features(pixel_values=x))

    def _encode(self, items: List[Any], batch_size: int, device, show_progress: bool, on_error: str) -> np.ndarray:
        if self.modality == "image":
            return super()._encode(items, batch_size, device, show_progress, on_error)
        if batch_size == "auto":
            batch_size = DEFAULT_BATCH_SIZE
        self.load(device)
        precision = self.resolved_precision()
        model = self._model
        tok = self._processor.tokenizer
        siglip = "siglip" in self._model_type
        max_len = self.options.get("max_length") or (64 if siglip else None)
        model_max = getattr(model.config, "text_config", None)
        model_max = getattr(model_max, "max_position_embeddings", None) or 77
        max_len = min(max_len or model_max, model_max)

        def tokenize(batch):
            return tok(batch, padding="max_length" if siglip else True, truncation=True, max_length=max_len,
                       return_tensors="pt")

        def embed(input_ids, attention_mask=None, **_):
            if siglip:  # SigLIP was trained without an attention mask over its max_length padding
                return features(model.get_text_features(input_ids=input_ids))
            return features(model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))

        texts = ["" if t is None else str(t) for t in items]
        return encode_texts_with(tokenize, embed, texts, batch_size, self._device, precision,
                                 f"embed text ({self.model_id})", show_progress)

    def describe(self) -> str:
        return f"{self.id} ({self.modality} tower, projected)"
