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
from ..config import data_dir as default_data_dir
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
from .summary import DatasetSummary, example_figure, save_summaries, summary

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
    positive_class: Optional[str] = None,
    carve_val: bool = True,
    **options: Any,
) -> MultimodalDataset:
    """Load dataset ``name`` from ``root`` (default: ``<data dir>/<name>``) as a validated table.

    ``on_missing_image``: ``"error"`` (default) raises naming the rows and paths of missing image/audio
    files; ``"drop"`` drops those rows and logs how many; ``"ignore"`` skips the check.
    ``positive_class``: for a binary task, the class scored as positive (``spec.classes[1]``); the class
    used is logged either way. ``carve_val``: a table with training rows but no validation rows gets a
    stratified (grouped, where it has groups) 10% of train as validation, with a warning; ``False`` raises.
    Other options go to the loader (see each loader's docstring).
    """
    _import_builtin_loaders()
    loader = DATASETS.get(name)
    folder = Path(root).expanduser().resolve() if root is not None else data_dir() / name
    ds = loader(folder, **options)
    ds = set_positive_class(ds, positive_class)
    ds = ensure_validation(ds, carve_val)
    return check_media(ds, on_missing_image)


def set_positive_class(ds: MultimodalDataset, positive_class: Optional[str]) -> MultimodalDataset:
    """Make ``positive_class`` the positive class (``classes[1]``) of a binary dataset; log which one is used."""
    if ds.spec.task != "binary":
        if positive_class is not None:
            raise DatasetError(f"{ds.spec.key}: positive_class={positive_class!r} applies to binary tasks; this one is "
                               f"{ds.spec.task}")
        return ds
    classes = list(ds.spec.classes)
    if positive_class is not None and str(positive_class) != classes[1]:
        if str(positive_class) not in classes:
            raise DatasetError(f"{ds.spec.key}: positive_class={positive_class!r} is not a class; classes: {classes}")
        import dataclasses

        ds = MultimodalDataset(ds.df, dataclasses.replace(ds.spec, classes=[classes[1], classes[0]]), validate_rows=False)
    log.info("%s: binary task, positive class %r (negative %r)", ds.spec.key, ds.spec.classes[1], ds.spec.classes[0])
    return ds


def ensure_validation(ds: MultimodalDataset, carve: bool = True, fraction: float = 0.1, seed: int = 0) -> MultimodalDataset:
    """Carve a validation split from train when the table has none (see :func:`load`)."""
    from .splits import carve_validation

    counts = ds.df["split"].value_counts()
    if counts.get("val", 0) > 0 or counts.get("train", 0) == 0:
        return ds
    if not carve:
        raise DatasetError(f"{ds.spec.key}: the table has no validation rows (split 'val'); early stopping and model "
                           "selection need them. Add a val split, or load with carve_val=True.")
    group = "group" if "group" in ds.df.columns else None
    df = carve_validation(ds.df, fraction, seed, group)
    log.warning("%s: no validation split in the data: %d training rows moved to 'val' (stratified%s, seed %d)",
                ds.spec.key, int((df["split"] == "val").sum()), ", grouped" if group else "", seed)
    return MultimodalDataset(df, ds.spec, validate_rows=False)


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


def try_load(name: str, data_dir: Any = None, **options: Any) -> Any:
    """``utils.data.load`` for a notebook that walks over every dataset: ``None`` (with the reason and
    where to get the data logged) when the dataset folder is absent, instead of an error."""
    from .download import instructions

    root = Path(data_dir) / name if data_dir else default_data_dir() / name
    if not root.is_dir():
        log.warning("%s: no folder %s; skipping. To get it:\n%s", name, root, instructions(name))
        return None
    return load(name, root=root, **options)
