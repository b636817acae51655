"""Every notebook of the repository is generated from one template per family, so they cannot drift apart.

    python -m utils.notebooks            # (re)write every generated notebook
    python -m utils.notebooks --check    # exit 1 if a notebook differs from its template

Only the cell tagged ``parameters`` may be edited by hand; ``--check`` (and the test suite) compares
every other cell with the template. To add a dataset, add an entry to :data:`DATASET_NOTEBOOKS`.

- :mod:`utils.notebooks.cells`         the cell toolkit (markdown / code / parameters cells, the Colab cell)
- :mod:`utils.notebooks.embed_model`   ``notebooks/embed_model_<dataset>.ipynb``
- :mod:`utils.notebooks.full_model`    ``notebooks/full_model_<dataset>.ipynb``
- :mod:`utils.notebooks.guided_model`  ``notebooks/guided_model_<dataset>.ipynb`` (MUSTI: image-guided text selection)
- :mod:`utils.notebooks.alignment`     ``Alignment/``: alignment per dataset, unified space, retrieval
- :mod:`utils.notebooks.generate`      ``generate_{text,image}_embeddings.ipynb``
- :mod:`utils.notebooks.get_datasets`  ``get_datasets.ipynb``
- :mod:`utils.notebooks.predict`       ``notebooks/predict.ipynb``
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List

from . import alignment, embed_model, full_model, generate, get_datasets, guided_model, predict
from .cells import build_notebook

# dataset -> parameter overrides for its generated notebooks (defaults are in each template's parameters())
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
    "musti": {"DATASET_OPTIONS": {"text_column": "text", "image_column": "image", "label_column": "label"},
              "TEXT_EXTRACTOR": "hf:sentence-transformers/paraphrase-multilingual-mpnet-base-v2"},
    "esc50": {
        "DATASET_OPTIONS": {"class_texts": "class_texts.csv", "class_images": "class_images"},
        "AUDIO_EXTRACTOR": "clap-general",  # laion/larger_clap_general: seed 001's CLAP
        "FUSION": ["early_fusion", "late_fusion", "text_only", "image_only", "audio_only"],
    },
    "table": {"DATASET_OPTIONS": {"file": "records.csv", "text_column": "text", "image_column": "image", "label_column": "label"}},
}

# datasets that also get notebooks/guided_model_<dataset>.ipynb (the seed's image-guided text selection)
GUIDED_NOTEBOOKS = ("musti",)

# notebooks that are not per dataset: relative path -> zero-argument cell builder
SINGLE_NOTEBOOKS: Dict[str, Callable[[], List[Dict[str, Any]]]] = {
    "get_datasets.ipynb": get_datasets.cells,
    "generate_text_embeddings.ipynb": lambda: generate.notebook_cells("text"),
    "generate_image_embeddings.ipynb": lambda: generate.notebook_cells("image"),
    "Alignment/unified_space.ipynb": alignment.unified_space_cells,
    "Alignment/unified_space_esc50.ipynb": alignment.unified_space_esc50_cells,
    "Alignment/retrieval.ipynb": alignment.retrieval_cells,
    "notebooks/predict.ipynb": predict.cells,
}


def generated_notebooks(repo: Path) -> Dict[Path, Any]:
    """Every generated notebook: path -> notebook object."""
    out = {}
    for dataset, overrides in DATASET_NOTEBOOKS.items():
        out[repo / "notebooks" / f"embed_model_{dataset}.ipynb"] = build_notebook(embed_model.cells(dataset, overrides))
        out[repo / "notebooks" / f"full_model_{dataset}.ipynb"] = build_notebook(full_model.cells(dataset, overrides))
        out[repo / "Alignment" / f"alignment_{dataset}.ipynb"] = build_notebook(alignment.alignment_cells(dataset, overrides))
        if dataset in GUIDED_NOTEBOOKS:
            out[repo / "notebooks" / f"guided_model_{dataset}.ipynb"] = build_notebook(guided_model.cells(dataset, overrides))
    for rel, make in SINGLE_NOTEBOOKS.items():
        out[repo / rel] = build_notebook(make())
    return out


def comparable(nb) -> List[Any]:
    """A notebook's cells with the parameters cell blanked (what must match the template)."""
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
        if comparable(on_disk) != comparable(nb):
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
