"""The steps of the Alignment/ notebooks (utils.experiment.alignment): each cell's row selection, lookup and
bookkeeping, tested on planted signals where a wrong mask or a wrong lookup gives another number."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from utils import experiment as ex
from utils.experiment import Embeddings

N = 120
TRAIN, VAL, TEST = np.arange(0, 60), np.arange(60, 90), np.arange(90, 120)


def fake_dataset():
    """120 rows, classes a b c d in turn; rows 0-59 train, 60-89 val, 90-119 test."""
    from utils.data.schema import DatasetSpec, MultimodalDataset

    labels = np.array(["a", "b", "c", "d"])[np.arange(N) % 4]
    split = np.array(["train"] * 60 + ["val"] * 30 + ["test"] * 30)
    df = pd.DataFrame({"id": [f"r{i}" for i in range(N)], "text": ["x"] * N, "image_path": ["x.png"] * N,
                       "label": labels, "split": split})
    return MultimodalDataset(df, DatasetSpec(name="fake", task="multiclass", classes=["a", "b", "c", "d"], root=""))


def class_vectors(ds, d=8, noise=0.1, seed=0):
    """Text and image vectors that carry the class (one prototype per class) and pair row by row."""
    rng = np.random.default_rng(seed)
    protos = 3 * rng.normal(size=(4, d))
    text = protos[ds.labels()] + noise * rng.normal(size=(N, d))
    image = text + 0.01 * rng.normal(size=(N, d))
    return text.astype(np.float32), image.astype(np.float32)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def centroid_gap(a, b):
    return float(np.linalg.norm(unit(b).mean(0) - unit(a).mean(0)))


def test_split_indices_label_names_and_pair_vectors():
    ds = fake_dataset()
    np.testing.assert_array_equal(ex.split_indices(ds, "test"), TEST)
    np.testing.assert_array_equal(ex.split_indices(ds, "val"), VAL)
    assert list(ex.label_names(ds)[:5]) == ["a", "b", "c", "d", "a"]
    text, image = class_vectors(ds)
    emb = Embeddings({"text": text, "image": image, "aux": text[:, :2]}, ids=ds.df["id"])
    pair = ex.pair_vectors(emb)
    assert list(pair) == ["text", "image"] and pair["text"] is text and pair["image"] is image
    with pytest.raises(KeyError, match="audio"):
        ex.pair_vectors(emb, "text", "audio")


def test_plot_gap_shift_draws_the_training_rows_that_have_both_modalities(tmp_path):
    ds = fake_dataset()
    rng = np.random.default_rng(1)
    text = rng.normal(size=(N, 8)) + 3.0
    image = rng.normal(size=(N, 8)) - 3.0
    image[60:] += 8.0  # validation and test rows sit elsewhere: drawing them would change the gap
    text[5] = np.nan  # a training row without text is left out
    emb = Embeddings({"text": text, "image": image}, ids=ds.df["id"])
    before, _ = ex.align_embeddings(ds, emb, "none")
    _, shift = ex.align_embeddings(ds, emb, "shift", lam=1.0)
    figs = ex.plot_gap_shift(ds, before, shift, dims=(2, 3), path=tmp_path / "shift.png")
    assert len(figs) == 2 and (tmp_path / "shift_2d.png").is_file() and (tmp_path / "shift_3d.png").is_file()
    rows = np.setdiff1d(TRAIN, [5])
    want = centroid_gap(before.vectors["text"][rows], before.vectors["image"][rows])
    for fig in figs:
        gaps = [float(re.search(r"gap ([0-9.]+)", ax.get_title()).group(1)) for ax in fig.axes]
        assert gaps[1] == pytest.approx(want, abs=1e-3)  # lambda 0: the training gap, by hand
        assert gaps[2] < 0.3 * gaps[1] < gaps[0]  # lambda 1 closes it, -1 widens it
    every = np.setdiff1d(np.arange(N), [5])  # drawing every row instead would show another gap
    assert abs(centroid_gap(before.vectors["text"][every], before.vectors["image"][every]) - want) > 0.1


def test_plot_before_after_maps_both_modalities_of_every_complete_row(tmp_path):
    ds = fake_dataset()
    text, image = class_vectors(ds)
    text[7] = np.nan
    emb = Embeddings({"text": text, "image": image, "aux": image[:, :3]}, ids=ds.df["id"])
    before, _ = ex.align_embeddings(ds, emb, "none")
    after, _ = ex.align_embeddings(ds, emb, "shift", lam=1.0)
    fig = ex.plot_before_after(ds, before, after, "pca", path=tmp_path / "umap.png")
    assert len(fig.axes) == 4 and (tmp_path / "umap.png").is_file()
    # 119 complete rows, text and image each (the third modality is not drawn)
    assert [len(ax.collections[0].get_offsets()) for ax in fig.axes] == [2 * 119] * 4


def test_with_synthetic_modality_adds_a_label_derived_modality_in_table_order():
    from utils.align import synthetic_modality

    ds = fake_dataset()
    text, image = class_vectors(ds)
    backwards = Embeddings({"text": text[::-1], "image": image[::-1]}, {"text": "t", "image": "i"},
                           ids=ds.df["id"].to_numpy()[::-1])
    out = ex.with_synthetic_modality(ds, backwards, "aux", dim=16, noise=0.5, seed=3)
    np.testing.assert_array_equal(out.vectors["aux"], synthetic_modality(ds.labels(), 16, 0.5, seed=3))
    np.testing.assert_array_equal(out.vectors["text"], text)  # rows follow the table, not the input order
    assert out.extractors == {"text": "t", "image": "i", "aux": "synthetic: class prototype + noise 0.5"}
    assert list(out.ids) == list(ds.df["id"])
    assert list(ex.with_synthetic_modality(ds, backwards, None).vectors) == ["text", "image"]
    with pytest.raises(ValueError, match="already have a modality 'text'"):
        ex.with_synthetic_modality(ds, backwards, "text")


def test_unified_space_projects_every_modality_and_keeps_missing_rows_missing():
    from utils.align import UnifiedConfig, project

    ds = fake_dataset()
    text, image = class_vectors(ds)
    image = image[:, :6]
    text[100] = np.nan
    emb = Embeddings({"text": text, "image": image}, {"text": "t", "image": "i"}, ids=ds.df["id"])
    result, unified = ex.unified_space(ds, emb, UnifiedConfig(dim=8, epochs=3, seed=0, device="cpu"))
    assert unified.dims() == {"text": 8, "image": 8}
    assert unified.extractors == {"text": "t -> unified 8-d", "image": "i -> unified 8-d"}
    assert np.isnan(unified.vectors["text"][100]).all() and np.isfinite(unified.vectors["image"][100]).all()
    ok = np.setdiff1d(np.arange(N), [100])
    np.testing.assert_allclose(np.linalg.norm(unified.vectors["text"][ok], axis=1), 1.0, atol=1e-5)
    again = project(result, emb.vectors)
    np.testing.assert_allclose(unified.vectors["image"], again["image"], atol=1e-6)


def test_pairwise_gaps_read_only_the_rows_of_the_split():
    from utils.align import pairwise_gap_table

    ds = fake_dataset()
    rng = np.random.default_rng(2)
    vectors = {"text": rng.normal(size=(N, 8)) + 1.0, "image": rng.normal(size=(N, 8)) - 1.0}
    vectors["image"][TEST] -= 4.0  # the test rows have a wider gap
    emb = Embeddings(vectors, ids=ds.df["id"])
    table = ex.pairwise_gaps(ds, emb, "test")
    assert list(table["pair"]) == ["text-image"] and table["n"].iloc[0] == 30
    assert table["gap"].iloc[0] == pytest.approx(centroid_gap(vectors["text"][TEST], vectors["image"][TEST]), rel=1e-5)
    assert table["gap"].iloc[0] > pairwise_gap_table(vectors)["gap"].iloc[0] + 0.05


def test_train_heads_per_space_names_the_rows_of_each_space():
    ds = fake_dataset()
    rng = np.random.default_rng(3)
    noise = Embeddings({"text": rng.normal(size=(N, 8)), "image": rng.normal(size=(N, 8))}, ids=ds.df["id"])
    text, image = class_vectors(ds)
    signal = Embeddings({"text": text, "image": image}, ids=ds.df["id"])
    rows = ex.train_heads_per_space(ds, {"raw": noise, "unified": signal}, ["early_fusion"], epochs=10, batch_size=32,
                                    seeds=[0], device="cpu", show_progress=False)
    assert [(r["model"], r["space"]) for r in rows] == [("early_fusion", "raw"), ("early_fusion+unified", "unified")]
    assert rows[0]["n_test"] == rows[1]["n_test"] == 30
    # the renamed row is the head trained on its own space: the planted class signal is there, not in the noise
    assert rows[1]["accuracy"] == 1.0 and rows[0]["accuracy"] < 0.6
    with pytest.raises(ValueError, match="at least one space"):
        ex.train_heads_per_space(ds, {}, ["early_fusion"])


def test_retrieval_spaces_are_fitted_on_train_and_share_one_width():
    from utils.align import UnifiedConfig

    ds = fake_dataset()
    rng = np.random.default_rng(4)
    z = rng.normal(size=(N, 4))
    text = z @ rng.normal(size=(4, 10)) + 4.0  # two widths and a wide modality gap
    image = z @ rng.normal(size=(4, 6)) - 4.0
    emb = Embeddings({"text": text, "image": image}, ids=ds.df["id"])
    spaces = ex.retrieval_spaces(ds, emb, "pca", UnifiedConfig(dim=5, epochs=2, seed=0, device="cpu"))
    assert list(spaces) == ["common", "shift", "unified"]
    assert {name: {m: v.shape for m, v in s.items()} for name, s in spaces.items()} == {
        "common": {"text": (N, 6), "image": (N, 6)}, "shift": {"text": (N, 6), "image": (N, 6)},
        "unified": {"text": (N, 5), "image": (N, 5)}}
    common_gap = centroid_gap(spaces["common"]["text"][TRAIN], spaces["common"]["image"][TRAIN])
    shift_gap = centroid_gap(spaces["shift"]["text"][TRAIN], spaces["shift"]["image"][TRAIN])
    assert shift_gap < 0.4 * common_gap  # lambda = 1 closes the training gap; the common space leaves it


def test_retrieval_table_class_map_and_hit_shares_query_the_split_rows():
    ds = fake_dataset()
    text, image = class_vectors(ds)
    text[95] = np.nan  # a test row without text is no query
    spaces = {"paired": {"text": text, "image": image}}
    table = ex.retrieval_table(ds, spaces, "test", ks=(1, 5))
    t2i = table[(table["query"] == "text") & (table["target"] == "image")].iloc[0]
    assert t2i["space"] == "paired" and t2i["n_queries"] == 29 and t2i["R@1"] == 1.0  # its own image comes first
    i2t = table[(table["query"] == "image") & (table["target"] == "text")].iloc[0]
    assert i2t["n_queries"] == 30
    maps = ex.class_map(ds, spaces["paired"], "text", "image", "test", k=5)
    assert list(maps["class"]) == ["a", "b", "c", "d", "all"]
    assert maps.set_index("class").loc["all", "n_queries"] == 29 and (maps["mAP"] == 1.0).all()
    # the same search with the images of two classes swapped: half the classes find the wrong images
    swapped = image.copy()
    a, b = ds.labels() == 0, ds.labels() == 1
    swapped[a], swapped[b] = image[b][: a.sum()], image[a][: b.sum()]
    bad = ex.class_map(ds, {"text": text, "image": swapped}, "text", "image", "test", k=5).set_index("class")["mAP"]
    # test queries per class: a 7, b 7, c 8, d 7 (row 95, a d, has no text)
    assert bad["a"] == 0.0 and bad["b"] == 0.0 and bad["c"] == 1.0 and bad["d"] == 1.0
    assert bad["all"] == pytest.approx((8 + 7) / 29)
    # three images (rows 0-2: a, b, c) and k = 5: two padded slots per query count as misses, never as a label;
    # relevant items are those in the collection (one per class, none for d)
    small = ex.class_map(ds, {"text": text, "image": np.where(np.arange(N)[:, None] < 3, image, np.nan)}, "text",
                         "image", "test", k=5).set_index("class")["mAP"]
    assert small["a"] == small["b"] == small["c"] == 1.0 and small["d"] == 0.0
    assert small["all"] == pytest.approx((7 + 7 + 8) / 29)
    coll = ex.collection(ds, spaces["paired"])
    pd.testing.assert_frame_equal(ex.class_map(ds, spaces["paired"], coll=coll, k=5), maps)
    # hit shares: a text query's nearest other vector is its own image ...
    assert ex.hit_shares(ds, spaces["paired"], "text", "test", ks=(1,)).loc[0, "image"] == 1.0
    # ... unless a wide modality gap keeps the texts together
    gap = {"text": text + 30.0, "image": image - 30.0}
    share = ex.hit_shares(ds, gap, "text", "test", ks=(1, 5))
    assert share["text"].tolist() == [1.0, 1.0]
