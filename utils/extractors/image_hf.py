"""``hf-image``: image embeddings from Hugging Face transformers vision models.

``create("hf-image:<hub id or local folder>", pooling="auto", precision="auto", num_workers="auto",
channels_last="auto", decode="auto", compile="auto")``

The family is called ``hf-image`` because ``hf`` is the transformers *text* family: a spec names one
family, and the same hub library serves both modalities with different loaders and preprocessing.

- Loads ``AutoModel`` + ``AutoImageProcessor``: DINOv2, ViT, ConvNeXt, ConvNeXt V2, Swin, BEiT, SAM, ...
  Every image goes through the model's own processor (size, crop, mean/std from its hub config).
- ``pooling``: ``auto`` (the model's pooled output where it is a plain pooled feature -- DINOv2's
  normalised CLS token, ConvNeXt's/Swin's/BEiT's pooled features; the CLS token for ViT, whose
  ``pooler_output`` is an extra tanh layer; the spatial mean of the image embedding for SAM), ``cls``,
  ``mean`` (mean of the last hidden states over tokens or pixels) or ``pooler``.
- SAM: only the image encoder runs (``get_image_embeddings``), at its native 1024 px; the
  ``[256, 64, 64]`` map is averaged to a 256-d vector.
- Images decode in DataLoader workers while the model runs; ``precision`` and ``channels_last`` as in
  :mod:`utils.extractors.images`.
"""

from __future__ import annotations

import logging
from typing import Optional, Union

import numpy as np

from ..runtime import check_precision
from . import FAMILIES
from .base import ExtractorError
from .images import ImageExtractor, looks_convolutional

log = logging.getLogger(__name__)

POOLINGS = ("auto", "cls", "mean", "pooler")


class ProcessorTransform:
    """PIL image -> ``pixel_values`` tensor [3, H, W] through a transformers image processor (picklable)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, img):
        return self.processor(images=img, return_tensors="pt")["pixel_values"][0]

    def output_shape(self):
        from PIL import Image

        return tuple(self(Image.new("RGB", (64, 48))).shape)


def processor_stats(processor) -> dict:
    """``{"mean", "std", "size"}`` of an image processor, for logs and checks."""
    size = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    size = size or getattr(processor, "size", None)
    if size is not None and not isinstance(size, int):
        get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
        size = get("height") or get("shortest_edge") or get("longest_edge")
    return {
        "mean": [float(v) for v in (getattr(processor, "image_mean", None) or [])],
        "std": [float(v) for v in (getattr(processor, "image_std", None) or [])],
        "size": size,
    }


def check_against_catalog(model_id: str, processor) -> None:
    """Warn when a catalogued model's processor does not use the statistics the catalog records."""
    from .catalog import expected_preprocessing

    want = expected_preprocessing(model_id)
    if want is None:
        return
    got = processor_stats(processor)
    if not np.allclose(got["mean"], want["mean"], atol=1e-4) or not np.allclose(got["std"], want["std"], atol=1e-4):
        log.warning("%s: processor mean/std %s/%s differ from the catalogued %s/%s",
                    model_id, got["mean"], got["std"], want["mean"], want["std"])


def load_image_processor(path: str, model_id: str, **kw):
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(path, **kw)
    except OSError as e:
        raise ExtractorError(
            f"could not load the image processor of {model_id!r} ({e}). Give a hub id (network or a filled "
            "cache) or a folder where the model and its processor were saved with save_pretrained."
        ) from e
    check_against_catalog(model_id, processor)
    return processor


@FAMILIES.register("hf-image", modality="image")
class HFImageExtractor(ImageExtractor):
    family = "hf-image"

    def __init__(
        self,
        model_id: str,
        pooling: str = "auto",
        precision: str = "auto",
        num_workers: Union[int, str] = "auto",
        channels_last: Union[bool, str] = "auto",
        revision: Optional[str] = None,
        decode: str = "auto",
        compile: Union[bool, str] = "auto",
    ):
        if pooling not in POOLINGS:
            raise ValueError(f"hf-image: pooling must be one of {POOLINGS}, got {pooling!r}")
        options: dict = {"pooling": pooling, "precision": check_precision(precision)}
        if revision:
            options["revision"] = revision
        super().__init__(model_id, **options)
        self.num_workers, self.channels_last = num_workers, channels_last  # speed only: not identity
        self.decode, self.compile = decode, compile
        self._model = None
        self._pooling: Optional[str] = None
        self.preprocessing: Optional[dict] = None

    def _load(self, dev) -> None:
        import torch
        from transformers import AutoConfig, AutoModel

        kw = {"revision": self.options["revision"]} if self.options.get("revision") else {}
        config = AutoConfig.from_pretrained(self.model_id, **kw)
        model = AutoModel.from_pretrained(self.model_id, **kw)
        processor = load_image_processor(self.model_id, self.model_id, **kw)
        self._model_type = getattr(config, "model_type", "")
        pooling = self.options["pooling"]
        if pooling == "auto":
            pooling = {"vit": "cls", "sam": "mean"}.get(self._model_type, "pooler")
        self._pooling = pooling
        self._transform = ProcessorTransform(processor)
        self._input_shape = self._transform.output_shape()
        self.preprocessing = processor_stats(processor)
        use_cl = self.channels_last
        self._channels_last = looks_convolutional(model) if use_cl == "auto" else bool(use_cl)
        model = model.to(dev).eval()
        if self._channels_last:
            model = model.to(memory_format=torch.channels_last)
        self._model = model

    def _forward(self, x):
        """pixel_values [B, 3, H, W] -> [B, D]."""
        model = self._model
        if self._model_type == "sam":
            emb = model.get_image_embeddings(pixel_values=x)  # [B, 256, 64, 64]
            emb = getattr(emb, "image_embeddings", emb)
            return emb.float().mean(dim=(2, 3))
        out = model(pixel_values=x)
        pooled = getattr(out, "pooler_output", None)
        if self._pooling == "pooler" and pooled is not None:
            return pooled.flatten(1)
        hidden = out.last_hidden_state
        if self._pooling == "cls" and hidden.dim() == 3:
            return hidden[:, 0]
        if hidden.dim() == 4:  # convolutional maps [B, C, H, W]
            return hidden.float().mean(dim=(2, 3))
        if self._pooling in ("mean", "pooler"):  # no pooled output: token mean
            return hidden.float().mean(dim=1)
        return hidden[:, 0]

    def describe(self) -> str:
        return f"{self.id} (pooling={self._pooling or self.options['pooling']})"
