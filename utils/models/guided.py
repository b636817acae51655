"""Image-guided text feature selection (after the MUSTI work).

The image representation (by default a ViT embedding and a ResNet-34 embedding side by side) decides, for
every text token, how much of each of its features to keep:

    g_t   = sigmoid(W [h_t; v] + b)            h_t: token feature [H], v: image feature [D_img], g_t: [H]
    s     = sum_t m_t * g_t * h_t / sum_t m_t   mask-aware mean of the gated tokens        [H]
    logit = classifier(block([s; v]))          Linear -> ReLU -> Dropout -> BatchNorm -> Linear

It runs on cached token-level text features (:func:`cache_token_features` writes them) or end to end
(:class:`GuidedEndToEnd` runs the text encoder first).

Cached token features (one folder): ``tokens.npy`` float16 ``[N, T, H]`` (zero-padded last hidden states),
``mask.npy`` uint8 ``[N, T]`` (1 = real token), ``ids.json`` (row ids, in order) and ``manifest.json``
(model, max_length, shapes, library versions). Both arrays are read memory-mapped.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .fusion import block

log = logging.getLogger(__name__)

DEFAULT_TEXT_MODEL = "bert-base-multilingual-cased"  # multilingual BERT (MUSTI is multilingual)
DEFAULT_IMAGE_EXTRACTORS = ("timm:vit_base_patch16_224.augreg2_in21k_ft_in1k", "timm:resnet34.a1_in1k")


class ImageGuidedTextSelector(nn.Module):
    """``tokens [B, T, H]``, ``mask [B, T]``, ``image [B, D]`` -> logits ``[B, n_out]``."""

    def __init__(self, text_dim: int, image_dim: int, n_out: int, hidden: int = 256, dropout: float = 0.2):
        super().__init__()
        self.gate = nn.Linear(text_dim + image_dim, text_dim)  # one gate value per token feature
        self.body = block(text_dim + image_dim, hidden, dropout)
        self.classifier = nn.Linear(hidden, n_out)

    def gates(self, tokens: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Gate values in (0, 1), ``[B, T, H]``."""
        img = image.unsqueeze(1).expand(-1, tokens.shape[1], -1)  # [B, T, D]
        return torch.sigmoid(self.gate(torch.cat([tokens, img], dim=-1)))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        tokens, image = tokens.float(), image.float()
        m = mask.to(tokens.dtype).unsqueeze(-1)  # [B, T, 1]
        gated = self.gates(tokens, image) * tokens * m  # padding contributes nothing
        pooled = gated.sum(1) / m.sum(1).clamp_min(1.0)  # [B, H]
        return self.classifier(self.body(torch.cat([pooled, image], dim=1)))


class GuidedEndToEnd(nn.Module):
    """A text encoder (``AutoModel``) feeding :class:`ImageGuidedTextSelector`; image features precomputed.

    ``input_ids, attention_mask [B, T]``, ``image [B, D]`` -> logits. ``train_encoder=False`` freezes it.
    """

    def __init__(self, encoder: nn.Module, image_dim: int, n_out: int, train_encoder: bool = True, **head: Any):
        super().__init__()
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # unused: the selector reads every token
        self.encoder = encoder
        self.train_encoder = train_encoder
        for p in encoder.parameters():
            p.requires_grad_(train_encoder)
        self.selector = ImageGuidedTextSelector(encoder.config.hidden_size, image_dim, n_out, **head)

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.train_encoder:
            self.encoder.eval()
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, image: torch.Tensor, **text: Any) -> torch.Tensor:
        with torch.set_grad_enabled(self.train_encoder and torch.is_grad_enabled()):
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **text).last_hidden_state
        return self.selector(h, attention_mask, image)


def cache_token_features(
    texts: Sequence[str],
    ids: Sequence[str],
    model: str,
    folder: os.PathLike,
    max_length: int = 128,
    batch_size: int = 32,
    device: str = "auto",
    show_progress: bool = True,
) -> Path:
    """Run ``model`` (a hub id or local folder) over ``texts`` and write padded token features (see module doc).

    Reuses the folder when its manifest matches (model, max_length, ids). Writes to temp names, then renames.
    """
    from transformers import AutoModel, AutoTokenizer

    from ..config import library_versions, resolve_device
    from ..extractors.base import progress

    folder = Path(folder)
    want = {"model": str(model), "max_length": int(max_length), "n": len(ids), "ids_hash": _ids_hash(ids)}
    man = folder / "manifest.json"
    if man.is_file():
        got = json.loads(man.read_text())
        if all(got.get(k) == v for k, v in want.items()):
            log.info("token features reused from %s", folder)
            return folder
    if len(texts) != len(ids):
        raise ValueError(f"{len(texts)} texts but {len(ids)} ids")
    dev = resolve_device(device)
    tok = AutoTokenizer.from_pretrained(model)
    enc = AutoModel.from_pretrained(model).to(dev).eval()
    H = enc.config.hidden_size
    folder.mkdir(parents=True, exist_ok=True)
    tmp_tokens, tmp_mask = folder / "tokens.npy.tmp", folder / "mask.npy.tmp"
    feats = np.lib.format.open_memmap(tmp_tokens, mode="w+", dtype=np.float16, shape=(len(texts), max_length, H))
    mask = np.lib.format.open_memmap(tmp_mask, mode="w+", dtype=np.uint8, shape=(len(texts), max_length))
    with torch.inference_mode():
        for lo in progress(range(0, len(texts), batch_size), desc="token features", enabled=show_progress):
            b = tok([t or "" for t in texts[lo : lo + batch_size]], padding="max_length", truncation=True,
                    max_length=max_length, return_tensors="pt").to(dev)
            h = enc(**b).last_hidden_state * b["attention_mask"].unsqueeze(-1)
            feats[lo : lo + len(h)] = h.float().cpu().numpy().astype(np.float16)
            mask[lo : lo + len(h)] = b["attention_mask"].cpu().numpy()
    feats.flush(), mask.flush()
    del feats, mask
    os.replace(tmp_tokens, folder / "tokens.npy")
    os.replace(tmp_mask, folder / "mask.npy")
    (folder / "ids.json").write_text(json.dumps(list(map(str, ids))))
    man.write_text(json.dumps({**want, "hidden": H, "dtype": "float16", "versions": library_versions()}, indent=1))
    return folder


