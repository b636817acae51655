"""Image extraction shared by the image families (``timm``, ``hf-image``, ``clip``'s image tower).

:class:`ImageExtractor` is the base of those families: its ``_load`` sets a transform (PIL image -> tensor),
the input shape, a forward function (``[B, 3, H, W] -> [B, D]``) and whether to use ``channels_last``;
its ``_encode`` decodes and resizes images in DataLoader workers while the model runs, with pinned memory
and non-blocking copies on CUDA, under autocast in the resolved precision, and keeps input order.
Speed options (not part of the extractor's identity):

- ``batch_size="auto"``: chosen from free GPU memory (a probe forward pass at two sizes; see
  :func:`utils.runtime.auto_batch_size`), 32 on a CPU;
- ``decode``: ``"pil"`` (workers decode and resize with Pillow), ``"device"`` (workers only read the bytes; JPEGs
  are decoded with ``torchvision.io.decode_jpeg`` on the model's device -- nvJPEG on CUDA -- and resized there
  by the same Resize / CenterCrop / Normalize steps; anything else, or a JPEG with an EXIF rotation or CMYK
  colours, goes the Pillow way in the worker), ``"auto"``: device decoding on CUDA when the transform allows it
  and most files are JPEGs;
- ``compile``: ``torch.compile`` the forward pass (``"auto"``: on CUDA from :data:`COMPILE_MIN_ITEMS` images,
  where its compile time pays back); the last, smaller batch is padded so one graph serves every batch;
- ``cudnn.benchmark`` for convolutional models on CUDA (fixed input shape: the fastest kernels are tried once).

:func:`to_rgb` turns every Pillow mode into 8-bit RGB with its values scaled properly (16-bit and float
images by their depth or range, transparency onto white).
Unreadable files raise :class:`~utils.extractors.base.MediaError` or, with ``on_error="skip"``, are
recorded as failed rows.
"""

from __future__ import annotations

import contextlib
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


class JpegBytesOrPixels(ImageFiles):
    """The worker side of decoding on the device: ``(jpeg bytes or None, pixels or None, index, error, note)``.

    A plain JPEG (RGB or grey, upright) comes back as its file's bytes, decoded later on the device in batches;
    anything else (PNG, TIFF, CMYK, an EXIF rotation, 16-bit) is decoded and transformed here the Pillow way,
    exactly as :class:`ImageFiles` does. Reading the header costs no decoding."""

    def __getitem__(self, i: int):
        import io

        import torch
        from PIL import Image

        from ..imaging import EXIF_ORIENTATION

        path = self.paths[i]
        try:
            if path is None or (isinstance(path, float) and np.isnan(path)):
                raise FileNotFoundError("no file path in this row")
            with open(path, "rb") as f:
                data = f.read()
            with Image.open(io.BytesIO(data)) as im:  # the header only
                plain = im.format == "JPEG" and im.mode in ("RGB", "L") and im.getexif().get(EXIF_ORIENTATION, 1) in (None, 1)
            if plain:
                return torch.frombuffer(bytearray(data), dtype=torch.uint8), None, i, "", ""
            notes: List[str] = []
            return None, self.transform(load_rgb(io.BytesIO(data), notes)), i, "", "; ".join(notes)
        except Exception as e:  # noqa: BLE001 -- reported per row to the caller
            return None, torch.zeros(self.fallback_shape), i, f"{type(e).__name__}: {e}", ""


def collate_lists(batch):
    """DataLoader collate for :class:`JpegBytesOrPixels`: five lists, one entry per image."""
    return tuple(list(col) for col in zip(*batch))


def device_transform(transform: Any) -> Optional[Callable]:
    """``transform`` (a torchvision ``Compose`` of Resize, CenterCrop, ToTensor / timm's MaybeToTensor and
    Normalize: what timm's eval transform is) as a function of a decoded uint8 image ``[3, H, W]`` on any device
    -> float ``[3, h, w]``; None when it holds any other step (those images are decoded the Pillow way)."""
    import torch

    try:
        import torchvision.transforms as T
        from torchvision.transforms.v2 import functional as F
    except ImportError:  # pragma: no cover - torchvision is a dependency of timm
        return None
    steps = getattr(transform, "transforms", None)
    if not steps:
        return None
    ops: List[Callable] = []
    for t in steps:
        if isinstance(t, T.Resize):
            ops.append(lambda x, t=t: F.resize(x, t.size, t.interpolation, t.max_size, antialias=True))
        elif isinstance(t, T.CenterCrop):
            ops.append(lambda x, t=t: F.center_crop(x, list(t.size)))
        elif type(t).__name__ in ("ToTensor", "MaybeToTensor"):
            ops.append(lambda x: x.float().div_(255.0) if x.dtype == torch.uint8 else x.float())
        elif isinstance(t, T.Normalize):
            mean, std = torch.as_tensor(t.mean, dtype=torch.float32), torch.as_tensor(t.std, dtype=torch.float32)
            ops.append(lambda x, m=mean, s=std: (x - m.to(x.device)[:, None, None]) / s.to(x.device)[:, None, None])
        else:
            return None

    def run(img):
        for op in ops:
            img = op(img)
        return img

    return run


