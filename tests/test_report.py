"""report(): intervals in the result rows, calibration, a planted subgroup gap, missing modalities, Shapley values,
and modality dropout, on a small dataset whose text carries the label and whose image is noise."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from utils import experiment as ex
from utils.models.fusion import HeadConfig, build_head, drop_modalities

from .planted import planted


@pytest.fixture(scope="module")
def trained():
    ds, emb = planted(n=600, classes=3)
    rows = ex.train_heads(ds, emb, ["early_fusion", "late_fusion", "text_only", "image_only"], epochs=15,
                          seeds=[0, 1], show_progress=False)
    return ds, emb, rows


@pytest.fixture(scope="module")
def rep(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    r = ex.report(trained[2], out_dir=out, name="planted")
    r.out = out
    return r


def test_result_rows_carry_intervals_and_calibration(trained):
    rows = trained[2]
    for r in rows:
        assert r["macro_f1_ci_low"] <= r["macro_f1"] <= r["macro_f1_ci_high"]
        assert r["roc_auc_ci_low"] <= r["roc_auc"] <= r["roc_auc_ci_high"]
    # ECE (15 equal-width bins of the top probability) and Brier, computed here by hand from the test outputs
    y = rows.recipe.y[rows.recipe.parts["test"]]
    for r, out in zip(rows, rows.outputs):
        p = np.asarray(out.test_proba, dtype=np.float64)
        conf, hit = p.max(1), (p.argmax(1) == y).astype(float)
        bins = np.minimum((conf * 15).astype(int), 14)
        ece = sum(abs(hit[bins == b].mean() - conf[bins == b].mean()) * (bins == b).mean() for b in np.unique(bins))
        assert r["ece"] == pytest.approx(ece, abs=1e-9), r["model"]
        assert r["brier"] == pytest.approx(np.mean(((p - np.eye(p.shape[1])[y]) ** 2).sum(1)), abs=1e-9), r["model"]
    text = {r["model"]: r for r in rows if r["seed"] == 0}
    assert text["text_only"]["brier"] < 0.5 < text["image_only"]["brier"]  # the text carries the label, the image is noise
    json.dumps(list(rows))  # still plain JSON rows
    assert ex.results_table(rows).shape[0] == 4


def test_the_results_plot_draws_a_multi_seed_table(trained, tmp_path):
    # the spread over seeds is drawn as error bars; labelling the bars used to trip over the error-bar containers
    table = ex.results_table(trained[2])
    assert "macro_f1_std" in table.columns
    ex.plot_results(table, tmp_path / "results.png")
    assert (tmp_path / "results.png").stat().st_size > 5_000


def test_intervals_table_and_paired_comparisons(trained, rep):
    iv = rep.intervals.set_index("model")
    assert list(iv.index) == ["early_fusion", "late_fusion", "text_only", "image_only"]
    assert (iv.macro_f1_ci_low <= iv.macro_f1).all() and (iv.macro_f1 <= iv.macro_f1_ci_high).all()
    assert (iv.seeds == 2).all() and iv.macro_f1_std.notna().all()
    p = rep.paired.set_index(["model_a", "model_b", "metric"])
    assert p.loc[("text_only", "image_only", "macro_f1"), "ci_low"] > 0.2  # text carries the label
    assert len(rep.paired) == 6 * 2


def test_calibration_before_and_after_temperature_scaling(rep):
    cal = rep.calibration.set_index("model")
    assert {"ece", "brier", "temperature", "ece_after", "brier_after"} <= set(cal.columns)
    assert (cal.temperature > 0).all()
    assert set(rep.reliability.stage) == {"before", "after temperature scaling"}


def test_the_planted_subgroup_gap_is_found(rep):
    g = rep.subgroup_gaps.set_index(["model", "metric"]).loc[("text_only", "macro_f1")]
    assert g.worst_group == "B" and g.best_group == "A" and g.ci_low > 0.1
    c = rep.subgroups[(rep.subgroups.group == "C")]
    assert len(c) == 4 and not c.scored.any() and c.reason.str.contains("test rows").all()
    assert any("too small to score" in n for n in rep.notes)


def test_removing_the_uninformative_modality_changes_nothing_and_the_informative_one_drops(rep):
    m = rep.missing.set_index(["model", "modality", "stand_in"])
    for model in ("early_fusion", "late_fusion"):
        for kind in ("mean", "zeros"):
            assert abs(m.loc[(model, "image", kind), "macro_f1_drop"]) < 0.03
            assert m.loc[(model, "text", kind), "macro_f1_drop"] > 0.3
            assert m.loc[(model, "text", kind), "macro_f1_drop_ci_low"] > 0.2


def test_shapley_values_sum_to_the_gain_over_the_empty_set(trained, rep):
    rows = trained[2]
    sh = rep.shapley
    for model, part in sh.groupby("model"):
        full = np.mean([r["macro_f1"] for r in rows if r["model"] == model])
        assert part.value_full.iloc[0] == pytest.approx(full, abs=1e-6)
        assert part.shapley.sum() == pytest.approx(part.value_full.iloc[0] - part.value_empty.iloc[0], abs=1e-9)
        by = part.set_index("modality").shapley
        assert by["text"] > 0.3 and abs(by["image"]) < 0.05  # the noise modality adds (almost) nothing
    subsets = rep.shapley_subsets
    # early fusion on one modality is the single-modality head: reused, not retrained
    assert set(subsets[(subsets.model == "early_fusion") & (subsets.subset == "text")].source) == {"rows of text_only"}
    assert set(subsets[(subsets.model == "late_fusion") & (subsets.subset == "text")].source) == {"late_fusion trained on the subset"}


def test_report_is_saved_with_the_results(rep):
    saved = json.loads((rep.out / "planted_report.json").read_text())
    assert {"intervals", "paired", "calibration", "subgroups", "subgroup_gaps", "missing", "shapley"} <= set(saved)
    for fig in ("reliability", "subgroups", "missing", "shapley", "confusion", "roc_pr"):
        assert (rep.out / f"planted_{fig}.png").stat().st_size > 5_000
        assert (rep.out / f"planted_{fig}.pdf").read_bytes()[:5] == b"%PDF-"  # a vector copy for a paper
        assert rep.paths[f"{fig}_pdf"] == str(rep.out / f"planted_{fig}.pdf")
    text = (rep.out / "planted_report.txt").read_text()
    for heading in ("Paired differences", "Calibration", "Worst-group gaps", "Missing modality", "Shapley values"):
        assert heading in text


def test_report_needs_train_heads_rows_and_known_columns(trained):
    with pytest.raises(TypeError, match="rows returned by train_heads"):
        ex.report(list(trained[2]))
    with pytest.raises(ValueError, match="no column"):
        ex.report(trained[2], subgroups=["scanner"], shapley=False, figures=False)
    with pytest.raises(TypeError, match="unknown option"):
        ex.report(trained[2], n_bootstrap=10)


def test_explicit_columns_are_banded_and_binary_tasks_work():
    ds, emb = planted(n=400, classes=2, seed=1)
    rows = ex.train_heads(ds, emb, ["early_fusion", "text_only"], epochs=8, show_progress=False)
    rep = ex.report(rows, subgroups=["age"], n_resamples=200, figures=False)
    assert set(rep.subgroups.group) <= {"18-29", "30-44", "45-59", "60-74", "75+"}
    assert rep.intervals.roc_auc.notna().all() and len(rep.shapley) == 2


def test_modality_dropout_blanks_one_modality_of_some_rows_in_training_only():
    torch.manual_seed(0)
    x = torch.ones(20000, 5)
    y = drop_modalities(x, [3, 2], 0.4)
    lost_text, lost_image = (y[:, 0] == 0).float().mean(), (y[:, 3] == 0).float().mean()
    assert lost_text + lost_image == pytest.approx(0.4, abs=0.02)
    assert not ((y[:, 0] == 0) & (y[:, 3] == 0)).any()  # never both
    head = build_head("late_fusion", {"text": 3, "image": 2}, 2, HeadConfig(modality_dropout=0.5))
    head.eval()
    assert torch.equal(head.drop(x[:8]), x[:8])
    with pytest.raises(ValueError, match="modality_dropout"):
        HeadConfig(modality_dropout=1.0)


def test_modality_dropout_makes_a_fusion_head_robust_to_a_missing_modality():
    # both modalities carry the label: without dropout late fusion leans on both, with it either one goes further
    ds, emb = planted(n=800, classes=3, redundant=True, seed=2, noise=4.0)
    drops = {}
    for p in (0.0, 0.5):
        rows = ex.train_heads(ds, emb, ["late_fusion"], epochs=30, seeds=[0], modality_dropout=p, show_progress=False)
        assert rows[0]["modality_dropout"] == p
        rep = ex.report(rows, n_resamples=200, figures=False, shapley=False)
        m = rep.missing[rep.missing.stand_in == "mean"]
        drops[p] = m.macro_f1_drop.max()
    # measured: 0.29 without dropout, 0.15 with p = 0.5 (late fusion, seed 0)
    assert drops[0.5] < drops[0.0] - 0.07, drops


def test_the_synthetic_dataset_lists_how_each_image_was_drawn_as_subgroups():
    ds = ex.load_dataset("synthetic", n=120)
    assert ds.spec.extra["subgroups"] == ["shape", "background"]
    assert set(ds.df["shape"]) == {"circle", "square", "triangle", "diamond"}
    assert set(ds.df["background"]) == {"noise", "stripes", "checks"}


def test_the_confusion_matrix_shows_the_head_best_on_validation_and_curves_every_head(trained, rep):
    from utils.evaluation import logits_probabilities
    from utils.metrics import classification_metrics

    rows = trained[2]
    recipe = rows.recipe
    y_val = recipe.y[recipe.parts["val"]]
    by_val = {}
    for i, r in enumerate(rows):
        p = logits_probabilities(rows.outputs[i].val_logits, "multiclass")
        by_val.setdefault(r["model"], []).append(classification_metrics(y_val, p, "multiclass", recipe.ds.spec.classes)["macro_f1"])
    best = max(by_val, key=lambda m: np.mean(by_val[m]))
    assert rep.curves["best"] == best != "image_only"
    title = rep.figures["confusion"].axes[0].get_title()
    assert title.startswith(best.replace("_", " ") + " (best on validation)")
    # the cell counts are the test rows of that head's seed-mean prediction
    y = rep.curves["y_test"]
    pred = rep.curves["proba"][best].argmax(axis=1)
    cells = [t for t in rep.figures["confusion"].axes[0].texts]
    assert sum(int(t.get_text()) for t in cells) == len(y) and int(cells[0].get_text()) == int(((y == 0) & (pred == 0)).sum())
    roc, pr = rep.figures["roc_pr"].axes[:2]
    labels = [t.get_text() for t in roc.get_legend().get_texts()]
    assert sum(lbl.startswith(("early fusion", "late fusion", "text only", "image only")) for lbl in labels) == 4
    image_auc = float(next(lbl for lbl in labels if lbl.startswith("image only")).split("AUC ")[1].rstrip(")"))
    text_auc = float(next(lbl for lbl in labels if lbl.startswith("text only")).split("AUC ")[1].rstrip(")"))
    assert text_auc > 0.7 and image_auc < 0.62 and text_auc - image_auc > 0.15  # text carries the label, image is noise


def test_reliability_panels_one_per_model_with_adaptive_bins_and_intervals(rep):
    fig = rep.figures["reliability"]
    shown = [ax for ax in fig.axes if ax.get_visible()]
    titles = [ax.get_title().split("\n") for ax in shown]
    assert [t[0] for t in titles] == ["early fusion", "late fusion", "text only", "image only"]
    # every panel names its ECE (over the seeds' pooled predictions) before -> after temperature scaling
    r = rep.reliability[rep.reliability.model == "text_only"].groupby("stage", sort=False)["ece"].first()
    assert titles[2][1] == f"ECE {r['before']:.3f} → {r['after temperature scaling']:.3f}"
    b = rep.reliability[(rep.reliability.model == "text_only") & (rep.reliability.stage == "before")]
    n_test = rep.n_test
    assert len(b) == min(15, max(4, 2 * n_test // 25))  # 2 seeds x n_test predictions, about 25 per bin
    assert b["count"].max() - b["count"].min() <= 0.35 * b["count"].mean()  # equal-mass, not mostly empty bins
    assert (b.accuracy_ci_low <= b.accuracy).all() and (b.accuracy <= b.accuracy_ci_high).all()


def test_the_results_chart_draws_the_reports_intervals_with_readable_labels(trained, rep, tmp_path):
    table = ex.results_table(trained[2])
    fig = ex.plot_results(table, tmp_path / "r.png", title="planted", intervals=rep.intervals, formats=["png", "svg"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Accuracy", "Macro-F1", "ROC-AUC"]
    assert "95% bootstrap CI" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["early fusion", "late fusion", "text only", "image only"]
    # the first model's macro-F1 error bar spans exactly its interval
    iv = rep.intervals.set_index("model").loc["early_fusion"]
    bars = [c for c in ax.containers if hasattr(c, "lines") and c.lines[2]]
    segs = bars[0].lines[2][0].get_segments()
    assert np.allclose([segs[1][0][1], segs[1][1][1]], [iv.macro_f1_ci_low, iv.macro_f1_ci_high], atol=1e-6)
    assert (tmp_path / "r.png").exists() and (tmp_path / "r.svg").read_text().lstrip().startswith("<?xml")


def test_tidy_tables_show_each_value_with_its_interval_in_one_cell(trained, rep):
    """Issue 19: notebooks showed the raw tables (0.904409, n_test 450.0, a 21-column interval table) where the
    CLI prints 0.904 [0.876, 0.929]; the tidy forms are what notebooks display now."""
    import re

    iv = rep.tidy()["intervals"].set_index("model")
    raw = rep.intervals.set_index("model")
    cell = iv.loc["text_only", "macro_f1 [95% CI]"]
    r = raw.loc["text_only"]
    assert cell == f"{r.macro_f1:.3f} [{r.macro_f1_ci_low:.3f}, {r.macro_f1_ci_high:.3f}]"
    assert len(iv.columns) <= 8 and all(re.fullmatch(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", c) for c in iv["accuracy [95% CI]"])
    assert re.fullmatch(r"[+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]", rep.tidy()["paired"]["difference [CI]"].iloc[0])
    shown = ex.tidy_table(ex.results_table(trained[2]))
    assert shown["n_test"].dtype.kind == "i" and shown["n_params"].dtype.kind == "i"
    assert all(len(f"{v}".split(".")[1]) <= 3 for v in shown["macro_f1"])  # 3 decimals, as the CLI prints


def test_figure_titles_name_the_dataset_not_its_cache_key(trained, rep):
    """Issue 19: every report figure was titled with the cache key (a table's carries a path hash:
    'table-records-55b4a676'); a figure for a paper names the dataset."""
    assert rep.dataset == "planted-s0" and rep.name == "planted"  # the JSON keeps the key
    for key, fig in rep.figures.items():
        titles = [fig._suptitle.get_text() if fig._suptitle else ""] + [ax.get_title() for ax in fig.axes]
        assert any("planted (test n=" in t or "planted, test n=" in t for t in titles), (key, titles)
        assert not any("planted-s0" in t for t in titles), (key, titles)


def test_the_bootstrap_runs_on_the_chosen_device_with_the_same_samples(trained, monkeypatch):
    """ReportConfig.device: the bootstrap's counts and ROC-AUC sums run in torch on that device (a GPU in practice;
    the CPU as a torch device here) and give the numpy report's intervals. Shapley subsets retrain with the
    comparison's own TrainConfig (its device: the GPU the heads were trained on)."""
    import sys

    import utils.train

    report_mod = sys.modules["utils.experiment.report"]  # (utils.experiment.report is also the function's name)

    configs = []
    real_fit = utils.train.fit
    monkeypatch.setattr(utils.train, "fit", lambda *a, **k: configs.append(a[7]) or real_fit(*a, **k))
    numpy_rep = ex.report(trained[2], device="cpu", figures=False, shapley_heads=["late_fusion"], n_resamples=300)
    assert configs and all(c is trained[2].recipe.configs[0] or c is trained[2].recipe.configs[1] for c in configs)
    seen = []
    real = report_mod.bootstrap_device
    monkeypatch.setattr(report_mod, "bootstrap_device",
                        lambda *a: seen.append(a) or torch.device("cpu"))
    torch_rep = ex.report(trained[2], device="cuda", figures=False, shapley_heads=["late_fusion"], n_resamples=300)
    assert seen and seen[0][0] == "cuda" and real("cpu") is None
    cols = [c for c in numpy_rep.intervals.columns if c.endswith(("_ci_low", "_ci_high"))]
    np.testing.assert_allclose(torch_rep.intervals[cols].to_numpy(float), numpy_rep.intervals[cols].to_numpy(float),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(torch_rep.shapley["shapley"], numpy_rep.shapley["shapley"], rtol=1e-9, atol=1e-12)
