"""Token-level text features for image-guided selection: one folder per (dataset, text model, max length).

Layout: ``tokens.npy`` float16 ``[N, T, H]`` (zero-padded last hidden states), ``mask.npy`` uint8 ``[N, T]``
(1 = real token), ``ids.json`` (row ids, in order) and ``manifest.json`` (model, max_length, shapes, a
fingerprint of the ids AND the texts, library versions). Both arrays are read memory-mapped.

The cache is reused only when the fingerprint of the texts matches: a different text column with the same
ids recomputes it (an earlier version keyed the cache by ids alone and silently returned stale features).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from .config import library_versions
from .io import atomic_write_bytes, atomic_write_json
from .runtime import resolve_device

log = logging.getLogger(__name__)


def content_fingerprint(ids: Sequence[str], texts: Sequence[Optional[str]]) -> str:
    """sha256 over every ``(id, text)`` pair, in order."""
    h = hashlib.sha256()
    for i, t in zip(ids, texts):
        h.update(str(i).encode() + b"\x00" + ("" if t is None else str(t)).encode() + b"\x01")
    return h.hexdigest()


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

    Reuses the folder when its manifest matches (model, max_length, and the fingerprint of ids and texts).
    Arrays are written to temporary names, then renamed; the manifest is written last.
    """
    import torch
    from .runtime import progress_bar as tqdm
    from transformers import AutoModel, AutoTokenizer

    if len(texts) != len(ids):
        raise ValueError(f"{len(texts)} texts but {len(ids)} ids")
    folder = Path(folder)
    want = {"model": str(model), "max_length": int(max_length), "n": len(ids),
            "content": content_fingerprint(ids, texts)}
    man = folder / "manifest.json"
    if man.is_file():
        try:
            got = json.loads(man.read_text())
        except json.JSONDecodeError:
            got = {}
        if all(got.get(k) == v for k, v in want.items()):
            log.info("token features reused from %s", folder)
            return folder
        log.info("token features in %s were made from other texts or settings: recomputing", folder)
        man.unlink()
    dev = resolve_device(device)
    tok = AutoTokenizer.from_pretrained(model)
    enc = AutoModel.from_pretrained(model).to(dev).eval()
    H = enc.config.hidden_size
    folder.mkdir(parents=True, exist_ok=True)
    tmp_tokens, tmp_mask = folder / "tokens.npy.tmp", folder / "mask.npy.tmp"
    feats = np.lib.format.open_memmap(tmp_tokens, mode="w+", dtype=np.float16, shape=(len(texts), max_length, H))
    mask = np.lib.format.open_memmap(tmp_mask, mode="w+", dtype=np.uint8, shape=(len(texts), max_length))
    with torch.inference_mode():
        for lo in tqdm(range(0, len(texts), batch_size), desc="token features", disable=not show_progress, leave=False):
            b = tok([t or "" for t in texts[lo : lo + batch_size]], padding="max_length", truncation=True,
                    max_length=max_length, return_tensors="pt").to(dev)
            h = enc(**b).last_hidden_state * b["attention_mask"].unsqueeze(-1)
            feats[lo : lo + len(h)] = h.float().cpu().numpy().astype(np.float16)
            mask[lo : lo + len(h)] = b["attention_mask"].cpu().numpy()
    feats.flush(), mask.flush()
    del feats, mask
    os.replace(tmp_tokens, folder / "tokens.npy")
    os.replace(tmp_mask, folder / "mask.npy")
    atomic_write_bytes(folder / "ids.json", lambda f: f.write(json.dumps(list(map(str, ids))).encode()))
    atomic_write_json(man, {**want, "hidden": H, "dtype": "float16", "versions": library_versions()})
    return folder


def load_token_features(folder: os.PathLike, ids: Optional[Sequence[str]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """``tokens [N, T, H]`` (memory-mapped float16) and ``mask [N, T]``; reordered to ``ids`` when given."""
    folder = Path(folder)
    for name in ("tokens.npy", "mask.npy", "ids.json", "manifest.json"):
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
