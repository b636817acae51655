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
