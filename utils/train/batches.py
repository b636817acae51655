"""Batch sources for :func:`utils.train.loop.train_loop`: each yields ``(inputs: dict of tensors, targets)``.

- :class:`TensorBatches`: inputs held as tensors in memory (on the training device), one permutation per
  pass, batches sliced with ``index_select``: the fast path for cached embeddings and token features.
- :class:`StreamingBatches`: inputs larger than a memory budget (memory-mapped store vectors) read in
  shuffled windows of chunks (optionally the next one read while the model trains); on data that fits
  the budget it batches exactly like :class:`TensorBatches`. :class:`StandardizeConcat` and
  :func:`streaming_standardizer` standardise without loading the matrix.
- :class:`RecordsDataset` + :class:`MultimodalCollator`: raw records (text, image file) tokenised and
  preprocessed per batch by each backbone's own tokenizer and image processor, for a ``DataLoader``
  (the end-to-end baselines); :func:`record_loaders` builds the train / val / test loaders.

The last-batch rule, everywhere: a last batch of one row is folded into the previous batch (tensors) or
dropped in training only (DataLoader), because BatchNorm cannot train on one row.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

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


# ---------------------------------------------------------------------------- larger than memory (streamed)
DEFAULT_MEMORY_BUDGET_MB = 4096.0  # features up to this size are held in memory; larger ones are streamed


def nbytes(x: Any) -> int:
    """Bytes of an array-like (a memmap's file size, a tensor's storage)."""
    if isinstance(x, torch.Tensor):
        return x.element_size() * x.nelement()
    return int(np.asarray(x[:0]).itemsize * int(np.prod(np.shape(x))))


def read_rows(array: Any, positions: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
    """``array[positions]`` as ``dtype``, read in ascending (disk) order and returned in the order asked."""
    positions = np.asarray(positions, dtype=np.int64)
    if len(positions) < 2 or (np.diff(positions) >= 0).all():  # already in disk order: one copy
        return np.asarray(array[positions], dtype=dtype)
    order = np.argsort(positions, kind="stable")
    out = np.empty((len(positions), *np.shape(array)[1:]), dtype=dtype)
    out[order] = np.asarray(array[positions[order]], dtype=dtype)
    return out


class StreamingBatches:
    """Re-iterable batches over row arrays too large for memory (memory-mapped store vectors), read in windows.

    ``inputs[k]``: array-like ``[N_k, D_k]`` (``np.memmap`` from :meth:`utils.store.EmbeddingStore.read`);
    ``targets [M, ...]``: one per example, in memory; ``rows[k] [M]``: example ``j`` is row ``rows[k][j]`` of
    ``inputs[k]`` (default: the arrays are row-aligned to the targets); ``transform(dict of float32 arrays
    [m, D_k]) -> dict of arrays [m, ...]`` runs on each window (standardise, concatenate: see
    :class:`StandardizeConcat`); batches are ``(transformed inputs, targets)`` as tensors.

    ``memory_budget_mb`` bounds what this object holds: when every example fits (raw and transformed), they
    are read once and batched exactly like :class:`TensorBatches` (the same permutation for the same seed,
    so training gives the same result). Otherwise each pass reads windows of about
    ``budget / (2 * bytes per row)`` rows (raw plus transformed), each made of ``chunks_per_window`` chunks
    of rows that are contiguous on disk, chosen in a fresh random order per pass (``shuffle``) and shuffled
    again within the window: a block shuffle, the usual approach for data on disk. ``prefetch=True`` reads
    the next window in a background thread while the model trains (windows of half the size): it pays
    with idle cores and a slow disk; on 2 cores reading from the page cache it cost time (measured).
    """

    def __init__(self, inputs: Mapping[str, Any], targets: Any, batch_size: int, shuffle: bool = False, seed: int = 0,
                 memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB, rows: Optional[Mapping[str, Any]] = None,
                 transform: Optional[Callable[[Dict[str, np.ndarray]], Dict[str, Any]]] = None,
                 dtype: torch.dtype = torch.float32, device: Any = None, chunks_per_window: int = 16,
                 prefetch: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.inputs = dict(inputs)
        if not self.inputs:
            raise ValueError("StreamingBatches needs at least one input array")
        self.targets = targets if isinstance(targets, torch.Tensor) else torch.as_tensor(np.asarray(targets))
        self.targets = self.targets.cpu()
        m = len(self.targets)
        self.rows: Dict[str, np.ndarray] = {}
        for k, arr in self.inputs.items():
            r = np.arange(m) if rows is None or k not in rows else np.asarray(rows[k], dtype=np.int64)
            if (rows is None or k not in rows) and len(arr) != m:
                raise ValueError(f"input {k!r} has {len(arr)} rows for {m} targets; pass rows= to select them")
            if len(r) != m:
                raise ValueError(f"rows[{k!r}] has {len(r)} entries for {m} targets")
            if m and (r.min() < 0 or r.max() >= len(arr)):
                raise ValueError(f"rows[{k!r}] points outside input {k!r} ({len(arr)} rows)")
            self.rows[k] = r
        self.n, self.batch_size, self.shuffle = m, int(batch_size), shuffle
        self.transform, self.dtype, self.device, self.prefetch = transform, dtype, device, prefetch
        self.gen = torch.Generator().manual_seed(seed)
        row_bytes = sum(4 * int(np.prod(np.shape(a)[1:])) for a in self.inputs.values())
        budget = float(memory_budget_mb) * 2**20
        self.fits = m * row_bytes * 2 <= budget  # raw + transformed
        window = int(budget // (row_bytes * 2 * (2 if prefetch else 1)))
        if not self.fits and (window < 1 or (shuffle and window < 2 * self.batch_size)):
            # (without shuffling, batches are simply cut at window ends: any window of one row or more works)
            raise ValueError(f"memory_budget_mb={memory_budget_mb} holds {window} rows of {row_bytes} bytes per window, "
                             f"fewer than two batches of {batch_size}: raise memory_budget_mb")
        self.window_rows = min(window, m)
        chunk = max(1, self.window_rows // max(1, chunks_per_window))
        # shuffled passes read chunks of rows contiguous on disk (the first input's order); plain passes keep
        # the examples' order, so predictions come back in it
        order = np.argsort(self.rows[next(iter(self.inputs))], kind="stable") if shuffle else np.arange(m)
        self.chunks = [order[i : i + chunk] for i in range(0, m, chunk)]
        self.chunks_per_window = max(1, self.window_rows // chunk)
        self._cache: Optional[TensorBatches] = None
        probe = self.load(np.arange(min(m, 2)))[1] if m else {}
        only = next(iter(probe.values())) if len(probe) == 1 else None
        self.n_features: Optional[int] = int(only.shape[1]) if only is not None and only.dim() == 2 else None

    def load(self, examples: np.ndarray, disk_order: bool = False) -> Tuple[np.ndarray, Dict[str, torch.Tensor]]:
        """``(examples, inputs)``: the inputs of ``examples`` (indices into the targets) read, transformed and
        made tensors. ``disk_order``: the examples are first put in the first input's row order (one copy
        fewer; a shuffled window is permuted afterwards anyway), and returned in that order."""
        if disk_order:
            examples = examples[np.argsort(self.rows[next(iter(self.inputs))][examples], kind="stable")]
        raw = {k: read_rows(arr, self.rows[k][examples]) for k, arr in self.inputs.items()}
        out = self.transform(raw) if self.transform is not None else raw
        tensors = {}
        for k, v in out.items():
            t = v if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v))
            t = t.to(self.dtype) if t.is_floating_point() else t
            tensors[k] = t.to(self.device, non_blocking=True) if self.device is not None else t
        return examples, tensors

    def windows(self) -> List[np.ndarray]:
        """This pass's windows: example indices, ``chunks_per_window`` chunks each (in a random order if shuffling)."""
        order = torch.randperm(len(self.chunks), generator=self.gen).tolist() if self.shuffle else range(len(self.chunks))
        order = list(order)
        c = self.chunks_per_window
        return [np.concatenate([self.chunks[j] for j in order[i : i + c]]) for i in range(0, len(order), c)]

    def __len__(self) -> int:
        if self.fits:
            return len(batch_bounds(self.n, self.batch_size))
        c = self.chunks_per_window
        sizes = [sum(len(x) for x in self.chunks[i : i + c]) for i in range(0, len(self.chunks), c)]
        return sum(len(batch_bounds(s, self.batch_size)) for s in sizes)  # (the shuffled layout may differ by one)

    def __iter__(self):
        if self.fits:
            if self._cache is None:
                targets = self.targets.to(self.device) if self.device is not None else self.targets
                self._cache = TensorBatches(self.load(np.arange(self.n))[1], targets, self.batch_size, self.shuffle)
                self._cache.gen = self.gen
            yield from self._cache
            return
        from concurrent.futures import ThreadPoolExecutor

        windows = self.windows()
        with ThreadPoolExecutor(max_workers=1) as pool:
            ahead = pool.submit(self.load, windows[0], self.shuffle) if self.prefetch else None
            for i, window in enumerate(windows):
                examples, data = ahead.result() if self.prefetch else self.load(window, self.shuffle)
                if self.prefetch and i + 1 < len(windows):
                    ahead = pool.submit(self.load, windows[i + 1], self.shuffle)
                y = self.targets[torch.from_numpy(examples)]
                y = y.to(self.device, non_blocking=True) if self.device is not None else y
                perm = torch.randperm(len(examples), generator=self.gen) if self.shuffle else None
                for lo, hi in batch_bounds(len(examples), self.batch_size):
                    if perm is None:
                        yield {k: v[lo:hi] for k, v in data.items()}, y[lo:hi]
                    else:
                        idx = perm[lo:hi].to(y.device)
                        yield {k: v.index_select(0, idx) for k, v in data.items()}, y.index_select(0, idx)
                del data


