"""Machines that differ: precision='auto' on CUDA GPUs of each generation (capability faked), and the
Colab cell run in a subprocess with a stand-in google.colab module and a stand-in git."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Optional

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


def stand_in_git(folder: Path, make_clone: bool = True) -> Path:
    """A ``git`` on PATH that records its arguments and "clones" by writing what the cell needs from a clone
    (``requirements.txt`` and ``utils/colab_setup.py``, copied from this checkout); or fails, writing nothing."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    git = bin_dir / "git"
    git.write_text(f"#!{sys.executable} -S\n" + textwrap.dedent(f"""
        import os, shutil, sys
        with open({str(folder / "git.log")!r}, "a") as f:
            f.write(" ".join(sys.argv[1:]) + "\\n")
        if not {make_clone!r}:
            sys.exit(128)
        target = sys.argv[-1]
        os.makedirs(os.path.join(target, "utils"))
        shutil.copy({str(REPO / "requirements.txt")!r}, target)
        shutil.copy({str(REPO / "utils" / "colab_setup.py")!r}, os.path.join(target, "utils"))
    """))
    git.chmod(0o755)
    return bin_dir


def fake_clone(folder: Path) -> Path:
    """A clone as the cell reads it: the repository's requirements and its stdlib-only setup script."""
    (folder / "utils").mkdir(parents=True)
    (folder / "requirements.txt").write_text("numpy\n")
    shutil.copy(REPO / "utils" / "colab_setup.py", folder / "utils")
    return folder


def run_cell(tmp_path: Path, env: dict, with_utils: bool, url: Optional[str] = None, runs: int = 1,
             make_clone: bool = True) -> subprocess.CompletedProcess:
    """The cell as the notebooks hold it (``url``: as generated for that repository URL), run ``runs`` times in
    one process with a stand-in google.colab and git, outside the repository, with pip commands only printed."""
    from utils.notebooks.cells import colab_cell

    script = tmp_path / "cell.py"
    script.write_text("import google.colab  # Colab imports it before any cell runs\n"
                      + (colab_cell(url) + "\n") * runs
                      + "import os\nprint('DATA', os.environ.get('MMFUSION_DATA_DIR'))\n")
    paths = [str(stand_in_colab(tmp_path))] + ([str(REPO)] if with_utils else [])
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MMFUSION_")}
    full_env.update({"PYTHONPATH": os.pathsep.join(paths), "MMFUSION_DRIVE": str(tmp_path / "drive"),
                     "MMFUSION_COLAB_DRY_RUN": "1", **env,
                     "PATH": str(stand_in_git(tmp_path, make_clone)) + os.pathsep + os.environ.get("PATH", "")})
    # run outside the repository, so `utils` is importable only through PYTHONPATH
    return subprocess.run([sys.executable, "-S", str(script)], capture_output=True, text=True, env=full_env,
                          cwd=str(tmp_path))


def git_calls(tmp_path: Path) -> list:
    log = tmp_path / "git.log"
    return log.read_text().splitlines() if log.exists() else []


