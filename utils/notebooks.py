"""The per-dataset notebooks are generated from one template each, so they cannot drift apart.

    python -m utils.notebooks            # (re)write every generated notebook
    python -m utils.notebooks --check    # exit 1 if a notebook differs from its template

Only the cell tagged ``parameters`` may be edited by hand; ``--check`` (and the test suite) compares
every other cell with the template. To add a dataset, add an entry to :data:`DATASET_NOTEBOOKS`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO_URL = "https://github.com/mmfusion/mmfusion"  # where the Colab cell installs the package from (edit for a fork)

COLAB_CELL = f'''# Colab: install this repository's package and keep data on Google Drive. Does nothing elsewhere.
import importlib.util, subprocess, sys
if "google.colab" in sys.modules:
    if importlib.util.find_spec("utils") is None or not importlib.util.find_spec("utils.experiment"):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+{REPO_URL}"], check=True)
    from utils.config import setup_colab
    setup_colab()  # mounts Drive; data, embeddings and results go to MyDrive/mmfusion'''

# dataset -> parameter overrides for its generated notebooks (defaults are in _embed_parameters)
DATASET_NOTEBOOKS: Dict[str, Dict[str, Any]] = {
    "synthetic": {},
    "daquar": {},
    "coco_qa": {},
    "fakeddit": {"DATASET_OPTIONS": {"label": "2_way", "subset": 10000, "seed": 0}},
    "recipes5k": {"DATASET_OPTIONS": {"ingredients": "full"}},
    "brset": {"DATASET_OPTIONS": {"task": "DR_2"}},
    "ham10000": {},
    "satellite": {"DATASET_OPTIONS": {"task": "dengue_binary", "split": "time"}},
    "mimic_cxr": {"DATASET_OPTIONS": {"sections": ["indication", "history"], "uncertain": "negative"}},
    "musti": {"DATASET_OPTIONS": {"text_column": "text", "image_column": "image", "label_column": "label"}},
    "esc50": {
        "DATASET_OPTIONS": {"class_texts": "class_texts.csv", "class_images": "class_images"},
        "AUDIO_EXTRACTOR": "clap:laion/clap-htsat-unfused",
        "FUSION": ["early_fusion", "late_fusion", "text_only", "image_only", "audio_only"],
    },
    "table": {"DATASET_OPTIONS": {"file": "records.csv", "text_column": "text", "image_column": "image", "label_column": "label"}},
}


def _literal(value: Any) -> str:
    return repr(value)


def _parameters_cell(params: Dict[str, Any], comments: Dict[str, str]) -> str:
    lines = []
    for k, v in params.items():
        c = comments.get(k)
        lines.append(f"{k} = {_literal(v)}" + (f"  # {c}" if c else ""))
    return "\n".join(lines)


# parameter comments shared by every template (papermill cannot parse a comment holding "=")
COMMON_COMMENTS = {
    "DATASET": "a name from utils.data.names()",
    "DATA_DIR": "None: MMFUSION_DATA_DIR, .env or ./data; the dataset is read from DATA_DIR/DATASET",
    "DATASET_OPTIONS": "loader options (task, subset size, text template, ...)",
    "SEED": "first seed",
    "N_SEEDS": "number of seeds, from SEED on; use 3 or more when comparing models",
    "DEVICE": "'auto': CUDA, then MPS, then CPU",
    "RESULTS_DIR": "None: MMFUSION_RESULTS_DIR, .env or ./results",
}

EMBED_COMMENTS = {
    **COMMON_COMMENTS,
    "TEXT_EXTRACTOR": "alias or family:model_id, e.g. 'hf:sentence-transformers/all-MiniLM-L6-v2'",
    "IMAGE_EXTRACTOR": "e.g. 'timm:vit_small_patch14_dinov2.lvd142m' (pretrained, needs the hub)",
    "AUDIO_EXTRACTOR": "None, or e.g. 'clap:laion/clap-htsat-unfused' (datasets with audio)",
    "EXTRACTOR_OPTIONS": "{'text': {...}, 'image': {...}} passed to utils.extractors.create",
    "EMBEDDINGS_DIR": "None: MMFUSION_EMBEDDINGS_DIR, .env or ./embeddings",
    "FUSION": "heads to train (utils.models.HEADS.names())",
    "EPOCHS": "upper bound; early stopping on the validation split",
    "BATCH_SIZE": "head training batch size",
    "EMBED_BATCH_SIZE": "extraction batch size",
    "RESULTS_JSON": "None: RESULTS_DIR/embed_model_<DATASET>.json",
}


def _embed_parameters(dataset: str, overrides: Dict[str, Any]) -> Dict[str, Any]:
    params: Dict[str, Any] = {
        "DATASET": dataset,
        "DATA_DIR": None,
        "DATASET_OPTIONS": {},
        "TEXT_EXTRACTOR": "minilm-offline",
        "IMAGE_EXTRACTOR": "random-convnext",
        "AUDIO_EXTRACTOR": None,
        "EXTRACTOR_OPTIONS": {},
        "EMBEDDINGS_DIR": None,
        "FUSION": ["early_fusion", "late_fusion", "text_only", "image_only"],
        "EPOCHS": 50,
        "BATCH_SIZE": 64,
        "EMBED_BATCH_SIZE": 32,
        "SEED": 0,
        "N_SEEDS": 1,
        "DEVICE": "auto",
        "RESULTS_DIR": None,
        "RESULTS_JSON": None,
    }
    params.update(overrides)
    return params


def embed_model_cells(dataset: str, overrides: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Cells of ``notebooks/embed_model_<dataset>.ipynb``: (kind, source, tags)."""
    params = _embed_parameters(dataset, overrides)
    return [
        _md(
            f"# Embedding model: `{dataset}`\n\n"
            "Frozen foundation-model embeddings (extracted once, cached) and small fusion heads trained on them: "
            "early fusion, late fusion and single-modality heads, compared on the test split. "
            "Model selection and early stopping use the validation split only. "
            "Change the extractors in the parameters cell; run headless with "
            f"`papermill notebooks/embed_model_{dataset}.ipynb out.ipynb -p EPOCHS 20`."
        ),
        _code(COLAB_CELL),
        _code(
            "from pathlib import Path\n\n"
            "from utils import experiment as ex\n"
            "from utils.config import results_dir\n\n"
            "ex.setup_logging()"
        ),
        _code(_parameters_cell(params, EMBED_COMMENTS), tags=["parameters"]),
        _md("## Load the dataset\nThe table contract: `id, text, image_path, label, split` (see `utils/data/schema.py`)."),
        _code("ds = ex.load_dataset(DATASET, DATA_DIR, **DATASET_OPTIONS)\nds.df.head()"),
        _md("## Extract embeddings\nCached in the embedding store: a second run reuses them, a killed run resumes."),
        _code(
            "extractors = {m: spec for m, spec in {\"text\": TEXT_EXTRACTOR, \"image\": IMAGE_EXTRACTOR, \"audio\": AUDIO_EXTRACTOR}.items()\n"
            "              if spec and m in ds.spec.modalities}\n"
            "emb = ex.extract_embeddings(\n"
            "    ds, extractors, EXTRACTOR_OPTIONS,\n"
            "    batch_size=EMBED_BATCH_SIZE, device=DEVICE, embeddings_dir=EMBEDDINGS_DIR,\n"
            ")\n"
            "emb.extractors, emb.dims()"
        ),
        _md("## Train the heads"),
        _code(
            "rows = ex.train_heads(ds, emb, FUSION, epochs=EPOCHS, batch_size=BATCH_SIZE,\n"
            "                      seeds=list(range(SEED, SEED + N_SEEDS)), device=DEVICE)"
        ),
        _md("## Results (test split)"),
        _code("table = ex.results_table(rows)\ntable"),
        _code(
            "out_dir = results_dir(RESULTS_DIR)\n"
            "fig = ex.plot_results(table, out_dir / f\"embed_model_{DATASET}.png\", title=f\"{ds.spec.key}: \" + \" | \".join(emb.extractors.values()))"
        ),
        _md("## Save\nOne row per trained model and seed, with its config, curves and library versions."),
        _code("ex.save_results(rows, RESULTS_JSON or out_dir / f\"embed_model_{DATASET}.json\")"),
    ]


