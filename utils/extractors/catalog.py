"""Named backbones: short aliases for the image (and CLIP/SigLIP) models the framework was built around.

Pure data, no imports: ``utils/extractors/__init__.py`` merges :data:`BACKBONES` into ``ALIASES``.
Each entry gives the spec (family and hub id), the embedding dimension, and the preprocessing the
model's own processor config on the hub uses (input size, mean, std). The families read the
preprocessing from the hub config itself; :func:`expected_preprocessing` lets them check it against
this table and warn on a mismatch. CLIP and SigLIP use their own statistics, never ImageNet's.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # ViT-in21k, BEiT, SigLIP
OPENAI_CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))

# alias -> (spec, dim, input size (px), (mean, std), description). Aliases of one family (the name before its
# last "-": dinov2, convnext, swin, sam, ...) share one extractor family and one input size, unless the hub id
# names another resolution (siglip-so400m-patch14-384); a backend variant is suffixed "-timm" / "-hf"
# (tests/test_extractors.py::test_catalog_families_are_consistent).
BACKEND_SUFFIXES = ("-timm", "-hf")
_TABLE: Dict[str, Tuple[str, int, int, Tuple[Tuple[float, ...], Tuple[float, ...]], str]] = {
    # one DINOv2 family: every size through transformers at its hub processor's 224 px crop (the original
    # framework's facebook/dinov2-* models). The timm weights (timm's config: 518 px, the pretraining
    # resolution, ~5x the compute per image) are an explicit variant, named by their backend.
    "dinov2-small": ("hf-image:facebook/dinov2-small", 384, 224, IMAGENET, "DINOv2 ViT-S/14"),
    "dinov2-small-timm": ("timm:vit_small_patch14_dinov2.lvd142m", 384, 518, IMAGENET, "DINOv2 ViT-S/14 (timm, 518 px)"),
    "dinov2-base": ("hf-image:facebook/dinov2-base", 768, 224, IMAGENET, "DINOv2 ViT-B/14"),
    "dinov2-large": ("hf-image:facebook/dinov2-large", 1024, 224, IMAGENET, "DINOv2 ViT-L/14"),
    "dinov2-giant": ("hf-image:facebook/dinov2-giant", 1536, 224, IMAGENET, "DINOv2 ViT-g/14"),
    "sam-base": ("hf-image:facebook/sam-vit-base", 256, 1024, IMAGENET, "SAM ViT-B image encoder, 1024 px, mean-pooled"),
    "sam-large": ("hf-image:facebook/sam-vit-large", 256, 1024, IMAGENET, "SAM ViT-L image encoder, 1024 px, mean-pooled"),
    "sam-huge": ("hf-image:facebook/sam-vit-huge", 256, 1024, IMAGENET, "SAM ViT-H image encoder, 1024 px, mean-pooled"),
    "convnextv2-tiny": ("hf-image:facebook/convnextv2-tiny-22k-224", 768, 224, IMAGENET, "ConvNeXt V2 tiny (22k)"),
    "convnextv2-base": ("hf-image:facebook/convnextv2-base-22k-224", 1024, 224, IMAGENET, "ConvNeXt V2 base (22k)"),
    "convnextv2-large": ("hf-image:facebook/convnextv2-large-22k-224", 1536, 224, IMAGENET, "ConvNeXt V2 large (22k)"),
    "convnext-tiny": ("hf-image:facebook/convnext-tiny-224", 768, 224, IMAGENET, "ConvNeXt tiny"),
    "convnext-small": ("hf-image:facebook/convnext-small-224", 768, 224, IMAGENET, "ConvNeXt small"),
    "convnext-base": ("hf-image:facebook/convnext-base-224", 1024, 224, IMAGENET, "ConvNeXt base"),
    "convnext-large": ("hf-image:facebook/convnext-large-224", 1536, 224, IMAGENET, "ConvNeXt large"),
    "swin-tiny": ("hf-image:microsoft/swin-tiny-patch4-window7-224", 768, 224, IMAGENET, "Swin tiny"),
    "swin-small": ("hf-image:microsoft/swin-small-patch4-window7-224", 768, 224, IMAGENET, "Swin small"),
    "swin-base": ("hf-image:microsoft/swin-base-patch4-window7-224", 1024, 224, IMAGENET, "Swin base"),
    "vit-base": ("hf-image:google/vit-base-patch16-224-in21k", 768, 224, HALF, "ViT-B/16 (ImageNet-21k), CLS token"),
    "vit-large": ("hf-image:google/vit-large-patch16-224-in21k", 1024, 224, HALF, "ViT-L/16 (ImageNet-21k), CLS token"),
    "beit-base": ("hf-image:microsoft/beit-base-patch16-224-pt22k", 768, 224, HALF, "BEiT base (self-supervised 22k)"),
    "clip-vit-b16": ("clip:openai/clip-vit-base-patch16", 512, 224, OPENAI_CLIP, "CLIP ViT-B/16, projected"),
    "clip-vit-l14": ("clip:openai/clip-vit-large-patch14", 768, 224, OPENAI_CLIP, "CLIP ViT-L/14, projected"),
    "siglip-base": ("clip:google/siglip-base-patch16-224", 768, 224, HALF, "SigLIP base/16, projected"),
    "siglip-so400m": ("clip:google/siglip-so400m-patch14-384", 1152, 384, HALF, "SigLIP so400m/14 at 384 px"),
}


def _describe(alias: str) -> str:
    spec, dim, size, (mean, _), text = _TABLE[alias]
    kind = "image+text" if spec.startswith("clip:") else "image"
    return f"{kind}, {dim}-d, {text} (hub; {size} px, own mean {list(mean)})"


# alias -> (spec, default options, description): the shape of utils.extractors.ALIASES
BACKBONES: Dict[str, Tuple[str, Dict[str, Any], str]] = {a: (v[0], {}, _describe(a)) for a, v in _TABLE.items()}

TEXT_ALIASES: Dict[str, Tuple[str, Dict[str, Any], str]] = {
    "openai-3-small": ("openai:text-embedding-3-small", {}, "text, 1536-d, OpenAI API (needs OPENAI_API_KEY)"),
    "openai-3-large": ("openai:text-embedding-3-large", {}, "text, 3072-d, OpenAI API (needs OPENAI_API_KEY)"),
    "clap-general": ("clap:laion/larger_clap_general", {}, "audio+text, 512-d, LAION CLAP (hub; 48 kHz)"),
}

DIMS: Dict[str, int] = {**{a: v[1] for a, v in _TABLE.items()}, "openai-3-small": 1536, "openai-3-large": 3072,
                        "clap-general": 512, "minilm": 384, "minilm-offline": 384,
                        "random-convnext": 320, "effnet-lite0": 1280, "bge-base": 768, "mpnet": 768}


def expected_preprocessing(model_id: str) -> Optional[Dict[str, Any]]:
    """Size, mean and std the hub processor of ``model_id`` is known to use (None if not catalogued)."""
    for spec, dim, size, (mean, std), _ in _TABLE.values():
        if spec.split(":", 1)[1] == model_id:
            return {"size": size, "mean": list(mean), "std": list(std), "dim": dim}
    return None


def table() -> List[Dict[str, Any]]:
    """One row per catalogued alias: alias, spec, dim, size, mean, std."""
    return [
        {"alias": a, "spec": v[0], "dim": v[1], "size": v[2], "mean": list(v[3][0]), "std": list(v[3][1]), "model": v[4]}
        for a, v in _TABLE.items()
    ]
