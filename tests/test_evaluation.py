"""utils.evaluation on simulated data: intervals that cover at the nominal rate, calibration, subgroups,
Shapley values, and weighted scores that agree with utils.metrics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from utils import evaluation as ev
from utils.metrics import classification_metrics


def normal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def simulated_binary(rng, n: int, d: float):
    """Balanced classes (fixed counts), scores N(d, 1) for positives and N(0, 1) for negatives, threshold d/2."""
    y = np.repeat([0, 1], n // 2)
    score = rng.normal(0, 1, n) + d * y
    return y, 1 / (1 + np.exp(-(score - d / 2)))


def test_bootstrap_intervals_cover_the_true_value_at_the_nominal_rate():
    # population values: AUC = Phi(d / sqrt 2); with the threshold halfway, TPR = TNR = Phi(d / 2), so both
    # classes have precision = recall = Phi(d / 2) and macro-F1 -> Phi(d / 2)
    rng = np.random.default_rng(0)
    d, n, reps = 1.2, 300, 200
    true = {"roc_auc": normal_cdf(d / math.sqrt(2)), "macro_f1": normal_cdf(d / 2)}
    hits = {k: 0 for k in true}
    for r in range(reps):
        y, p = simulated_binary(rng, n, d)
        ci = ev.bootstrap_intervals(y, p, "binary", n_resamples=1000, seed=r)
        for k, v in true.items():
            hits[k] += ci[f"{k}_ci_low"] <= v <= ci[f"{k}_ci_high"]
    coverage = {k: h / reps for k, h in hits.items()}
    # nominal 0.95 (600 replications measured 0.955 to 0.967); with 200 the standard error is about 0.015
    assert all(0.89 <= c <= 0.99 for c in coverage.values()), coverage


def test_intervals_narrow_with_more_rows_and_are_reproducible():
    rng = np.random.default_rng(1)
    y1, p1 = simulated_binary(rng, 200, 1.0)
    y2, p2 = simulated_binary(rng, 2000, 1.0)
    a = ev.bootstrap_intervals(y1, p1, "binary")
    b = ev.bootstrap_intervals(y2, p2, "binary")
    assert b["macro_f1_ci_high"] - b["macro_f1_ci_low"] < 0.5 * (a["macro_f1_ci_high"] - a["macro_f1_ci_low"])
    assert ev.bootstrap_intervals(y1, p1, "binary") == a  # seeded


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_unit_weights_reproduce_classification_metrics(task):
    rng = np.random.default_rng(2)
    n = 300
    if task == "binary":
        y = rng.integers(0, 2, n)
        p = np.round(np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1), 2)  # rounded: ties in the scores
        classes = ["neg", "pos"]
    elif task == "multiclass":
        y = rng.integers(0, 4, n)
        y[y == 3] = 2  # class 3 absent from the labels
        z = rng.normal(size=(n, 4))
        z[np.arange(n), y] += 1.0
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        classes = list("abcd")
    else:
        y = (rng.random((n, 3)) < 0.3).astype(np.float32)
        p = np.clip(0.4 * y + 0.6 * rng.random((n, 3)), 0, 1)
        classes = list("abc")
    want = classification_metrics(y, p, task, classes)
    got = ev.ScoreTable(y, [p], task).point()
    for k in ev.METRICS:
        assert got[k][0] == pytest.approx(want[k], abs=1e-6), k


def test_resample_weights_are_stratified_and_chunked():
    strata = np.array([0] * 30 + [1] * 70)
    chunks = list(ev.resample_weights(strata, n_resamples=250, seed=0, max_cells=100 * 64))
    W = np.concatenate(chunks)
    assert W.shape == (250, 100) and len(chunks) == 4
    assert (W[:, :30].sum(1) == 30).all() and (W[:, 30:].sum(1) == 70).all()
    again = np.concatenate(list(ev.resample_weights(strata, n_resamples=250, seed=0, max_cells=100 * 64)))
    assert (W == again).all()


def test_paired_difference_of_a_model_with_itself_is_zero_and_a_better_model_wins():
    rng = np.random.default_rng(3)
    y, good = simulated_binary(rng, 400, 2.0)
    _, weak = simulated_binary(np.random.default_rng(4), 400, 0.3)
    table = ev.ScoreTable(y, [good, good, weak], "binary")
    s = table.samples(ev.label_strata(y, "binary"))
    pt = table.point()
    same = ev.paired_difference(s["macro_f1"][:, 0], s["macro_f1"][:, 1], pt["macro_f1"][0], pt["macro_f1"][1])
    assert same["diff"] == 0 and same["ci_low"] == 0 and same["ci_high"] == 0
    better = ev.paired_difference(s["roc_auc"][:, 0], s["roc_auc"][:, 2], pt["roc_auc"][0], pt["roc_auc"][2])
    assert better["ci_low"] > 0 and better["p_value"] < 0.01


def test_ece_of_calibrated_probabilities_is_near_zero():
    rng = np.random.default_rng(5)
    p = rng.dirichlet(np.ones(4) * 0.7, size=20000)
    y = (p.cumsum(1) > rng.random((len(p), 1))).argmax(1)  # y ~ Categorical(p): calibrated by construction
    assert ev.ece(y, p, "multiclass") < 0.02
    pb = rng.random(20000)
    assert ev.ece((rng.random(20000) < pb).astype(int), pb, "binary") < 0.02


def test_temperature_scaling_fixes_over_confident_probabilities():
    rng = np.random.default_rng(6)

    def sample(n):
        logits = rng.normal(0, 1.5, (n, 5))
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        y = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
        return 3.0 * logits, y  # the model's logits are 3x too sharp

    val_logits, y_val = sample(4000)
    test_logits, y_test = sample(4000)
    before = ev.logits_probabilities(test_logits, "multiclass")
    T = ev.fit_temperature(val_logits, y_val, "multiclass")
    after = ev.apply_temperature(test_logits, T, "multiclass")
    assert T == pytest.approx(3.0, rel=0.15)
    assert ev.ece(y_test, before, "multiclass") > 0.1
    assert ev.ece(y_test, after, "multiclass") < 0.03
    assert ev.brier(y_test, after, "multiclass") < ev.brier(y_test, before, "multiclass")
    # binary logits [N, 1] work the same way
    z = rng.normal(0, 2, 4000)
    yb = (rng.random(4000) < 1 / (1 + np.exp(-z))).astype(int)
    assert ev.fit_temperature((0.4 * z)[:, None], yb, "binary") == pytest.approx(0.4, rel=0.15)


def test_reliability_bins_count_every_row():
    rng = np.random.default_rng(7)
    p = rng.random(500)
    bins = ev.reliability_bins((rng.random(500) < p).astype(int), p, "binary", n_bins=10)
    assert bins["count"].sum() == 500 and len(bins) == 10


def test_a_planted_subgroup_gap_is_found_and_small_groups_are_listed():
    rng = np.random.default_rng(8)
    n = 600
    y = rng.integers(0, 3, n)
    groups = np.where(np.arange(n) % 2 == 0, "A", "B").astype(object)
    groups[:7] = "C"
    z = rng.normal(0, 1, (n, 3))
    z[np.arange(n), y] += np.where(groups == "B", 0.0, 3.0)  # group B: no signal
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    table, gaps = ev.subgroup_metrics(y, {"model": [p]}, groups, "multiclass", min_size=20)
    c = table[table.group == "C"].iloc[0]
    assert not c.scored and "only 7 test rows" in c.reason and np.isnan(c.macro_f1)
    g = gaps[gaps.metric == "macro_f1"].iloc[0]
    assert g.worst_group == "B" and g.best_group == "A" and g.ci_low > 0.3
    a, b = (table[table.group == k].iloc[0] for k in ("A", "B"))
    assert a.macro_f1_ci_low > b.macro_f1_ci_high


def test_no_gap_where_none_was_planted():
    rng = np.random.default_rng(9)
    n = 1000
    y = rng.integers(0, 2, n)
    p = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 2 * y - 1)))
    _, gaps = ev.subgroup_metrics(y, {"m": [p]}, rng.choice(["x", "y"], n), "binary")
    for g in gaps.itertuples():
        assert g.gap > 0 and g.ci_low < 0 < g.ci_high, g  # best minus worst, but the data cannot tell them apart


def test_age_bands_and_group_labels():
    bands = ev.age_bands(pd.Series([5, 18, 29.5, 44, 60, 74, 75, 90, None, "63Y"]))
    assert list(bands) == ["<18", "18-29", "18-29", "30-44", "60-74", "60-74", "75+", "75+", "missing", "60-74"]
    ages = pd.Series(np.arange(20, 80))
    assert set(ev.group_labels(ages, "patient_age")) == {"18-29", "30-44", "45-59", "60-74", "75+"}
    assert len(set(ev.group_labels(np.arange(100.0), "bmi"))) == 4  # quartiles
    assert list(ev.group_labels(pd.Series(["F", None, "M", " "]), "sex")) == ["F", "missing", "M", "missing"]
    assert list(ev.group_labels(pd.Series(["45", "70", None]), "Age")) == ["45-59", "60-74", "missing"]
    assert list(ev.group_labels(pd.Series([1, 2, 1]), "image_count")) == ["1", "2", "1"]  # not an age column


def test_shapley_values_by_hand_and_efficiency():
    v = {frozenset(): 0.0, frozenset("a"): 0.3, frozenset("b"): 0.1, frozenset("ab"): 0.6}
    phi = ev.shapley_values(v, ["a", "b"])
    assert phi["a"] == pytest.approx(0.4) and phi["b"] == pytest.approx(0.2)
    rng = np.random.default_rng(10)
    players = ["text", "image", "audio", "tabular"]
    values = {s: rng.random(5) for s in ev.all_subsets(players)}  # arrays: one value per resample
    phi = ev.shapley_values(values, players)
    total = sum(phi.values())
    assert np.allclose(total, values[frozenset(players)] - values[frozenset()])
    with pytest.raises(ValueError, match="every subset"):
        ev.shapley_values({frozenset(): 0.0, frozenset("a"): 1.0}, ["a", "b"])


def test_prior_predictor_scores_chance_not_below():
    y_train = np.repeat([0, 1, 2, 3], 100)
    y_test = np.repeat([0, 1, 2, 3], 250)
    proba = ev.prior_proba(y_train, "multiclass", 4, len(y_test))
    draws = ev.prior_predictions(y_train, "multiclass", 4, len(y_test), seed=0)
    table = ev.ScoreTable(y_test, [proba, proba], "multiclass", hard={1: draws})
    pt = table.point()
    assert pt["macro_f1"][0] == pytest.approx(0.1)  # majority class: F1 0.4 on one class of four
    assert pt["macro_f1"][1] == pytest.approx(0.25, abs=0.04)  # guessing with the class shares
    assert pt["roc_auc"][1] == pytest.approx(0.5)


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_bootstrap_on_a_torch_device_gives_the_numpy_samples(task):
    """ScoreTable(device=...) runs the weighted counts and the ROC-AUC tie-group sums in torch (float64) on that
    device -- on a GPU in the report -- from the same numpy-drawn weights: the samples equal numpy's. Exercised
    here with the CPU as the device; ties and an absent class included."""
    import torch

    rng = np.random.default_rng(7)
    n = 240
    if task == "binary":
        y = rng.integers(0, 2, n)
        probas = [np.round(np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1), 2) for _ in range(3)]  # rounded: ties
    elif task == "multiclass":
        y = rng.integers(0, 3, n)
        probas = []
        for _ in range(3):
            z = rng.normal(size=(n, 4))
            z[np.arange(n), y] += 1.0
            probas.append(np.round(np.exp(z) / np.exp(z).sum(1, keepdims=True), 2))
    else:
        y = (rng.random((n, 3)) < 0.3).astype(np.float32)
        probas = [np.round(np.clip(0.4 * y + 0.6 * rng.random((n, 3)), 0, 1), 2) for _ in range(2)]
    strata = ev.label_strata(y, task)
    want = ev.ScoreTable(y, probas, task).samples(strata, n_resamples=300, seed=3, max_cells=240 * 64)
    got = ev.ScoreTable(y, probas, task, device=torch.device("cpu")).samples(strata, n_resamples=300, seed=3,
                                                                             max_cells=240 * 64)
    for m in ev.METRICS:
        assert got[m].shape == want[m].shape == (300, len(probas))
        np.testing.assert_allclose(got[m], want[m], rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=m)
    assert np.isfinite(want["roc_auc"]).all()


def test_bootstrap_device_goes_to_a_gpu_only_where_it_pays(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert ev.bootstrap_device("auto", n_rows=5000, n_resamples=1000) == torch.device("cuda")
    assert ev.bootstrap_device("auto", n_rows=50, n_resamples=1000) is None  # small: the copies cost more
    assert ev.bootstrap_device("cpu", 10**6, 1000) is None and ev.bootstrap_device("cuda:1") == torch.device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ev.bootstrap_device("auto", n_rows=10**6, n_resamples=1000) is None
    with pytest.raises(RuntimeError, match="CUDA"):
        ev.bootstrap_device("cuda")
