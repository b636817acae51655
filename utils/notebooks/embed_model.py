"""Template of ``notebooks/embed_model_<dataset>.ipynb``: frozen embeddings, fusion heads, results."""

from __future__ import annotations

from typing import Any, Dict, List

from .cells import COLAB_CELL, COMMON_COMMENTS, code, md, parameters_cell

COMMENTS = {
    **COMMON_COMMENTS,
    "POSITIVE_CLASS": "binary tasks: the class scored as positive (None: DATASET_OPTIONS' positive_class, else the loader's default, logged)",
    "TEXT_EXTRACTOR": "alias or family:model_id (utils.extractors.names()); 'bge-base' is BAAI/bge-base-en-v1.5",
    "IMAGE_EXTRACTOR": "alias or family:model_id; 'dinov2-base' is facebook/dinov2-base (the original's choice)",
    "AUDIO_EXTRACTOR": "None, or e.g. 'clap:laion/clap-htsat-unfused' (datasets with audio)",
    "EXTRACTOR_OPTIONS": "options per extractor, keyed by its spec as written above, e.g. {'dinov2-base': {'precision': 'fp32'}}",
    "EMBEDDINGS_DIR": "None: MMFUSION_EMBEDDINGS_DIR, .env or ./embeddings",
    "FUSION": "heads to train (utils.models.HEADS.names())",
    "EPOCHS": "upper bound; early stopping on the validation split",
    "BATCH_SIZE": "head training batch size",
    "CLASS_WEIGHTS": "None, 'balanced' or one weight per class (binary: pos_weight from 'balanced')",
    "LOSS": "'auto' (cross-entropy / BCE by task), 'ce', 'bce' or 'focal'",
    "FOCAL_GAMMA": "focal loss focusing parameter",
    "FOCAL_ALPHA": "focal loss alpha: None, a number (binary) or one per class",
    "EMBED_BATCH_SIZE": "extraction batch size (\"auto\": from free GPU memory on CUDA, else 32)",
    "MODALITY_DROPOUT": "training only: chance that a row of a fusion head loses one modality (robustness; 0 is off)",
    "REPORT": "the report: bootstrap intervals, calibration, subgroups, missing modalities, Shapley values",
    "N_BOOTSTRAP": "bootstrap resamples of every interval (1000 or more for reported figures)",
    "SUBGROUPS": "grouping columns of the table (None: the dataset's own list, ds.spec.extra['subgroups'])",
    "SHAPLEY": "Shapley values over modalities (trains each fusion head on every subset of modalities)",
    "FIGURE_FORMATS": "every figure saved in these formats: png, and pdf or svg (vector, for a paper)",
    "FIGURE_DPI": "resolution of the PNG figures",
    "RESULTS_JSON": "None: RESULTS_DIR/embed_model_<dataset name>.json (for a table: table-<file stem>, or the name option)",
}

TEXT_DEFAULT = "bge-base"  # a real sentence-embedding model (BAAI/bge-base-en-v1.5, CLS pooling)
IMAGE_DEFAULT = "dinov2-base"  # the original framework's image backbone


def parameters(dataset: str, overrides: Dict[str, Any]) -> Dict[str, Any]:
    params: Dict[str, Any] = {
        "DATASET": dataset,
        "DATA_DIR": None,
        "DATASET_OPTIONS": {},
        "POSITIVE_CLASS": None,
        "TEXT_EXTRACTOR": TEXT_DEFAULT,
        "IMAGE_EXTRACTOR": IMAGE_DEFAULT,
        "AUDIO_EXTRACTOR": None,
        "EXTRACTOR_OPTIONS": {},
        "EMBEDDINGS_DIR": None,
        "FUSION": ["early_fusion", "late_fusion", "text_only", "image_only"],
        "EPOCHS": 50,
        "BATCH_SIZE": 64,
        "CLASS_WEIGHTS": None,
        "LOSS": "auto",
        "FOCAL_GAMMA": 2.0,
        "FOCAL_ALPHA": None,
        "EMBED_BATCH_SIZE": "auto",
        "MODALITY_DROPOUT": 0.0,
        "REPORT": True,
        "N_BOOTSTRAP": 1000,
        "SUBGROUPS": None,
        "SHAPLEY": True,
        "SEED": 0,
        "N_SEEDS": 1,
        "DEVICE": "auto",
        "RESULTS_DIR": None,
        "FIGURE_FORMATS": ["png", "pdf"],
        "FIGURE_DPI": 200,
        "RESULTS_JSON": None,
    }
    params.update({k: v for k, v in overrides.items() if k in params})
    return params


