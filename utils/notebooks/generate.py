"""Template of ``generate_text_embeddings.ipynb`` / ``generate_image_embeddings.ipynb`` (the step itself is
:mod:`utils.experiment.generate`)."""

from __future__ import annotations

from typing import Any, Dict, List

from .cells import COLAB_CELL, code, md, parameters_cell

COMMENTS = {
    "DATASET": "a name from utils.data.names()",
    "DATA_DIR": "None: MMFUSION_DATA_DIR, .env or ./data",
    "DATASET_OPTIONS": "loader options (task, subset size, ...)",
    "EXTRACTORS": "aliases or 'family:model_id'; utils.extractors.names() lists the aliases",
    "EXTRACTOR_OPTIONS": "options per extractor, keyed by its spec as written in EXTRACTORS, e.g. {'dinov2-base': {'precision': 'fp32'}}",
    "EMBED_BATCH_SIZE": "extraction batch size (\"auto\": from free GPU memory on CUDA, else 32)",
    "DEVICE": "'auto': CUDA, then MPS, then CPU",
    "NORMALIZE": "L2-normalise the stored vectors",
    "ON_ERROR": "'raise' stops at an unreadable file; 'skip' records it as failed and goes on",
    "SHARD": "this job's slice: SHARD of NUM_SHARDS (several jobs can fill one store)",
    "NUM_SHARDS": "",
    "ENGINE": "'local': this process; 'ray': actors on a Ray cluster (RAY_ADDRESS, or a local one), same store",
    "RAY_OPTIONS": "for the 'ray' engine: utils.distributed.RayConfig fields, e.g. {'address': 'auto', 'actors': 8, 'num_gpus': 1}",
    "EMBEDDINGS_DIR": "None: MMFUSION_EMBEDDINGS_DIR, .env or ./embeddings",
    "RESULTS_DIR": "None: MMFUSION_RESULTS_DIR, .env or ./results",
    "RESULTS_JSON": "None: RESULTS_DIR/generate_<modality>_embeddings_<DATASET>.json",
}


def notebook_cells(modality: str) -> List[Dict[str, Any]]:
    """Cells of ``generate_<modality>_embeddings.ipynb``."""
    default = {"text": ["bge-base", "minilm"], "image": ["dinov2-base", "clip-vit-b16"]}[modality]
    params = {
        "DATASET": "synthetic", "DATA_DIR": None, "DATASET_OPTIONS": {}, "EXTRACTORS": default,
        "EXTRACTOR_OPTIONS": {}, "EMBED_BATCH_SIZE": "auto", "DEVICE": "auto", "NORMALIZE": False, "ON_ERROR": "raise",
        "SHARD": 0, "NUM_SHARDS": 1, "ENGINE": "local", "RAY_OPTIONS": {}, "EMBEDDINGS_DIR": None,
        "RESULTS_DIR": None, "RESULTS_JSON": None,
    }
    examples = {
        "text": "`['bge-base', 'minilm', 'openai-3-small', 'llamacpp:nomic-ai/nomic-embed-text-v1.5-GGUF/nomic-embed-text-v1.5.Q8_0.gguf']`"
                " or CLIP's text tower (`'clip-vit-b16'`: the tower follows the notebook's modality)",
        "image": "`['dinov2-base', 'clip-vit-b16', 'siglip-base', 'convnextv2-base', 'timm:resnet50']`",
    }[modality]
    return [
        md(
            f"# Generate {modality} embeddings\n\n"
            f"Extract the {modality} of a dataset with one or more frozen models into the embedding store "
            "(one folder per dataset, modality and extractor; shards written atomically, so a killed run resumes "
            "and a finished one is reused). `ENGINE='ray'` computes the shards on Ray actors (a cluster named by "
            "`RAY_ADDRESS` or `RAY_OPTIONS['address']`, else a local Ray) into the same store. Extractors are aliases or `family:model_id`, for example "
            f"{examples}. Run headless with "
            f"`papermill generate_{modality}_embeddings.ipynb out.ipynb -p DATASET synthetic`."
        ),
        code(COLAB_CELL),
        code("from utils import experiment as ex\nfrom utils.config import results_dir\n"
             "from utils.experiment import generate as gen\n\nex.setup_logging()"),
        code(parameters_cell(params, COMMENTS), tags=["parameters"]),
        md("## Load the dataset"),
        code("ds = ex.load_dataset(DATASET, DATA_DIR, EMBEDDINGS_DIR, **DATASET_OPTIONS)\nds"),
        md("## Extract\nA progress bar per extractor; cached stores are reused without loading the model."),
        code(
            f"rows = gen.generate(ds, {modality!r}, EXTRACTORS, EXTRACTOR_OPTIONS, batch_size=EMBED_BATCH_SIZE,\n"
            "                    device=DEVICE, embeddings_dir=EMBEDDINGS_DIR, normalize=NORMALIZE, on_error=ON_ERROR,\n"
            "                    shard=SHARD, num_shards=NUM_SHARDS, engine=ENGINE, ray=RAY_OPTIONS)\n"
            "gen.summary(rows)"
        ),
        md("## A few vectors"),
        code("gen.preview(rows)"),
        md("## UMAP of each extractor's vectors, coloured by label"),
        code(f"fig = gen.umap_plot(ds, rows, results_dir(RESULTS_DIR) / f\"generate_{modality}_embeddings_{{DATASET}}_umap.png\")"),
        md("## Save\nOne row per extractor: dim, count, seconds, store folder."),
        code(f"gen.save_rows(rows, RESULTS_JSON or results_dir(RESULTS_DIR) / f\"generate_{modality}_embeddings_{{DATASET}}.json\")"),
    ]
