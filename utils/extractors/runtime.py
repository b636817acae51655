"""Shared speed machinery of the torch families: precision, autocast, and the image loading loop.

- :func:`resolve_precision` turns ``"auto"`` into ``bf16`` on CUDA with bf16 and on CPUs with native
  bf16 (AVX-512 BF16 / AMX), ``fp16`` on older CUDA, ``fp32`` elsewhere.
- :func:`autocast` runs a forward pass in that precision (weights stay fp32 on CPU, so layer norms and
  pooling keep full precision; matmuls and convolutions run in bf16/fp16).
- :func:`encode_images` decodes and resizes images in DataLoader workers while the model runs, with
  pinned memory and non-blocking copies on CUDA, and ``channels_last`` for convolutional models.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..precision import autocast
from .base import ExtractorError, MediaError, progress

log = logging.getLogger(__name__)

def looks_convolutional(model) -> bool:
    """True for CNN backbones (ResNet, ConvNeXt, EfficientNet, ...), where channels_last pays off."""
    import torch

    n_conv = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    n_attn = sum("attention" in type(m).__name__.lower() for m in model.modules())
    return n_conv > 2 and n_attn == 0


# ------------------------------------------------------------------------------------------ images
class ImageFiles:
    """A map-style dataset of image paths -> (tensor [3, H, W], index, error message or "")."""

    def __init__(self, paths: Sequence[Any], transform: Callable, fallback_shape: Tuple[int, ...]):
        self.paths, self.transform, self.fallback_shape = list(paths), transform, tuple(fallback_shape)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import torch
        from PIL import Image

        path = self.paths[i]
        try:
            if path is None or (isinstance(path, float) and np.isnan(path)):
                raise FileNotFoundError("no file path in this row")
            with Image.open(path) as im:
                img = im.convert("RGB")
            return self.transform(img), i, ""
        except Exception as e:  # noqa: BLE001 -- reported per row to the caller
            return torch.zeros(self.fallback_shape), i, f"{type(e).__name__}: {e}"


def loader_workers(num_workers: Union[int, str], n_items: int, batch_size: int) -> int:
    """``"auto"``: no workers for tiny inputs (start-up costs more than it saves), else up to 4."""
    if num_workers != "auto":
        return int(num_workers)
    if n_items < 2 * batch_size:
        return 0
    return max(1, min(4, (os.cpu_count() or 1) - 1))


def encode_images(
    items: List[Any],
    transform: Callable,
    fallback_shape: Tuple[int, ...],
    forward: Callable,
    device,
    batch_size: int,
    num_workers: Union[int, str],
    channels_last: bool,
    precision: str,
    on_error: str,
    failures: Dict[int, str],
    desc: str,
    show_progress: bool,
) -> np.ndarray:
    """Decode ``items`` in workers, run ``forward(x [B, 3, H, W]) -> [B, D]`` under autocast, keep order.

    Unreadable files raise :class:`MediaError` (``on_error="raise"``) or are recorded in ``failures``.
    """
    import torch
    from torch.utils.data import DataLoader

    data = ImageFiles(items, transform, fallback_shape)
    workers = loader_workers(num_workers, len(items), batch_size)
    cuda = device.type == "cuda"
    loader = DataLoader(
        data, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=cuda,
        prefetch_factor=4 if workers else None,
    )
    out: Optional[np.ndarray] = None
    with torch.inference_mode():
        for x, idx, errors in progress(loader, total=len(loader), desc=desc, enabled=show_progress, unit="batch"):
            for i, err in zip(idx.tolist(), errors):
                if err:
                    if on_error == "raise":
                        raise MediaError(i, items[i], err)
                    failures[i] = err
            x = x.to(device, non_blocking=cuda)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, precision):
                feats = forward(x)
            vec = feats.float().cpu().numpy()
            if out is None:
                out = np.empty((len(items), vec.shape[1]), dtype=np.float32)
            out[idx.numpy()] = vec
    if out is None:
        raise ExtractorError(f"{desc}: no batches were produced")
    return out
