"""Template of ``get_datasets.ipynb``: per dataset, what it is, licence and access, download, load, summary,
examples."""

from __future__ import annotations

from typing import Any, Dict, List

from .cells import COLAB_CELL, code, md, parameters_cell

ORDER = ["daquar", "coco_qa", "fakeddit", "recipes5k", "brset", "ham10000", "satellite", "mimic_cxr", "musti", "esc50", "table"]
NOTES = {
    "daquar": "Multilabel: an answer listing several objects gives several labels. The image reference is removed from the question.",
    "coco_qa": "Multiclass one-word answers; the question type (object, number, color, location) is kept as a column.",
    "fakeddit": "`label='2_way' | '3_way' | '6_way'`; `subset=N, seed=S` keeps a stratified sample; the simpler "
    "`clean_title / 2_way_label / local_image_path` TSV layout is read too, also as `train_filtered.tsv`, "
    "`val_filtered.tsv`, `test_filtered.tsv` (the BERT + CLIP classifier's files; `image_base=` is the folder the "
    "image paths are relative to, found above the dataset folder when left out).",
    "recipes5k": "`ingredients='full' | 'simplified'`.",
    "brset": "Tasks `DR_2`, `DR_3` or any label column; patient-grouped splits. The default text leaves the retinal "
    "findings out (they define diabetic retinopathy); `text='full'` puts them back and warns that it leaks.",
    "ham10000": "Lesion-grouped splits. `dx_type` (how the diagnosis was made) encodes the label: only `text='full'` uses it.",
    "satellite": "RGB from the multi-band TIFFs (cached as PNG); `task='dengue_binary' | 'dengue_tercile'`. "
    "`split='time'` (default) puts every municipality in every split (earlier weeks train, later weeks test); "
    "`split='municipality'` keeps each municipality in one split. Label thresholds are fitted on training weeks only. "
    "Table and column names are options (the release layout was not verified).",
    "mimic_cxr": "**The FINDINGS and IMPRESSION sections name the diagnosis** (the CheXpert labels were extracted from "
    "them): the default text is INDICATION + HISTORY only; `sections=('findings', 'impression')` warns that it leaks.",
    "musti": "Column names are options (`text_column`, `image_column`, `label_column`, `split_column`).",
    "esc50": "Audio clips in 5 folds. `class_texts='class_texts.csv'` and `class_images='class_images'` add a text and an "
    "image per class for three-modality work (they then encode the label).",
    "table": "Your own CSV / TSV / parquet: `file=`, `text_column=`, `image_column=`, `label_column=`, `split_column=`, "
    "`dataset_name=`, `encoding=` (e.g. `'cp1252'` for a CSV saved by Excel), `subgroup_columns=`; image paths relative "
    "to the folder (a Drive folder on Colab). Binary: `positive_class=` picks the positive class (logged).",
}


def cells() -> List[Dict[str, Any]]:
    """Cells of ``get_datasets.ipynb``."""
    from ..data.download import SOURCES

    params = {"DATA_DIR": None, "DATASETS": list(ORDER), "DOWNLOAD": False, "DATASET_OPTIONS": {}, "N_EXAMPLES": 3,
              "SUMMARY_JSON": None}
    comments = {
        "DATA_DIR": "None: MMFUSION_DATA_DIR, .env or ./data; each dataset lives in DATA_DIR/<name>",
        "DATASETS": "which datasets to load (missing folders are skipped with instructions)",
        "DOWNLOAD": "True: fetch the open / PhysioNet datasets (PhysioNet needs PHYSIONET_USERNAME/PASSWORD in .env)",
        "DATASET_OPTIONS": "{name: {loader options}}",
        "N_EXAMPLES": "example records shown per dataset",
        "SUMMARY_JSON": "None: RESULTS_DIR/datasets_summary.json",
    }
    out = [
        md("# Get the datasets\n\nFor each dataset: what it is, its licence and access, a download step, then load, "
            "summary (records per split and class, text lengths, missing images, duplicates) and a few examples. "
            "A dataset whose folder is missing is skipped with instructions; credentials are read from the "
            "environment or `.env`, never typed here.\n\n"
            "Real files are messier than their documentation. The summary's **load report** says which lines the "
            "loader recovered (the intent was clear: stray whitespace, a label in another case, `5O` for 50) and "
            "which it skipped (and why), with the first line numbers; `DATASET_OPTIONS = {name: {'strict': True}}` "
            "makes a loader raise instead of skipping."),
        code(COLAB_CELL),
        code("from utils import data\nfrom utils.config import results_dir\nfrom utils.data import download\n"
              "from utils.experiment import setup_logging\n\nsetup_logging()\nsummaries = {}"),
        code(parameters_cell(params, comments), tags=["parameters"]),
        md("## At a glance"),
        code("download.sources_table()"),
    ]
    for name in ORDER:
        s = SOURCES[name]
        out += [
            md(f"## `{name}`: {s.title}\n\n- task: {s.task}\n- size: {s.size}\n- licence: {s.licence}\n"
                f"- access: {s.access} ([page]({s.page}))\n\n{NOTES[name]}"),
            code(f"print(download.prepare({name!r}, DATA_DIR, download=DOWNLOAD and {name!r} in DATASETS))"),
            code(f"ds = data.try_load({name!r}, DATA_DIR, **DATASET_OPTIONS.get({name!r}, {{}})) if {name!r} in DATASETS else None\n"
                  f"summaries[{name!r}] = data.summary(ds) if ds is not None else None\nsummaries[{name!r}]"),
            code("data.example_figure(ds, N_EXAMPLES) if ds is not None else None"),
        ]
    out += [
        md("## Save the summaries"),
        code("data.save_summaries(summaries, SUMMARY_JSON or results_dir() / \"datasets_summary.json\")"),
    ]
    return out
