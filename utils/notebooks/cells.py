"""The cell toolkit every notebook template uses: markdown / code / parameters cells, the Colab cell, and
building an ``nbformat`` notebook (no cell ids, so files and diffs stay stable).

The repository URL the Colab cell clones lives in one place: ``[project.urls] Repository`` in
``pyproject.toml`` (:func:`repository_url`). A fork edits it there and runs ``python -m utils.notebooks``;
on Colab, ``MMFUSION_REPO_URL`` overrides it without editing anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

PLACEHOLDER_URL = "https://github.com/YOUR-ORG/mmfusion"


def repository_url(pyproject: Optional[Path] = None) -> str:
    """``[project.urls] Repository`` of ``pyproject.toml`` (the placeholder when the file or key is absent)."""
    import tomllib

    path = pyproject or Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return PLACEHOLDER_URL
    return str(data.get("project", {}).get("urls", {}).get("Repository", PLACEHOLDER_URL))


# The Colab cell: a few lines that need nothing but the standard library. It mounts Drive, finds the repository
# (installed already; else a clone in MMFUSION_CLONE or on Drive; else a fresh clone of the repository URL) and runs
# utils/colab_setup.py as a file, which installs the clone when needed and points the folders at Drive.
COLAB_TEMPLATE = '''# Colab only (a no-op elsewhere): mount Drive, install this repository unless `utils` imports, keep data on Drive.
import os, runpy, subprocess, sys
if "google.colab" in sys.modules:
    from google.colab import drive; drive.mount(DRIVE := os.environ.get("MMFUSION_DRIVE", "{mount}"))
    try: from utils.colab_setup import __file__ as SETUP  # installed: only mount Drive and point the folders at it
    except ImportError:  # else a clone: MMFUSION_CLONE, else one kept on Drive, else a fresh one in {clone}
        CLONE = os.path.join(DRIVE, "{drive_clone}")
        CLONE = os.environ.get("MMFUSION_CLONE") or (CLONE if os.path.isdir(CLONE) else "{clone}")
        URL = os.environ.get("MMFUSION_REPO_URL", "{url}")  # your fork: set MMFUSION_REPO_URL
{placeholder}        if not os.path.isdir(CLONE): subprocess.run(["git", "clone", "--depth", "1", URL, CLONE], check=True)
        SETUP = os.path.join(CLONE, "utils", "colab_setup.py")
    runpy.run_path(SETUP, run_name="__main__")'''

# while pyproject.toml holds the placeholder URL, the cell says what to set instead of running a git clone that fails
PLACEHOLDER_CHECK = ('        if "YOUR-ORG" in URL and not os.path.isdir(CLONE): raise RuntimeError("No clone of this repository: '
                     'set MMFUSION_REPO_URL to your fork\'s git URL, or MMFUSION_CLONE to a folder holding a clone")\n')


def colab_cell(url: Optional[str] = None) -> str:
    """The guarded first code cell of every notebook (see the module docstring)."""
    from ..colab_setup import COLAB_CLONE, COLAB_DRIVE_CLONE, COLAB_MOUNT

    url = url or repository_url()
    check = PLACEHOLDER_CHECK if url == PLACEHOLDER_URL else ""
    return COLAB_TEMPLATE.format(url=url, mount=COLAB_MOUNT, drive_clone=COLAB_DRIVE_CLONE, clone=COLAB_CLONE,
                                 placeholder=check)


COLAB_CELL = colab_cell()

# parameter comments shared by every template (papermill cannot parse a comment holding "=")
COMMON_COMMENTS = {
    "DATASET": "a name from utils.data.names()",
    "DATA_DIR": "None: MMFUSION_DATA_DIR, .env or ./data; the dataset is read from DATA_DIR/DATASET",
    "DATASET_OPTIONS": "loader options (task, subset size, text template, ...)",
    "SEED": "first seed",
    "N_SEEDS": "number of seeds, from SEED on; use 3 or more when comparing models",
    "DEVICE": "'auto': CUDA, then MPS, then CPU",
    "RESULTS_DIR": "None: MMFUSION_RESULTS_DIR, .env or ./results",
}


def literal(value: Any) -> str:
    return repr(value)


def parameters_cell(params: Dict[str, Any], comments: Dict[str, str]) -> str:
    """``NAME = literal  # comment`` lines (the cell tagged ``parameters``)."""
    lines = []
    for k, v in params.items():
        c = comments.get(k)
        lines.append(f"{k} = {literal(v)}" + (f"  # {c}" if c else ""))
    return "\n".join(lines)


def md(src: str) -> Dict[str, Any]:
    return {"cell_type": "markdown", "source": src, "tags": []}


def code(src: str, tags: Optional[List[str]] = None) -> Dict[str, Any]:
    return {"cell_type": "code", "source": src, "tags": tags or []}


def steps_to_cells(steps: List) -> List[Dict[str, Any]]:
    """``[("md", text), ("code", source), ...]`` -> cells."""
    return [md(src) if kind == "md" else code(src) for kind, src in steps]


def build_notebook(cells: List[Dict[str, Any]]):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    for c in cells:
        cell = nbformat.v4.new_markdown_cell(c["source"]) if c["cell_type"] == "markdown" else nbformat.v4.new_code_cell(c["source"])
        if c["tags"]:
            cell.metadata["tags"] = list(c["tags"])
        cell.pop("id", None)
        nb.cells.append(cell)
    nb.nbformat_minor = 4  # no cell ids: stable files, clean diffs
    return nb
