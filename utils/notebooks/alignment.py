"""Templates of the ``Alignment/`` notebooks (listed in :func:`utils.notebooks.generated_notebooks`).

- ``Alignment/alignment_<dataset>.ipynb``: one per entry of ``DATASET_NOTEBOOKS`` (gap, post-hoc methods,
  lambda sweep, UMAP before/after, gap-shift plots);
- ``Alignment/unified_space.ipynb``: a shared 256-d space for text, image and a synthetic third modality;
- ``Alignment/unified_space_esc50.ipynb``: seed 001's unified space: ESC-50 built by the seed's recipe (clips
  merged per class, a text and an image folder per class) and the seed's encoders (BERT, CLIP ViT-L/14, CLAP);
- ``Alignment/retrieval.ipynb``: cross-modal retrieval with FAISS in three spaces.
"""

from __future__ import annotations

from typing import Any, Dict, List

from .cells import COLAB_CELL, code, md, parameters_cell, steps_to_cells

# keys of a DATASET_NOTEBOOKS entry that the alignment notebooks understand (the rest belong to other notebooks)
SHARED_KEYS = ("DATA_DIR", "DATASET_OPTIONS", "TEXT_EXTRACTOR", "IMAGE_EXTRACTOR", "EXTRACTOR_OPTIONS", "EMBEDDINGS_DIR")

COMMENTS = {
    "DATASET": "a name from utils.data.names()",
    "DATA_DIR": "None: MMFUSION_DATA_DIR, .env or ./data",
    "DATASET_OPTIONS": "loader options",
    "TEXT_EXTRACTOR": "alias or family:model_id",
    "IMAGE_EXTRACTOR": "alias or family:model_id",
    "EXTRACTOR_OPTIONS": "options per extractor, keyed by its spec as written above",
    "EMBEDDINGS_DIR": "None: MMFUSION_EMBEDDINGS_DIR, .env or ./embeddings (extraction is cached)",
    "FUSION": "heads trained before / after alignment",
    "METHODS": "post-hoc methods (utils.align.ALIGNERS.names()); 'none' is the control: same normalisation, no alignment",
    "COMMON_DIM": "'pca' or 'lstsq': fitted map to one dimension when text and image widths differ",
    "LAMBDAS": "centroid-shift strengths: 1 closes the gap, 0 leaves it, -1 doubles it",
    "EPOCHS": "upper bound; early stopping on the validation split",
    "BATCH_SIZE": "head training batch size",
    "EMBED_BATCH_SIZE": "extraction batch size (\"auto\": from free GPU memory on CUDA, else 32)",
    "SEED": "first seed",
    "N_SEEDS": "seeds per setting (mean and std in the tables)",
    "PROJECTION": "'umap' (umap-learn; ~15 s to compile on first use) or 'pca'",
    "DEVICE": "'auto': CUDA, then MPS, then CPU",
    "RESULTS_DIR": "None: MMFUSION_RESULTS_DIR, .env or ./results",
    "RESULTS_JSON": "None: RESULTS_DIR/<notebook name>.json",
    "AUDIO_EXTRACTOR": "audio encoder (clap family); the seed's laion/larger_clap_general",
    "THIRD_MODALITY": "name of the synthetic third modality (None: text and image only)",
    "THIRD_DIM": "its width",
    "THIRD_NOISE": "its per-row noise (1.0: class recoverable, not trivially)",
    "DIM": "width of the shared space",
    "UNIFIED_EPOCHS": "upper bound for the projection training (early stopping on validation loss)",
    "PAIR_WEIGHTS": "loss weight per modality pair, e.g. {'image-text': 0.5}; default 1",
    "KS": "k values for Recall@k",
    "INDEX_KIND": "'auto' (exact up to 100k vectors, IVF above), 'exact', 'ivf' or 'hnsw'",
}


