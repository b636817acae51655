"""Template of ``notebooks/full_model_<dataset>.ipynb``: end-to-end baselines against the embedding heads."""

from __future__ import annotations

from typing import Any, Dict, List

from .cells import COLAB_CELL, COMMON_COMMENTS, code, md, parameters_cell

COMMENTS = {
    **COMMON_COMMENTS,
    "POSITIVE_CLASS": "binary tasks: the class scored as positive (None: DATASET_OPTIONS' positive_class, else the loader's default, logged)",
    "TEXT_MODEL": "BERT backbone: hub id or local (fine-tuned) folder",
    "IMAGE_MODEL": "ViT backbone: hub id or local folder",
    "FULL_MODELS": "bert_vit_<early|late>_<frozen|finetune|lastN>",
    "CLIP_MODEL": "CLIP folder/id for the BERT + CLIP late-fusion Trainer baseline (None: skip it)",
    "CLIP_LORA": "optional LoRA for CLIP: a peft adapter folder or a .pt state dict (clip_lora_best.pt)",
    "TEXT_EXTRACTOR": "embedding model for the comparison heads",
    "IMAGE_EXTRACTOR": "embedding model for the comparison heads",
    "EXTRACTOR_OPTIONS": "options per extractor, keyed by its spec as written above",
    "FUSION": "embedding heads (and 'logreg') trained for comparison",
    "EPOCHS": "end-to-end epochs (early stopping on validation)",
    "HEAD_EPOCHS": "embedding-head epochs (early stopping on validation)",
    "BATCH_SIZE": "end-to-end batch size (the seed's 64 gives a quarter of the optimizer steps per epoch: see README)",
    "LR": "backbone learning rate when fine-tuning (2e-5 scored best against the seed's 1e-3: see README)",
    "HEAD_LR": "fusion-head learning rate (the seed's 1e-3)",
    "CLIP_HEAD_LR": "BERT + CLIP head learning rate (None: LR for every weight, one rate as the seed's Trainer)",
    "NUM_WORKERS": "DataLoader workers decoding images during training (the seed's 2; 0: in the main process)",
    "MAX_LENGTH": "tokenizer max length",
    "CLASS_WEIGHTS": "None, 'balanced' or one weight per class (binary: pos_weight from 'balanced')",
    "CLIP_BASE": "the CLIP a .pt / .pth CLIP_MODEL state dict goes over (None: openai/clip-vit-base-patch32)",
    "CLIP_CLASS_WEIGHTS": "BERT + CLIP's class weights: 'balanced' like the seed's Trainer (None: unweighted)",
    "LOSS": "'auto' (cross-entropy / BCE by task), 'ce', 'bce' or 'focal'",
    "FOCAL_GAMMA": "focal loss focusing parameter",
    "FOCAL_ALPHA": "focal loss alpha: None, a number (binary) or one per class",
    "RESULTS_TABLE": "None: RESULTS_DIR/runs.parquet (every run is appended)",
    "FIGURE_FORMATS": "the comparison chart saved in these formats: png, and pdf or svg (vector, for a paper)",
    "FIGURE_DPI": "resolution of the PNG chart",
    "RESULTS_JSON": "None: RESULTS_DIR/full_model_<dataset name>.json (for a table: table-<file stem>, or the name option)",
}


