"""The package's shape, checked by tools rather than by eye: layers (import-linter), no import cycles,
no private name imported from another module, one training loop, deprecated aliases that still work."""

from __future__ import annotations

import ast
import importlib
import warnings
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


@pytest.mark.parametrize("old, name, new", [
    ("utils.runs", "run_seeds", "utils.experiment.runs"),
    ("utils.precision", "resolve_precision", "utils.runtime"),
    ("utils.train_batches", "fit_batches", "utils.train"),
    ("utils.extractors.generate", "generate", "utils.experiment.generate"),
    ("utils.align", "compare_alignments", "utils.experiment.alignment"),
    ("utils.models.guided", "cache_token_features", "utils.token_features"),
    ("utils.models.full", "train_full_models", "utils.experiment.baselines"),
    ("utils.models.classic", "train_logreg", "utils.experiment.baselines"),
    ("utils.config", "resolve_device", "utils.runtime"),
])
def test_old_names_still_work_for_one_release_with_a_warning(old, name, new):
    module = importlib.import_module(old)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obj = getattr(module, name)
    assert obj is getattr(importlib.import_module(new), name)
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught)
    with pytest.raises(AttributeError):
        getattr(module, "no_such_name_here")
