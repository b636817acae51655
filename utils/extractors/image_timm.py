"""``timm``: image embeddings from any timm model, with that model's own preprocessing.

``create("timm:<model name>", pretrained=True, weights_file=None, seed=0, num_workers="auto",
precision="auto", channels_last="auto")``

- The model is built with ``num_classes=0`` (pooled features, no classifier), and images go through
  ``timm.data.resolve_model_data_config`` + ``create_transform``: each backbone's own size, crop,
  interpolation and mean/std (CLIP's statistics are not ImageNet's).
- ``pretrained=True`` downloads the hub weights (network or a filled cache); ``weights_file`` loads a
  local checkpoint instead (safetensors or .pth); ``pretrained=False`` uses random weights seeded by
  ``seed`` -- an offline stand-in whose vectors are *not* foundation-model features, and labelled so.
- Images decode and resize in DataLoader workers (``num_workers``) while the model runs.
- ``precision``: ``auto`` (default: bf16 on CUDA and on CPUs with native bf16, fp16 on older CUDA,
  fp32 elsewhere) / ``fp32`` / ``bf16`` / ``fp16`` (autocast); the manifest records what ``auto`` chose.
  ``channels_last`` for convolutional models (``auto``: on when the model has convolutions and no
  attention).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, List, Optional, Union

import numpy as np

from . import FAMILIES
from .base import Extractor, ExtractorError
from ..precision import check_precision
from .runtime import encode_images, looks_convolutional

log = logging.getLogger(__name__)


@FAMILIES.register("timm", modality="image")
class TimmImageExtractor(Extractor):
    family = "timm"
    modality = "image"

    def __init__(
        self,
        model_id: str,
        pretrained: bool = True,
        weights_file: Optional[str] = None,
        seed: int = 0,
        num_workers: Union[int, str] = "auto",
        precision: str = "auto",
        channels_last: Union[bool, str] = "auto",
    ):
        options: dict = {"pretrained": bool(pretrained or weights_file), "precision": check_precision(precision)}
        if weights_file:
            options["weights_file"] = str(Path(weights_file).expanduser().resolve())
        if not options["pretrained"]:
            options["seed"] = int(seed)  # random weights: the seed decides the vectors
        super().__init__(model_id, **options)
        self.num_workers = num_workers  # speed only: not part of the identity
        self.channels_last = channels_last
        self._model = None
        self._transform = None
        self._device = None
        self.data_config: Optional[dict] = None

    def describe(self) -> str:
        if not self.options["pretrained"]:
            return f"{self.id} (RANDOM weights, seed {self.options['seed']}: offline stand-in, not pretrained)"
        return self.id

    def load(self, device: Optional[str] = "auto") -> "TimmImageExtractor":
        import timm
        import torch

        from ..config import resolve_device

        dev = resolve_device(device)
        if self._model is not None and self._device == dev:
            return self
        kw: dict = {"pretrained": self.options["pretrained"], "num_classes": 0}
        if "weights_file" in self.options:
            kw["pretrained_cfg_overlay"] = {"file": self.options["weights_file"]}
        try:
            if not self.options["pretrained"]:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(self.options["seed"])
                    model = timm.create_model(self.model_id, **kw)
            else:
                model = timm.create_model(self.model_id, **kw)
        except RuntimeError as e:
            if "Unknown model" in str(e):
                raise ExtractorError(
                    f"timm: unknown model {self.model_id!r}; list names with timm.list_models('*dino*')"
                ) from e
            raise
        except (OSError, ValueError) as e:
            raise ExtractorError(
                f"timm: could not load weights for {self.model_id!r} ({e}). Pretrained weights come from the "
                "Hugging Face hub (network or a filled cache); pass weights_file=... for a local checkpoint "
                "or pretrained=False for random weights."
            ) from e
        self.data_config = timm.data.resolve_model_data_config(model)
        self._transform = timm.data.create_transform(**self.data_config, is_training=False)
        use_cl = self.channels_last
        if use_cl == "auto":
            use_cl = looks_convolutional(model)
        self._channels_last = bool(use_cl)
        model = model.to(dev).eval()
        if self._channels_last:
            model = model.to(memory_format=torch.channels_last)
        self._model, self._device = model, dev
        self.dim = int(getattr(model, "num_features", 0)) or None
        log.info("timm: loaded %s on %s (%s)", self.model_id, dev, self.describe())
        return self

    def _encode(self, items: List[Any], batch_size: int, device, show_progress: bool, on_error: str) -> np.ndarray:
        self.load(device)
        return encode_images(
            items, self._transform, tuple(self.data_config["input_size"]), self._model, self._device,
            batch_size=batch_size, num_workers=self.num_workers, channels_last=self._channels_last,
            precision=self.resolved_precision(), on_error=on_error, failures=self.last_failures,
            desc=f"embed images ({self.model_id})", show_progress=show_progress,
        )
