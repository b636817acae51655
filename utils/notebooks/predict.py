"""Template of ``notebooks/predict.ipynb``: load a saved model, score a table or a dataset split, show the
predictions, a confusion matrix and the probability histogram (the steps are :mod:`utils.experiment.predict`)."""

from __future__ import annotations

from typing import Any, Dict, List

from .cells import COLAB_CELL, COMMON_COMMENTS, code, md, parameters_cell

COMMENTS = {
    **COMMON_COMMENTS,
    "MODEL_DIR": "a saved model folder: python -m utils prints it (results/models/embed_model_<dataset>)",
    "TABLE": "a CSV / TSV / parquet of new records (image paths relative to its folder); None: use DATASET",
    "DATASET": "with TABLE None: a name from utils.data.names(), scored on SPLIT",
    "SPLIT": "rows of one split of DATASET; None: every row",
    "COLUMNS": "column names when they differ from the model's, e.g. {'text': 'caption', 'image': 'file'}",
    "CALIBRATED": "divide the logits by the temperature fitted on validation (decisions are the same)",
    "STRICT": "refuse records that lack a modality instead of scoring them with its training mean",
    "EMBEDDINGS_DIR": "None: MMFUSION_EMBEDDINGS_DIR, .env or ./embeddings (extracted records are cached there)",
    "OUTPUT_CSV": "None: RESULTS_DIR/predictions_<table or dataset>.csv",
}


def cells() -> List[Dict[str, Any]]:
    params = {
        "MODEL_DIR": "results/models/embed_model_synthetic", "TABLE": None, "DATASET": "synthetic", "DATA_DIR": None,
        "DATASET_OPTIONS": {}, "SPLIT": "test", "COLUMNS": {}, "CALIBRATED": True, "STRICT": False, "DEVICE": "auto",
        "EMBEDDINGS_DIR": None, "RESULTS_DIR": None, "OUTPUT_CSV": None,
    }
    return [
        md("# Predict with a saved model\n\n"
           "Load a model folder written by `python -m utils` or `ex.save_model(...)` (weights, standardiser, extractors "
           "with their fingerprints, temperature; every file checked against its checksum), embed new records with the "
           "model's own extractors (cached in the store), and write one row per record: the predicted class, the "
           "probability of every class and a flag for each modality a record lacks. Run headless with "
           "`papermill notebooks/predict.ipynb out.ipynb -p MODEL_DIR results/models/embed_model_synthetic -p TABLE new.csv`."),
        code(COLAB_CELL),
        code("from pathlib import Path\n\nfrom utils import experiment as ex\nfrom utils import viz\n"
             "from utils.config import results_dir\n\nex.setup_logging()"),
        code(parameters_cell(params, COMMENTS), tags=["parameters"]),
        md("## The model\nWhat it predicts, what it was trained on and how it scored (its model card is `README.md` in the folder)."),
        code("model = ex.load_model(MODEL_DIR)\nex.model_summary(model)"),
        md("## Predict\nA table of new records, or a split of a dataset (its cached embeddings are reused)."),
        code("data = TABLE if TABLE else ex.load_dataset(DATASET, DATA_DIR, EMBEDDINGS_DIR, **DATASET_OPTIONS)\n"
             "preds = ex.predict(model, data, split=None if TABLE else SPLIT, calibrated=CALIBRATED, strict=STRICT,\n"
             "                   columns=COLUMNS, embeddings_dir=EMBEDDINGS_DIR, device=DEVICE)\n"
             "preds.head(10)"),
        md("## Scores\nOn the records that carry a label (none when the table has no label column)."),
        code("metrics = ex.prediction_metrics(model, preds)\n"
             "ex.metrics_summary(metrics)"),
        md("## Confusion matrix\nRows: the true class; cells: records (shaded by the share of their true class)."),
        code("labelled = preds[preds[\"label\"].notna()] if \"label\" in preds else preds.iloc[:0]\n"
             "fig = viz.prediction_confusion(labelled[\"label\"].astype(str), labelled[\"prediction\"], model.classes) "
             "if model.task != \"multilabel\" and len(labelled) else None\nfig"),
        md("## How confident the predictions are"),
        code("fig = viz.probability_histogram(preds[[f\"proba_{c}\" for c in model.classes]])\nfig"),
        md("## Save"),
        code("name = Path(TABLE).stem if TABLE else f\"{DATASET}_{SPLIT or 'all'}\"\n"
             "ex.save_predictions(preds, OUTPUT_CSV or results_dir(RESULTS_DIR) / f\"predictions_{name}.csv\")"),
    ]
