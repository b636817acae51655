"""Template of ``notebooks/guided_model_<dataset>.ipynb`` (MUSTI): image-guided text selection beside the plain heads.

The published block (``guided_tsf``: image tokens mixed into the text encoder's input embeddings, cosine
scores, a vote over a ViT and a ResNet-34 branch) and our gated variant (``guided_gated``, on cached token
features), trained with focal loss (gamma 2, alpha 0.3, as the seed reports for MUSTI), against the fusion
heads and logistic regression on cached embeddings, on the same splits and seeds.
"""

from __future__ import annotations

from typing import Any, Dict, List

from .cells import COLAB_CELL, COMMON_COMMENTS, code, md, parameters_cell

COMMENTS = {
    **COMMON_COMMENTS,
    "POSITIVE_CLASS": "binary tasks: the class scored as positive (None: the loader's default, logged)",
    "TEXT_MODEL": "the guided models' text encoder: hub id or local folder (multilingual BERT for MUSTI)",
    "IMAGE_EXTRACTORS": "one branch per image extractor (the seed: a ViT and a ResNet-34), cached in the store",
    "GUIDED_MODELS": "'guided_tsf' (the published block, end to end) and / or 'guided_gated' (ours, cached tokens)",
    "TEXT_EXTRACTOR": "embedding model of the plain heads",
    "IMAGE_EXTRACTOR": "embedding model of the plain heads",
    "EXTRACTOR_OPTIONS": "options per extractor, keyed by its spec as written above",
    "EMBEDDINGS_DIR": "None: MMFUSION_EMBEDDINGS_DIR, .env or ./embeddings (extraction is cached)",
    "FUSION": "plain heads on cached embeddings (and 'logreg')",
    "EPOCHS": "guided_tsf epochs, end to end (early stopping on validation)",
    "GATED_EPOCHS": "guided_gated epochs on cached token features",
    "HEAD_EPOCHS": "plain-head epochs",
    "BATCH_SIZE": "guided_tsf batch size",
    "LR": "guided_tsf text-encoder learning rate (fine-tuning)",
    "HEAD_LR": "guided_tsf mixers and cosine scorers",
    "MAX_LENGTH": "tokenizer max length",
    "N_IMAGE_TOKENS": "image tokens each guided_tsf branch mixes into the input embeddings",
    "HIDDEN": "guided_gated hidden width",
    "LOSS": "'focal' as the seed reports for MUSTI; 'auto' (BCE) for plain cross-entropy; every model uses it",
    "FOCAL_GAMMA": "focal loss focusing parameter (the seed: 2)",
    "FOCAL_ALPHA": "focal loss weight of the positive class (the seed: 0.3)",
    "CLASS_WEIGHTS": "None, 'balanced' or one weight per class",
    "RESULTS_TABLE": "None: RESULTS_DIR/runs.parquet (every run is appended)",
    "FIGURE_FORMATS": "the comparison chart saved in these formats: png, and pdf or svg (vector, for a paper)",
    "FIGURE_DPI": "resolution of the PNG chart",
    "RESULTS_JSON": "None: RESULTS_DIR/guided_model_<dataset name>.json",
}


def parameters(dataset: str, overrides: Dict[str, Any]) -> Dict[str, Any]:
    params: Dict[str, Any] = {
        "DATASET": dataset,
        "DATA_DIR": None,
        "DATASET_OPTIONS": {},
        "POSITIVE_CLASS": None,
        "TEXT_MODEL": "bert-base-multilingual-cased",
        "IMAGE_EXTRACTORS": ["timm:vit_base_patch16_224.augreg2_in21k_ft_in1k", "timm:resnet34.a1_in1k"],
        "GUIDED_MODELS": ["guided_tsf", "guided_gated"],
        "TEXT_EXTRACTOR": "bge-base",
        "IMAGE_EXTRACTOR": "dinov2-base",
        "EXTRACTOR_OPTIONS": {},
        "EMBEDDINGS_DIR": None,
        "FUSION": ["early_fusion", "late_fusion", "text_only", "image_only", "logreg"],
        "EPOCHS": 5,
        "GATED_EPOCHS": 30,
        "HEAD_EPOCHS": 50,
        "BATCH_SIZE": 16,
        "LR": 2e-5,
        "HEAD_LR": 1e-3,
        "MAX_LENGTH": 128,
        "N_IMAGE_TOKENS": 4,
        "HIDDEN": 256,
        "LOSS": "focal",
        "FOCAL_GAMMA": 2.0,
        "FOCAL_ALPHA": 0.3,
        "CLASS_WEIGHTS": None,
        "SEED": 0,
        "N_SEEDS": 3,
        "DEVICE": "auto",
        "RESULTS_DIR": None,
        "RESULTS_TABLE": None,
        "FIGURE_FORMATS": ["png", "pdf"],
        "FIGURE_DPI": 200,
        "RESULTS_JSON": None,
    }
    params.update({k: v for k, v in overrides.items() if k in params})
    return params


