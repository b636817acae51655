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

def _tiny_extractors(ctx) -> Params:
    return {
        "TEXT_EXTRACTOR": f"hf:{ctx['tiny_bert']}",
        "IMAGE_EXTRACTOR": "timm:test_vit",
        "EXTRACTOR_OPTIONS": {"image": {"pretrained": False}},
        "EMBED_BATCH_SIZE": 16,
        "RESULTS_DIR": str(ctx["tmp"] / "results"),
    }


def alignment(ctx) -> Params:
    """Alignment/alignment_<dataset>: tiny models, 3 epochs, 1 seed, 3 lambdas, PCA instead of UMAP."""
    dataset = ctx["name"].removeprefix("alignment_")
    p = {**_tiny_extractors(ctx), "EPOCHS": 3, "N_SEEDS": 1, "LAMBDAS": [-1.0, 0.0, 1.0], "PROJECTION": "pca",
         "RESULTS_JSON": str(ctx["results_json"])}
    p.update(DATASET_CI.get(dataset, {}))
    return p


def unified_space(ctx) -> Params:
    return {**_tiny_extractors(ctx), "DATASET_OPTIONS": {"n": 160}, "DIM": 32, "UNIFIED_EPOCHS": 20, "EPOCHS": 3,
            "PROJECTION": "pca", "RESULTS_JSON": str(ctx["results_json"])}


def retrieval(ctx) -> Params:  # its rows are retrieval scores, not trained models: RESULTS_JSON is not checked
    return {**_tiny_extractors(ctx), "DATASET_OPTIONS": {"n": 160}, "DIM": 32, "UNIFIED_EPOCHS": 20}


RULES: Dict[str, Callable[[Dict[str, Any]], Params]] = {
    "notebooks/embed_model_*.ipynb": embed_model,
    "Alignment/alignment_*.ipynb": alignment,
    "Alignment/unified_space.ipynb": unified_space,
    "Alignment/retrieval.ipynb": retrieval,
}

# which result-row models each notebook must produce (pattern -> model names); default: at least one row
EXPECTED_MODELS: Dict[str, list] = {
    "notebooks/embed_model_*.ipynb": ["early_fusion", "late_fusion", "text_only", "image_only"],
    "Alignment/alignment_*.ipynb": ["early_fusion", "late_fusion"],
    "Alignment/unified_space.ipynb": ["early_fusion", "late_fusion", "early_fusion+unified", "late_fusion+unified"],
}
