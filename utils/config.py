"""Where things live (data, embeddings, results) and which device to use.

Paths resolve in this order: an explicit function argument, then an environment variable, then the
same variable in a ``.env`` file (python-dotenv, searched from the working directory upwards), then a
default under the project home. The variables:

=====================  ==================================================
``MMFUSION_HOME``      base folder for the defaults (default: the repository root when ``utils`` is
                       used from a checkout, else the working directory)
``MMFUSION_DATA_DIR``  raw datasets (default ``$MMFUSION_HOME/data``)
``MMFUSION_EMBEDDINGS_DIR``  the embedding store (default ``$MMFUSION_HOME/embeddings``)
``MMFUSION_RESULTS_DIR``     results tables, JSON and figures (default ``$MMFUSION_HOME/results``)
=====================  ==================================================

On Colab, :func:`setup_colab` mounts Google Drive and points these folders into it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

from .colab_setup import COLAB_DRIVE_FOLDER, COLAB_MOUNT, use_drive

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

ENV_HOME = "MMFUSION_HOME"
ENV_DATA = "MMFUSION_DATA_DIR"
ENV_EMBEDDINGS = "MMFUSION_EMBEDDINGS_DIR"
ENV_RESULTS = "MMFUSION_RESULTS_DIR"

_dotenv_cache: Optional[Dict[str, str]] = None


def _dotenv_values() -> Dict[str, str]:
    """Values of the nearest ``.env`` file (read once; never logged: it may hold API keys)."""
    global _dotenv_cache
    if _dotenv_cache is None:
        from dotenv import dotenv_values, find_dotenv

        path = find_dotenv(usecwd=True)
        _dotenv_cache = {k: v for k, v in dotenv_values(path).items() if v is not None} if path else {}
    return _dotenv_cache


def reload_dotenv() -> None:
    """Forget the cached ``.env`` values (after editing the file in a running notebook)."""
    global _dotenv_cache
    _dotenv_cache = None


def get_setting(name: str, default: Optional[str] = None) -> Optional[str]:
    """A setting from the environment, else from ``.env``, else ``default``.

    Used for paths and for secrets (``OPENAI_API_KEY``, PhysioNet credentials): callers must never
    print or log the value of a secret.
    """
    value = os.environ.get(name)
    if value:
        return value
    value = _dotenv_values().get(name)
    return value if value else default


def project_home() -> Path:
    """``MMFUSION_HOME``; else the repository root of this checkout when working inside it (the notebooks run
    from ``notebooks/`` and share the repository's ``data/``, ``embeddings/``, ``results/``); else the working
    directory: run from elsewhere, the job writes where it was started, never into the installed package's
    folder."""
    home = get_setting(ENV_HOME)
    if home:
        return Path(home).expanduser().resolve()
    repo = Path(__file__).resolve().parents[1]
    cwd = Path.cwd().resolve()
    if (repo / "pyproject.toml").exists() and (repo / "utils").is_dir() and (cwd == repo or repo in cwd.parents):
        return repo
    return cwd


def _resolve(explicit: Optional[PathLike], env: str, default_name: str) -> Path:
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser().resolve()
    value = get_setting(env)
    if value:
        return Path(value).expanduser().resolve()
    return project_home() / default_name


def data_dir(path: Optional[PathLike] = None) -> Path:
    """Folder holding raw datasets (one subfolder per dataset)."""
    return _resolve(path, ENV_DATA, "data")


def embeddings_dir(path: Optional[PathLike] = None) -> Path:
    """Root of the embedding store."""
    return _resolve(path, ENV_EMBEDDINGS, "embeddings")


def results_dir(path: Optional[PathLike] = None) -> Path:
    """Folder for results tables, JSON and figures."""
    return _resolve(path, ENV_RESULTS, "results")


@dataclass(frozen=True)
class Paths:
    data: Path
    embeddings: Path
    results: Path


def get_paths(
    data: Optional[PathLike] = None,
    embeddings: Optional[PathLike] = None,
    results: Optional[PathLike] = None,
) -> Paths:
    """All three folders at once (arguments > environment > ``.env`` > defaults)."""
    return Paths(data_dir(data), embeddings_dir(embeddings), results_dir(results))


def merge_config(cls, config=None, options=None, what: str = ""):
    """``config`` (an instance of dataclass ``cls``, or None for the defaults) with ``options`` replacing fields.

    The pattern behind every function that takes a config object and keyword overrides: an unknown option
    is an error naming the valid ones, never silently ignored. A given ``config`` without ``options`` comes back
    as it is (checked once, when it was made, not again).
    """
    import dataclasses

    if config is not None and not isinstance(config, cls):
        raise TypeError(f"{what or cls.__name__}: config must be a {cls.__name__}, got {type(config).__name__}")
    options = dict(options or {})
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise TypeError(
            f"{what or cls.__name__}: unknown option(s) {unknown}; valid options: {', '.join(sorted(valid))}"
        )
    if config is None:  # one object built (and checked) once, not the defaults first and then a copy
        return cls(**options)
    return dataclasses.replace(config, **options) if options else config


# ---------------------------------------------------------------------------------------------- Colab


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    try:
        import google.colab  # type: ignore  # noqa: F401

        return True
    except ImportError:
        return False


def setup_colab(drive_folder: str = COLAB_DRIVE_FOLDER, mount_point: str = COLAB_MOUNT) -> Optional[Paths]:
    """On Colab: mount Google Drive and point data, embeddings and results into ``drive_folder``
    (:func:`utils.colab_setup.use_drive`, which the notebooks' first cell runs before ``utils`` is installed).

    Does nothing (returns ``None``) outside Colab, so notebooks can call it unconditionally.
    Returns the resolved :class:`Paths`.
    """
    if not in_colab():
        return None
    use_drive(mount_point, drive_folder)
    paths = get_paths()
    log.info("Colab: data=%s embeddings=%s results=%s", paths.data, paths.embeddings, paths.results)
    return paths


def library_versions() -> Dict[str, str]:
    """Versions of the libraries that shape the numbers (recorded in manifests and results)."""
    import importlib.metadata as md
    import platform

    from . import __version__

    out = {"python": platform.python_version(), "utils": __version__}
    for pkg in ("torch", "transformers", "timm", "numpy", "scikit-learn", "pandas", "openai", "llama-cpp-python"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