def params_for(base: Dict[str, Any], overrides: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    out.update({k: v for k, v in overrides.items() if k in SHARED_KEYS})
    return out


def head_params(dataset: str = "synthetic") -> Dict[str, Any]:
    return {
        "DATASET": dataset, "DATA_DIR": None, "DATASET_OPTIONS": {}, "TEXT_EXTRACTOR": "bge-base",
        "IMAGE_EXTRACTOR": "dinov2-base", "EXTRACTOR_OPTIONS": {}, "EMBEDDINGS_DIR": None,
    }


LOAD_AND_EMBED = [
    ("md", "## Load the dataset and its cached embeddings"),
    ("code", "ds = ex.load_dataset(DATASET, DATA_DIR, EMBEDDINGS_DIR, **DATASET_OPTIONS)\n"
             "emb = ex.extract_embeddings(ds, {\"text\": TEXT_EXTRACTOR, \"image\": IMAGE_EXTRACTOR}, EXTRACTOR_OPTIONS,\n"
             "                            batch_size=EMBED_BATCH_SIZE, device=DEVICE, embeddings_dir=EMBEDDINGS_DIR)\n"
             "out_dir = results_dir(RESULTS_DIR)\n"
             "emb.extractors, emb.dims()"),
]

IMPORTS = (
    "import pandas as pd\n\n"
    "from utils import align, retrieval, viz\n"
    "from utils import experiment as ex\n"
    "from utils.config import results_dir\n\n"
    "ex.setup_logging()"
)


def notebook_cells(title: str, params: Dict[str, Any], steps: List) -> List[Dict[str, Any]]:
    return [md(title), code(COLAB_CELL), code(IMPORTS), code(parameters_cell(params, COMMENTS), tags=["parameters"]),
            *steps_to_cells(steps)]


def alignment_cells(dataset: str, overrides: Dict[str, Any]) -> List[Dict[str, Any]]:
    params = params_for({
        **head_params(dataset),
        "FUSION": ["early_fusion", "late_fusion"], "METHODS": ["none", "shift", "centering", "procrustes", "cca"],
        "COMMON_DIM": "pca", "LAMBDAS": [-1.0, -0.5, 0.0, 0.5, 1.0], "EPOCHS": 50, "BATCH_SIZE": 64,
        "EMBED_BATCH_SIZE": "auto", "SEED": 0, "N_SEEDS": 3, "PROJECTION": "umap", "DEVICE": "auto",
        "RESULTS_DIR": None, "RESULTS_JSON": None,
    }, overrides)
    steps = LOAD_AND_EMBED + [
        ("md", "## Measure the gap\nCentroid distance of the L2-normalised embeddings (Liang et al. 2022), matched vs "
               "unmatched pair similarity, linear CKA and the variance in the first principal components. When text "
               "and image widths differ, the gap is measured after a fitted linear map to one width (`COMMON_DIM`)."),
        ("code", "seeds = list(range(SEED, SEED + N_SEEDS))\n"
                 "before, _ = ex.align_embeddings(ds, emb, \"none\", common=COMMON_DIM)  # normalised, common width only\n"
                 "ex.gap_table(ds, before)"),
        ("md", "## Duplicated content\nA modality with one content per class (class-level texts or images) encodes "
               "the label; it is flagged here."),
        ("code", "ex.content_report(ds, emb)"),
        ("md", "## Close it post hoc\nEvery method is fitted on the training split only and applied to validation "
               "and test. `none` is the control: the same L2 normalisation (and common-width map), no alignment; "
               "`gain_vs_none` is each method's macro-F1 gain over it. `raw` (heads on the unnormalised embeddings) "
               "is a reference only."),
        ("code", "rows = ex.compare_alignments(ds, emb, METHODS, FUSION, epochs=EPOCHS, batch_size=BATCH_SIZE,\n"
                 "                             seeds=seeds, device=DEVICE, common=COMMON_DIM)\n"
                 "ex.alignment_table(rows)"),
        ("md", "## Centroid shift: sweep lambda\nlambda = 1 closes the training gap, 0 leaves it, -1 doubles it."),
        ("code", "sweep = ex.lambda_sweep(ds, emb, LAMBDAS, FUSION, seeds=seeds, common=COMMON_DIM, epochs=EPOCHS,\n"
                 "                       batch_size=BATCH_SIZE, device=DEVICE)\n"
                 "sweep_table = ex.alignment_table(sweep)\n"
                 "fig = viz.metric_vs_lambda(sweep_table, [\"macro_f1\", \"accuracy\", \"gap_test_after\"],\n"
                 "                           path=out_dir / f\"alignment_{DATASET}_lambda.png\", title=ds.spec.key)\n"
                 "sweep_table"),
        ("md", "## See it\nJoint 2-D maps before and after the shift (lambda = 1), and the shift itself in 2-D and 3-D."),
        ("code", "after, shift = ex.align_embeddings(ds, emb, \"shift\", lam=1.0, common=COMMON_DIM)\n"
                 "fig = ex.plot_before_after(ds, before, after, PROJECTION, path=out_dir / f\"alignment_{DATASET}_umap.png\")"),
        ("code", "figs = ex.plot_gap_shift(ds, before, shift, dims=(2, 3), path=out_dir / f\"alignment_{DATASET}_shift.png\")"),
        ("md", "## Save\nOne row per (method, head, seed) with gap before/after and test scores."),
        ("code", "ex.save_alignment_results(rows + sweep, RESULTS_JSON or out_dir / f\"alignment_{DATASET}.json\")"),
    ]
    title = (f"# Modality alignment: `{dataset}`\n\nMeasure the modality gap between text and image embeddings, close "
             "it post hoc (centroid shift with lambda, mean centring, orthogonal Procrustes, CCA) and see what it does "
             "to early and late fusion. All statistics are fitted on the training split only.")
    return notebook_cells(title, params, steps)


def unified_steps(stem: str, query: str) -> List:
    """The steps both unified-space notebooks share (``raw`` holds every modality's vectors): learn the space,
    fusion heads raw against unified, retrieval from ``query``, the map, and the results saved as ``<stem>.json``."""
    steps = [
        ("md", "## Learn the shared space\nOne linear projection per modality into `DIM` dimensions, L2-normalised, "
               "symmetric InfoNCE over every pair, learnable temperature, per-pair weights; early stopping on the "
               "validation loss."),
        ("code", "cfg = align.UnifiedConfig(dim=DIM, epochs=UNIFIED_EPOCHS, pair_weights=PAIR_WEIGHTS, seed=SEED, device=DEVICE)\n"
                 "space, unified = ex.unified_space(ds, raw, cfg)\n"
                 "print(f\"best epoch {space.best_epoch}, temperature {space.temperature:.3f}\")\n"
                 "pd.DataFrame(space.history).tail()"),
        ("code", "ex.pairwise_gaps(ds, unified, \"test\")"),
        ("md", "## Fusion heads: raw against unified"),
        ("code", "rows = ex.train_heads_per_space(ds, {\"raw\": raw, \"unified\": unified}, FUSION, epochs=EPOCHS, batch_size=BATCH_SIZE,\n"
                 "                                seeds=list(range(SEED, SEED + N_SEEDS)), device=DEVICE)\n"
                 "ex.results_table(rows)"),
        ("md", "## Retrieval in the shared space (test split)\nPair Recall@k finds the same record in the other "
               "modality; the hit share shows whether one modality crowds the others out of the top k."),
        ("code", "ex.retrieval_table(ds, {\"unified\": unified.vectors}, \"test\", KS)"),
        ("code", "share = ex.hit_shares(ds, unified.vectors, QUERY, \"test\")\n"
                 "fig = viz.hit_share_plot(share, path=out_dir / \"STEM_hit_share.png\")\nshare"),
        ("code", "fig = viz.umap_plot(unified.vectors, ex.label_names(ds), PROJECTION, path=out_dir / \"STEM_umap.png\",\n"
                 "                   title=\"unified space\")"),
        ("md", "## Save"),
        ("code", "ex.save_results(rows, RESULTS_JSON or out_dir / \"STEM.json\")"),
    ]
    return [(kind, src.replace("STEM", stem).replace("QUERY", f'"{query}"')) for kind, src in steps]


def unified_space_cells() -> List[Dict[str, Any]]:
    params = {
        **head_params(), "THIRD_MODALITY": "aux", "THIRD_DIM": 64, "THIRD_NOISE": 1.0, "DIM": 256, "UNIFIED_EPOCHS": 100,
        "PAIR_WEIGHTS": {}, "FUSION": ["early_fusion", "late_fusion"], "EPOCHS": 50, "BATCH_SIZE": 64,
        "EMBED_BATCH_SIZE": "auto", "SEED": 0, "N_SEEDS": 1, "KS": [1, 5, 10], "PROJECTION": "umap", "DEVICE": "auto",
        "RESULTS_DIR": None, "RESULTS_JSON": None,
    }
    steps = LOAD_AND_EMBED + [
        ("md", "## Duplicated content\nRows sharing a text or image (class-level inputs, as in ESC-50) are masked "
               "out of each other's negatives in the contrastive loss; a class-level modality is flagged here."),
        ("code", "ex.content_report(ds, emb)"),
        ("md", "## A third modality\nThe synthetic dataset has no audio. `align.synthetic_modality` makes a stand-in: a "
               "fixed random prototype per class plus Gaussian noise. It carries the whole label (text and image carry "
               "half each), so it is an honest test of the three-modality code path, not of audio. For real audio: "
               "`unified_space_esc50.ipynb` (the seed's recipe and encoders on ESC-50)."),
        ("code", "raw = ex.with_synthetic_modality(ds, emb, THIRD_MODALITY, THIRD_DIM, THIRD_NOISE, seed=SEED)\nraw.dims()"),
    ] + unified_steps("unified_space", "text")
    title = ("# A unified embedding space\n\nProject text, image and a third modality into one shared space with a "
             "contrastive (InfoNCE) loss trained on cached embeddings, then compare fusion heads and retrieval.")
    return notebook_cells(title, params, steps)


# seed 001's encoders for the three-modality space (hub models; offline, pass local folders: hf:/path, clip:/path, clap:/path)
SEED_UNIFIED_EXTRACTORS = {"TEXT_EXTRACTOR": "hf:bert-base-uncased", "IMAGE_EXTRACTOR": "clip-vit-l14",
                           "AUDIO_EXTRACTOR": "clap-general"}


def unified_space_esc50_cells() -> List[Dict[str, Any]]:
    """``Alignment/unified_space_esc50.ipynb``: seed 001's recipe and encoders on ESC-50."""
    params = {
        **head_params("esc50"), **SEED_UNIFIED_EXTRACTORS,
        "DATASET_OPTIONS": {"class_texts": "class_texts", "class_images": "class_images", "merged": "merged"},
        "DIM": 256, "UNIFIED_EPOCHS": 100, "PAIR_WEIGHTS": {}, "FUSION": ["early_fusion", "late_fusion", "audio_only"],
        "EPOCHS": 50, "BATCH_SIZE": 64, "EMBED_BATCH_SIZE": 16, "SEED": 0, "N_SEEDS": 1, "KS": [1, 5, 10],
        "PROJECTION": "umap", "DEVICE": "auto", "RESULTS_DIR": None, "RESULTS_JSON": None,
    }
    steps = [
        ("md", "## The seed's recipe\n"
               "1. ESC-50 under `DATA_DIR/esc50` (`get_datasets.ipynb` downloads it: `meta/esc50.csv`, `audio/`).\n"
               "2. One folder of texts and one folder of images per class, supplied by you (ESC-50 has neither): "
               "`esc50/class_texts/<category>/*.txt` (one text per file; a `class, text` CSV also works) and "
               "`esc50/class_images/<category>/*.jpg|png`, for every category of `meta/esc50.csv` (`dog`, `rain`, ...).\n"
               "3. The clips of each class are merged, within each fold so the test fold stays unseen: "
               "`merged='merged'` writes `esc50/merged/<fold>-<target>-0.wav` (8 clips of 5 s each in the release) "
               "and `meta/esc50_merged.csv` once, and reuses them while the clips are unchanged "
               "(`clips_per_merge=2` merges two clips at a time instead: more, shorter records).\n"
               "4. Each merged clip gets its class's text k and image k (k mod the number the class has).\n\n"
               "The seed's encoders are the defaults: `bert-base-uncased`, CLIP ViT-L/14 (`clip-vit-l14`, "
               "openai/clip-vit-large-patch14) and LAION CLAP (`clap-general`, laion/larger_clap_general), from the "
               "Hugging Face hub; where the hub cannot be reached, pass local copies (`hf:/path`, `clip:/path`, "
               "`clap:/path`). Each loads before anything is extracted, so an unreachable one fails first."),
        ("code", "ds = ex.load_dataset(DATASET, DATA_DIR, EMBEDDINGS_DIR, **DATASET_OPTIONS)\n"
                 "out_dir = results_dir(RESULTS_DIR)\n"
                 "ds.df.groupby(\"split\").size()"),
        ("code", "merged = pd.read_csv(ds.resolve_path(f\"meta/esc50_{DATASET_OPTIONS['merged']}.csv\"))\n"
                 "merged[[\"filename\", \"fold\", \"category\", \"n_clips\"]].head()"),
        ("md", "## Embed the three modalities (cached in the store)"),
        ("code", "raw = ex.extract_embeddings(ds, {\"text\": TEXT_EXTRACTOR, \"image\": IMAGE_EXTRACTOR, \"audio\": AUDIO_EXTRACTOR},\n"
                 "                            EXTRACTOR_OPTIONS, batch_size=EMBED_BATCH_SIZE, device=DEVICE,\n"
                 "                            embeddings_dir=EMBEDDINGS_DIR)\nraw.dims()"),
        ("md", "## Duplicated content\nThe texts and images are chosen by class, so they encode the label: they "
               "are flagged here, masked out of each other's negatives in the contrastive loss, and heads on them "
               "measure nothing about sound (`audio_only` does)."),
        ("code", "ex.content_report(ds, raw)"),
    ] + unified_steps("unified_space_esc50", "audio")
    title = ("# A unified embedding space: ESC-50, the seed's recipe\n\nText, image and audio projected into one "
             "shared space with a contrastive (InfoNCE) loss over every pair, trained on cached embeddings of the "
             "seed's encoders; fusion heads and retrieval before and after.")
    return notebook_cells(title, params, steps)


def retrieval_cells() -> List[Dict[str, Any]]:
    params = {
        **head_params(), "COMMON_DIM": "pca", "DIM": 256, "UNIFIED_EPOCHS": 100, "KS": [1, 5, 10], "INDEX_KIND": "auto",
        "EMBED_BATCH_SIZE": "auto", "SEED": 0, "DEVICE": "auto", "RESULTS_DIR": None, "RESULTS_JSON": None,
    }
    steps = LOAD_AND_EMBED + [
        ("md", "## Three spaces to search\n`common`: each modality mapped to one width (no alignment); `shift`: the "
               "centroid shift with lambda = 1; `unified`: the contrastive projections. All fitted on the training split."),
        ("code", "spaces = ex.retrieval_spaces(ds, emb, COMMON_DIM, align.UnifiedConfig(dim=DIM, epochs=UNIFIED_EPOCHS, seed=SEED, device=DEVICE))\n"
                 "{name: {m: v.shape for m, v in space.items()} for name, space in spaces.items()}"),
        ("md", "## Recall@k and mAP by class (test split as queries, every record as the collection)"),
        ("code", "report = ex.retrieval_table(ds, spaces, \"test\", KS, kind=INDEX_KIND)\nreport"),
        ("md", "## mAP per class (text -> image, unified space)"),
        ("code", "coll = ex.collection(ds, spaces[\"unified\"], kind=INDEX_KIND)\n"
                 "ex.class_map(ds, spaces[\"unified\"], \"text\", \"image\", \"test\", max(KS), coll=coll)"),
        ("md", "## Which modality fills the top k?"),
        ("code", "share = ex.hit_shares(ds, spaces[\"unified\"], \"text\", \"test\", kind=INDEX_KIND)\n"
                 "fig = viz.hit_share_plot(share, path=out_dir / \"retrieval_hit_share.png\")\nshare"),
        ("md", "## Save and reload an index\n`index.faiss` (faiss.write_index) and `ids.npy`: no pickle."),
        ("code", "folder = coll.indexes[\"image\"].save(out_dir / \"retrieval_index_image\")\n"
                 "back = retrieval.load_index(folder)\n"
                 "assert (back.ids == coll.indexes[\"image\"].ids.astype(str)).all()\n"
                 "sorted(p.name for p in folder.iterdir())"),
        ("md", "## Save\nOne row per (space, query modality, target modality)."),
        ("code", "retrieval.save_report(report, RESULTS_JSON or out_dir / \"retrieval.json\")"),
    ]
    title = ("# Cross-modal retrieval\n\nText-to-image and image-to-text search with FAISS (exact inner product for "
             "small collections, IVF above 100,000 vectors), in three embedding spaces.")
    return notebook_cells(title, params, steps)