def test_colab_cell_is_a_handful_of_lines_that_need_only_the_standard_library():
    import ast

    from utils.notebooks.cells import PLACEHOLDER_URL, colab_cell

    configured, placeholder = colab_cell("https://example.org/me/mmfusion.git"), colab_cell(PLACEHOLDER_URL)
    assert len(configured.splitlines()) <= 12 and len(placeholder.splitlines()) == len(configured.splitlines()) + 1
    imported = set()
    for node in ast.walk(ast.parse(placeholder)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    # google.colab exists on Colab; utils is only tried (inside try / except ImportError), never required
    assert imported - {"google", "utils"} <= set(sys.stdlib_module_names)
    tries = [n for n in ast.walk(ast.parse(placeholder)) if isinstance(n, ast.Try)]
    assert len(tries) == 1 and any(isinstance(n, ast.ImportFrom) and n.module == "utils.colab_setup" for n in tries[0].body)
    assert tries[0].handlers[0].type.id == "ImportError"
    # the script the cell runs before `utils` is installed imports nothing of the package
    setup = ast.parse((REPO / "utils" / "colab_setup.py").read_text())
    modules = {a.name.split(".")[0] for n in ast.walk(setup) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(setup) if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert modules - {"google"} <= set(sys.stdlib_module_names), modules
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(setup))


def test_colab_folders_are_the_ones_config_reads():
    from utils import colab_setup, config

    assert set(colab_setup.DRIVE_FOLDERS) == {config.ENV_DATA, config.ENV_EMBEDDINGS, config.ENV_RESULTS}


def test_colab_cell_installs_the_full_requirements_from_a_clone_on_drive(tmp_path):
    clone = fake_clone(tmp_path / "drive" / "MyDrive" / "mmfusion" / "code")
    out = run_cell(tmp_path, {}, with_utils=False)
    assert out.returncode == 0, out.stdout + out.stderr
    # without utils installed the script prints what it would install (dry run), then points the folders at Drive
    assert "-r " + str(clone / "requirements.txt") in out.stdout, out.stdout + out.stderr
    assert "--no-deps -e " + str(clone) in out.stdout
    assert git_calls(tmp_path) == []
    assert f"DATA {tmp_path / 'drive' / 'MyDrive' / 'mmfusion' / 'data'}" in out.stdout


def test_colab_cell_run_twice_installs_once(tmp_path):
    """After the first run the kernel imports the clone: running the cell again only points the folders."""
    fake_clone(tmp_path / "drive" / "MyDrive" / "mmfusion" / "code")
    out = run_cell(tmp_path, {}, with_utils=False, runs=2)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("pip install -q -r ") == 1 and out.stdout.count("Colab: MMFUSION_DATA_DIR=") == 2


def test_colab_cell_clones_the_configured_repository_and_says_what_to_set(tmp_path):
    target = tmp_path / "content" / "mmfusion"
    out = run_cell(tmp_path, {"MMFUSION_REPO_URL": "https://example.org/me/mmfusion.git", "MMFUSION_CLONE": str(target)},
                   with_utils=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert git_calls(tmp_path) == [f"clone --depth 1 https://example.org/me/mmfusion.git {target}"]
    assert "-r " + str(target / "requirements.txt") in out.stdout and "--no-deps -e " + str(target) in out.stdout
    assert (tmp_path / "drive" / "MyDrive" / "mmfusion" / "embeddings").is_dir()


def test_colab_cell_clones_into_content_without_a_clone_on_drive(tmp_path):
    """No clone anywhere: the repository URL the notebook was generated with is cloned into /content/mmfusion
    (the stand-in git fails here, so nothing is written there)."""
    out = run_cell(tmp_path, {}, with_utils=False, url="https://example.org/org/mmfusion.git", make_clone=False)
    assert out.returncode != 0 and "CalledProcessError" in out.stderr
    assert git_calls(tmp_path) == ["clone --depth 1 https://example.org/org/mmfusion.git /content/mmfusion"]


def test_colab_cell_with_the_placeholder_url_says_what_to_set(tmp_path):
    from utils.notebooks.cells import PLACEHOLDER_URL

    out = run_cell(tmp_path, {}, with_utils=False, url=PLACEHOLDER_URL)
    assert out.returncode != 0 and "set MMFUSION_REPO_URL" in out.stderr and "MMFUSION_CLONE" in out.stderr
    assert git_calls(tmp_path) == []


def test_colab_cell_with_utils_importable_only_mounts_and_points_folders_at_drive(tmp_path):
    out = run_cell(tmp_path, {}, with_utils=True)
    assert out.returncode == 0, out.stderr
    assert "pip" not in out.stdout and git_calls(tmp_path) == []
    assert f"DATA {tmp_path / 'drive' / 'MyDrive' / 'mmfusion' / 'data'}" in out.stdout
    assert (tmp_path / "drive" / "MyDrive" / "mmfusion" / "results").is_dir()


def test_colab_cell_keeps_a_folder_the_user_set(tmp_path):
    mine = tmp_path / "my-data"
    out = run_cell(tmp_path, {"MMFUSION_DATA_DIR": str(mine)}, with_utils=True)
    assert out.returncode == 0, out.stderr
    assert f"DATA {mine}" in out.stdout and mine.is_dir()


def test_colab_setup_installs_only_a_clone_the_kernel_does_not_import(tmp_path, monkeypatch):
    from utils import colab_setup

    assert colab_setup.imports_from(REPO)  # the tests import this checkout's utils
    assert not colab_setup.imports_from(fake_clone(tmp_path / "other"))
    with pytest.raises(FileNotFoundError, match="MMFUSION_CLONE"):
        colab_setup.install(tmp_path / "empty")


def test_colab_cell_does_nothing_outside_colab(tmp_path):
    from utils.notebooks.cells import colab_cell

    out = subprocess.run([sys.executable, "-c", colab_cell()], capture_output=True, text=True, cwd=str(tmp_path))
    assert out.returncode == 0 and out.stdout == "" and out.stderr == ""