def decode_jpegs_on(device, data: List[Any]) -> List[Any]:
    """Decode JPEG byte tensors on ``device`` (nvJPEG on CUDA, batched): uint8 ``[3, H, W]`` each, None where one
    cannot be decoded there (it is then read the Pillow way)."""
    import warnings

    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():  # torchvision >= 0.29 points to TorchCodec on every call; it still decodes
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*TorchVision are deprecated.*")
        try:
            return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:  # one bad file fails the whole batch: decode one by one
            out = []
            for d in data:
                try:
                    out.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
                except RuntimeError:
                    out.append(None)
            return out


def device_decode_available() -> bool:
    """True when this torchvision decodes JPEGs from byte tensors on a given device (``decode_jpeg(device=...)``)."""
    try:
        import inspect

        from torchvision.io import decode_jpeg
    except ImportError:
        return False
    return "device" in inspect.signature(decode_jpeg).parameters


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
DECODES = ("auto", "pil", "device")
DECODE_CHUNK = 32  # JPEGs decoded on the device at a time (full-size images are large; each is resized at once)
# compile="auto" compiles on CUDA from this many images: torch.compile takes ~1 minute and saves ~10-30% of a
# forward pass of ~1 ms per image on a data-centre GPU, so it pays back only on large runs
COMPILE_MIN_ITEMS = 200_000
MAX_AUTO_BATCH = 1024


def jpeg_share(items: Sequence[Any]) -> float:
    """Share of the paths that name a JPEG file (by extension)."""
    if not items:
        return 0.0
    return sum(str(p).lower().endswith((".jpg", ".jpeg")) for p in items if p is not None) / len(items)


def wants_device_decode(decode: str, dev, transform_ok: bool, items: Sequence[Any]) -> bool:
    """Whether JPEGs are decoded on the model's device: ``"device"`` whenever the transform can run there,
    ``"auto"`` on CUDA when it can and at least half the files are JPEGs, ``"pil"`` never."""
    if decode not in DECODES:
        raise ValueError(f"decode must be one of {DECODES}, got {decode!r}")
    if decode == "pil" or not transform_ok:
        return False
    if decode == "device":
        return True
    return dev.type == "cuda" and jpeg_share(items) >= 0.5


def wants_compile(compile_option: Union[bool, str], dev, n_items: int) -> bool:
    """``compile`` option -> whether the forward pass is compiled: True / False as given; ``"auto"`` on CUDA from
    :data:`COMPILE_MIN_ITEMS` images."""
    if compile_option == "auto":
        return dev.type == "cuda" and n_items >= COMPILE_MIN_ITEMS
    if not isinstance(compile_option, bool):
        raise ValueError(f"compile must be True, False or 'auto', got {compile_option!r}")
    return compile_option


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool):
    """``torch.backends.cudnn.benchmark`` on within the block (when ``enabled``), restored after it."""
    if not enabled:
        yield
        return
    import torch

    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


