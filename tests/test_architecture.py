"""The package's shape, checked by tools rather than by eye: layers (import-linter), no import cycles,
no private name imported from another module, one training loop, no aliases of moved names."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "utils"


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(mod: str, node: ast.ImportFrom, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".") if is_package else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def test_import_linter_contracts_are_kept():
    import subprocess
    import sys

    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True))"
    out = subprocess.run([sys.executable, "-c", code, str(REPO / "pyproject.toml")], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 kept, 0 broken" in out.stdout


def test_no_import_cycles_between_modules():
    import grimp

    graph = grimp.build_graph("utils")
    index, low, stack, on, cycles = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in sorted(graph.modules):
        if m not in index:
            visit(m)
    assert cycles == []


def test_no_module_imports_a_private_name_from_another():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        mod = module_name(path)
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = resolve(mod, node, path.name == "__init__.py")
                if not target.startswith("utils") or target == mod:
                    continue
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        offenders.append(f"{mod}: from {target} import {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("utils") and any(p.startswith("_") for p in alias.name.split(".")[1:]):
                        offenders.append(f"{mod}: import {alias.name}")
    # tests and benchmarks follow the same rule
    for folder in ("tests", "benchmarks"):
        for path in (REPO / folder).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("utils"):
                    offenders += [f"{folder}/{path.name}: from {node.module} import {a.name}" for a in node.names
                                  if a.name.startswith("_") and not a.name.startswith("__")]
    assert offenders == []


def test_one_training_loop():
    """Only utils/train/loop.py steps an optimizer (plus the transformers.Trainer subclass, which is the
    Trainer's own loop): every other trainer goes through train_loop."""
    steppers = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if ".step()" in text or "loss.backward()" in text:
            steppers.append(path.relative_to(REPO).as_posix())
    assert steppers == ["utils/train/loop.py"]


OLD_MODULES = ["utils.runs", "utils.precision", "utils.train_batches", "utils.extractors.generate", "utils.deprecation"]


def test_old_module_paths_are_gone():
    """The 0.1.0 package keeps no aliases of modules that moved in the layout change. Checked in a fresh
    interpreter whose site-packages are on the path but whose .pth files are not run (-S), so only this checkout
    answers, not an editable install of another one."""
    import json
    import subprocess
    import sys

    code = ("import importlib.util, json, site, sys; sys.path += site.getsitepackages(); "
            "print(json.dumps([m for m in sys.argv[1:] if importlib.util.find_spec(m) is not None]))")
    out = subprocess.run([sys.executable, "-S", "-c", code, *OLD_MODULES, "utils.experiment.runs"], capture_output=True,
                         text=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ["utils.experiment.runs"]  # the new home is found, no old path is


@pytest.mark.parametrize("old, name, new", [
    ("utils.align", "compare_alignments", "utils.experiment.alignment"),
    ("utils.align", "lambda_sweep", "utils.experiment.alignment"),
    ("utils.models.guided", "cache_token_features", "utils.token_features"),
    ("utils.models.guided", "train_guided", "utils.experiment.baselines"),
    ("utils.models.full", "train_full_models", "utils.experiment.baselines"),
    ("utils.models.full", "peak_memory_mb", "utils.runtime"),
    ("utils.models.classic", "train_logreg", "utils.experiment.baselines"),
    ("utils.config", "resolve_device", "utils.runtime"),
])
def test_moved_names_live_only_in_their_new_home(old, name, new):
    assert getattr(importlib.import_module(new), name)
    with pytest.raises(AttributeError):
        getattr(importlib.import_module(old), name)


def test_no_module_forwards_names_with_a_deprecation_warning():
    """No module ``__getattr__`` that warns and forwards (the removed ``moved()`` shims), anywhere in the package;
    a module may still silence another library's DeprecationWarning."""
    import ast

    offenders = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            hooks = ([node] if isinstance(node, ast.FunctionDef) and node.name == "__getattr__" else
                     [node.value] if isinstance(node, ast.Assign) and any(
                         isinstance(t, ast.Name) and t.id == "__getattr__" for t in node.targets) else [])
            for hook in hooks:
                if any(isinstance(n, ast.Name) and n.id in ("DeprecationWarning", "moved", "moved_module")
                       or isinstance(n, ast.Attribute) and n.attr == "warn" for n in ast.walk(hook)):
                    offenders.append(path.relative_to(REPO).as_posix())
    assert offenders == []
