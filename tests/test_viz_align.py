"""Alignment and retrieval figures: returned, saved as PNG, never shown."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from utils import viz


def _two(n=80, d=8, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.array(["a", "b"])[np.arange(n) % 2]
    base = rng.normal(size=(2, d))[np.arange(n) % 2]
    return {"text": base + 0.3 * rng.normal(size=(n, d)) + 2, "image": base + 0.3 * rng.normal(size=(n, d)) - 2}, labels


def test_joint_maps_and_before_after(tmp_path):
    vecs, labels = _two()
    vecs["text"][3] = np.nan  # missing rows are skipped
    fig = viz.umap_plot(vecs, labels, "pca", path=tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 1000
    assert len(fig.axes[1].collections[0].get_offsets()) == 159
    fig = viz.umap_before_after(vecs, vecs, labels, "pca", path=tmp_path / "ba.png")
    assert len(fig.axes) == 4 and (tmp_path / "ba.png").is_file()
    with pytest.raises(ValueError, match="one dimension"):
        viz.umap_plot({"text": np.zeros((4, 3)), "image": np.zeros((4, 2))}, ["a"] * 4, "pca")


@pytest.mark.parametrize("dims", [2, 3])
def test_gap_shift_plot_titles_report_the_gap(dims, tmp_path):
    vecs, _ = _two()
    fig = viz.gap_shift_plot(vecs["text"], vecs["image"], [-1.0, 0.0, 1.0], dims=dims, path=tmp_path / "s.png")
    gaps = [float(re.search(r"gap ([0-9.]+)", ax.get_title()).group(1)) for ax in fig.axes]
    assert gaps[2] < gaps[1] < gaps[0]  # lambda 1 closes, -1 widens
    assert (tmp_path / "s.png").is_file()


def test_metric_vs_lambda_and_hit_share(tmp_path):
    table = pd.DataFrame({"model": ["early_fusion"] * 3, "lambda": [1.0, -1.0, 0.0], "macro_f1": [0.8, 0.6, 0.7],
                          "macro_f1_std": [0.01, 0.02, 0.03], "gap_test_after": [0.1, 1.2, 0.7]})
    fig = viz.metric_vs_lambda(table, ["macro_f1", "gap_test_after"], path=tmp_path / "l.png")
    line = fig.axes[0].lines[0]
    np.testing.assert_allclose(np.asarray(line.get_xdata(), float), [-1.0, 0.0, 1.0])  # sorted by lambda
    np.testing.assert_allclose(np.asarray(line.get_ydata(), float), [0.6, 0.7, 0.8])
    share = pd.DataFrame({"k": [1, 5, 10], "text": [1.0, 0.6, 0.5], "image": [0.0, 0.4, 0.5]})
    fig = viz.hit_share_plot(share, path=tmp_path / "h.png")
    assert [l.get_label() for l in fig.axes[0].lines] == ["text", "image"]
    assert (tmp_path / "l.png").is_file() and (tmp_path / "h.png").is_file()


@pytest.mark.slow
def test_umap_projection_runs(tmp_path):  # umap-learn compiles with numba on first use (~15 s)
    vecs, labels = _two(n=60)
    xy = viz.embedding_2d(np.concatenate(list(vecs.values())), "umap")
    assert xy.shape == (120, 2) and np.isfinite(xy).all()
