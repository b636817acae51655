"""Batch sources for :func:`utils.train.loop.train_loop`: each yields ``(inputs: dict of tensors, targets)``.

- :class:`TensorBatches`: inputs held as tensors in memory (on the training device), one permutation per
  pass, batches sliced with ``index_select``: the fast path for cached embeddings and token features.
- :class:`RecordsDataset` + :class:`MultimodalCollator`: raw records (text, image file) tokenised and
  preprocessed per batch by each backbone's own tokenizer and image processor, for a ``DataLoader``
  (the end-to-end baselines); :func:`record_loaders` builds the train / val / test loaders.

The last-batch rule, everywhere: a last batch of one row is folded into the previous batch (tensors) or
dropped in training only (DataLoader), because BatchNorm cannot train on one row.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch


def batch_bounds(n: int, batch_size: int) -> List[tuple]:
    """``[(lo, hi), ...]`` covering ``range(n)``; a last batch of one row is folded into the previous one."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < 2:
        starts.pop()
    return [(s, starts[i + 1] if i + 1 < len(starts) else n) for i, s in enumerate(starts)]


class TensorBatches:
    """Re-iterable batches over in-memory inputs: ``inputs[k] [N, ...]`` and ``targets [N, ...]``.

    ``shuffle``: a fresh permutation each pass (seeded by ``seed``). Tensors stay where they are given
    (put them on the training device once); the permutation is drawn on the CPU and moved there.
    ``n_features``: the width of a single 2-D input (what automatic precision looks at), else None.
    """

    def __init__(self, inputs: Mapping[str, Any], targets: Any, batch_size: int, shuffle: bool = False,
                 seed: int = 0):
        self.inputs = {k: v if isinstance(v, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(v))
                       for k, v in inputs.items()}
        self.targets = targets if isinstance(targets, torch.Tensor) else torch.as_tensor(np.asarray(targets))
        n = len(self.targets)
        bad = [k for k, v in self.inputs.items() if len(v) != n]
        if bad:
            raise ValueError(f"inputs {bad} have a different number of rows than the {n} targets")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.n, self.batch_size, self.shuffle = n, int(batch_size), shuffle
        self.gen = torch.Generator().manual_seed(seed)
        self.bounds = batch_bounds(n, self.batch_size)
        only = next(iter(self.inputs.values())) if len(self.inputs) == 1 else None
        self.n_features: Optional[int] = int(only.shape[1]) if only is not None and only.dim() == 2 else None

    def __len__(self) -> int:
        return len(self.bounds)

    def __iter__(self):
        if self.shuffle:
            device = self.targets.device
            order = torch.randperm(self.n, generator=self.gen).to(device)
            for lo, hi in self.bounds:
                idx = order[lo:hi]
                yield {k: v.index_select(0, idx) for k, v in self.inputs.items()}, self.targets.index_select(0, idx)
        else:
            for lo, hi in self.bounds:
                yield {k: v[lo:hi] for k, v in self.inputs.items()}, self.targets[lo:hi]


# ------------------------------------------------------------------------------- raw records (end to end)
class RecordsDataset(torch.utils.data.Dataset):
    """Rows of a table as ``{id, text, image_path, labels}`` records (``texts``/``paths`` already row-aligned)."""

    def __init__(self, ids: Sequence[Any], texts: Sequence[str], paths: Sequence[Optional[str]], targets: torch.Tensor):
        if not len(ids) == len(texts) == len(paths) == len(targets):
            raise ValueError(f"records need equal lengths, got {len(ids)}, {len(texts)}, {len(paths)}, {len(targets)}")
        self.ids, self.texts, self.paths, self.targets = list(ids), list(texts), list(paths), targets

    @classmethod
    def from_dataset(cls, ds: Any, rows: Sequence[int], targets: torch.Tensor,
                     texts: Optional[Sequence[str]] = None, images: Optional[Sequence[Optional[str]]] = None,
                     ) -> "RecordsDataset":
        """Rows ``rows`` of a :class:`~utils.data.schema.MultimodalDataset` (linear time in the rows).

        ``texts`` / ``images``: the table's ``ds.items("text")`` / ``ds.items("image")`` when the caller has them
        already (several splits of one table read them once)."""
        rows = np.asarray(rows, dtype=np.int64)
        ids = ds.df["id"].to_numpy()[rows]
        if texts is None:
            texts = ds.items("text") if "text" in ds.df.columns else [""] * len(ds.df)
        if images is None:
            images = ds.items("image")
        return cls(ids, [texts[i] for i in rows], [images[i] for i in rows], targets)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        return {"id": str(self.ids[i]), "text": self.texts[i], "image_path": self.paths[i], "labels": self.targets[i]}


class MultimodalCollator:
    """Records -> a batch: the tokenizer's ``input_ids/attention_mask(/token_type_ids)``, the image processor's
    ``pixel_values`` and ``labels``. ``pairs=True`` returns ``(inputs, labels)`` for the training loop;
    otherwise one dict with ``labels`` (what ``transformers.Trainer`` wants)."""

    def __init__(self, tokenizer, image_processor, max_length: int = 128, pairs: bool = False):
        self.tokenizer, self.image_processor, self.max_length, self.pairs = tokenizer, image_processor, max_length, pairs

    def __call__(self, records: List[Mapping[str, Any]]):
        from ..imaging import load_rgb

        images = []
        for r in records:
            if r["image_path"] is None:
                raise ValueError(f"row {r['id']}: no image; drop such rows (utils.data.check_media(on_missing_image='drop'))")
            try:
                images.append(load_rgb(r["image_path"]))  # 16-bit / float / transparent images as the extractors read them
            except OSError as e:
                raise ValueError(f"row {r['id']}: cannot read image {r['image_path']}: {e}") from e
        batch = dict(self.tokenizer([r["text"] or "" for r in records], padding=True, truncation=True,
                                    max_length=self.max_length, return_tensors="pt"))
        batch["pixel_values"] = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        labels = torch.stack([torch.as_tensor(r["labels"]) for r in records])
        if self.pairs:
            return batch, labels
        batch["labels"] = labels
        return batch


def record_loaders(datasets: Mapping[str, RecordsDataset], collator: MultimodalCollator, batch_size: int,
                   num_workers: int = 0, seed: int = 0) -> Dict[str, Any]:
    """One ``DataLoader`` per split; only ``train`` shuffles (seeded) and drops a one-row last batch."""
    from torch.utils.data import DataLoader

    out = {}
    for s, data in datasets.items():
        g = torch.Generator().manual_seed(seed)
        train = s == "train"
        out[s] = DataLoader(data, batch_size=batch_size, shuffle=train, generator=g, collate_fn=collator,
                            num_workers=num_workers, drop_last=train and len(data) % batch_size == 1)
    return out
