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
        "EXTRACTOR_OPTIONS": {"timm:test_vit": {"pretrained": False}},
        "EPOCHS": 3,
        "EMBED_BATCH_SIZE": 16,
        "RESULTS_JSON": str(ctx["results_json"]),
        "RESULTS_DIR": str(ctx["tmp"] / "results"),
        "N_BOOTSTRAP": 200,  # the report runs in full; fewer resamples keep CI fast
    }
    p.update(dataset_ci(dataset, ctx))
    return p


def fixture_params(name: str, **params: Any) -> Callable[[Dict[str, Any]], Params]:
    """CI parameters reading dataset ``name`` from a raw-layout fixture built in ``ctx["tmp"]``."""

    def rule(ctx) -> Params:
        from . import fixtures_data

        fx = fixtures_data.build(name, ctx["tmp"] / "data" / name)
        out: Params = {"DATA_DIR": str(ctx["tmp"] / "data"), "DATASET_OPTIONS": dict(fx.options)}
        out.update(params)
        return out

    return rule


def get_datasets(ctx) -> Params:
    from . import fixtures_data
    from utils.notebooks.get_datasets import ORDER

    options = {name: fixtures_data.build(name, ctx["tmp"] / "data" / name).options for name in ORDER}
    return {"DATA_DIR": str(ctx["tmp"] / "data"), "DATASET_OPTIONS": options, "N_EXAMPLES": 2,
            "SUMMARY_JSON": str(ctx["tmp"] / "summary.json")}


def dataset_ci(dataset: str, ctx) -> Params:
    """The dataset's extra CI parameters (a dict, or built from ``ctx`` by a function)."""
    extra = DATASET_CI.get(dataset, {})
    return dict(extra(ctx) if callable(extra) else extra)


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
        "EXTRACTOR_OPTIONS": {"timm:test_vit": {"pretrained": False}},
        "FUSION": ["early_fusion", "logreg"],
        "EPOCHS": 1,
        "HEAD_EPOCHS": 3,
        "MAX_LENGTH": 32,
        "N_SEEDS": 3,
        "RESULTS_JSON": str(ctx["results_json"]),
        "RESULTS_DIR": str(ctx["tmp"] / "results"),
    }
    extra = dataset_ci(dataset, ctx)
    extra.pop("FUSION", None)  # embed-only choices; the full-model rule sets its own
    extra.pop("AUDIO_EXTRACTOR", None)
    p.update(extra)
    return p


def guided_model(ctx) -> Params:
    """notebooks/guided_model_<dataset>: both guided models on the tiny BERT with two tiny image branches, 2 seeds."""
    dataset = ctx["name"].removeprefix("guided_model_")
    branches = ["timm:test_vit", "timm:test_resnet"]
    p: Params = {
        "TEXT_MODEL": str(ctx["tiny_bert"]),
        "IMAGE_EXTRACTORS": branches,
        "TEXT_EXTRACTOR": f"hf:{ctx['tiny_bert']}",
        "IMAGE_EXTRACTOR": "timm:test_vit",
        "EXTRACTOR_OPTIONS": {b: {"pretrained": False} for b in branches},
        "FUSION": ["early_fusion", "logreg"],
        "EPOCHS": 1,
        "GATED_EPOCHS": 3,
        "HEAD_EPOCHS": 3,
        "MAX_LENGTH": 32,
        "HIDDEN": 16,
        "N_SEEDS": 2,
        "RESULTS_JSON": str(ctx["results_json"]),
        "RESULTS_DIR": str(ctx["tmp"] / "results"),
        "EMBEDDINGS_DIR": str(ctx["tmp"] / "embeddings"),
    }
    extra = dataset_ci(dataset, ctx)
    extra.pop("FUSION", None)
    extra.pop("AUDIO_EXTRACTOR", None)
    extra.pop("TEXT_EXTRACTOR", None)
    p.update(extra)
    return p


