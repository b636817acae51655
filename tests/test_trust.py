"""Numbers a reviewer can trust (issue 10): each test reproduces a way the numbers used to be wrong."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------ model selection
def test_a_monitor_that_is_nan_in_every_epoch_falls_back_to_validation_loss(caplog):
    from utils.models import build_head
    from utils.train import TrainConfig, fit

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 8)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    yv = np.zeros(40, dtype=int)  # a one-class validation split: ROC-AUC is undefined (NaN) in every epoch
    Xv = rng.normal(size=(40, 8)).astype(np.float32)
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING, logger="utils"):
        res = fit(build_head("text_only", {"text": 8}, 1), X, y, Xv, yv, "binary", ["neg", "pos"],
                  TrainConfig(epochs=8, patience=None, monitor="val_roc_auc", device="cpu"))
    assert all(math.isnan(h["val_roc_auc"]) for h in res.history)
    assert res.monitor == "val_loss" and "val_loss instead" in caplog.text
    losses = [h["val_loss"] for h in res.history]
    assert res.best_epoch == int(np.argmin(losses)) + 1  # not silently the last epoch


def records(folder, splits):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, s in enumerate(splits):
        Image.new("RGB", (8, 8), (i * 7 % 255, 0, 0)).save(folder / f"{i}.png")
        rows.append({"text": f"row {i}", "image": f"{i}.png", "label": ["a", "b", "c"][i % 3], "split": s})
    pd.DataFrame(rows).to_csv(folder / "records.csv", index=False)


def test_a_table_without_validation_rows_gets_them_carved_from_train_and_says_so(tmp_path, caplog):
    from utils import data

    records(tmp_path / "t", ["train"] * 60 + ["test"] * 15)
    opts = dict(text_column="text", image_column="image", label_column="label", split_column="split")
    with caplog.at_level(logging.WARNING, logger="utils"):
        ds = data.load("table", root=tmp_path / "t", **opts)
    counts = ds.df["split"].value_counts()
    assert counts["val"] > 0 and counts["train"] + counts["val"] == 60 and counts["test"] == 15
    assert "no validation split" in caplog.text
    assert set(ds.df.loc[ds.df.split == "val", "label"]) == {"a", "b", "c"}  # stratified
    with pytest.raises(data.DatasetError, match="no validation rows"):
        data.load("table", root=tmp_path / "t", carve_val=False, **opts)


def test_training_without_validation_rows_names_the_dataset_and_split():
    from utils import experiment as ex
    from utils.data import DatasetSpec, MultimodalDataset

    n = 30
    df = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "text": ["x"] * n, "image_path": ["x.png"] * n,
                       "label": ["a", "b"] * (n // 2), "split": ["train"] * 20 + ["test"] * 10})
    ds = MultimodalDataset(df, DatasetSpec("tiny", "binary", ["a", "b"]))
    emb = ex.Embeddings({"text": np.ones((n, 4), np.float32), "image": np.ones((n, 3), np.float32)}, {"text": "t", "image": "i"}, ids=ds.df["id"])
    with pytest.raises(ValueError, match="'tiny'.*val split"):
        ex.train_heads(ds, emb, ["early_fusion"], epochs=1, show_progress=False)


# ------------------------------------------------------------------------------------------- caches
def test_token_feature_cache_is_keyed_by_the_texts_not_only_the_ids(tiny_bert, tmp_path):
    from utils.token_features import cache_token_features, load_token_features

    ids = ["r0", "r1"]
    folder = cache_token_features(["a small iron block", "red silk"], ids, str(tiny_bert), tmp_path / "tok",
                                  max_length=8, show_progress=False)
    first, _ = load_token_features(folder)
    first = np.array(first)
    cache_token_features(["the car on the road", "red silk"], ids, str(tiny_bert), folder, max_length=8,
                         show_progress=False)  # same ids, another text column
    second, _ = load_token_features(folder)
    assert not np.array_equal(np.array(second)[0], first[0])  # recomputed, not the stale features
    assert np.array_equal(np.array(second)[1], first[1])


# ------------------------------------------------------------------------------------- contrastive
def test_identical_inputs_are_not_negatives_in_contrastive_training():
    from utils.align.contrastive import InfoNCE, content_keys

    # four clips, two classes; the text modality is class-level: rows 0, 1 share one text, rows 2, 3 another
    text = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]]), dim=1)
    audio = text.clone()
    scale = torch.tensor(20.0)
    keys = torch.as_tensor(content_keys(text.numpy()))
    assert keys[0] == keys[1] != keys[2] == keys[3]
    unmasked = float(InfoNCE()(audio, text, scale))
    masked = float(InfoNCE()(audio, text, scale, keys_a=keys, keys_b=keys))
    # unmasked, each clip's identical twin counts as a negative as strong as the positive: loss >= log 2
    assert unmasked > math.log(2) - 1e-3
    assert masked < 1e-3


def test_clap_crop_of_a_long_clip_does_not_depend_on_its_batch(tmp_path):
    import soundfile as sf

    from utils import extractors

    from .tiny_models import make_clap

    model = make_clap(tmp_path / "clap")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):  # two 12 s clips: longer than the 10 s window, so each gets a random crop
        p = tmp_path / f"long{i}.wav"
        sf.write(p, (0.2 * rng.normal(size=48000 * 12)).astype(np.float32), 48000)
        paths.append(p)
    ext = extractors.create(f"clap:{model}", precision="fp32")
    together = ext.encode(paths, batch_size=2, show_progress=False)
    alone = ext.encode(paths[1:], batch_size=1, show_progress=False)
    np.testing.assert_allclose(together[1], alone[0], rtol=1e-5, atol=1e-6)  # same file, same vector


# ------------------------------------------------------------------------------------ conventions
def test_extractor_options_are_keyed_by_spec_and_unknown_keys_are_errors(tiny_bert):
    from utils import experiment as ex

    ds = ex.load_dataset("synthetic", n=40)
    specs = {"text": f"hf:{tiny_bert}", "image": "timm:test_vit"}
    with pytest.raises(ValueError, match="not one of the extractors"):
        ex.extract_embeddings(ds, specs, {"timm:test_resnet": {"pretrained": False}}, show_progress=False)
    with pytest.raises(ValueError, match="'image', which is not one of the extractors"):  # a modality is no key
        ex.extract_embeddings(ds, specs, {"image": {"pretrained": False}}, show_progress=False)
    emb = ex.extract_embeddings(ds, specs, {"timm:test_vit": {"pretrained": False}}, show_progress=False)
    assert "RANDOM" in emb.extractors["image"]
    from utils.experiment import generate as gen

    with pytest.raises(ValueError, match="not one of the extractors"):
        gen.generate(ds, "image", ["timm:test_vit"], {"image": {"pretrained": False}}, show_progress=False)


def test_sentence_transformers_pooling_is_read_for_hub_models_too(monkeypatch, tmp_path):
    import json

    import huggingface_hub

    from utils.extractors.text_hf import sentence_transformers_pooling

    files = {"modules.json": [{"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}],
             "1_Pooling/config.json": {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}}

    def fake_download(repo_id, filename, revision=None, **kw):
        if repo_id != "BAAI/bge-base-en-v1.5" or filename not in files:
            raise FileNotFoundError(filename)
        p = tmp_path / filename.replace("/", "_")
        p.write_text(json.dumps(files[filename]))
        return str(p)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert sentence_transformers_pooling("BAAI/bge-base-en-v1.5") == "cls"  # was mean: the hub config was never read
    assert sentence_transformers_pooling("some/model-without-config") is None


# ---------------------------------------------------------------------------------------------- CCA
def test_cca_on_class_level_duplicates_never_returns_nan():
    from utils.align import CCAAlign

    rng = np.random.default_rng(0)
    y = np.arange(400) % 50
    text = rng.normal(size=(50, 384))[y]  # class-level: 50 distinct rows repeated (ESC-50's texts)
    image = rng.normal(size=(50, 512))[y]
    audio = rng.normal(size=(50, 512))[y] + 0.01 * rng.normal(size=(400, 512))
    for a, b in ((text, image), (audio, image)):
        cca = CCAAlign(n_components=64).fit(a, b)
        ta, tb = cca.transform(a, b)
        assert np.isfinite(ta).all() and np.isfinite(tb).all()
        assert cca.k <= 49  # capped at the rank of the centred training rows
    # sklearn's iterative solver, where it diverges, falls back to the closed form with a warning
    nipals = CCAAlign(n_components=16, solver="nipals").fit(text[:, :48], image[:, :32])
    assert all(np.isfinite(r).all() for r in nipals.rotations)


def test_cca_correlations_are_found_on_a_shared_factor():
    from utils.align import CCAAlign

    rng = np.random.default_rng(1)
    z = rng.normal(size=(300, 2))
    a = np.c_[z, rng.normal(size=(300, 6))] @ rng.normal(size=(8, 8))
    b = np.c_[z, rng.normal(size=(300, 4))] @ rng.normal(size=(6, 6))
    from utils.align.gap import l2_normalize

    cca = CCAAlign(n_components=2).fit(a, b)
    # the canonical correlations of the normalised rows, exactly: singular values of Q_a^T Q_b
    an, bn = l2_normalize(a), l2_normalize(b)
    qa, _ = np.linalg.qr(an - an.mean(0))
    qb, _ = np.linalg.qr(bn - bn.mean(0))
    exact = np.linalg.svd(qa.T @ qb, compute_uv=False)[:2]
    np.testing.assert_allclose(cca.correlations, exact, atol=1e-3)
    assert cca.correlations[1] > 0.85  # both shared directions are recovered


def _tiny_ds(labels, splits):
    from utils.data import DatasetSpec, MultimodalDataset

    n = len(labels)
    df = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "text": ["x"] * n, "image_path": ["x.png"] * n,
                       "label": labels, "split": splits})
    classes = sorted(set(labels))
    return MultimodalDataset(df, DatasetSpec("tiny", "binary" if len(classes) == 2 else "multiclass", classes))


def test_a_class_without_training_rows_is_warned_and_small_test_splits_carry_an_interval_note(caplog):
    """A class seen only in validation / test cannot be learnt: training says so, naming it. Its 3 test rows
    also make the intervals near meaningless, which the result row says in ``interval_note``."""
    from utils import experiment as ex

    rng = np.random.default_rng(0)
    labels = ["a", "b"] * 40 + ["c"] * 5
    splits = ["train"] * 60 + ["val"] * 10 + ["test"] * 10 + ["val"] * 2 + ["test"] * 3
    ds = _tiny_ds(labels, splits)
    y = ds.labels()
    text = rng.normal(size=(len(ds), 6)).astype(np.float32) + 2.0 * np.eye(3, 6, dtype=np.float32)[y]
    emb = ex.Embeddings({"text": text, "image": rng.normal(size=(len(ds), 4)).astype(np.float32)},
                        {"text": "t", "image": "i"}, ids=ds.df["id"])
    with caplog.at_level(logging.WARNING, logger="utils"):
        rows = ex.train_heads(ds, emb, ["text_only"], epochs=3, show_progress=False)
    assert "['c'] have no training rows" in caplog.text
    note = rows[0]["interval_note"]
    assert note and "test split too small" in note and "'c' 3" in note and "'a' 5" in note


def test_identical_predictions_get_a_zero_width_interval_note_not_silent_certainty():
    from utils.data import DatasetSpec
    from utils.experiment.rows import interval_note

    spec = DatasetSpec("tiny", "binary", ["a", "b"])
    y = np.array([0, 1] * 30)
    row = {"macro_f1_ci_low": 0.333, "macro_f1_ci_high": 0.333, "roc_auc_ci_low": 0.5, "roc_auc_ci_high": 0.5}
    note = interval_note(y, spec, row)
    assert note.startswith("zero-width interval for macro_f1, roc_auc") and "too small" not in note
    assert interval_note(y, spec, {"macro_f1_ci_low": 0.4, "macro_f1_ci_high": 0.6}) is None
    assert "'b' 2" in interval_note(np.array([0] * 40 + [1] * 2), spec, {})


# --------------------------------------------------------------------------- training edge cases (issue 20)
def _edge_embeddings(ds, text, image=None):
    from utils import experiment as ex

    rng = np.random.default_rng(1)
    image = rng.normal(size=(len(ds), 4)).astype(np.float32) if image is None else image
    return ex.Embeddings({"text": text, "image": image}, {"text": "t", "image": "i"}, ids=ds.df["id"])


def test_identical_embeddings_are_warned_and_every_row_is_marked_a_constant_guess(caplog):
    """Every vector the same: a head can only guess; the rows used to give AUC 0.500 [0.500, 0.500] and a
    temperature at the edge of its search with nothing saying why."""
    from utils import experiment as ex

    ds = _tiny_ds(["a", "b"] * 50, (["train"] * 6 + ["val"] * 2 + ["test"] * 2) * 10)
    emb = _edge_embeddings(ds, np.ones((100, 6), np.float32), np.full((100, 4), 0.5, np.float32))
    with caplog.at_level(logging.WARNING, logger="utils"):
        rows = ex.train_heads(ds, emb, ["text_only", "early_fusion"], epochs=3, show_progress=False)
    assert "the text and image vectors are identical in every training row" in caplog.text
    assert all("every test row the same probabilities" in r["interval_note"] for r in rows)
    rep = ex.report(rows, shapley=False, figures=False)
    assert rep.intervals["note"].str.contains("constant guess").all()
    assert any("edge of its search" in n for n in rep.notes)


def test_one_validation_row_per_class_is_warned_and_no_temperature_is_fitted_on_it(caplog):
    """Three validation rows (one per class) decided early stopping and fitted a temperature that made test
    calibration worse (ECE 0.24 -> 0.41) without a word."""
    from utils import experiment as ex

    labels = ["a", "b", "c"] * 30
    ds = _tiny_ds(labels, ["train"] * 75 + ["val"] * 3 + ["test"] * 12)
    y = ds.labels()
    text = (np.random.default_rng(0).normal(size=(90, 6)) + 2 * np.eye(3, 6)[y]).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="utils"):
        rows = ex.train_heads(ds, _edge_embeddings(ds, text), ["text_only"], epochs=3, show_progress=False)
    assert "validation split holds few rows of some classes ('a' 1, 'b' 1, 'c' 1; fewer than 5)" in caplog.text
    rep = ex.report(rows, shapley=False, figures=False)
    assert rep.calibration[["temperature", "ece_after", "brier_after"]].isna().all().all()
    assert rep.calibration["ece"].notna().all()
    assert any("temperature scaling not fitted" in n and "1 row(s)" in n for n in rep.notes)


def test_a_head_predicting_one_class_for_every_test_row_is_marked():
    """1% positives: a head that never predicts the positive class scores accuracy 0.99, which is the share of
    negatives, not skill; the row says so."""
    from utils.data import DatasetSpec
    from utils.experiment.rows import interval_note

    spec = DatasetSpec("rare", "binary", ["neg", "pos"])
    y = np.array([0] * 190 + [1] * 10)
    proba = np.linspace(0.05, 0.45, 200)  # varies, but never reaches 0.5
    note = interval_note(y, spec, {}, proba)
    assert note.startswith("predicts 'neg' for every test row: its accuracy is that class's share")
    assert "same probabilities" not in note and "too small" not in note
    assert interval_note(y, spec, {}, np.where(y == 1, 0.9, 0.1)) is None
    multi = DatasetSpec("m", "multiclass", ["a", "b", "c"])
    assert "predicts 'c'" in interval_note(np.repeat([0, 1, 2], 10), multi, {}, np.tile([0.2, 0.3, 0.5], (30, 1)) +
                                           np.linspace(0, 0.01, 30)[:, None])


def test_multilabel_rows_without_a_label_are_scored_as_negatives_for_every_class():
    """A multilabel row may carry no label at all (no finding): it counts as a negative of every class in F1 and
    AUC and as right in subset accuracy only when nothing is predicted, as sklearn scores it by hand."""
    from sklearn.metrics import f1_score, roc_auc_score

    from utils.metrics import classification_metrics

    y = np.array([[1, 0], [0, 1], [0, 0], [0, 0], [1, 1], [0, 0]])
    proba = np.array([[0.9, 0.2], [0.4, 0.8], [0.1, 0.1], [0.7, 0.2], [0.6, 0.3], [0.2, 0.6]])
    m = classification_metrics(y, proba, "multilabel", ["a", "b"])
    pred = (proba >= 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(3 / 6)  # rows 0, 1 and 2 match exactly (2: empty, predicted empty)
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["roc_auc"] == pytest.approx(np.mean([roc_auc_score(y[:, c], proba[:, c]) for c in range(2)]))
