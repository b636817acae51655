"""Every notebook in the repository runs headless through papermill on small fixtures and tiny models.

The results JSON each notebook writes (``RESULTS_JSON``) is checked: one row per trained model with the
fields tools rely on. Notebooks are committed cleared and must match their templates.
"""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path

import pytest

from . import notebook_params

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(
    p.relative_to(REPO).as_posix()
    for p in REPO.rglob("*.ipynb")
    if not any(part.startswith(".") or part in ("results", "data", "embeddings") for part in p.relative_to(REPO).parts)
)
ROW_FIELDS = {"model", "accuracy", "macro_f1", "roc_auc", "train_s_per_epoch", "inference_s", "n_params"}


def _rule(table, rel):
    for pattern, value in table.items():
        if fnmatch.fnmatch(rel, pattern):
            return value
    return None


def test_repository_has_notebooks():
    assert "notebooks/embed_model_synthetic.ipynb" in NOTEBOOKS


def test_generated_notebooks_match_their_templates():
    from utils.notebooks import drift

    assert drift(REPO) == []


@pytest.mark.parametrize("rel", NOTEBOOKS)
def test_notebook_is_committed_clean_with_parameters_cell(rel):
    nb = json.loads((REPO / rel).read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "commit notebooks cleared"
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in code)
    assert "google.colab" in "".join(code[0]["source"]), "the first code cell is the Colab cell"


@pytest.mark.slow
@pytest.mark.parametrize("rel", NOTEBOOKS)
def test_notebook_runs_headless(rel, tmp_path, tiny_bert, monkeypatch):
    import papermill as pm

    rule = _rule(notebook_params.RULES, rel)
    assert rule is not None, f"no CI parameters for {rel}: add a rule in tests/notebook_params.py"
    ctx = {"name": Path(rel).stem, "rel": rel, "tmp": tmp_path, "results_json": tmp_path / "results.json", "tiny_bert": tiny_bert}
    params = rule(ctx)
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    pm.execute_notebook(
        str(REPO / rel), str(tmp_path / "executed.ipynb"), parameters=params, kernel_name="python3",
        cwd=str(tmp_path), progress_bar=False, log_output=False,
    )
    if "RESULTS_JSON" in params:
        rows = json.loads(Path(params["RESULTS_JSON"]).read_text())
        assert isinstance(rows, list) and rows
        for row in rows:
            assert ROW_FIELDS <= set(row), f"row lacks {ROW_FIELDS - set(row)}"
            assert row["n_params"] > 0
        _scores_follow_from_the_predictions(rows, params, ctx)
        expected = _rule(notebook_params.EXPECTED_MODELS, rel)
        if expected:
            assert {r["model"] for r in rows} >= set(expected)
    report = _rule(notebook_params.EXPECTED_REPORTS, rel)
    if report:
        found = sorted(Path(params["RESULTS_DIR"]).glob(report.format(name=ctx["name"])))
        assert len(found) == 1, found
        saved = json.loads(found[0].read_text())
        assert saved["intervals"] and saved["calibration"] and saved["paired"]
        assert all(r["macro_f1_ci_low"] <= r["macro_f1_ci_high"] for r in saved["intervals"] if r["macro_f1_ci_low"] is not None)
    _output_is_tidy(tmp_path / "executed.ipynb", rel)
    check = _rule(notebook_params.CHECKS, rel)
    if check:
        check({**_notebook_defaults(rel), **params})  # what the notebook ran with: its own defaults, then CI's


def _notebook_defaults(rel: str) -> dict:
    """The literals of a notebook's parameters cell (its defaults before papermill injects CI's)."""
    import nbformat

    nb = nbformat.read(str(REPO / rel), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    defaults: dict = {}
    exec(cell.source, {}, defaults)
    return defaults


def _scores_follow_from_the_predictions(rows, params, ctx) -> None:
    """Was: 0 <= accuracy <= 1, true of any number a bug could write. Now each row's scores are recomputed by
    hand from its own confusion matrix, which must count exactly the dataset's test rows (loaded here again
    with the notebook's parameters), and every model is trained for each seed the notebook was asked for."""
    import numpy as np

    from utils import experiment as ex

    n_test = None
    if "DATASET" in params or "DATASET_OPTIONS" in params or "DATA_DIR" in params:
        given = {**_notebook_defaults(ctx["rel"]), **params}  # the notebook's own defaults, then the CI parameters
        ds = ex.load_dataset(given["DATASET"], given.get("DATA_DIR"), **dict(given.get("DATASET_OPTIONS") or {}))
        n_test = int((ds.df["split"] == "test").sum())
        if "SEED" in given and "N_SEEDS" in given:
            want = list(range(given["SEED"], given["SEED"] + given["N_SEEDS"]))
            key = lambda r: (r["model"], r.get("alignment"), r.get("method"))  # noqa: E731  (alignment rows: per method)
            for k in {key(r) for r in rows}:
                assert {r["seed"] for r in rows if key(r) == k} == set(want), k  # (a lambda sweep repeats lambda = 1)
    for row in rows:
        if row.get("task") == "multilabel" or "confusion_matrix" not in row:
            continue
        cm = np.asarray(row["confusion_matrix"], dtype=float)
        assert cm.sum() == row["n_test"], (row["model"], cm.sum(), row["n_test"])
        if n_test is not None:
            assert row["n_test"] == n_test, (row["model"], row["n_test"], n_test)
        assert row["accuracy"] == pytest.approx(np.trace(cm) / cm.sum()), row["model"]
        present = (cm.sum(0) + cm.sum(1)) > 0
        tp = np.diag(cm)
        f1 = np.divide(2 * tp, cm.sum(0) + cm.sum(1), out=np.zeros_like(tp), where=present)
        assert row["macro_f1"] == pytest.approx(f1[present].mean()), row["model"]


def _output_is_tidy(executed: Path, rel: str) -> None:
    """What a notebook shows is clean (issue 19): no progress-bar warning, no routine INFO lines dressed as errors
    on stderr; in the embedding notebooks the interval table is the tidy one (value [low, high] in one cell)."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    stderr = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                     if o.get("output_type") == "stream" and o.get("name") == "stderr")
    assert "IProgress not found" not in stderr and "TqdmWarning" not in stderr, stderr[:2000]
    routine = [line for line in stderr.splitlines() if " INFO " in f" {line}" or line.startswith("INFO")]
    assert not routine, routine[:5]
    if Path(rel).name.startswith("embed_model_"):
        shown = "".join(str(o.get("data", {}).get("text/plain", "")) for c in nb.cells if c.cell_type == "code"
                        for o in c.get("outputs", []) if o.get("output_type") == "execute_result")
        import re

        assert re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", shown), "no tidy interval table shown"
        assert not re.search(r"\d\.\d{6}", shown), "raw floats (six decimals) shown"


@pytest.mark.parametrize("rel", NOTEBOOKS)
def test_papermill_reads_every_parameter(rel):
    """papermill must parse each line of the parameters cell (a '=' inside a comment breaks its parser)."""
    import nbformat
    from papermill.translators import PythonTranslator

    nb = nbformat.read(str(REPO / rel), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = [ln.split("=", 1)[0].strip() for ln in cell.source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    parsed = [p.name for p in PythonTranslator.inspect(cell)]
    assert parsed == assigned