def cells(dataset: str, overrides: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Cells of ``notebooks/embed_model_<dataset>.ipynb``."""
    params = parameters(dataset, overrides)
    return [
        md(
            f"# Embedding model: `{dataset}`\n\n"
            "Frozen foundation-model embeddings (extracted once, cached) and small fusion heads trained on them: "
            "early fusion, late fusion and single-modality heads, compared on the test split. "
            "Model selection and early stopping use the validation split only. "
            "Change the extractors in the parameters cell; run headless with "
            f"`papermill notebooks/embed_model_{dataset}.ipynb out.ipynb -p EPOCHS 20`."
        ),
        code(COLAB_CELL),
        code(
            "from pathlib import Path\n\n"
            "from IPython.display import display\n\n"
            "from utils import experiment as ex\n\n"
            "ex.setup_logging()"
        ),
        code(parameters_cell(params, COMMENTS), tags=["parameters"]),
        md("## Check the settings\nEvery option is checked once, before anything heavy runs: an unknown dataset, loader "
           "option, head or extractor option, or a bad number of epochs, is named with what is accepted. The `plan` holds "
           "what the steps below run with (the dataset request, the extractors, the configs), so none is checked twice."),
        code(
            "plan = ex.check_job(ex.MainJobConfig(\n"
            "    dataset=DATASET, data_dir=DATA_DIR, dataset_options={**DATASET_OPTIONS, **({\"positive_class\": POSITIVE_CLASS} if POSITIVE_CLASS is not None else {})},\n"
            "    text_extractor=TEXT_EXTRACTOR, image_extractor=IMAGE_EXTRACTOR, audio_extractor=AUDIO_EXTRACTOR,\n"
            "    extractor_options=EXTRACTOR_OPTIONS, embeddings_dir=EMBEDDINGS_DIR, embed_batch_size=EMBED_BATCH_SIZE,\n"
            "    models=FUSION, epochs=EPOCHS, batch_size=BATCH_SIZE, seeds=list(range(SEED, SEED + N_SEEDS)), device=DEVICE,\n"
            "    train_options={\"class_weights\": CLASS_WEIGHTS, \"loss\": LOSS, \"focal_gamma\": FOCAL_GAMMA, \"focal_alpha\": FOCAL_ALPHA},\n"
            "    modality_dropout=MODALITY_DROPOUT, report=REPORT, out_dir=RESULTS_DIR,\n"
            "    report_options={\"n_resamples\": N_BOOTSTRAP, \"subgroups\": SUBGROUPS, \"shapley\": SHAPLEY},\n"
            "    figure_formats=FIGURE_FORMATS, figure_dpi=FIGURE_DPI))"
        ),
        md("## Load the dataset\nThe table contract: `id, text, image_path, label, split` (see `utils/data/schema.py`)."),
        code("ds = ex.load_dataset(plan.dataset)\nds.df.head()"),
        md("## Extract embeddings\nCached in the embedding store: a second run reuses them, a killed run resumes."),
        code(
            "extractors = {m: spec for m, spec in plan.extractors.items() if m in ds.spec.modalities}\n"
            "emb = ex.extract_embeddings(ds, extractors, plan.extractor_options, plan.embed, built=plan.built)\n"
            "emb.extractors, emb.dims()"
        ),
        md("## Train the heads\nEvery head is trained and scored on the same rows (those with every vector the heads read)."),
        code("rows = ex.train_heads(ds, emb, FUSION, plan.train, seeds=plan.seeds, head_config=plan.head)"),
        md("## Results (test split)"),
        code("table = ex.results_table(rows)\nex.tidy_table(table)"),
        code(
            "out_dir = plan.out_dir\n"
            "name = f\"embed_model_{ds.spec.name}\"  # the dataset's own name: each own table gets its own files"
        ),
        md(
            "## Report: how sure, how calibrated, for whom, without a modality, and what each modality adds\n"
            "One call (`ex.report`) on the trained heads; it saves `embed_model_<dataset name>_report.json`, `.txt` and the "
            "figures beside the results. Every interval is a 95% stratified bootstrap over the test rows "
            "(`N_BOOTSTRAP` resamples, seeded), shared by all models, so differences between models are paired."
        ),
        code(
            "rep = ex.report(rows, out_dir, name, plan.report) if plan.report else None\n"
            "rep.tidy()[\"intervals\"] if rep else None"
        ),
        md("### The results chart\nTest scores per head; the error bars are the report's 95% intervals (without the "
           "report: the spread over seeds). Saved as PNG and PDF (`FIGURE_FORMATS`, `FIGURE_DPI`)."),
        code(
            "fig = ex.plot_results(table, out_dir / f\"{name}.png\", title=f\"{ds.spec.name}: test scores (n={int(table['n_test'].max())})\",\n"
            "                      extractors=emb.extractors, intervals=rep.intervals if rep else None, dpi=FIGURE_DPI,\n"
            "                      formats=FIGURE_FORMATS)"
        ),
        md("### ROC and precision-recall curves, confusion matrix\nEvery head's curves on the test split (mean "
           "probability over seeds; multiclass: micro-averaged), and the confusion matrix of the head that is best on the "
           "*validation* split."),
        code(
            "if rep:\n"
            "    display(rep.figures.get(\"roc_pr\"))\n"
            "    if rep.figures.get(\"confusion\") is not None:\n"
            "        display(rep.figures[\"confusion\"])"
        ),
        md("### Paired differences\nModel A minus model B on the same test rows and resamples: a difference whose "
           "interval excludes 0 is a claim the test split supports."),
        code("rep.tidy()[\"paired\"] if rep else None"),
        md("### Calibration\nExpected calibration error and Brier score, before and after temperature scaling "
           "(one temperature per head, fitted on the validation split only)."),
        code(
            "if rep:\n"
            "    display(rep.tidy()[\"calibration\"])\n"
            "    display(rep.figures.get(\"reliability\"))"
        ),
        md("### Subgroups\nMetrics per value of each grouping column the dataset carries, and the worst-group gap "
           "with its interval. Groups too small to score are listed, not hidden."),
        code(
            "if rep and not rep.subgroups.empty:\n"
            "    display(rep.tidy()[\"subgroup_gaps\"])\n"
            "    display(rep.figures.get(\"subgroups\"))\n"
            "elif rep:\n"
            "    print(\"\\n\".join(rep.notes))"
        ),
        md("### A modality missing at test time\nEvery fusion head scored with each modality replaced by its training "
           "mean, or by zeros: the drop and its paired interval. Train with `MODALITY_DROPOUT` > 0 for heads that "
           "need it less."),
        code(
            "if rep and not rep.missing.empty:\n"
            "    display(rep.tidy()[\"missing\"])\n"
            "    display(rep.figures.get(\"missing\"))"
        ),
        md("### What each modality adds\nShapley values of test macro-F1 over modalities: each fusion head trained on "
           "every subset of its modalities; the empty set is the prior predictor. The values sum to the head's gain "
           "over it."),
        code(
            "if rep and not rep.shapley.empty:\n"
            "    display(rep.tidy()[\"shapley\"])\n"
            "    display(rep.figures.get(\"shapley\"))"
        ),
        md("## Save\nOne row per trained model and seed, with its config, curves and library versions."),
        code("ex.save_results(rows, RESULTS_JSON or out_dir / f\"{name}.json\", table=table)"),
    ]
