"""Dataset loaders. Every loader returns a :class:`MultimodalDataset` (``.df`` + ``.spec``).

>>> import utils.data
>>> utils.data.names()          # what is registered
>>> ds = utils.data.load("synthetic", n=600)
>>> ds.df.head(), ds.spec
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

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
    "DatasetRequest",
    "DatasetSpec",
    "DatasetSummary",
    "MODALITIES",
    "MultimodalDataset",
    "SPLITS",
    "TASKS",
    "check_media",
    "check_options",
    "check_trainable",
    "encode_labels",
    "load",
    "names",
    "read",
    "register",
    "request",
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


@dataclass(frozen=True)
class DatasetRequest:
    """A dataset to load, checked when it is made (the name, :func:`load`'s settings and the loader's options)
    and before anything is read: the main job makes it once, with the other settings, and :func:`load` reads
    that same object later without checking it again. ``request(...)`` makes one from :func:`load`'s arguments."""

    name: str  # a name from names()
    root: Optional[Path] = None  # the dataset folder (None: <data dir>/<name>)
    options: Dict[str, Any] = field(default_factory=dict)  # the loader's own options (e.g. {"n": 3000})
    on_missing_image: str = "error"  # "error", "drop" or "ignore" (see load)
    positive_class: Optional[str] = None  # binary tasks: the class scored as positive (None: the loader's)
    carve_val: bool = True  # no validation rows: carve 10% of train (False: an error)
    allow_absolute_paths: bool = False  # media paths may be absolute or lead outside the dataset folder
    media_check: str = "auto"  # how cached file facts are re-checked (utils.data.media.CHECKS)
    embeddings_dir: Optional[PathLike] = None  # the embeddings folder whose .media-cache caches file facts

    def __post_init__(self) -> None:
        from .media import CHECKS

        _import_builtin_loaders()
        loader = DATASETS.get(self.name)  # an unknown name: UnknownNameError (a KeyError) listing the valid ones
        if self.on_missing_image not in ("error", "drop", "ignore"):
            raise DatasetError(f"on_missing_image must be 'error', 'drop' or 'ignore', got {self.on_missing_image!r}")
        if self.media_check not in CHECKS:
            raise DatasetError(f"media_check must be one of {CHECKS}, got {self.media_check!r}")
        mixed = sorted(set(self.options) & set(LOAD_OPTIONS))
        if mixed:
            raise DatasetError(f"{mixed} are load() settings, not options of the {self.name} loader: give them as "
                               "fields of the request (request() sorts them)")
        check_options(self.name, loader, self.options)


def request(name: str, /, root: Optional[PathLike] = None, **options: Any) -> DatasetRequest:
    """A checked :class:`DatasetRequest` from :func:`load`'s arguments (its settings and the loader's options)."""
    return DatasetRequest(name, None if root is None else Path(root).expanduser(),
                          {k: v for k, v in options.items() if k not in LOAD_OPTIONS},
                          **{k: v for k, v in options.items() if k in LOAD_OPTIONS})


def load(
    name: "str | DatasetRequest",
    /,
    root: Optional[PathLike] = None,
    on_missing_image: str = "error",
    positive_class: Optional[str] = None,
    carve_val: bool = True,
    allow_absolute_paths: bool = False,
    media_check: str = "auto",
    embeddings_dir: Optional[PathLike] = None,
    **options: Any,
) -> MultimodalDataset:
    """Load dataset ``name`` from ``root`` (default: ``<data dir>/<name>``) as a validated table.

    ``name`` may be a :class:`DatasetRequest` (checked when it was made, and not again), with no other argument.
    ``on_missing_image``: ``"error"`` (default) raises naming the rows and paths of missing image/audio
    files (or empty ones, or folders); ``"drop"`` drops those rows and logs how many; ``"ignore"`` skips the check.
    A file that leads outside the dataset folder through a symbolic link is refused (with ``"ignore"``, when
    the store first fingerprints the files) unless ``allow_absolute_paths``.
    ``positive_class``: for a binary task, the class scored as positive (``spec.classes[1]``); the class
    used is logged either way. ``carve_val``: a table with training rows but no validation rows gets a
    stratified (grouped, where it has groups) 10% of train as validation, with a warning; ``False`` raises.
    ``allow_absolute_paths``: media paths may be absolute or lead outside the dataset folder (by default
    such rows are refused, so a table cannot make the framework read ``/etc/passwd``).
    ``media_check``: how cached file facts are re-checked on a later load, ``"auto"``, ``"full"`` or
    ``"folders"`` (see :mod:`utils.data.media`). ``embeddings_dir``: the embeddings folder whose
    ``.media-cache`` caches those facts (default: ``MMFUSION_EMBEDDINGS_DIR``, ``.env`` or ``./embeddings``;
    pass the folder the embeddings go to, as the main job does). Other options go to the loader (see each loader's
    docstring); an unknown one is an error naming the accepted ones.
    """
    settings = dict(on_missing_image=on_missing_image, positive_class=positive_class, carve_val=carve_val,
                    allow_absolute_paths=allow_absolute_paths, media_check=media_check, embeddings_dir=embeddings_dir)
    if isinstance(name, DatasetRequest):
        if root is not None or options or settings != DEFAULT_SETTINGS:
            raise TypeError("load(request): the request holds every setting; give no other argument")
        req = name
    else:
        req = DatasetRequest(name, None if root is None else Path(root).expanduser(), dict(options), **settings)
    return read(req)


