"""``timm``: image embeddings from any timm model, with that model's own preprocessing.

``create("timm:<model name>", pretrained=True, weights_file=None, seed=0, num_workers="auto",
precision="fp32", channels_last="auto")``

- The model is built with ``num_classes=0`` (pooled features, no classifier), and images go through
  ``timm.data.resolve_model_data_config`` + ``create_transform``: each backbone's own size, crop,
  interpolation and mean/std (CLIP's statistics are not ImageNet's).
- ``pretrained=True`` downloads the hub weights (network or a filled cache); ``weights_file`` loads a
  local checkpoint instead (safetensors or .pth); ``pretrained=False`` uses random weights seeded by
  ``seed`` -- an offline stand-in whose vectors are *not* foundation-model features, and labelled so.
- Images decode and resize in DataLoader workers (``num_workers``) while the model runs.
- ``precision``: ``fp32`` / ``bf16`` / ``fp16`` / ``auto`` (autocast); ``channels_last`` for
  convolutional models (``auto``: on for CNNs).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, List, Optional, Union

import numpy as np

from . import FAMILIES
from .base import Extractor, ExtractorError, MediaError, progress

log = logging.getLogger(__name__)


class _ImageFiles:
    """A map-style dataset of image paths -> (tensor, index, error message or "")."""

    def __init__(self, paths: List[Any], transform, fallback_size):
        self.paths, self.transform, self.fallback_size = paths, transform, fallback_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import torch
        from PIL import Image

        path = self.paths[i]
        try:
            if path is None:
                raise FileNotFoundError("no image path in this row")
            with Image.open(path) as im:
                img = im.convert("RGB")
            return self.transform(img), i, ""
        except Exception as e:  # noqa: BLE001 -- reported per row to the caller
            return torch.zeros(3, *self.fallback_size), i, f"{type(e).__name__}: {e}"


def loader_workers(num_workers: Union[int, str], n_items: int, batch_size: int) -> int:
    if num_workers != "auto":
        return int(num_workers)
    if n_items < 2 * batch_size:
        return 0
    return max(0, min(4, (os.cpu_count() or 1) - 1))


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
        precision: str = "fp32",
        channels_last: Union[bool, str] = "auto",
    ):
        options: dict = {"pretrained": bool(pretrained or weights_file), "precision": precision}
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
            use_cl = not any(k in type(model).__name__.lower() for k in ("vit", "vision", "transformer", "eva", "deit"))
        self._channels_last = bool(use_cl)
        model = model.to(dev).eval()
        if self._channels_last:
            model = model.to(memory_format=torch.channels_last)
        self._model, self._device = model, dev
        self.dim = int(getattr(model, "num_features", 0)) or None
        log.info("timm: loaded %s on %s (%s)", self.model_id, dev, self.describe())
        return self

    def _autocast(self):
        import contextlib

        import torch

        precision = self.options["precision"]
        if precision == "fp32":
            return contextlib.nullcontext()
        if precision == "auto":
            if self._device.type == "cuda":
                dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            else:
                return contextlib.nullcontext()
        else:
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        return torch.autocast(device_type=self._device.type, dtype=dtype)

    def _encode(self, items: List[Any], batch_size: int, device, show_progress: bool, on_error: str) -> np.ndarray:
        import torch
        from torch.utils.data import DataLoader

        self.load(device)
        size = tuple(self.data_config["input_size"][1:])
        data = _ImageFiles(items, self._transform, size)
        workers = loader_workers(self.num_workers, len(items), batch_size)
        cuda = self._device.type == "cuda"
        loader = DataLoader(
            data, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=cuda,
            persistent_workers=False, prefetch_factor=4 if workers else None,
        )
        out: Optional[np.ndarray] = None
        with torch.inference_mode():
            bar = progress(loader, total=len(loader), desc=f"embed images ({self.model_id})", enabled=show_progress, unit="batch")
            for x, idx, errors in bar:
                for i, err in zip(idx.tolist(), errors):
                    if err:
                        if on_error == "raise":
                            raise MediaError(i, items[i], err)
                        self.last_failures[i] = err
                x = x.to(self._device, non_blocking=cuda)
                if self._channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with self._autocast():
                    feats = self._model(x)
                vec = feats.float().cpu().numpy()
                if out is None:
                    out = np.empty((len(items), vec.shape[1]), dtype=np.float32)
                out[idx.numpy()] = vec
        if out is None:
            raise ExtractorError("timm: no batches were produced")
        return out
