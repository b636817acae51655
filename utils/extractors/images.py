"""Image extraction shared by the image families (``timm``, ``hf-image``, ``clip``'s image tower).

:class:`ImageExtractor` is the base of those families: its ``_load`` sets a transform (PIL image -> tensor),
the input shape, a forward function (``[B, 3, H, W] -> [B, D]``) and whether to use ``channels_last``;
its ``_encode`` decodes and resizes images in DataLoader workers while the model runs, with pinned memory
and non-blocking copies on CUDA, under autocast in the resolved precision, and keeps input order.
:func:`to_rgb` turns every Pillow mode into 8-bit RGB with its values scaled properly (16-bit and float
images by their depth or range, transparency onto white).
Unreadable files raise :class:`~utils.extractors.base.MediaError` or, with ``on_error="skip"``, are
recorded as failed rows.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..runtime import autocast
from .base import Extractor, ExtractorError, MediaError, progress

log = logging.getLogger(__name__)

def looks_convolutional(model) -> bool:
    """True for CNN backbones (ResNet, ConvNeXt, EfficientNet, ...), where channels_last pays off."""
    import torch

    n_conv = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    n_attn = sum("attention" in type(m).__name__.lower() for m in model.modules())
    return n_conv > 2 and n_attn == 0


# ------------------------------------------------------------------------------------------ decoding
def to_rgb(im) -> "PIL.Image.Image":  # noqa: F821
    """Any PIL image as 8-bit RGB, its values scaled properly (what every image family feeds its preprocessing).

    - 16-bit and 32-bit integer grey (``I;16``, ``I``, common in medical imaging) are scaled by their bit
      depth: the smallest of 8, 10, 12, 14, 16 (, 32) bits that holds the image's largest value, so a 12-bit
      X-ray stored in 16 bits fills the 8-bit range the same way a full 16-bit image does. (``convert("RGB")``
      clips them at 255: nearly white.) Negative values shift the range to start at 0.
    - float images (``F``): values in [0, 1] are scaled by 255, others by their own range; NaN becomes 0.
    - transparency (``RGBA``, ``LA``, ``PA``, palette with a transparent colour) is composited onto white,
      rather than dropped (the colour under transparent pixels is arbitrary, often black).
    - ``CMYK``, ``P``, ``L``, ``1``, ``YCbCr``, ``LAB``, ``HSV``: Pillow's conversion.
    """
    from PIL import Image

    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        if im.mode == "F":
            a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
            lo, hi = float(a.min()), float(a.max())
            if lo >= 0.0 and hi <= 1.0:
                scaled = a * 255.0
            else:
                scaled = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        else:
            lo = min(float(a.min()), 0.0)
            top = float(a.max()) - lo
            bits = next((b for b in (8, 10, 12, 14, 16, 32) if top <= 2**b - 1), 32)
            scaled = (a - lo) / (2**bits - 1) * 255.0
        grey = Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))
        return grey.convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        return white.convert("RGB")
    return im.convert("RGB") if im.mode != "RGB" else im


def load_rgb(path: Any) -> "PIL.Image.Image":  # noqa: F821
    """Open an image file as 8-bit RGB (see :func:`to_rgb`). Raises Pillow's errors for unreadable files;
    a decompression-bomb refusal says how to allow a trusted huge image."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb(im)
    except Image.DecompressionBombError as e:
        raise Image.DecompressionBombError(
            f"{e} If the file is trusted, raise the limit: PIL.Image.MAX_IMAGE_PIXELS = <pixels> (None: no limit)."
        ) from None


# ------------------------------------------------------------------------------------------ images
class ImageFiles:
    """A map-style dataset of image paths -> (tensor [3, H, W], index, error message or "")."""

    def __init__(self, paths: Sequence[Any], transform: Callable, fallback_shape: Tuple[int, ...]):
        self.paths, self.transform, self.fallback_shape = list(paths), transform, tuple(fallback_shape)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import torch

        path = self.paths[i]
        try:
            if path is None or (isinstance(path, float) and np.isnan(path)):
                raise FileNotFoundError("no file path in this row")
            return self.transform(load_rgb(path)), i, ""
        except Exception as e:  # noqa: BLE001 -- reported per row to the caller
            return torch.zeros(self.fallback_shape), i, f"{type(e).__name__}: {e}"


def loader_workers(num_workers: Union[int, str], n_items: int, batch_size: int) -> int:
    """``"auto"``: no workers for tiny inputs (start-up costs more than it saves), else up to 4."""
    if num_workers != "auto":
        return int(num_workers)
    if n_items < 2 * batch_size:
        return 0
    return max(1, min(4, (os.cpu_count() or 1) - 1))


class ImageExtractor(Extractor):
    """Base of the image families. A family's ``_load(device)`` sets ``self._transform`` (PIL -> tensor
    ``[3, H, W]``), ``self._input_shape``, ``self._forward`` (``[B, 3, H, W] -> [B, D]``) and
    ``self._channels_last``; ``num_workers`` (speed only, not part of the identity) decodes in workers."""

    modality = "image"
    num_workers: Union[int, str] = "auto"
    _transform: Optional[Callable] = None
    _input_shape: Tuple[int, ...] = (3, 224, 224)
    _forward: Optional[Callable] = None
    _channels_last: bool = False

    def _encode(self, items: List[Any], batch_size: int, device, show_progress: bool, on_error: str) -> np.ndarray:
        import torch
        from torch.utils.data import DataLoader

        self.load(device)
        dev, precision = self._device, self.resolved_precision()
        data = ImageFiles(items, self._transform, self._input_shape)
        workers = loader_workers(self.num_workers, len(items), batch_size)
        cuda = dev.type == "cuda"
        loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=cuda,
                            prefetch_factor=4 if workers else None)
        out: Optional[np.ndarray] = None
        with torch.inference_mode():
            for x, idx, errors in progress(loader, total=len(loader), desc=f"embed images ({self.model_id})",
                                           enabled=show_progress, unit="batch"):
                for i, err in zip(idx.tolist(), errors):
                    if err:
                        if on_error == "raise":
                            raise MediaError(i, items[i], err)
                        self.last_failures[i] = err
                x = x.to(dev, non_blocking=cuda)
                if self._channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast(dev, precision):
                    feats = self._forward(x)
                vec = feats.float().cpu().numpy()
                if out is None:
                    out = np.empty((len(items), vec.shape[1]), dtype=np.float32)
                out[idx.numpy()] = vec
        if out is None:
            raise ExtractorError(f"{self.id}: no batches were produced")
        return out
