"""``WeightedTrainer``: a ``transformers.Trainer`` whose loss is this project's task loss (class weights,
focal loss), used by the BERT + CLIP late-fusion classifier. The class is built on first use, so importing
this module does not import transformers."""

from __future__ import annotations

import functools
from typing import Any

from torch import nn


@functools.lru_cache(maxsize=1)
def weighted_trainer_class():
    from transformers import Trainer

    class WeightedTrainer(Trainer):
        """A ``Trainer`` whose loss is ``loss_fn(logits, labels)`` (class-weighted CE / BCE or focal)."""

        def __init__(self, *args: Any, loss_fn: nn.Module, **kw: Any):
            super().__init__(*args, **kw)
            self.loss_fn = loss_fn

        def get_train_dataloader(self):
            """Drop the last training batch only when it would hold one row (BatchNorm cannot train on
            it); evaluation loaders keep every row."""
            keep = self.args.dataloader_drop_last
            self.args.dataloader_drop_last = keep or len(self.train_dataset) % self._train_batch_size == 1
            try:
                return super().get_train_dataloader()
            finally:
                self.args.dataloader_drop_last = keep

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            logits = model(**inputs)
            loss = self.loss_fn.to(logits.device)(logits, labels)
            return (loss, {"logits": logits}) if return_outputs else loss

    return WeightedTrainer


def __getattr__(name: str):  # WeightedTrainer without importing transformers at module import
    if name == "WeightedTrainer":
        return weighted_trainer_class()
    raise AttributeError(name)