FULL_COMMENTS = {
    **COMMON_COMMENTS,
    "TEXT_MODEL": "BERT backbone: hub id or local (fine-tuned) folder",
    "IMAGE_MODEL": "ViT backbone: hub id or local folder",
    "FULL_MODELS": "bert_vit_<early|late>_<frozen|finetune|lastN>",
    "CLIP_MODEL": "CLIP folder/id for the BERT + CLIP late-fusion Trainer baseline (None: skip it)",
    "CLIP_LORA": "optional peft LoRA adapter folder applied to CLIP",
    "TEXT_EXTRACTOR": "embedding model for the comparison heads",
    "IMAGE_EXTRACTOR": "embedding model for the comparison heads",
    "EXTRACTOR_OPTIONS": "{'text': {...}, 'image': {...}}",
    "FUSION": "embedding heads (and 'logreg') trained for comparison",
    "EPOCHS": "end-to-end epochs (early stopping on validation)",
    "HEAD_EPOCHS": "embedding-head epochs (early stopping on validation)",
    "BATCH_SIZE": "end-to-end batch size",
    "LR": "backbone learning rate when fine-tuning",
    "MAX_LENGTH": "tokenizer max length",
    "RESULTS_TABLE": "None: RESULTS_DIR/runs.parquet (every run is appended)",
    "RESULTS_JSON": "None: RESULTS_DIR/full_model_<DATASET>.json",
}


