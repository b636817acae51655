"""CI parameters for every notebook in the repository (small fixtures, tiny models).

``test_notebooks.py`` runs each notebook it finds with the parameters a rule here gives it; a notebook
with no rule fails the suite, so every notebook added later must say how CI runs it.
Each rule maps a path pattern (fnmatch, relative to the repo root) to ``f(ctx) -> dict``, where ``ctx``
holds ``tmp`` (a fresh folder), ``results_json`` and the session fixtures (``tiny_bert``).
"""

from __future__ import annotations

from typing import Any, Callable, Dict

Params = Dict[str, Any]


def embed_model(ctx) -> Params:
    dataset = ctx["name"].removeprefix("embed_model_")
    p: Params = {
        "TEXT_EXTRACTOR": f"hf:{ctx['tiny_bert']}",
        "IMAGE_EXTRACTOR": "timm:test_vit",
        "EXTRACTOR_OPTIONS": {"image": {"pretrained": False}},
        "EPOCHS": 3,
        "EMBED_BATCH_SIZE": 16,
        "RESULTS_JSON": str(ctx["results_json"]),
    }
    p.update(DATASET_CI.get(dataset, {}))
    return p


def full_model(ctx) -> Params:
    """BERT + ViT / BERT + CLIP baselines on tiny local models (built in the test's folder), 3 seeds, 1 epoch."""
    from .tiny_models import make_tiny_clip, make_tiny_vit

    dataset = ctx["name"].removeprefix("full_model_")
    p: Params = {
        "TEXT_MODEL": str(ctx["tiny_bert"]),
        "IMAGE_MODEL": str(make_tiny_vit(ctx["tmp"] / "tiny-vit")),
        "CLIP_MODEL": str(make_tiny_clip(ctx["tmp"] / "tiny-clip")),
        "FULL_MODELS": ["bert_vit_early_frozen", "bert_vit_late_finetune"],
        "TEXT_EXTRACTOR": f"hf:{ctx['tiny_bert']}",
        "IMAGE_EXTRACTOR": "timm:test_vit",
        "EXTRACTOR_OPTIONS": {"image": {"pretrained": False}},
        "FUSION": ["early_fusion", "logreg"],
        "EPOCHS": 1,
        "HEAD_EPOCHS": 3,
        "MAX_LENGTH": 32,
        "N_SEEDS": 3,
        "RESULTS_JSON": str(ctx["results_json"]),
    }
    p.update(DATASET_CI.get(dataset, {}))
    return p


# dataset -> extra CI parameters (fixture folders, small sizes)
DATASET_CI: Dict[str, Params] = {
    "synthetic": {"DATASET_OPTIONS": {"n": 160}},
}

RULES: Dict[str, Callable[[Dict[str, Any]], Params]] = {
    "notebooks/embed_model_*.ipynb": embed_model,
    "notebooks/full_model_*.ipynb": full_model,
}

# which result-row models each notebook must produce (pattern -> model names); default: at least one row
EXPECTED_MODELS: Dict[str, list] = {
    "notebooks/embed_model_*.ipynb": ["early_fusion", "late_fusion", "text_only", "image_only"],
    "notebooks/full_model_*.ipynb": ["bert_vit_early_frozen", "bert_vit_late_finetune", "bert_clip_late", "early_fusion", "logreg"],
}