# dataset -> extra CI parameters (fixture folders, small sizes)
DATASET_CI: Dict[str, Any] = {
    "synthetic": {"DATASET_OPTIONS": {"n": 160}},
    # value: static parameters, or f(ctx) -> parameters (raw-layout fixtures from tests/fixtures_data.py)
    **{name: fixture_params(name) for name in (
        "daquar", "coco_qa", "fakeddit", "recipes5k", "brset", "ham10000", "satellite", "mimic_cxr", "musti", "table",
    )},
    # esc50: the per-class text + image inputs (the CLAP audio family is optional here)
    "esc50": fixture_params("esc50", AUDIO_EXTRACTOR=None, FUSION=["early_fusion", "late_fusion", "text_only", "image_only"]),
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


def _tiny_extractors(ctx) -> Params:
    return {
        "TEXT_EXTRACTOR": f"hf:{ctx['tiny_bert']}",
        "IMAGE_EXTRACTOR": "timm:test_vit",
        "EXTRACTOR_OPTIONS": {"timm:test_vit": {"pretrained": False}},
        "EMBED_BATCH_SIZE": 16,
        "RESULTS_DIR": str(ctx["tmp"] / "results"),
    }


def alignment(ctx) -> Params:
    """Alignment/alignment_<dataset>: tiny models, 3 epochs, 1 seed, 3 lambdas, PCA instead of UMAP."""
    dataset = ctx["name"].removeprefix("alignment_")
    p = {**_tiny_extractors(ctx), "EPOCHS": 3, "N_SEEDS": 1, "LAMBDAS": [-1.0, 0.0, 1.0], "PROJECTION": "pca",
         "RESULTS_JSON": str(ctx["results_json"])}
    extra = dataset_ci(dataset, ctx)
    extra.pop("FUSION", None)
    extra.pop("AUDIO_EXTRACTOR", None)
    p.update(extra)
    return p


def unified_space(ctx) -> Params:
    return {**_tiny_extractors(ctx), "DATASET_OPTIONS": {"n": 160}, "DIM": 32, "UNIFIED_EPOCHS": 20, "EPOCHS": 3,
            "PROJECTION": "pca", "RESULTS_JSON": str(ctx["results_json"])}


def unified_space_esc50(ctx) -> Params:
    """Seed 001's recipe on the ESC-50 fixture (clips merged per class and fold, a text and an image folder per
    class), its three encoder families (hf, clip, clap) on tiny local models: the code path of the seed's
    bert-base-uncased, CLIP ViT-L/14 and laion/larger_clap_general."""
    from . import fixtures_data
    from .tiny_models import make_clap, make_tiny_clip

    fixtures_data.build("esc50", ctx["tmp"] / "data" / "esc50")
    return {"DATA_DIR": str(ctx["tmp"] / "data"),
            "DATASET_OPTIONS": {"class_texts": "class_text_folders", "class_images": "class_images", "merged": "merged"},
            "TEXT_EXTRACTOR": f"hf:{ctx['tiny_bert']}", "IMAGE_EXTRACTOR": f"clip:{make_tiny_clip(ctx['tmp'] / 'tiny-clip')}",
            "AUDIO_EXTRACTOR": f"clap:{make_clap(ctx['tmp'] / 'tiny-clap')}", "EMBED_BATCH_SIZE": 8,
            "EMBEDDINGS_DIR": str(ctx["tmp"] / "embeddings"), "RESULTS_DIR": str(ctx["tmp"] / "results"),
            "DIM": 16, "UNIFIED_EPOCHS": 10, "EPOCHS": 3, "PROJECTION": "pca", "RESULTS_JSON": str(ctx["results_json"])}


def retrieval(ctx) -> Params:  # its rows are retrieval scores, not trained models: RESULTS_JSON is not checked
    return {**_tiny_extractors(ctx), "DATASET_OPTIONS": {"n": 160}, "DIM": 32, "UNIFIED_EPOCHS": 20}


RULES: Dict[str, Callable[[Dict[str, Any]], Params]] = {
    "notebooks/embed_model_*.ipynb": embed_model,
    "get_datasets.ipynb": get_datasets,
    "generate_*_embeddings.ipynb": generate_embeddings,
    "notebooks/full_model_*.ipynb": full_model,
    "notebooks/guided_model_*.ipynb": guided_model,
    "Alignment/alignment_*.ipynb": alignment,
    "Alignment/unified_space.ipynb": unified_space,
    "Alignment/unified_space_esc50.ipynb": unified_space_esc50,
    "Alignment/retrieval.ipynb": retrieval,
}

# which notebooks save a report (pattern -> its JSON, relative to RESULTS_DIR) and the tables it must hold
EXPECTED_REPORTS: Dict[str, str] = {
    "notebooks/embed_model_*.ipynb": "{name}*_report.json",  # named by the dataset's own name (table-<file stem>)
}

# which result-row models each notebook must produce (pattern -> model names); default: at least one row
EXPECTED_MODELS: Dict[str, list] = {
    "notebooks/embed_model_*.ipynb": ["early_fusion", "late_fusion", "text_only", "image_only"],
    "notebooks/full_model_*.ipynb": ["bert_vit_early_frozen", "bert_vit_late_finetune", "bert_clip_late", "early_fusion", "logreg"],
    "notebooks/guided_model_*.ipynb": ["guided_tsf", "guided_gated", "early_fusion", "logreg"],
    "Alignment/alignment_*.ipynb": ["early_fusion", "late_fusion"],
    "Alignment/unified_space.ipynb": ["early_fusion", "late_fusion", "early_fusion+unified", "late_fusion+unified"],
    "Alignment/unified_space_esc50.ipynb": ["early_fusion", "audio_only", "early_fusion+unified", "audio_only+unified"],
}


def predict(ctx) -> Params:
    """notebooks/predict.ipynb: a model trained here on tiny extractors (synthetic, n=150), then a new table of
    records (text + copied images, with labels) scored through the notebook."""
    import shutil

    import pandas as pd

    from utils import experiment as ex

    emb_dir = ctx["tmp"] / "embeddings"
    ds = ex.load_dataset("synthetic", n=150)
    emb = ex.extract_embeddings(ds, {"text": f"hf:{ctx['tiny_bert']}", "image": "timm:test_vit"},
                                {"timm:test_vit": {"pretrained": False}}, embeddings_dir=emb_dir, show_progress=False)
    rows = ex.train_heads(ds, emb, ["early_fusion"], epochs=10, show_progress=False)
    folder = ex.save_model(rows, ctx["tmp"] / "model")
    table_dir = ctx["tmp"] / "new"
    (table_dir / "images").mkdir(parents=True)
    test = ds.df[ds.df["split"] == "test"].head(30)
    names = []
    for i, p in enumerate(test["image_path"]):
        src = ds.resolve_path(p)
        names.append(f"images/{i:03d}{src.suffix}")
        shutil.copy(src, table_dir / names[-1])
    pd.DataFrame({"id": test["id"].astype(str), "text": test["text"], "image_path": names,
                  "label": test["label"]}).to_csv(table_dir / "new.csv", index=False)
    return {"MODEL_DIR": str(folder), "TABLE": str(table_dir / "new.csv"), "EMBEDDINGS_DIR": str(emb_dir),
            "RESULTS_DIR": str(ctx["tmp"] / "results"), "OUTPUT_CSV": str(ctx["tmp"] / "predictions.csv")}


RULES["notebooks/predict.ipynb"] = predict


def check_predictions(params: Params) -> None:
    """The predictions the notebook wrote: one row per record of the table, probabilities that sum to one, and
    the predicted class the most probable one."""
    import numpy as np
    import pandas as pd

    table = pd.read_csv(params["TABLE"])
    preds = pd.read_csv(params["OUTPUT_CSV"])
    assert list(preds["id"].astype(str)) == list(table["id"].astype(str))
    proba = preds[[c for c in preds.columns if c.startswith("proba_")]]
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert (proba.idxmax(axis=1).str.removeprefix("proba_") == preds["prediction"].astype(str)).all()
    assert not preds.filter(like="missing_").any().any()  # every record had its text and image


def check_bert_clip_weights(params: Params) -> None:
    """The BERT + CLIP classifier trains with class weights 'balanced' (the seed's Trainer) unless the notebook's
    CLIP_CLASS_WEIGHTS says otherwise: the embedding heads' CLASS_WEIGHTS=None must not reach it."""
    import json
    from pathlib import Path

    every = json.loads(Path(params["RESULTS_JSON"]).read_text())
    rows = [r for r in every if r["model"] == "bert_clip_late"]
    assert rows and all(r["train_config"]["class_weights"] == "balanced" for r in rows), \
        [r["train_config"].get("class_weights") for r in rows]
    # issue 21: the notebook's NUM_WORKERS and both learning rates reach the runs (defaults: 2, 2e-5, 1e-3)
    full = [r for r in every if r["model"].startswith("bert_vit_")]
    assert full and all((r["train_config"]["num_workers"], r["train_config"]["lr"], r["train_config"]["head_lr"])
                        == (2, 2e-5, 1e-3) for r in full)
    assert all((r["train_config"]["num_workers"], r["train_config"]["head_lr"]) == (2, None) for r in rows)


def check_focal_as_the_seed(params: Params) -> None:
    """The guided notebook trains both guided models with the seed's focal loss (gamma 2, alpha 0.3)."""
    import json
    from pathlib import Path

    rows = json.loads(Path(params["RESULTS_JSON"]).read_text())
    for model in ("guided_tsf", "guided_gated"):
        cfgs = [r["train_config"] for r in rows if r["model"] == model]
        assert cfgs and all((c["loss"], c["focal_gamma"], c["focal_alpha"]) == ("focal", 2.0, 0.3) for c in cfgs), model


def check_planted_third_modality(params: Params) -> None:
    """The synthetic third modality carries the whole label (a class prototype plus noise 1.0): the fusion heads
    on the raw vectors, which include it, must find it (chance is 0.25 on the synthetic dataset's 4 classes)."""
    import json
    from pathlib import Path

    rows = [r for r in json.loads(Path(params["RESULTS_JSON"]).read_text()) if r["model"] in ("early_fusion", "late_fusion")]
    assert rows and all(r["macro_f1"] > 0.8 for r in rows), [(r["model"], r["macro_f1"]) for r in rows]


def figures_named_by_the_dataset(prefix: str) -> Callable[[Params], None]:
    """The comparison chart lands in RESULTS_DIR as ``<prefix>_<dataset's own name>`` in every FIGURE_FORMATS
    (was ``<prefix>_<DATASET>.png``: two own tables, both ``table``, overwrote each other's results)."""

    def check(params: Params) -> None:
        from pathlib import Path

        from utils import experiment as ex

        ds = ex.load_dataset(params["DATASET"], params.get("DATA_DIR"), **dict(params.get("DATASET_OPTIONS") or {}))
        found = sorted(p.name for p in Path(params["RESULTS_DIR"]).glob(f"{prefix}_*"))
        assert found == sorted(f"{prefix}_{ds.spec.name}.{fmt}" for fmt in params["FIGURE_FORMATS"]), found

    return check


def all_of(*checks: Callable[[Params], None]) -> Callable[[Params], None]:
    def check(params: Params) -> None:
        for c in checks:
            c(params)

    return check


# notebook pattern -> f(params) checking what it wrote (params: the notebook's defaults with CI's over them)
CHECKS: Dict[str, Callable[[Params], None]] = {
    "notebooks/predict.ipynb": check_predictions,
    "notebooks/full_model_*.ipynb": all_of(check_bert_clip_weights, figures_named_by_the_dataset("full_model")),
    "notebooks/guided_model_*.ipynb": all_of(check_focal_as_the_seed, figures_named_by_the_dataset("guided_model")),
    "Alignment/unified_space.ipynb": check_planted_third_modality,
}