def _full_parameters(dataset: str, overrides: Dict[str, Any]) -> Dict[str, Any]:
    params: Dict[str, Any] = {
        "DATASET": dataset,
        "DATA_DIR": None,
        "DATASET_OPTIONS": {},
        "TEXT_MODEL": "bert-base-uncased",
        "IMAGE_MODEL": "google/vit-base-patch16-224-in21k",
        "FULL_MODELS": ["bert_vit_early_frozen", "bert_vit_late_frozen", "bert_vit_early_finetune", "bert_vit_late_finetune"],
        "CLIP_MODEL": "openai/clip-vit-base-patch32",
        "CLIP_LORA": None,
        "TEXT_EXTRACTOR": "minilm-offline",
        "IMAGE_EXTRACTOR": "random-convnext",
        "EXTRACTOR_OPTIONS": {},
        "FUSION": ["early_fusion", "late_fusion", "logreg"],
        "EPOCHS": 5,
        "HEAD_EPOCHS": 50,
        "BATCH_SIZE": 16,
        "LR": 2e-5,
        "MAX_LENGTH": 128,
        "SEED": 0,
        "N_SEEDS": 3,
        "DEVICE": "auto",
        "RESULTS_DIR": None,
        "RESULTS_TABLE": None,
        "RESULTS_JSON": None,
    }
    params.update({k: v for k, v in overrides.items() if k in params})
    return params


