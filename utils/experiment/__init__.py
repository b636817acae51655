"""What notebooks and ``python -m utils`` call: one function per step, result rows, baselines, the alignment
study, the generate-embeddings step, runs and grids. ``from utils import experiment as ex`` gives them all.

- :mod:`utils.experiment.steps`      load_dataset, extract_embeddings, train_heads, results_table, save / plot
- :mod:`utils.experiment.rows`       the one result-row builder
- :mod:`utils.experiment.baselines`  logreg, guided selection, BERT + ViT end to end, BERT + CLIP (Trainer)
- :mod:`utils.experiment.alignment`  gap tables, post-hoc alignment against the ``none`` control, lambda sweeps,
                                     and the other steps of the Alignment/ notebooks (unified space, retrieval)
- :mod:`utils.experiment.generate`   fill the store for a list of extractors
- :mod:`utils.experiment.heads`      fit_head (one head on cached embeddings) and what train_heads keeps for the report
- :mod:`utils.experiment.report`     report(): intervals, calibration, subgroups, missing modalities, Shapley values
- :mod:`utils.experiment.runs`       run kinds (a registry), seeds, the parquet results table, grids, paper table
- :mod:`utils.experiment.predict`    save_model / load_model / predict: a trained head kept as a folder and applied
- :mod:`utils.experiment.main`       the main job
"""

from ..embed import EmbedConfig, Embeddings
from ..imported import import_embeddings
from .alignment import (
    AlignmentConfig, align_embeddings, alignment_table, class_map, collection, compare_alignments, content_report,
    gap_table, hit_shares, label_names, lambda_sweep, pair_vectors, pairwise_gaps, plot_before_after, plot_gap_shift,
    retrieval_spaces, retrieval_table, save_alignment_results, split_indices, train_heads_per_space, unified_space,
    with_synthetic_modality,
)
from .baselines import (
    BertClipConfig, FullTrainConfig, TSFConfig, image_branches, image_guide_features, train_bert_clip, train_full_models,
    train_guided, train_logreg, train_tsf,
)
from .heads import HeadOutputs, TrainedHeads, fit_head
from .main import JobConfigError, JobPlan, MainJob, MainJobConfig, check_job, main_job, run_embedding_experiment
from .predict import (
    ExtractorMismatchError, load_model, metrics_summary, model_summary, predict, predict_proba, prediction_metrics,
    save_model, save_predictions,
)
from .report import Report, ReportConfig, report
from .rows import RESULT_COLUMNS, result_row
from .runs import (
    RUN_KINDS, append_runs, load_runs, paper_table, plot_comparison, run, run_grid, run_seeds, summarize,
)
from .steps import (
    DEFAULT_HEADS, dataset_request, embed_config, extract_embeddings, format_table, load_dataset, tidy_table, plot_results,
    results_table, save_results, setup_logging, train_heads,
)

__all__ = [
    "AlignmentConfig", "BertClipConfig", "TSFConfig", "image_branches", "train_tsf", "DEFAULT_HEADS", "EmbedConfig",
    "Embeddings", "FullTrainConfig", "HeadOutputs", "JobConfigError", "JobPlan", "MainJob", "MainJobConfig",
    "RESULT_COLUMNS", "RUN_KINDS", "Report", "ReportConfig", "TrainedHeads",
    "align_embeddings", "alignment_table", "append_runs", "check_job", "compare_alignments", "content_report",
    "dataset_request", "embed_config",
    "ExtractorMismatchError", "extract_embeddings", "fit_head", "import_embeddings", "load_model", "predict",
    "metrics_summary", "model_summary", "predict_proba", "prediction_metrics", "save_model", "save_predictions", "format_table", "tidy_table", "gap_table", "image_guide_features", "lambda_sweep",
    "load_dataset", "load_runs", "main_job", "paper_table", "plot_comparison", "plot_results", "report", "result_row",
    "results_table", "run", "run_embedding_experiment", "run_grid", "run_seeds", "save_alignment_results",
    "save_results", "setup_logging", "summarize", "train_bert_clip", "train_full_models", "train_guided",
    "train_heads", "train_logreg",
    # the steps of the Alignment/ notebooks
    "class_map", "collection", "hit_shares", "label_names", "pair_vectors", "pairwise_gaps", "plot_before_after",
    "plot_gap_shift", "retrieval_spaces", "retrieval_table", "split_indices", "train_heads_per_space", "unified_space",
    "with_synthetic_modality",
]
