"""Colab setup: install this repository into the running kernel and keep data, embeddings and results on Drive.

The first cell of every notebook runs this file with ``runpy.run_path`` (as ``__main__``), from the installed
package or from a clone it has just made, so it uses the standard library only: it must work before ``utils``
and its requirements are installed. Run from a clone whose ``utils`` is not the one the kernel imports, it
installs the **full** ``requirements.txt`` of that clone and the package itself (editable), and puts the clone
first on ``sys.path`` (an editable install is seen by new kernels only). Then, every time, it mounts Google
Drive and points the three folders into ``MyDrive/mmfusion`` (an environment variable already set wins).
``utils.config.setup_colab`` does the same second half from inside the package.

Settings (environment variables): ``MMFUSION_DRIVE`` where Drive mounts (default ``/content/drive``);
``MMFUSION_COLAB_DRY_RUN`` prints the install commands instead of running them (tests).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

# Colab's fixed places: where Drive mounts, the project's folder on it, a clone kept on Drive, the fresh clone
COLAB_MOUNT = "/content/drive"
COLAB_DRIVE_FOLDER = "MyDrive/mmfusion"
COLAB_DRIVE_CLONE = COLAB_DRIVE_FOLDER + "/code"
COLAB_CLONE = "/content/mmfusion"
# environment variable -> its folder under COLAB_DRIVE_FOLDER (the names utils.config reads)
DRIVE_FOLDERS = {"MMFUSION_DATA_DIR": "data", "MMFUSION_EMBEDDINGS_DIR": "embeddings", "MMFUSION_RESULTS_DIR": "results"}


def imports_from(clone: Path) -> bool:
    """True when ``import utils`` in this kernel gives the package of ``clone`` (not another one, not none)."""
    try:
        spec = importlib.util.find_spec("utils")
    except (ImportError, ValueError):
        return False
    places = list(spec.submodule_search_locations or []) if spec else []
    return any(Path(p).resolve() == (clone / "utils").resolve() for p in places)


def run(cmd: List[str]) -> None:
    """Run ``cmd`` (raising on failure), or print it when ``MMFUSION_COLAB_DRY_RUN`` is set."""
    if os.environ.get("MMFUSION_COLAB_DRY_RUN"):
        print("$", *cmd)
    else:
        subprocess.run(cmd, check=True)


def install(clone: Path) -> None:
    """The clone's full requirements, the package itself (editable, no dependency resolution twice), and the
    clone first on ``sys.path`` so this kernel imports it now; a ``utils`` imported before is forgotten."""
    requirements = clone / "requirements.txt"
    if not requirements.is_file():
        raise FileNotFoundError(f"{requirements} not found: {clone} is not a clone of this repository; set "
                                "MMFUSION_CLONE to the folder holding one (or remove the folder so the cell clones it)")
    run([sys.executable, "-m", "pip", "install", "-q", "-r", str(requirements)])
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", str(clone)])
    sys.path.insert(0, str(clone))
    for name in [m for m in sys.modules if m == "utils" or m.startswith("utils.")]:
        del sys.modules[name]  # a `utils` found before (another package of that name) must not shadow this one
    importlib.invalidate_caches()


def use_drive(mount_point: str = COLAB_MOUNT, drive_folder: str = COLAB_DRIVE_FOLDER) -> Dict[str, str]:
    """Mount Drive at ``mount_point`` (when not mounted yet) and point each folder variable into ``drive_folder``
    there, unless it is set already; the folders are created. Returns variable -> folder."""
    from google.colab import drive  # type: ignore

    if not os.path.isdir(os.path.join(mount_point, "MyDrive")):
        drive.mount(mount_point)
    base = Path(mount_point) / drive_folder
    out = {}
    for env, sub in DRIVE_FOLDERS.items():
        os.environ.setdefault(env, str(base / sub))
        Path(os.environ[env]).mkdir(parents=True, exist_ok=True)
        out[env] = os.environ[env]
    return out


def main(clone: Optional[Path] = None) -> Dict[str, str]:
    """Install ``clone`` (default: the folder holding this file's ``utils``) unless the kernel imports it
    already, then :func:`use_drive`."""
    clone = Path(clone) if clone else Path(__file__).resolve().parents[1]
    if not imports_from(clone):
        install(clone)
    folders = use_drive(os.environ.get("MMFUSION_DRIVE", COLAB_MOUNT))
    print("Colab: " + ", ".join(f"{k}={v}" for k, v in folders.items()))
    return folders


if __name__ == "__main__":
    main()
