"""Issue 21: seeds normalised in one place (numpy integers accepted, repeats and non-integers refused), and
logistic-regression rows that reach the report instead of being dropped without a word."""

from __future__ import annotations

import numpy as np
import pytest

from utils import experiment as ex
from utils.experiment.baselines import proba_logits, train_logreg
from utils.experiment.runs import full_config
from utils.runtime import seed_list

from .planted import planted


@pytest.mark.parametrize("given,want", [
    (0, [0]), (np.int64(3), [3]), ([np.int32(1), 2], [1, 2]), (range(3), [0, 1, 2]), (np.arange(2), [0, 1]),
])
def test_seed_list_accepts_integers_of_any_kind(given, want):
    out = seed_list(given)
    assert out == want and all(type(s) is int for s in out)


@pytest.mark.parametrize("given,match", [
    ([0, 0], "more than once"), ([1, 2, 1], r"\[1\]"), ([], "at least one"), (True, "integer"), ([0.5], "integer"),
    ("0", "integer"), ([None], "integer"),
])
def test_seed_list_refuses_what_would_count_twice_or_is_not_a_seed(given, match):
    with pytest.raises(ValueError, match=match):
        seed_list(given)


def test_train_heads_takes_a_numpy_seed_and_refuses_a_repeated_one():
    ds, emb = planted(n=200)
    rows = ex.train_heads(ds, emb, ["text_only"], epochs=2, seeds=np.int64(4), show_progress=False)
    assert [r["seed"] for r in rows] == [4]
    with pytest.raises(ValueError, match="more than once"):
        ex.train_heads(ds, emb, ["text_only"], epochs=2, seeds=[1, 1], show_progress=False)
    # the run configs and the CLI go through the same function
    assert full_config({"kind": "embedding", "seed": np.int64(2)})["seeds"] == [2]
    with pytest.raises(ValueError, match="more than once"):
        full_config({"kind": "embedding", "seeds": [3, 3]})
    from utils.__main__ import seeds_option

    with pytest.raises(SystemExit, match="more than once"):
        seeds_option("0,1,0")


def test_logreg_rows_reach_the_report_beside_the_heads():
    ds, emb = planted(n=400)
    rows = ex.train_heads(ds, emb, ["early_fusion"], epochs=5, seeds=[0], show_progress=False)
    rows += train_logreg(ds, emb, [0, 1])
    assert [r["model"] for r in rows] == ["early_fusion", "logreg", "logreg"]
    assert len(rows.outputs) == 3 and all(o is not None for o in rows.outputs)
    rep = ex.report(rows, n_resamples=200, shapley=True)
    iv = rep.intervals.set_index("model")
    assert set(iv.index) == {"early_fusion", "logreg"} and iv.loc["logreg", "seeds"] == 2
    # the report's point estimate is the row's own test macro-F1 (the same probabilities)
    assert iv.loc["logreg", "macro_f1"] == pytest.approx(np.mean([r["macro_f1"] for r in rows[1:]]), abs=1e-9)
    assert "logreg" in set(rep.calibration["model"])
    assert "logreg" not in set(rep.shapley["model"]) if len(rep.shapley) else True  # only heads are retrained


def test_rows_without_outputs_are_named_in_the_report_notes():
    ds, emb = planted(n=300)
    rows = ex.train_heads(ds, emb, ["text_only"], epochs=2, seeds=[0], show_progress=False)
    rows += [dict(rows[0], model="from_elsewhere")]  # a plain row: no outputs
    assert rows.outputs[-1] is None
    rep = ex.report(rows, n_resamples=100, shapley=False)
    assert any("from_elsewhere" in n for n in rep.notes)


def test_proba_logits_give_the_probabilities_back():
    import torch

    from utils.models.losses import probabilities

    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert np.allclose(probabilities(torch.from_numpy(proba_logits(p, "multiclass")), "multiclass").numpy(), p, atol=1e-6)
    b = np.array([0.9, 0.25])
    assert np.allclose(probabilities(torch.from_numpy(proba_logits(b, "binary")), "binary").numpy(), b, atol=1e-6)


