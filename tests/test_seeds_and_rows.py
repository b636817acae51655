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
