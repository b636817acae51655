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
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..imaging import load_rgb, to_rgb  # noqa: F401 -- to_rgb re-exported: the image families' decoding
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
# ------------------------------------------------------------------------------------------ images
class ImageFiles:
    """A map-style dataset of image paths -> (tensor [3, H, W], index, error message or "", note or "").
    A note says something the caller should pass on (an animated image whose first frame was used)."""

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
            notes: List[str] = []
            return self.transform(load_rgb(path, notes)), i, "", "; ".join(notes)
        except Exception as e:  # noqa: BLE001 -- reported per row to the caller
            return torch.zeros(self.fallback_shape), i, f"{type(e).__name__}: {e}", ""


def loader_workers(num_workers: Union[int, str], n_items: int, batch_size: int, cuda: bool = False) -> int:
    """``"auto"``: no workers for tiny inputs (start-up costs more than it saves), else up to 4 on a CPU (the
    model needs the other cores) and up to 12 when the model runs on a GPU (decoding is then the bottleneck:
    a ViT-B/16 on one GPU eats images faster than four cores can decode JPEGs)."""
    if num_workers != "auto":
        return int(num_workers)
    if n_items < 2 * batch_size:
        return 0
    return max(1, min(12 if cuda else 4, (os.cpu_count() or 1) - 1))


# device -> host copies are collected and made this many batches at a time: one copy per batch would make the
# host wait for every batch's forward pass before it can queue the next one
FLUSH_EVERY = 16


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
    last_notes: Dict[int, str]  # row -> note of the last encode() (an animated image: its first frame was used)

    def _encode(self, items: List[Any], batch_size: int, device, show_progress: bool, on_error: str) -> np.ndarray:
        import torch
        from torch.utils.data import DataLoader

        self.load(device)
        dev, precision = self._device, self.resolved_precision()
        data = ImageFiles(items, self._transform, self._input_shape)
        cuda = dev.type == "cuda"
        workers = loader_workers(self.num_workers, len(items), batch_size, cuda)
        loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=cuda,
                            prefetch_factor=4 if workers else None)
        out: Optional[np.ndarray] = None
        pending: List[Tuple[Any, Any]] = []  # (indices, features still on the device)
        noted: Dict[int, str] = {}  # row -> what the decoder said about it (animated: first frame used)
        self.last_notes = noted

        def flush() -> None:
            nonlocal out
            for idx_b, feats_b in pending:
                vec = feats_b.float().cpu().numpy()
                if out is None:
                    out = np.empty((len(items), vec.shape[1]), dtype=np.float32)
                out[idx_b.numpy()] = vec
            pending.clear()

        with torch.inference_mode():
            for x, idx, errors, notes in progress(loader, total=len(loader), desc=f"embed images ({self.model_id})",
                                                  enabled=show_progress, unit="batch"):
                for i, err, note in zip(idx.tolist(), errors, notes):
                    if note:
                        noted[i] = note
                    if err:
                        if on_error == "raise":
                            raise MediaError(i, items[i], err)
                        self.last_failures[i] = err
                x = x.to(dev, non_blocking=cuda)
                if self._channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast(dev, precision):
                    feats = self._forward(x)
                pending.append((idx, feats))
                if not cuda or len(pending) >= FLUSH_EVERY:
                    flush()
            flush()
        if out is None:
            raise ExtractorError(f"{self.id}: no batches were produced")
        if noted:
            first = min(noted)
            log.warning("%s: %d animated image(s) (GIF / WebP / APNG): the first frame of each was embedded (row %d: "
                        "%s)", self.id, len(noted), first, items[first])
        return out
