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


# dataset -> extra CI parameters (fixture folders, small sizes)
DATASET_CI: Dict[str, Params] = {
    "synthetic": {"DATASET_OPTIONS": {"n": 160}},
}

def generate_embeddings(ctx) -> Params:
    """generate_{text,image}_embeddings.ipynb: two tiny extractors on the synthetic dataset (n=120).

    RESULTS_JSON is not passed: its rows describe extractors (dim, count, seconds, store), not trained
    models, so the trained-model row check does not apply; tests/test_extractor_families.py checks them.
    """
    if "text" in ctx["name"]:
        extractors, options = [f"hf:{ctx['tiny_bert']}", "minilm-offline"], {}
    else:
        extractors = ["timm:test_vit", "timm:test_resnet"]
        options = {e: {"pretrained": False} for e in extractors}
    return {
        "DATASET_OPTIONS": {"n": 120},
        "EXTRACTORS": extractors,
        "EXTRACTOR_OPTIONS": options,
        "EMBED_BATCH_SIZE": 16,
        "RESULTS_DIR": str(ctx["tmp"] / "results"),
        "EMBEDDINGS_DIR": str(ctx["tmp"] / "embeddings"),
    }


RULES: Dict[str, Callable[[Dict[str, Any]], Params]] = {
    "notebooks/embed_model_*.ipynb": embed_model,
    "generate_*_embeddings.ipynb": generate_embeddings,
}

# which result-row models each notebook must produce (pattern -> model names); default: at least one row
EXPECTED_MODELS: Dict[str, list] = {
    "notebooks/embed_model_*.ipynb": ["early_fusion", "late_fusion", "text_only", "image_only"],
}