def read(req: DatasetRequest) -> MultimodalDataset:
    """Read the dataset ``req`` names (already checked): the loader, then the positive class, the validation
    split and the media files (see :func:`load`)."""
    loader = DATASETS.get(req.name)
    folder = Path(req.root).expanduser().resolve() if req.root is not None else data_dir() / req.name
    ds = loader(folder, **req.options)
    if req.allow_absolute_paths:
        import dataclasses

        ds = MultimodalDataset(ds.df, dataclasses.replace(ds.spec, absolute_paths=True), validate_rows=False)
    ds = set_positive_class(ds, req.positive_class)
    ds = ensure_validation(ds, req.carve_val)
    return check_media(ds, req.on_missing_image, req.media_check, req.embeddings_dir)


def loader_options(name: str, loader: Callable) -> Optional[List[str]]:
    """The options loader ``name`` accepts (None when it cannot be told from its signature)."""
    import inspect
    import sys

    def named(fn: Callable, skip: Sequence[str]) -> Tuple[List[str], bool]:
        params = inspect.signature(fn).parameters.values()
        names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in skip]
        return names, any(p.kind == p.VAR_KEYWORD for p in params)

    names, open_ended = named(loader, ("root",))
    if open_ended:  # the table loaders pass the rest on to frame_to_dataset, whose options are a dataclass
        import dataclasses

        inner = getattr(sys.modules.get(loader.__module__), "frame_to_dataset", None)
        if inner is None:
            return None
        more, open_ended = named(inner, ("raw", "path", "root", "name", "options", "report", "variant", "description"))
        fields_of = getattr(sys.modules.get(inner.__module__), "TableOptions", None)
        if open_ended and fields_of is not None and dataclasses.is_dataclass(fields_of):
            more += [f.name for f in dataclasses.fields(fields_of)]
            open_ended = False
        names += [m for m in more if m not in names]
        if open_ended:
            return None
    return names


LOAD_OPTIONS = ("on_missing_image", "positive_class", "carve_val", "allow_absolute_paths", "media_check",
                "embeddings_dir")
DEFAULT_SETTINGS = {"on_missing_image": "error", "positive_class": None, "carve_val": True,
                    "allow_absolute_paths": False, "media_check": "auto", "embeddings_dir": None}  # load()'s defaults


def check_options(name: str, loader: Callable, options: Dict[str, Any]) -> None:
    """Refuse an option loader ``name`` does not know (or :func:`load` itself), before anything is read."""
    accepted = loader_options(name, loader)
    if accepted is None:
        return
    unknown = sorted(set(options) - set(accepted) - set(LOAD_OPTIONS))
    if unknown:
        import difflib

        hints = [f"{u!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(u, accepted, 1)) else repr(u)
                 for u in unknown]
        raise DatasetError(f"load({name!r}): unknown option(s) {', '.join(hints)}; {name} accepts: "
                           f"{', '.join(sorted(accepted))} (and {', '.join(LOAD_OPTIONS)})")