class StandardizeConcat:
    """A :class:`StreamingBatches` transform: inputs side by side in ``order`` -> ``{"x": [m, sum D]}``,
    standardised with ``scaler`` (a :class:`utils.features.Standardizer` fitted on the training rows)."""

    def __init__(self, order: Sequence[str], scaler: Any = None, key: str = "x"):
        self.order, self.scaler, self.key = list(order), scaler, key

    def __call__(self, raw: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        x = np.concatenate([raw[k] for k in self.order], axis=1) if len(self.order) > 1 else raw[self.order[0]]
        return {self.key: self.scaler(x) if self.scaler is not None else x}


def streaming_standardizer(inputs: Mapping[str, Any], order: Sequence[str], rows: Optional[Mapping[str, Any]] = None,
                           chunk_rows: int = 65536, min_std: float = 1e-6):
    """A :class:`utils.features.Standardizer` of the inputs side by side (``order``), over the selected rows,
    computed chunk by chunk in float64 (memory: one chunk), equal to ``Standardizer.fit`` on the whole matrix."""
    from ..features import Standardizer

    n = len(rows[order[0]]) if rows is not None else len(inputs[order[0]])
    if n == 0:
        raise ValueError("no rows to compute standardisation statistics on")

    def chunks():
        for lo in range(0, n, chunk_rows):
            sel = {k: np.asarray(rows[k][lo : lo + chunk_rows]) if rows is not None else np.arange(lo, min(n, lo + chunk_rows))
                   for k in order}
            yield np.concatenate([read_rows(inputs[k], sel[k], np.float64) for k in order], axis=1)

    mean = sum(x.sum(0) for x in chunks()) / n
    total_sq = sum(((x - mean) ** 2).sum(0) for x in chunks())  # second pass: deviations, as np.std computes them
    sd = np.sqrt(total_sq / n)
    sd[sd < min_std] = 1.0
    return Standardizer(mean[None].astype(np.float32), sd[None].astype(np.float32))


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
