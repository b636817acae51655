"""The generate-embeddings step (``generate_text_embeddings.ipynb`` / ``generate_image_embeddings.ipynb``).

Extract one modality of a dataset with a list of extractors into the embedding store (cached, resumable),
show a few vectors and a 2-D map of each extractor's vectors, and write one row per extractor (dim, count,
seconds, store folder).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from ..config import PathLike, library_versions
from ..embed import EmbedConfig, embed
from ..io import write_json
from ..store import EmbeddingStore

log = logging.getLogger(__name__)


def generate(
    ds,
    modality: str,
    specs: Sequence[str],
    options: Optional[Mapping[str, Mapping[str, Any]]] = None,
    config: Optional[EmbedConfig] = None,
    **embed_options: Any,
) -> List[Dict[str, Any]]:
    """Embed ``ds``'s ``modality`` with every extractor in ``specs``; one row per extractor.

    ``options`` maps a spec (as written in ``specs``) to its extractor options; a key that is not in ``specs``
    is an error. Families with several towers (``clip``, ``clap``) embed ``modality``. ``config`` / ``embed_options``: :class:`~utils.embed.EmbedConfig` fields (``batch_size``,
    ``device``, ``root``, ``normalize``, ``on_error``, ``shard``, ``num_shards``, ...).
    Rows: extractor, description, dim, count, failed, seconds, reused, precision, store.
    """
    from ..extractors import create_for
    from .steps import extractor_options

    by_spec = extractor_options(list(specs), options)
    if "embeddings_dir" in embed_options:
        embed_options["root"] = embed_options.pop("embeddings_dir")
    rows = []
    for spec in specs:
        ext = create_for(spec, modality, **dict(by_spec.get(spec, {})))
        t = time.perf_counter()
        store = embed(ds, modality, ext, config, **embed_options)
        seconds = time.perf_counter() - t
        m = store.manifest()
        rows.append({
            "extractor": spec, "id": ext.id, "description": m.get("description", ext.describe()),
            "modality": modality, "dim": int(m.get("dim") or 0), "count": int(m.get("n_vectors") or 0),
            "failed": len(m.get("failed") or {}), "seconds": round(seconds, 3),
            "reused": bool(getattr(store, "reused", False)),
            "precision": m.get("precision") or m["extractor"].get("precision_resolved"), "store": str(store.folder),
            "complete": bool(m.get("complete")), "versions": library_versions(),
        })
        log.info("%s: %d x %d in %.1f s -> %s", spec, rows[-1]["count"], rows[-1]["dim"], seconds, store.folder)
    return rows


def summary(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The rows as a table (without library versions)."""
    return pd.DataFrame([{k: v for k, v in r.items() if k != "versions"} for r in rows])


def preview(rows: Sequence[Mapping[str, Any]], n: int = 3, k: int = 6) -> pd.DataFrame:
    """The first ``k`` values of the first ``n`` vectors of each store."""
    out = []
    for r in (r for r in rows if r["complete"]):  # a store another job is still filling has nothing to show
        ids, vec = EmbeddingStore(r["store"]).read()
        for i in range(min(n, len(ids))):
            out.append({"extractor": r["extractor"], "id": str(ids[i]), "norm": float(np.linalg.norm(vec[i])),
                        **{f"v{j}": float(vec[i, j]) for j in range(min(k, vec.shape[1]))}})
    return pd.DataFrame(out)


def umap_plot(ds, rows: Sequence[Mapping[str, Any]], path: Optional[PathLike] = None, seed: int = 0,
              method: str = "umap"):
    """One 2-D map (UMAP by default, :func:`utils.viz.embedding_2d`) per extractor, points coloured by label."""
    from ..viz import projection_panels

    labels = ds.df.set_index(ds.df["id"].astype(str))["label"].astype(str)
    panels = {}
    for r in (r for r in rows if r["complete"]):
        ids, vec = EmbeddingStore(r["store"]).read()
        panels[f"{r['extractor']} ({r['dim']}-d)"] = (np.asarray(vec), labels.reindex([str(i) for i in ids]).to_numpy())
    return projection_panels(panels, method, path, seed)


def save_rows(rows: Sequence[Mapping[str, Any]], path: PathLike) -> Path:
    path = write_json(list(rows), path)
    log.info("wrote %s", path)
    return path