def check_trainable(ds: MultimodalDataset, splits: Sequence[str] = SPLITS) -> None:
    """Refuse, before any extraction, a dataset heads cannot be trained and scored on: an empty split, or
    fewer than two classes in the training rows (a one-class table "scores" 1.000 and means nothing)."""
    counts = ds.df["split"].value_counts()
    empty = [s for s in splits if counts.get(s, 0) == 0]
    if empty:
        raise DatasetError(
            f"dataset {ds.spec.key!r}: no rows in the {' and '.join(empty)} split(s) (rows per split: "
            f"{ {s: int(counts.get(s, 0)) for s in SPLITS} }). Training needs train rows, early stopping val rows "
            "and scoring test rows: fix the split column, or load with carve_val=True to carve val from train."
        )
    train = ds.df.loc[ds.df["split"] == "train", "label"]
    if ds.spec.task == "multilabel":
        y = ds.labels()[ds.split_mask("train")]  # [n_train, C]
        positives = y.sum(axis=0)
        if not ((positives > 0) & (positives < len(y))).any():
            raise DatasetError(
                f"dataset {ds.spec.key!r}: no label is both present and absent in the training rows, so there is "
                "nothing to learn. Check the label column and the split."
            )
        return
    present = sorted(set(train.astype(str).tolist()))
    if len(present) < 2:
        raise DatasetError(
            f"dataset {ds.spec.key!r}: the training rows hold {len(present)} class(es) ({present}); a classifier needs "
            f"at least two (the spec lists {ds.spec.classes}). Check the label column, or the split."
        )


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


def check_media(ds: MultimodalDataset, on_missing: str = "error", media_check: Optional[str] = None,
                embeddings_dir: Optional[PathLike] = None) -> MultimodalDataset:
    """Check that every image/audio file the table names exists and lies inside the dataset root (see :func:`load`).

    File facts are gathered once and cached (:mod:`utils.data.media`); the returned dataset keeps them, so
    fingerprinting it for the embedding store stats nothing again.
    """
    if on_missing not in ("error", "drop", "ignore"):
        raise ValueError(f"on_missing_image must be 'error', 'drop' or 'ignore', got {on_missing!r}")
    if media_check is not None:
        ds.media_check = media_check
    if embeddings_dir is not None:
        ds.embeddings_dir = str(Path(embeddings_dir).expanduser())
    if on_missing == "ignore":
        return ds
    bad_rows: List[int] = []
    bad_paths: List[str] = []
    problems: List[str] = []
    for modality in ds.spec.modalities:
        if modality == "text":
            continue
        stats = ds.media_stats(modality)  # refuses files leading outside the root through a symbolic link
        for row in np.flatnonzero(stats.missing).tolist():
            if row not in bad_rows:
                bad_rows.append(row)
                problem = stats.problem(row)
                problems.append(problem)
                bad_paths.append(str(stats.paths[row]) + ("" if problem == "not found" else f" ({problem})"))
    if not bad_rows:
        return ds
    kinds = {k: problems.count(k) for k in dict.fromkeys(problems)}
    what = ("not found" if list(kinds) == ["not found"] else "not usable (" + ", ".join(f"{n} {k}" for k, n in kinds.items())
            + ")")
    shown = "\n".join(
        f"  row {r} (id {ds.df['id'].iloc[r]!r}): {p}" for r, p in list(zip(bad_rows, bad_paths))[:10]
    )
    more = f"\n  ... and {len(bad_rows) - 10} more" if len(bad_rows) > 10 else ""
    where = (f"relative paths were looked up in {ds.spec.root} (for your own table: the table's folder, or "
             "image_base= to name another)")
    if on_missing == "drop":
        keep = np.setdiff1d(np.arange(len(ds)), bad_rows)
        left = ds.df["split"].iloc[keep].value_counts() if len(keep) else {}
        emptied = [s for s in ("train", "val", "test") if (ds.df["split"] == s).any() and not left.get(s, 0)]
        if not len(keep) or emptied:
            left_over = "no rows at all" if not len(keep) else f"no {' / '.join(emptied)} rows"
            raise DatasetError(
                f"dataset {ds.spec.key!r}: on_missing_image='drop' would leave {left_over}: {len(bad_rows)} of {len(ds)} "
                f"media file(s) {what}; {where}:\n{shown}{more}")
        log.warning("%s: dropped %d row(s) whose image/audio file is missing, empty or a folder", ds.spec.key,
                    len(bad_rows))
        out = ds.take(keep)
        out.dropped_missing = len(bad_rows)  # type: ignore[attr-defined]
        return out
    raise DatasetError(
        f"dataset {ds.spec.key!r}: {len(bad_rows)} media file(s) {what}; {where}:\n"
        f"{shown}{more}\nCheck the dataset root / download, or pass on_missing_image='drop' to skip these rows."
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
        if mod.name not in ("schema", "splits", "download", "summary", "media") and not mod.name.startswith("_"):
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
