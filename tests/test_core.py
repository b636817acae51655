"""Registry, config, dataset contract, splits and the synthetic dataset."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

import utils.config as config
import utils.runtime as runtime
from utils import data
from utils.data import DatasetError, DatasetSpec, MultimodalDataset, validate
from utils.data.splits import assign_splits, carve_validation
from utils.registry import Registry, UnknownNameError


def test_registry_unknown_name_lists_valid_ones():
    reg = Registry("widget")
    reg.register("alpha")(lambda: 1)
    reg.register("beta")(lambda: 2)
    assert reg.create("beta") == 2
    with pytest.raises(UnknownNameError) as e:
        reg.create("alpah")
    msg = str(e.value)
    assert "alpha" in msg and "beta" in msg and "Did you mean 'alpha'" in msg


def test_config_precedence(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(f"MMFUSION_DATA_DIR={tmp_path / 'from_dotenv'}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MMFUSION_DATA_DIR", raising=False)
    config.reload_dotenv()
    assert config.data_dir() == tmp_path / "from_dotenv"
    monkeypatch.setenv("MMFUSION_DATA_DIR", str(tmp_path / "from_env"))
    assert config.data_dir() == tmp_path / "from_env"
    assert config.data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("MMFUSION_DATA_DIR")
    (tmp_path / ".env").write_text("")
    config.reload_dotenv()
    assert config.data_dir() == config.project_home() / "data"
    config.reload_dotenv()


def test_setup_colab_is_a_no_op_outside_colab():
    assert config.in_colab() is False
    assert config.setup_colab() is None


def test_resolve_device_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.resolve_device("auto") == torch.device("cuda") and runtime.resolve_device(None).type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert runtime.resolve_device("auto").type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runtime.resolve_device("auto").type == "cpu" and runtime.resolve_device("cpu").type == "cpu"
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        runtime.resolve_device("cuda:0")


def _table():
    df = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "text": ["x", None, "z", "w"],
            "image_path": ["1.png", "2.png", "3.png", "4.png"],
            "label": ["cat", "dog", "cat", "dog"],
            "split": ["train", "train", "val", "test"],
        }
    )
    return df, DatasetSpec(name="toy", task="multiclass", classes=["cat", "dog"])


def test_validator_accepts_a_good_table_and_encodes_labels():
    df, spec = _table()
    ds = MultimodalDataset(df, spec)
    assert ds.labels().tolist() == [0, 1, 0, 1]
    assert ds.items("text") == ["x", "", "z", "w"]


def test_validator_names_every_broken_row():
    df, spec = _table()
    df.loc[1, "id"] = "a"  # duplicate
    df.loc[2, "split"] = "validation"  # bad split
    df.loc[3, "label"] = "bird"  # unknown label
    with pytest.raises(DatasetError) as e:
        validate(df, spec)
    msg = str(e.value)
    assert "duplicate id in 2 row(s): 0, 1" in msg
    assert "split not in train/val/test in 1 row(s): 2" in msg
    assert "row 3: 'bird'" in msg and "Known classes" in msg


def test_validator_reports_missing_columns_and_group_leaks():
    df, spec = _table()
    with pytest.raises(DatasetError, match="missing column"):
        validate(df.drop(columns=["image_path"]), spec)
    df["group"] = ["p1", "p1", "p2", "p3"]
    validate(df, spec)  # p1 stays in train
    df.loc[1, "split"] = "test"
    with pytest.raises(DatasetError, match="group in several splits"):
        validate(df, spec)


def test_multilabel_and_binary_specs():
    spec = DatasetSpec(name="ml", task="multilabel", classes=["a", "b", "c"])
    df = pd.DataFrame({"id": ["1", "2"], "text": ["t", "u"], "image_path": ["x", "y"],
                       "label": [["a", "c"], []], "split": ["train", "test"]})
    ds = MultimodalDataset(df, spec)
    assert ds.labels().tolist() == [[1, 0, 1], [0, 0, 0]]
    df.loc[0, "label"] = "a"
    with pytest.raises(DatasetError, match="multilabel labels must be lists"):
        validate(df, spec)
    with pytest.raises(DatasetError, match="exactly 2 classes"):
        DatasetSpec(name="b", task="binary", classes=["x"])
    assert DatasetSpec(name="b", task="binary", classes=["neg", "pos"]).num_outputs == 1


def test_assign_splits_stratified_and_grouped():
    labels = ["a"] * 60 + ["b"] * 40
    s = assign_splits(labels, (0.7, 0.15, 0.15), seed=1)
    tab = pd.crosstab(pd.Series(labels), pd.Series(s))
    assert tab.loc["a", "test"] == 9 and tab.loc["b", "test"] == 6
    groups = [f"p{i // 3}" for i in range(100)]
    sg = assign_splits(labels, (0.6, 0.2, 0.2), seed=1, groups=groups)
    per_group = pd.DataFrame({"g": groups, "s": sg}).groupby("g")["s"].nunique()
    assert (per_group == 1).all()
    assert set(sg) == {"train", "val", "test"}


def test_carve_validation_moves_only_train_rows():
    df = pd.DataFrame({"label": ["a", "b"] * 50, "split": ["train"] * 80 + ["test"] * 20})
    out = carve_validation(df, 0.25, seed=0)
    assert (out["split"][80:] == "test").all()
    assert (out["split"] == "val").sum() == 20


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UnknownNameError) as e:
        data.load("synthetik")
    assert "synthetic" in str(e.value)
    assert "synthetic" in data.names()


def test_synthetic_is_deterministic_and_cached(tmp_path):
    a = data.load("synthetic", root=tmp_path / "a", n=120, seed=3)
    b = data.load("synthetic", root=tmp_path / "b", n=120, seed=3)
    c = data.load("synthetic", root=tmp_path / "c", n=120, seed=4)
    cols = ["id", "text", "label", "split"]
    pd.testing.assert_frame_equal(a.df[cols], b.df[cols])
    assert not a.df[cols].equals(c.df[cols])
    img_a = (tmp_path / "a" / "n120_seed3" / a.df.image_path[0]).read_bytes()
    assert img_a == (tmp_path / "b" / "n120_seed3" / b.df.image_path[0]).read_bytes()
    assert a.spec.task == "multiclass" and a.spec.classes == ["warm_heavy", "warm_light", "cool_heavy", "cool_light"]
    assert set(a.df.split) == {"train", "val", "test"}
    assert a.df.label.value_counts().min() >= 20
    mtime = os.path.getmtime(tmp_path / "a" / "n120_seed3" / "records.csv")
    data.load("synthetic", root=tmp_path / "a", n=120, seed=3)
    assert os.path.getmtime(tmp_path / "a" / "n120_seed3" / "records.csv") == mtime  # not regenerated
    assert a.spec.key == "synthetic-n120-seed3"


def test_synthetic_text_encodes_material_and_image_encodes_colour(tmp_path):
    from PIL import Image

    from utils.data.synthetic import HEAVY, LIGHT

    ds = data.load("synthetic", root=tmp_path, n=200, seed=0, label_noise=0.0, missing_text=0.0)
    for _, r in ds.df.iterrows():
        heavy = r.label.endswith("heavy")
        assert any(m in r.text for m in (HEAVY if heavy else LIGHT))
    # the label's colour family is visible in the image: warm images have more red than blue
    reds = {True: [], False: []}
    for _, r in ds.df.head(80).iterrows():
        arr = np.asarray(Image.open(ds.resolve_path(r.image_path))).astype(float)
        sat = arr.max(axis=2) - arr.min(axis=2)
        px = arr[sat > 60]
        reds[r.label.startswith("warm")].append(px[:, 0].mean() - px[:, 2].mean())
    assert np.mean(reds[True]) > 50 > np.mean(reds[False])


def test_missing_image_names_row_and_path_or_is_dropped(tmp_path):
    ds = data.load("synthetic", root=tmp_path, n=80, seed=0)
    victim = ds.resolve_path(ds.df.image_path[5])
    victim.unlink()
    with pytest.raises(DatasetError) as e:
        data.load("synthetic", root=tmp_path, n=80, seed=0)
    assert "row 5" in str(e.value) and str(victim) in str(e.value) and "on_missing_image='drop'" in str(e.value)
    dropped = data.load("synthetic", root=tmp_path, n=80, seed=0, on_missing_image="drop")
    assert len(dropped) == 79 and dropped.dropped_missing == 1
