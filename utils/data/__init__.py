"""Dataset loaders. Every loader returns a :class:`MultimodalDataset` (``.df`` + ``.spec``).

>>> import utils.data
>>> utils.data.names()          # what is registered
>>> ds = utils.data.load("synthetic", n=600)
>>> ds.df.head(), ds.spec
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, List, Optional

from ..config import PathLike, data_dir
from ..registry import Registry
from .schema import (
    MODALITIES,
    SPLITS,
    TASKS,
    DatasetError,
    DatasetSpec,
    MultimodalDataset,
    encode_labels,
    validate,
)
from .summary import DatasetSummary, example_figure, save_summaries, summary, try_load

log = logging.getLogger(__name__)

DATASETS: Registry[MultimodalDataset] = Registry("dataset")

__all__ = [
    "DATASETS",
    "DatasetError",
    "DatasetSpec",
    "DatasetSummary",
    "MODALITIES",
    "MultimodalDataset",
    "SPLITS",
    "TASKS",
    "check_media",
    "encode_labels",
    "load",
    "names",
    "register",
    "summary",
    "example_figure",
    "save_summaries",
    "try_load",
    "validate",
]


def register(name: str, **info: Any) -> Callable:
    """Decorator registering ``loader(root: Path, **options) -> MultimodalDataset`` under ``name``."""
    return DATASETS.register(name, **info)


def names() -> List[str]:
    """Names accepted by :func:`load`."""
    _import_builtin_loaders()
    return DATASETS.names()


def load(
    name: str,
    root: Optional[PathLike] = None,
    on_missing_image: str = "error",
    **options: Any,
) -> MultimodalDataset:
    """Load dataset ``name`` from ``root`` (default: ``<data dir>/<name>``) as a validated table.

    ``on_missing_image``: ``"error"`` (default) raises naming the rows and paths of missing image/audio
    files; ``"drop"`` drops those rows and logs how many; ``"ignore"`` skips the check.
    Other options go to the loader (see each loader's docstring).
    """
    _import_builtin_loaders()
    loader = DATASETS.get(name)
    folder = Path(root).expanduser().resolve() if root is not None else data_dir() / name
    ds = loader(folder, **options)
    return check_media(ds, on_missing_image)


def check_media(ds: MultimodalDataset, on_missing: str = "error") -> MultimodalDataset:
    """Check that every image/audio file the table names exists (see :func:`load`)."""
    if on_missing not in ("error", "drop", "ignore"):
        raise ValueError(f"on_missing_image must be 'error', 'drop' or 'ignore', got {on_missing!r}")
    if on_missing == "ignore":
        return ds
    bad_rows: List[int] = []
    bad_paths: List[str] = []
    for modality in ds.spec.modalities:
        if modality == "text":
            continue
        for row, path in enumerate(ds.items(modality)):
            if path is None or not Path(path).is_file():
                bad_rows.append(row)
                bad_paths.append(str(path))
    if not bad_rows:
        return ds
    if on_missing == "drop":
        keep = sorted(set(range(len(ds))) - set(bad_rows))
        log.warning("%s: dropped %d row(s) whose image/audio file is missing", ds.spec.key, len(set(bad_rows)))
        out = MultimodalDataset(ds.df.iloc[keep].reset_index(drop=True), ds.spec, validate_rows=False)
        out.dropped_missing = len(set(bad_rows))  # type: ignore[attr-defined]
        return out
    shown = "\n".join(
        f"  row {r} (id {ds.df['id'].iloc[r]!r}): {p}" for r, p in list(zip(bad_rows, bad_paths))[:10]
    )
    more = f"\n  ... and {len(bad_rows) - 10} more" if len(bad_rows) > 10 else ""
    raise DatasetError(
        f"dataset {ds.spec.key!r}: {len(bad_rows)} media file(s) not found (root {ds.spec.root}):\n{shown}{more}\n"
        "Check the dataset root / download, or pass on_missing_image='drop' to skip these rows."
    )


_loaded = False


def _import_builtin_loaders() -> None:
    """Import the modules that register the built-in datasets (on first use, to keep import light)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):  # type: ignore[name-defined]
        if mod.name not in ("schema", "splits", "download", "summary") and not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