def _ids_hash(ids: Sequence[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()[:16]


def load_token_features(folder: os.PathLike, ids: Optional[Sequence[str]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """``tokens [N, T, H]`` (memory-mapped float16) and ``mask [N, T]``; reordered to ``ids`` when given."""
    folder = Path(folder)
    for name in ("tokens.npy", "mask.npy", "ids.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing: write the cache with cache_token_features()")
    tokens = np.load(folder / "tokens.npy", mmap_mode="r")
    mask = np.load(folder / "mask.npy", mmap_mode="r")
    if ids is None:
        return tokens, mask
    stored = {k: i for i, k in enumerate(json.loads((folder / "ids.json").read_text()))}
    missing = [i for i in ids if str(i) not in stored]
    if missing:
        raise KeyError(f"{len(missing)} ids have no token features in {folder} (first: {missing[:3]}): re-run cache_token_features")
    order = np.array([stored[str(i)] for i in ids])
    return tokens[order], mask[order]


def image_guide_features(ds, extractors: Sequence[str] = DEFAULT_IMAGE_EXTRACTORS, options: Optional[Dict[str, Dict[str, Any]]] = None,
                         **embed_kw: Any) -> Tuple[np.ndarray, List[str]]:
    """The guiding image representation: each extractor's embedding (cached in the store), side by side, ``[N, sum D]``."""
    from ..experiment import extract_embeddings

    parts, names = [], []
    for spec in extractors:
        emb = extract_embeddings(ds, {"image": spec}, {"image": (options or {}).get(spec, {})}, **embed_kw)
        parts.append(emb.vectors["image"])
        names.append(emb.extractors["image"])
    return np.concatenate(parts, axis=1).astype(np.float32), names


def train_guided(
    ds,
    token_folder: os.PathLike,
    image_features: np.ndarray,
    seeds: Sequence[int] = (0,),
    epochs: int = 30,
    batch_size: int = 32,
    hidden: int = 256,
    device: str = "auto",
    **train_options: Any,
) -> List[Dict[str, Any]]:
    """Train :class:`ImageGuidedTextSelector` on cached token features; one result row per seed (model ``guided``)."""
    import time

    from ..metrics import classification_metrics
    from ..train import TrainConfig, n_params
    from ..train_batches import TensorBatches, fit_batches, predict_batches
    from .losses import probabilities, targets_tensor

    tokens, mask = load_token_features(token_folder, list(ds.df["id"]))
    y = ds.labels()
    split = ds.df["split"].to_numpy()
    img = image_features.astype(np.float32)
    rows = []
    for seed in seeds:
        parts = {s: np.flatnonzero((split == s) & np.isfinite(img).all(1)) for s in ("train", "val", "test")}
        mu, sd = img[parts["train"]].mean(0), img[parts["train"]].std(0) + 1e-6

        def data(s: str, shuffle: bool) -> TensorBatches:
            i = parts[s]
            inputs = {"tokens": torch.from_numpy(np.asarray(tokens[i], dtype=np.float32)), "mask": torch.from_numpy(np.asarray(mask[i])),
                      "image": torch.from_numpy((img[i] - mu) / sd)}
            return TensorBatches(inputs, targets_tensor(y[i], ds.spec.task), batch_size, shuffle, seed)

        cfg = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, device=device, **train_options)
        torch.manual_seed(seed)
        model = ImageGuidedTextSelector(tokens.shape[2], img.shape[1], ds.spec.num_outputs, hidden)
        res = fit_batches(model, data("train", True), data("val", False), ds.spec.task, ds.spec.classes, cfg, y_train=y[parts["train"]])
        t0 = time.perf_counter()
        logits, _ = predict_batches(res.model, data("test", False))
        inference_s = time.perf_counter() - t0
        m = classification_metrics(y[parts["test"]], probabilities(logits, ds.spec.task).numpy(), ds.spec.task, ds.spec.classes)
        rows.append({
            "model": "guided", "dataset": ds.spec.key, "task": ds.spec.task, "seed": seed,
            **{k: m[k] for k in ("accuracy", "macro_f1", "weighted_f1", "roc_auc", "per_class_f1", "confusion_matrix")},
            "train_s_per_epoch": res.train_s_per_epoch, "train_s": res.train_seconds, "inference_s": inference_s,
            "n_params": n_params(res.model), "epochs_run": res.epochs_run, "best_epoch": res.best_epoch, "history": res.history,
        })
    return rows
