"""Steps and templates of ``generate_text_embeddings.ipynb`` / ``generate_image_embeddings.ipynb``.

Each notebook extracts one modality of a dataset with a list of extractors into the embedding store
(cached, resumable), shows a few vectors and a UMAP of each extractor's vectors, and writes one row per
extractor (dim, count, seconds, store folder) to ``RESULTS_JSON``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

log = logging.getLogger(__name__)

PathLike = os.PathLike


def generate(
    ds,
    modality: str,
    specs: Sequence[str],
    options: Optional[Mapping[str, Mapping[str, Any]]] = None,
    batch_size: int = 32,
    device: str = "auto",
    embeddings_dir: Optional[PathLike] = None,
    normalize: bool = False,
    on_error: str = "raise",
    shard: int = 0,
    num_shards: int = 1,
    show_progress: bool = True,
) -> List[Dict[str, Any]]:
    """Embed ``ds``'s ``modality`` with every extractor in ``specs``; one row per extractor.

    ``options`` maps a spec to its extractor options. Rows: extractor, description, dim, count,
    failed, seconds, reused (True when the store was already complete), precision, store.
    """
    from ..config import library_versions
    from ..embed import embed
    from . import create

    rows = []
    for spec in specs:
        ext = create(spec, **dict((options or {}).get(spec, {})))
        if ext.modality != modality:
            raise ValueError(f"{spec} embeds {ext.modality}; this notebook extracts {modality}. "
                             f"For clip/clap pass options {{'{spec}': {{'modality': '{modality}'}}}}.")
        t = time.perf_counter()
        store = embed(ds, modality, ext, root=embeddings_dir, batch_size=batch_size, device=device,
                      normalize=normalize, on_error=on_error, shard=shard, num_shards=num_shards,
                      show_progress=show_progress)
        seconds = time.perf_counter() - t
        m = store.manifest()
        rows.append({
            "extractor": spec, "id": ext.id, "description": m.get("description", ext.describe()),
            "modality": modality, "dim": int(m.get("dim") or 0), "count": int(m.get("n_vectors") or 0),
            "failed": len(m.get("failed") or {}), "seconds": round(seconds, 3),
            "reused": bool(getattr(store, "reused", False)),
            "precision": m["extractor"].get("precision_resolved"), "store": str(store.folder),
            "complete": bool(m.get("complete")), "versions": library_versions(),
        })
        log.info("%s: %d x %d in %.1f s -> %s", spec, rows[-1]["count"], rows[-1]["dim"], seconds, store.folder)
    return rows


def summary(rows: Sequence[Mapping[str, Any]]):
    """The rows as a table (without library versions)."""
    import pandas as pd

    return pd.DataFrame([{k: v for k, v in r.items() if k != "versions"} for r in rows])


def preview(rows: Sequence[Mapping[str, Any]], n: int = 3, k: int = 6):
    """The first ``k`` values of the first ``n`` vectors of each store."""
    import pandas as pd

    from ..store import EmbeddingStore

    out = []
    for r in (r for r in rows if r["complete"]):  # a store another job is still filling has nothing to show
        ids, vec = EmbeddingStore(r["store"]).read()
        for i in range(min(n, len(ids))):
            out.append({"extractor": r["extractor"], "id": str(ids[i]), "norm": float(np.linalg.norm(vec[i])),
                        **{f"v{j}": float(vec[i, j]) for j in range(min(k, vec.shape[1]))}})
    return pd.DataFrame(out)


def umap_plot(ds, rows: Sequence[Mapping[str, Any]], path: Optional[PathLike] = None, seed: int = 0,
              n_neighbors: int = 15):
    """One UMAP panel per extractor, points coloured by label; saved as PNG when ``path`` is given."""
    import umap

    from ..viz import _pyplot, save_figure

    plt = _pyplot()
    rows = [r for r in rows if r["complete"]]
    if not rows:
        return None
    fig, axes = plt.subplots(1, len(rows), figsize=(4.5 * len(rows), 4.2), squeeze=False)
    labels = ds.df.set_index(ds.df["id"].astype(str))["label"].astype(str)
    from ..store import EmbeddingStore

    for ax, r in zip(axes[0], rows):
        ids, vec = EmbeddingStore(r["store"]).read()
        vec = np.asarray(vec)
        lab = labels.reindex([str(i) for i in ids]).to_numpy()
        nn = max(2, min(n_neighbors, len(vec) - 1))
        xy = umap.UMAP(n_neighbors=nn, random_state=seed, n_jobs=1).fit_transform(vec)
        for c in sorted(set(lab)):
            m = lab == c
            ax.scatter(xy[m, 0], xy[m, 1], s=8, label=c, alpha=0.8)
        ax.set_title(f"{r['extractor']} ({r['dim']}-d)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=7, markerscale=2, loc="best")
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def save_rows(rows: Sequence[Mapping[str, Any]], path: PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(rows), indent=1))
    log.info("wrote %s", path)
    return path


# ------------------------------------------------------------------------------------------ templates
_COMMENTS = {
    "DATASET": "a name from utils.data.names()",
    "DATA_DIR": "None: MMFUSION_DATA_DIR, .env or ./data",
    "DATASET_OPTIONS": "loader options (task, subset size, ...)",
    "EXTRACTORS": "aliases or 'family:model_id'; utils.extractors.names() lists the aliases",
    "EXTRACTOR_OPTIONS": "{spec: {option: value}}, e.g. {'clip-vit-b16': {'modality': 'text'}}",
    "EMBED_BATCH_SIZE": "extraction batch size",
    "DEVICE": "'auto': CUDA, then MPS, then CPU",
    "NORMALIZE": "L2-normalise the stored vectors",
    "ON_ERROR": "'raise' stops at an unreadable file; 'skip' records it as failed and goes on",
    "SHARD": "this job's slice: SHARD of NUM_SHARDS (several jobs can fill one store)",
    "NUM_SHARDS": "",
    "EMBEDDINGS_DIR": "None: MMFUSION_EMBEDDINGS_DIR, .env or ./embeddings",
    "RESULTS_DIR": "None: MMFUSION_RESULTS_DIR, .env or ./results",
    "RESULTS_JSON": "None: RESULTS_DIR/generate_<modality>_embeddings_<DATASET>.json",
}


def notebook_cells(modality: str) -> List[Dict[str, Any]]:
    """Cells of ``generate_<modality>_embeddings.ipynb``."""
    from ..notebooks import COLAB_CELL, _code, _md, _parameters_cell

    default = {"text": ["minilm-offline"], "image": ["random-convnext"]}[modality]
    params = {
        "DATASET": "synthetic", "DATA_DIR": None, "DATASET_OPTIONS": {}, "EXTRACTORS": default,
        "EXTRACTOR_OPTIONS": {}, "EMBED_BATCH_SIZE": 32, "DEVICE": "auto", "NORMALIZE": False, "ON_ERROR": "raise",
        "SHARD": 0, "NUM_SHARDS": 1, "EMBEDDINGS_DIR": None, "RESULTS_DIR": None, "RESULTS_JSON": None,
    }
    examples = {
        "text": "`['minilm', 'openai-3-small', 'llamacpp:nomic-ai/nomic-embed-text-v1.5-GGUF/nomic-embed-text-v1.5.Q8_0.gguf']`"
                " or CLIP's text tower (`'clip-vit-b16'` with option `modality='text'`)",
        "image": "`['dinov2-base', 'clip-vit-b16', 'siglip-base', 'convnextv2-base', 'timm:resnet50']`",
    }[modality]
    return [
        _md(
            f"# Generate {modality} embeddings\n\n"
            f"Extract the {modality} of a dataset with one or more frozen models into the embedding store "
            "(one folder per dataset, modality and extractor; shards written atomically, so a killed run resumes "
            "and a finished one is reused). Extractors are aliases or `family:model_id`, for example "
            f"{examples}. Run headless with "
            f"`papermill generate_{modality}_embeddings.ipynb out.ipynb -p DATASET synthetic`."
        ),
        _code(COLAB_CELL),
        _code("from utils import experiment as ex\nfrom utils.config import results_dir\n"
              "from utils.extractors import generate as gen\n\nex.setup_logging()"),
        _code(_parameters_cell(params, _COMMENTS), tags=["parameters"]),
        _md("## Load the dataset"),
        _code("ds = ex.load_dataset(DATASET, DATA_DIR, **DATASET_OPTIONS)\nds"),
        _md("## Extract\nA progress bar per extractor; cached stores are reused without loading the model."),
        _code(
            f"rows = gen.generate(ds, {modality!r}, EXTRACTORS, EXTRACTOR_OPTIONS, batch_size=EMBED_BATCH_SIZE,\n"
            "                    device=DEVICE, embeddings_dir=EMBEDDINGS_DIR, normalize=NORMALIZE, on_error=ON_ERROR,\n"
            "                    shard=SHARD, num_shards=NUM_SHARDS)\n"
            "gen.summary(rows)"
        ),
        _md("## A few vectors"),
        _code("gen.preview(rows)"),
        _md("## UMAP of each extractor's vectors, coloured by label"),
        _code(f"fig = gen.umap_plot(ds, rows, results_dir(RESULTS_DIR) / f\"generate_{modality}_embeddings_{{DATASET}}_umap.png\")"),
        _md("## Save\nOne row per extractor: dim, count, seconds, store folder."),
        _code(f"gen.save_rows(rows, RESULTS_JSON or results_dir(RESULTS_DIR) / f\"generate_{modality}_embeddings_{{DATASET}}.json\")"),
    ]


def build(modality: str):
    from ..notebooks import build_notebook

    return build_notebook(notebook_cells(modality))