def parameters(dataset: str, overrides: Dict[str, Any]) -> Dict[str, Any]:
    params: Dict[str, Any] = {
        "DATASET": dataset,
        "DATA_DIR": None,
        "DATASET_OPTIONS": {},
        "POSITIVE_CLASS": None,
        "TEXT_MODEL": "bert-base-uncased",
        "IMAGE_MODEL": "google/vit-base-patch16-224-in21k",
        "FULL_MODELS": ["bert_vit_early_frozen", "bert_vit_late_frozen", "bert_vit_early_finetune", "bert_vit_late_finetune"],
        "CLIP_MODEL": "openai/clip-vit-base-patch32",
        "CLIP_LORA": None,
        "CLIP_BASE": None,
        "TEXT_EXTRACTOR": "bge-base",
        "IMAGE_EXTRACTOR": "dinov2-base",
        "EXTRACTOR_OPTIONS": {},
        "FUSION": ["early_fusion", "late_fusion", "logreg"],
        "EPOCHS": 5,
        "HEAD_EPOCHS": 50,
        "BATCH_SIZE": 16,
        "LR": 2e-5,
        "HEAD_LR": 1e-3,
        "CLIP_HEAD_LR": None,
        "NUM_WORKERS": 2,
        "MAX_LENGTH": 128,
        "CLASS_WEIGHTS": None,
        "CLIP_CLASS_WEIGHTS": "balanced",
        "LOSS": "auto",
        "FOCAL_GAMMA": 2.0,
        "FOCAL_ALPHA": None,
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
    """Cells of ``notebooks/full_model_<dataset>.ipynb``."""
    params = parameters(dataset, overrides)
    loss = "\"class_weights\": CLASS_WEIGHTS, \"loss\": LOSS, \"focal_gamma\": FOCAL_GAMMA, \"focal_alpha\": FOCAL_ALPHA"
    return [
        md(
            f"# Full model: `{dataset}`\n\n"
            "End-to-end baselines (a BERT text backbone and a ViT image backbone, frozen or fine-tuned, under the "
            "early- and late-fusion heads; BERT + CLIP late fusion trained with a `transformers.Trainer`) against "
            "the embedding-model heads on the same splits, over several seeds. Model selection and early stopping "
            "use the validation split only; every run is appended to the results table (parquet). Run headless with "
            f"`papermill notebooks/full_model_{dataset}.ipynb out.ipynb -p EPOCHS 3`."
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
        code("options = {**DATASET_OPTIONS, **({\"positive_class\": POSITIVE_CLASS} if POSITIVE_CLASS is not None else {})}\n"
             "figure_formats(FIGURE_FORMATS)  # a format that cannot be written fails here, before any training\n"
             "ds = ex.load_dataset(DATASET, DATA_DIR, **options)\n"
             "seeds = list(range(SEED, SEED + N_SEEDS))\nds"),
        md("## BERT + ViT end to end\nEach backbone with its own preprocessing (tokenizer, image processor)."),
        code(
            "full_rows = [] if not FULL_MODELS else ex.run_seeds({\"kind\": \"full\", \"dataset\": DATASET, \"text_model\": TEXT_MODEL,\n"
            "                          \"image_model\": IMAGE_MODEL, \"models\": FULL_MODELS, \"epochs\": EPOCHS,\n"
            "                          \"batch_size\": BATCH_SIZE, \"lr\": LR, \"head_lr\": HEAD_LR, \"num_workers\": NUM_WORKERS,\n"
            "                          \"max_length\": MAX_LENGTH, \"device\": DEVICE,\n"
            f"                          {loss}}}, seeds, ds=ds)"
        ),
        md("## BERT + CLIP late fusion (`transformers.Trainer`, class-weighted loss, early stopping)\n"
           "Validation accuracy and F1 of the best epoch come from the Trainer's `compute_metrics` (`val_*` columns)."),
        code(
            "clip_rows = [] if CLIP_MODEL is None else ex.run_seeds(\n"
            "    {\"kind\": \"bert_clip\", \"dataset\": DATASET, \"bert_path\": TEXT_MODEL, \"clip_path\": CLIP_MODEL,\n"
            "     \"lora_path\": CLIP_LORA, \"clip_base\": CLIP_BASE, \"epochs\": EPOCHS, \"batch_size\": BATCH_SIZE, \"lr\": LR,\n"
            "     \"head_lr\": CLIP_HEAD_LR, \"num_workers\": NUM_WORKERS, \"max_length\": MAX_LENGTH,\n"
            f"     \"device\": DEVICE, {loss.replace('CLASS_WEIGHTS', 'CLIP_CLASS_WEIGHTS')}}}, seeds, ds=ds)"
        ),
        md("## Embedding model heads for comparison"),
        code(
            "embed_rows = ex.run_seeds({\"kind\": \"embedding\", \"dataset\": DATASET, \"text_extractor\": TEXT_EXTRACTOR,\n"
            "                           \"image_extractor\": IMAGE_EXTRACTOR, \"extractor_options\": EXTRACTOR_OPTIONS,\n"
            "                           \"models\": FUSION, \"epochs\": HEAD_EPOCHS, \"device\": DEVICE,\n"
            "                           \"train\": {\"class_weights\": CLASS_WEIGHTS, \"loss\": LOSS, \"focal_gamma\": FOCAL_GAMMA,\n"
            "                                     \"focal_alpha\": FOCAL_ALPHA}}, seeds, ds=ds)"
        ),
        md("## Results (test split, mean and std over seeds)"),
        code("rows = full_rows + clip_rows + embed_rows\nex.append_runs(rows, RESULTS_TABLE)\nex.paper_table(rows)"),
        md("### The comparison chart\nTest macro-F1 per model (mean and spread over seeds) and training seconds per "
           "epoch. Saved as PNG and PDF (`FIGURE_FORMATS`, `FIGURE_DPI`), named by the dataset's own name so one "
           "table's results never overwrite another's."),
        code(
            "out_dir = results_dir(RESULTS_DIR)\n"
            "name = f\"full_model_{ds.spec.name}\"  # the dataset's own name: each own table gets its own files\n"
            "fig = ex.plot_comparison(rows, out_dir / f\"{name}.png\", title=f\"{ds.spec.name}: full models against embedding heads\",\n"
            "                         dpi=FIGURE_DPI, formats=FIGURE_FORMATS)"
        ),
        md("## Save\nOne row per trained model and seed."),
        code("ex.save_results(rows, RESULTS_JSON or out_dir / f\"{name}.json\")"),
    ]