class ImageExtractor(Extractor):
    """Base of the image families. A family's ``_load(device)`` sets ``self._transform`` (PIL -> tensor
    ``[3, H, W]``), ``self._input_shape``, ``self._forward`` (``[B, 3, H, W] -> [B, D]``) and
    ``self._channels_last``; ``num_workers``, ``decode`` and ``compile`` (speed only, not part of the identity)
    say how images are decoded and whether the forward pass is compiled (see the module's docstring)."""

    modality = "image"
    auto_batch = True
    num_workers: Union[int, str] = "auto"
    decode: str = "auto"
    compile: Union[bool, str] = "auto"
    _transform: Optional[Callable] = None
    _input_shape: Tuple[int, ...] = (3, 224, 224)
    _forward: Optional[Callable] = None
    _channels_last: bool = False
    last_notes: Dict[int, str]  # row -> note of the last encode() (an animated image: its first frame was used)

    def _encode(self, items: List[Any], batch_size: Any, device, show_progress: bool, on_error: str) -> np.ndarray:
        import torch
        from torch.utils.data import DataLoader

        self.load(device)
        dev, precision = self._device, self.resolved_precision()
        cuda = dev.type == "cuda"
        if batch_size == "auto":
            batch_size = self.auto_batch_size()
        tensor_tf = device_transform(self._transform)
        on_device = wants_device_decode(self.decode, dev, tensor_tf is not None and device_decode_available(), items)
        data = (JpegBytesOrPixels if on_device else ImageFiles)(items, self._transform, self._input_shape)
        workers = loader_workers(self.num_workers, len(items), batch_size, cuda)
        loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers,
                            pin_memory=cuda and not on_device, prefetch_factor=4 if workers else None,
                            collate_fn=collate_lists if on_device else None)
        forward = self.forward_for(len(items))
        compiled = forward is not self._forward
        log.info("%s: %d images, batch %d, %d decoding workers, decoding %s, precision %s%s", self.id, len(items),
                 batch_size, workers, "on the device" if on_device else "with Pillow", precision,
                 ", compiled" if compiled else "")
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
                out[np.asarray(idx_b)] = vec
            pending.clear()

        # fixed input shape: let cuDNN try its convolution kernels once
        with torch.inference_mode(), cudnn_benchmark(cuda and self._channels_last):
            for batch in progress(loader, total=len(loader), desc=f"embed images ({self.model_id})",
                                  enabled=show_progress, unit="batch"):
                if on_device:
                    x, idx, errors, notes = self.device_batch(batch, items, dev, tensor_tf)
                else:
                    x, idx, errors, notes = batch
                    idx = idx.tolist()
                    x = x.to(dev, non_blocking=cuda)
                for i, err, note in zip(idx, errors, notes):
                    if note:
                        noted[i] = note
                    if err:
                        if on_error == "raise":
                            raise MediaError(i, items[i], err)
                        self.last_failures[i] = err
                if self._channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                rows = len(x)
                if compiled and rows < batch_size:  # one graph for every batch: pad the last one
                    x = torch.cat([x, x[:1].expand(batch_size - rows, *x.shape[1:])])
                with autocast(dev, precision):
                    feats = forward(x)[:rows]
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

    def device_batch(self, batch, items: Sequence[Any], dev, tensor_tf: Callable):
        """``(x [B, 3, H, W] on dev, indices, errors, notes)`` from a :class:`JpegBytesOrPixels` batch: JPEGs decoded and
        transformed on ``dev`` (:data:`DECODE_CHUNK` at a time), the rest moved there; a JPEG the device cannot
        decode is read the Pillow way here."""
        import torch

        jpegs, pixels, idx, errors, notes = batch
        errors = list(errors)
        out: List[Any] = [None if p is None else p.to(dev, non_blocking=True) for p in pixels]
        todo = [k for k, b in enumerate(jpegs) if b is not None]
        for lo in range(0, len(todo), DECODE_CHUNK):
            chunk = todo[lo : lo + DECODE_CHUNK]
            for k, img in zip(chunk, decode_jpegs_on(dev, [jpegs[k] for k in chunk])):
                if img is not None:
                    out[k] = tensor_tf(img)
                    continue
                try:
                    out[k] = self._transform(load_rgb(items[idx[k]])).to(dev)
                except Exception as e:  # noqa: BLE001 -- reported per row
                    out[k] = torch.zeros(self._input_shape, device=dev)
                    errors[k] = f"{type(e).__name__}: {e}"
        return torch.stack(out), list(idx), errors, list(notes)

    def forward_for(self, n_items: int) -> Callable:
        """The forward pass for a run of ``n_items`` images: ``torch.compile``'d when :func:`wants_compile` says so
        (compiled once per extractor and device), else the family's own."""
        if not wants_compile(self.compile, self._device, n_items):
            return self._forward
        import torch

        key = str(self._device)
        if getattr(self, "_compiled_for", None) != key:
            self._compiled = torch.compile(self._forward)
            self._compiled_for = key
        return self._compiled

    def auto_batch_size(self) -> int:
        """The batch size for ``batch_size="auto"``: from free GPU memory on CUDA, probed with forward passes of
        blank inputs of the model's size (:func:`utils.runtime.auto_batch_size`), once per device; 32 elsewhere."""
        import torch

        from ..runtime import DEFAULT_BATCH_SIZE, auto_batch_size

        precision = self.resolved_precision()
        key = (str(self._device), tuple(self._input_shape), precision)
        cache = self.__dict__.setdefault("_auto_batch", {})  # later calls (one per store shard) reuse the size
        if key not in cache:
            def probe(b: int) -> None:
                x = torch.zeros((b, *self._input_shape), device=self._device)
                if self._channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.inference_mode(), autocast(self._device, precision):
                    self._forward(x)

            cache[key] = auto_batch_size(self._device, probe, default=DEFAULT_BATCH_SIZE, most=MAX_AUTO_BATCH)
        return cache[key]
