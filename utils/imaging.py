"""Decoding images to 8-bit RGB the same way everywhere (extraction, end-to-end training, example figures).

Kept at the bottom of the package so that the data layer (example figures), the extractors and the training
batch sources all use it: a 16-bit X-ray must not embed one way and train another.
"""

from __future__ import annotations

from typing import Any, List, Optional

import numpy as np


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
    - an EXIF orientation (a phone photo taken sideways: orientation 6 or 8) is applied first, so the image is
      embedded, trained on and drawn as it is displayed, not as the sensor stored it.
    """
    from PIL import Image

    im = upright(im)

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


EXIF_ORIENTATION = 0x0112


def upright(im) -> "PIL.Image.Image":  # noqa: F821
    """``im`` with its EXIF orientation applied (``ImageOps.exif_transpose``); the image itself when it has none
    or it is already upright (orientation 1), so the common case costs no copy. A damaged EXIF block is ignored
    (the pixels are still the image)."""
    from PIL import ImageOps

    try:
        orientation = im.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 -- unreadable EXIF: keep the pixels as stored
        return im
    if orientation in (None, 1):
        return im
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001
        return im


def load_rgb(path: Any, notes: Optional[List[str]] = None) -> "PIL.Image.Image":  # noqa: F821
    """Open an image file as 8-bit RGB (see :func:`to_rgb`). Raises Pillow's errors for unreadable files;
    a decompression-bomb refusal says how to allow a trusted huge image. An animated file (GIF, WebP, APNG) gives
    its first frame; with ``notes`` (a list) that is said there ("animated: its first frame is used")."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            animated = bool(getattr(im, "is_animated", False))  # looks for a second frame, then returns to the first
            if animated:
                im.seek(0)
            im.load()
            if animated and notes is not None:
                notes.append(ANIMATED_NOTE)
            return to_rgb(im)
    except Image.DecompressionBombError as e:
        raise Image.DecompressionBombError(
            f"{e} If the file is trusted, raise the limit: PIL.Image.MAX_IMAGE_PIXELS = <pixels> (None: no limit)."
        ) from None


ANIMATED_NOTE = "animated: its first frame is used"
