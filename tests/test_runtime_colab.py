"""Machines that differ: precision='auto' on CUDA GPUs of each generation (capability faked), and the
Colab cell's logic run in a subprocess with a stand-in google.colab module."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("capability, want", [((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16"), ((6, 1), "fp16")])
def test_auto_precision_uses_bf16_only_where_cuda_computes_it_natively(monkeypatch, capability, want):
    import torch

    from utils import runtime

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    # torch.cuda.is_bf16_supported() says yes on a T4 (7.5) because bf16 can be emulated: not used
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert runtime.resolve_precision("auto", torch.device("cuda")) == want
    assert runtime.resolve_precision("fp32", torch.device("cuda")) == "fp32"


def stand_in_colab(folder: Path) -> Path:
    """A ``google.colab`` package whose ``drive.mount`` makes the mount folder (as Colab's does)."""
    pkg = folder / "fake" / "google" / "colab"
    pkg.mkdir(parents=True, exist_ok=True)
    (folder / "fake" / "google" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from . import drive\n")
    (pkg / "drive.py").write_text(textwrap.dedent("""
        import os
        MOUNTED = []
        def mount(path, force_remount=False):
            os.makedirs(os.path.join(path, "MyDrive"), exist_ok=True)
            MOUNTED.append(path)
    """))
    return folder / "fake"


def run_cell(tmp_path: Path, env: dict, with_utils: bool) -> subprocess.CompletedProcess:
    from utils.notebooks.cells import colab_cell

    script = tmp_path / "cell.py"
    script.write_text("import google.colab  # Colab imports it before any cell runs\n" + colab_cell() + "\n"
                      "import os\nprint('DATA', os.environ.get('MMFUSION_DATA_DIR'))\n")
    paths = [str(stand_in_colab(tmp_path))] + ([str(REPO)] if with_utils else [])
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MMFUSION_")}
    full_env.update({"PYTHONPATH": os.pathsep.join(paths), "MMFUSION_DRIVE": str(tmp_path / "drive"),
                     "MMFUSION_COLAB_DRY_RUN": "1", **env})
    # run outside the repository, so `utils` is importable only through PYTHONPATH
    return subprocess.run([sys.executable, "-S", str(script)], capture_output=True, text=True, env=full_env,
                          cwd=str(tmp_path))


def test_colab_cell_installs_the_full_requirements_from_a_clone_on_drive(tmp_path):
    clone = tmp_path / "drive" / "MyDrive" / "mmfusion" / "code"
    clone.mkdir(parents=True)
    (clone / "requirements.txt").write_text("numpy\n")
    out = run_cell(tmp_path, {}, with_utils=False)
    # without utils installed the cell stops at the import after printing what it would install (dry run)
    assert "-r " + str(clone / "requirements.txt") in out.stdout, out.stdout + out.stderr
    assert "--no-deps -e " + str(clone) in out.stdout
    assert "git clone" not in out.stdout


def test_colab_cell_clones_the_configured_repository_and_says_what_to_set(tmp_path):
    out = run_cell(tmp_path, {"MMFUSION_REPO_URL": "https://example.org/me/mmfusion.git"}, with_utils=False)
    assert "git clone --depth 1 https://example.org/me/mmfusion.git /content/mmfusion" in out.stdout
    assert "-r /content/mmfusion/requirements.txt" in out.stdout
    from utils.notebooks.cells import PLACEHOLDER_URL, repository_url

    if repository_url() == PLACEHOLDER_URL:  # the URL in pyproject.toml is still the placeholder
        plain = run_cell(tmp_path, {}, with_utils=False)
        assert plain.returncode != 0 and "set MMFUSION_REPO_URL" in plain.stderr


def test_colab_cell_with_utils_importable_only_mounts_and_points_folders_at_drive(tmp_path):
    out = run_cell(tmp_path, {}, with_utils=True)
    assert out.returncode == 0, out.stderr
    assert "pip" not in out.stdout
    assert f"DATA {tmp_path / 'drive' / 'MyDrive' / 'mmfusion' / 'data'}" in out.stdout
    assert (tmp_path / "drive" / "MyDrive" / "mmfusion" / "results").is_dir()


def test_colab_cell_does_nothing_outside_colab(tmp_path):
    from utils.notebooks.cells import colab_cell

    out = subprocess.run([sys.executable, "-c", colab_cell()], capture_output=True, text=True, cwd=str(tmp_path))
    assert out.returncode == 0 and out.stdout == "" and out.stderr == ""