def full_model_cells(dataset: str, overrides: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Cells of ``notebooks/full_model_<dataset>.ipynb``: end-to-end baselines against embedding heads."""
    params = _full_parameters(dataset, overrides)
    return [
        _md(
            f"# Full model: `{dataset}`\n\n"
            "End-to-end baselines (a BERT text backbone and a ViT image backbone, frozen or fine-tuned, under the "
            "early- and late-fusion heads; BERT + CLIP late fusion trained with a `transformers.Trainer`) against "
            "the embedding-model heads on the same splits, over several seeds. Model selection and early stopping "
            "use the validation split only; every run is appended to the results table (parquet). Run headless with "
            f"`papermill notebooks/full_model_{dataset}.ipynb out.ipynb -p EPOCHS 3`."
        ),
        _code(COLAB_CELL),
        _code(
            "from utils import experiment as ex\n"
            "from utils import runs\n"
            "from utils.config import results_dir\n\n"
            "ex.setup_logging()"
        ),
        _code(_parameters_cell(params, FULL_COMMENTS), tags=["parameters"]),
        _md("## Load the dataset"),
        _code("ds = ex.load_dataset(DATASET, DATA_DIR, **DATASET_OPTIONS)\nseeds = list(range(SEED, SEED + N_SEEDS))\nds"),
        _md("## BERT + ViT end to end\nEach backbone with its own preprocessing (tokenizer, image processor)."),
        _code(
            "full_rows = runs.run_seeds({\"kind\": \"full\", \"dataset\": DATASET, \"dataset_options\": DATASET_OPTIONS,\n"
            "                            \"text_model\": TEXT_MODEL, \"image_model\": IMAGE_MODEL, \"models\": FULL_MODELS,\n"
            "                            \"epochs\": EPOCHS, \"batch_size\": BATCH_SIZE, \"lr\": LR, \"max_length\": MAX_LENGTH,\n"
            "                            \"device\": DEVICE}, seeds, ds=ds)"
        ),
        _md("## BERT + CLIP late fusion (`transformers.Trainer`, class-weighted loss, early stopping)"),
        _code(
            "clip_rows = [] if CLIP_MODEL is None else runs.run_seeds(\n"
            "    {\"kind\": \"bert_clip\", \"dataset\": DATASET, \"dataset_options\": DATASET_OPTIONS, \"bert_path\": TEXT_MODEL,\n"
            "     \"clip_path\": CLIP_MODEL, \"lora_path\": CLIP_LORA, \"epochs\": EPOCHS, \"batch_size\": BATCH_SIZE, \"lr\": LR,\n"
            "     \"max_length\": MAX_LENGTH, \"device\": DEVICE}, seeds, ds=ds)"
        ),
        _md("## Embedding model heads for comparison"),
        _code(
            "embed_rows = runs.run_seeds({\"kind\": \"embedding\", \"dataset\": DATASET, \"dataset_options\": DATASET_OPTIONS,\n"
            "                             \"text_extractor\": TEXT_EXTRACTOR, \"image_extractor\": IMAGE_EXTRACTOR,\n"
            "                             \"extractor_options\": EXTRACTOR_OPTIONS, \"models\": FUSION, \"epochs\": HEAD_EPOCHS,\n"
            "                             \"device\": DEVICE}, seeds, ds=ds)"
        ),
        _md("## Results (test split, mean and std over seeds)"),
        _code("rows = full_rows + clip_rows + embed_rows\nruns.append_runs(rows, RESULTS_TABLE)\nruns.paper_table(rows)"),
        _code("out_dir = results_dir(RESULTS_DIR)\nfig = runs.plot_comparison(rows, out_dir / f\"full_model_{DATASET}.png\")"),
        _md("## Save\nOne row per trained model and seed."),
        _code("ex.save_results(rows, RESULTS_JSON or out_dir / f\"full_model_{DATASET}.json\")"),
    ]


def _md(src: str) -> Dict[str, Any]:
    return {"cell_type": "markdown", "source": src, "tags": []}


def _code(src: str, tags: Optional[List[str]] = None) -> Dict[str, Any]:
    return {"cell_type": "code", "source": src, "tags": tags or []}


def build_notebook(cells: List[Dict[str, Any]]):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    for c in cells:
        cell = nbformat.v4.new_markdown_cell(c["source"]) if c["cell_type"] == "markdown" else nbformat.v4.new_code_cell(c["source"])
        if c["tags"]:
            cell.metadata["tags"] = list(c["tags"])
        cell.pop("id", None)
        nb.cells.append(cell)
    nb.nbformat_minor = 4  # no cell ids: stable files, clean diffs
    return nb


def generated_notebooks(repo: Path) -> Dict[Path, Any]:
    """Every generated notebook: path -> notebook object."""
    out = {}
    for dataset, overrides in DATASET_NOTEBOOKS.items():
        out[repo / "notebooks" / f"embed_model_{dataset}.ipynb"] = build_notebook(embed_model_cells(dataset, overrides))
        out[repo / "notebooks" / f"full_model_{dataset}.ipynb"] = build_notebook(full_model_cells(dataset, overrides))
    for path, make in EXTRA_GENERATORS.items():
        out[repo / path] = make()
    from .align import templates as align_templates  # Alignment/: one notebook per dataset + unified space + retrieval

    for dataset, overrides in DATASET_NOTEBOOKS.items():
        out[repo / "Alignment" / f"alignment_{dataset}.ipynb"] = build_notebook(align_templates.alignment_cells(dataset, overrides))
    out[repo / "Alignment" / "unified_space.ipynb"] = build_notebook(align_templates.unified_space_cells())
    out[repo / "Alignment" / "retrieval.ipynb"] = build_notebook(align_templates.retrieval_cells())
    return out


# other modules add generated notebooks here: relative path -> zero-argument builder
EXTRA_GENERATORS: Dict[str, Any] = {}


def _get_datasets_notebook():
    from .dataset_notebook import get_datasets_cells

    return build_notebook(get_datasets_cells())


EXTRA_GENERATORS["get_datasets.ipynb"] = _get_datasets_notebook

def _generate_notebook(modality: str):
    def make():
        from .extractors.generate import build

        return build(modality)

    return make


EXTRA_GENERATORS["generate_text_embeddings.ipynb"] = _generate_notebook("text")
EXTRA_GENERATORS["generate_image_embeddings.ipynb"] = _generate_notebook("image")


def _comparable(nb) -> List[Any]:
    cells = []
    for c in nb["cells"]:
        tags = c.get("metadata", {}).get("tags", [])
        src = c["source"] if isinstance(c["source"], str) else "".join(c["source"])
        cells.append((c["cell_type"], "<parameters>" if "parameters" in tags else src))
    return cells


def drift(repo: Path) -> List[str]:
    """Notebooks that are missing or differ from their template outside the parameters cell."""
    import nbformat

    problems = []
    for path, nb in generated_notebooks(repo).items():
        if not path.is_file():
            problems.append(f"{path.relative_to(repo)}: missing (run python -m utils.notebooks)")
            continue
        on_disk = nbformat.read(str(path), as_version=4)
        if _comparable(on_disk) != _comparable(nb):
            problems.append(f"{path.relative_to(repo)}: differs from its template outside the parameters cell")
    return problems


def write_all(repo: Path) -> List[Path]:
    import nbformat

    written = []
    for path, nb in generated_notebooks(repo).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        text = nbformat.writes(nb) + "\n"
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="report drift instead of writing")
    p.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    a = p.parse_args(argv)
    repo = Path(a.repo)
    if a.check:
        problems = drift(repo)
        print("\n".join(problems) if problems else "all generated notebooks match their templates")
        return 1 if problems else 0
    for path in write_all(repo):
        print(f"wrote {path.relative_to(repo)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
