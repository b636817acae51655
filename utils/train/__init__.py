"""Training: one loop (:mod:`utils.train.loop`) for everything that trains, batch sources
(:mod:`utils.train.batches`), classification entry points (:mod:`utils.train.classify`) and the
``transformers.Trainer`` subclass of the BERT + CLIP baseline (:mod:`utils.train.hf_trainer`)."""

from ..runtime import CPU_BF16_MIN_FEATURES, keep_large_blocks_on_heap, n_params, set_seed
from .batches import (
    MultimodalCollator, RecordsDataset, StandardizeConcat, StreamingBatches, TensorBatches, batch_bounds, record_loaders,
    streaming_standardizer,
)
from .classify import (
    classification_evaluator, fit, fit_batches, labels_from_targets, predict_batches_proba, predict_logits, predict_proba,
    task_loss,
)
from .loop import MONITORS, FitResult, TrainConfig, config_dict, make_optimizer, predict, train_loop

__all__ = [
    "CPU_BF16_MIN_FEATURES", "MONITORS", "FitResult", "MultimodalCollator", "RecordsDataset", "StandardizeConcat",
    "StreamingBatches", "TensorBatches",
    "TrainConfig", "batch_bounds", "classification_evaluator", "config_dict", "fit", "fit_batches",
    "keep_large_blocks_on_heap", "labels_from_targets", "make_optimizer", "n_params", "predict",
    "predict_batches_proba", "predict_logits", "predict_proba", "record_loaders", "set_seed", "streaming_standardizer",
    "task_loss", "train_loop",
]