def cells(dataset: str, overrides: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Cells of ``notebooks/guided_model_<dataset>.ipynb``."""
    params = parameters(dataset, overrides)
    loss = "{\"loss\": LOSS, \"focal_gamma\": FOCAL_GAMMA, \"focal_alpha\": FOCAL_ALPHA, \"class_weights\": CLASS_WEIGHTS}"
    return [
        md(
            f"# Image-guided text selection: `{dataset}`\n\n"
            "The published MUSTI block (`guided_tsf`: each image branch, a ViT and a ResNet-34, mixes image tokens "
            "into the text encoder's input embeddings; the encoder runs; a cosine score per branch; the branches vote) "
            "and our gated variant (`guided_gated`: the image gates the encoder's output token features, on cached "
            "tokens), trained with focal loss (gamma 2, alpha 0.3, as the seed reports), beside the plain fusion "
            "heads on cached embeddings, on the same splits and seeds. Validation picks the epoch; test scores. "
            f"Run headless with `papermill notebooks/guided_model_{dataset}.ipynb out.ipynb -p EPOCHS 3`."
        ),
        code(COLAB_CELL),
        code(
            "from utils import experiment as ex\n"
            "from utils.config import results_dir\n"
            "from utils.viz import figure_formats\n\n"
            "ex.setup_logging()"
        ),
        code(parameters_cell(params, COMMENTS), tags=["parameters"]),
        md("## Load the dataset"),
        code("figure_formats(FIGURE_FORMATS)  # a format that cannot be written fails here, before any training\n"
             "ds = ex.load_dataset(DATASET, DATA_DIR, EMBEDDINGS_DIR, positive_class=POSITIVE_CLASS, **DATASET_OPTIONS)\n"
             "seeds = list(range(SEED, SEED + N_SEEDS))\nloss = " + loss + "\n"
             "options = lambda specs: {k: v for k, v in EXTRACTOR_OPTIONS.items() if k in specs}  # each run's own extractors\n"
             "ds"),
        md("## The published block (`guided_tsf`), end to end\n"
           "The image features of each branch are cached embeddings of a frozen image encoder; the text encoder "
           "fine-tunes at `LR`, the mixers and cosine scorers at `HEAD_LR`."),
        code(
            "tsf_rows = [] if \"guided_tsf\" not in GUIDED_MODELS else ex.run_seeds(\n"
            "    {\"kind\": \"guided\", \"dataset\": DATASET, \"text_model\": TEXT_MODEL, \"image_extractors\": IMAGE_EXTRACTORS,\n"
            "     \"extractor_options\": options(IMAGE_EXTRACTORS), \"embeddings_dir\": EMBEDDINGS_DIR, \"epochs\": EPOCHS,\n"
            "     \"batch_size\": BATCH_SIZE, \"lr\": LR, \"head_lr\": HEAD_LR, \"max_length\": MAX_LENGTH,\n"
            "     \"n_image_tokens\": N_IMAGE_TOKENS, \"device\": DEVICE, \"train\": loss}, seeds, ds=ds)"
        ),
        md("## Our gated variant (`guided_gated`), on cached token features"),
        code(
            "gated_rows = [] if \"guided_gated\" not in GUIDED_MODELS else ex.run_seeds(\n"
            "    {\"kind\": \"guided_gated\", \"dataset\": DATASET, \"text_model\": TEXT_MODEL, \"image_extractors\": IMAGE_EXTRACTORS,\n"
            "     \"extractor_options\": options(IMAGE_EXTRACTORS), \"embeddings_dir\": EMBEDDINGS_DIR, \"epochs\": GATED_EPOCHS,\n"
            "     \"max_length\": MAX_LENGTH, \"hidden\": HIDDEN, \"device\": DEVICE, \"train\": loss}, seeds, ds=ds)"
        ),
        md("## Plain heads on cached embeddings, the same loss"),
        code(
            "embed_rows = ex.run_seeds({\"kind\": \"embedding\", \"dataset\": DATASET, \"text_extractor\": TEXT_EXTRACTOR,\n"
            "                           \"image_extractor\": IMAGE_EXTRACTOR,\n"
            "                           \"extractor_options\": options([TEXT_EXTRACTOR, IMAGE_EXTRACTOR]),\n"
            "                           \"embeddings_dir\": EMBEDDINGS_DIR, \"models\": FUSION, \"epochs\": HEAD_EPOCHS,\n"
            "                           \"device\": DEVICE, \"train\": loss}, seeds, ds=ds)"
        ),
        md("## Results (test split, mean and std over seeds)"),
        code("rows = tsf_rows + gated_rows + embed_rows\nex.append_runs(rows, RESULTS_TABLE)\nex.summarize(rows)"),
        code(
            "out_dir = results_dir(RESULTS_DIR)\n"
            "name = f\"guided_model_{ds.spec.name}\"  # the dataset's own name: each own table gets its own files\n"
            "fig = ex.plot_comparison(rows, out_dir / f\"{name}.png\", title=f\"{ds.spec.name}: image-guided text selection\",\n"
            "                         dpi=FIGURE_DPI, formats=FIGURE_FORMATS)"
        ),
        md("## Save\nOne row per trained model and seed."),
        code("ex.save_results(rows, RESULTS_JSON or out_dir / f\"{name}.json\")"),
    ]