def _split_table(tmp_path, header="split"):
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 60
    split = ["train"] * 30 + ["val"] * 15 + ["test"] * 15
    pd.DataFrame({"text": [f"record {i}" for i in range(n)], "label": rng.choice(["a", "b"], n),
                  header: split}).to_csv(tmp_path / "records.csv", index=False)
    return split


@pytest.mark.parametrize("header", ["split", "Split"])
def test_a_tables_own_split_column_is_used_without_being_named(tmp_path, caplog, header):
    import logging

    from utils import data

    want = _split_table(tmp_path, header)
    with caplog.at_level(logging.INFO, logger="utils.data.table"):
        ds = data.load("table", root=tmp_path, image_column=None)
    assert ds.df["split"].tolist() == want  # 30 / 15 / 15 as written, not a re-split 44 / 8 / 8
    assert any("own" in r.getMessage() and header in r.getMessage() for r in caplog.records)
    made = data.load("table", root=tmp_path, image_column=None, resplit=True)
    assert made.df["split"].tolist() != want and set(made.df["split"]) == {"train", "val", "test"}
    with pytest.raises(data.DatasetError, match="contradict"):
        data.load("table", root=tmp_path, image_column=None, split_column=header, resplit=True)


def test_result_row_takes_the_objects_the_caller_has():
    """Issue 21: result_row took 16 parameters, re-spread from objects the caller already had (the seed and the
    config, the split sizes, the metrics computed from the labels and probabilities it was also given). It takes the
    labels and probabilities, the fit, the config and the split rows; the figures here are worked out by hand."""
    import torch

    from utils.data.schema import DatasetSpec
    from utils.experiment.rows import result_row
    from utils.train import FitResult, TrainConfig

    spec = DatasetSpec("hand", "binary", ["no", "yes"])
    y = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    proba = np.array([0.2, 0.8, 0.4, 0.3, 0.9, 0.6, 0.1, 0.7])  # predicted 0 1 0 0 1 1 0 1: rows 2 and 5 wrong
    fit = FitResult(torch.nn.Linear(3, 2), best_epoch=2, epochs_run=4, train_seconds=1.0, history=[{"epoch": 1}])
    config = TrainConfig(epochs=4, seed=7, class_weights=np.array([1.0, 2.0]))
    parts = {"train": np.arange(5), "val": np.arange(2), "test": np.arange(8)}
    row = result_row("early_fusion", spec, y, proba, fit=fit, config=config, parts=parts, modalities=("text",),
                     inference_s=0.5, note="kept")
    assert row["accuracy"] == pytest.approx(6 / 8) and row["macro_f1"] == pytest.approx(0.75)  # 3/4 right per class
    assert row["seed"] == 7 and row["train_config"]["seed"] == 7 and row["train_config"]["class_weights"] == [1.0, 2.0]
    assert (row["n_train"], row["n_val"], row["n_test"]) == (5, 2, 8)
    assert row["n_params"] == 3 * 2 + 2 and row["train_s_per_epoch"] == pytest.approx(0.25) and row["best_epoch"] == 2
    assert row["modalities"] == ["text"] and row["family"] == "embedding" and row["note"] == "kept"
    assert row["macro_f1_ci_low"] <= row["macro_f1"] <= row["macro_f1_ci_high"]
    # a model trained without the loop: seconds and size given, the seed given when its config has none
    plain = result_row("logreg", spec, y, proba, parts=parts, config={"C": 1.0}, seed=3, train_s=2.0, n_params=9)
    assert (plain["seed"], plain["train_s_per_epoch"], plain["n_params"], plain["train_config"]) == (3, 2.0, 9, {"C": 1.0})
    with pytest.raises(TypeError, match="no seed"):
        result_row("logreg", spec, y, proba, config={"C": 1.0})
