"""Models you keep and apply (issue 17): save a trained head as a folder, load it, predict on new records, a
dataset split or precomputed embeddings; and vectors made elsewhere imported into the store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from utils import experiment as ex
from utils.__main__ import main
from utils.data.schema import DatasetError
from utils.embed import Embeddings
from utils.imported import ImportVectorsError, import_embeddings
from utils.models.saved import FusionModel, ModelFolderError

ROOT = Path(__file__).resolve().parents[1]
VIT = {"timm:test_vit": {"pretrained": False}}


def _extractors(tiny_bert):
    return {"text": f"hf:{tiny_bert}", "image": "timm:test_vit"}


@pytest.fixture
def trained(tmp_path, tiny_bert, one_thread):
    """A synthetic dataset, its embeddings and two trained heads (tiny models: seconds)."""
    ds = ex.load_dataset("synthetic", n=150)
    emb = ex.extract_embeddings(ds, _extractors(tiny_bert), VIT, show_progress=False)
    rows = ex.train_heads(ds, emb, ["early_fusion", "late_fusion"], epochs=15, show_progress=False)
    return ds, emb, rows


@pytest.fixture
def saved(trained, tmp_path):
    ds, emb, rows = trained
    return ds, emb, rows, ex.save_model(rows, tmp_path / "model")


def test_cli_main_job_saves_a_model_and_predict_reproduces_its_test_macro_f1(tmp_path, tiny_bert, capsys, one_thread):
    results = tmp_path / "out"
    args = ["--dataset-options", '{"n": 150}', "--text", f"hf:{tiny_bert}", "--image", "timm:test_vit",
            "--image-options", '{"pretrained": false}', "--epochs", "10", "--results-dir", str(results)]
    assert main(args) == 0
    out = capsys.readouterr().out
    folder = results / "models" / "embed_model_synthetic"
    assert f"model: {folder}" in out and "python -m utils predict --model" in out
    for name in ("config.json", "model.safetensors", "preprocessing.safetensors", "README.md"):
        assert (folder / name).is_file(), name
    config = json.loads((folder / "config.json").read_text())
    table = pd.read_csv(results / "embed_model_synthetic.csv")
    reported = float(table.set_index("model").macro_f1[config["head"]])

    csv = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(folder), "--dataset", "synthetic", "--dataset-options", '{"n": 150}',
                 "--split", "test", "--output", str(csv)]) == 0
    printed = capsys.readouterr().out
    assert f"saved: {csv}" in printed
    preds = pd.read_csv(csv)
    assert len(preds) == config["training"]["n_rows"]["test"]
    m = ex.prediction_metrics(str(folder), preds)
    assert m["macro_f1"] == pytest.approx(reported, abs=5e-4)  # the results table rounds to 4 places
    assert abs(m["macro_f1"] - config["metrics"]["test"]["macro_f1"]) < 1e-9

    # a second process, network off, gives the same probabilities bit for bit
    code = ("import sys, numpy as np; from utils import experiment as ex; ds = ex.load_dataset('synthetic', n=150); "
            f"p = ex.predict_proba({str(folder)!r}, ds, split='test', show_progress=False); "
            "np.save(sys.argv[1], p.to_numpy())")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "p.npy")], check=True, env=env, cwd=tmp_path)
    other = np.load(tmp_path / "p.npy")
    here = preds[[c for c in preds.columns if c.startswith("proba_")]].to_numpy()
    assert np.array_equal(np.float32(other), np.float32(here)) or np.allclose(other, here, rtol=0, atol=5e-7)
    ours = ex.predict_proba(str(folder), ex.load_dataset("synthetic", n=150), split="test", show_progress=False)
    assert np.array_equal(ours.to_numpy(), other)


def test_saved_folder_round_trips_and_the_card_says_what_it_is(saved):
    ds, emb, rows, folder = saved
    fm = ex.load_model(folder)
    config = json.loads((folder / "config.json").read_text())
    from utils.experiment.predict import choose_row

    best = choose_row(rows)
    assert fm.name == rows[best]["model"] and fm.classes == list(ds.spec.classes)
    assert config["extractors"]["text"]["config"]["id"].startswith("hf:")
    assert config["extractors"]["image"]["dim"] == emb.vectors["image"].shape[1]
    assert 0.05 < config["temperature"] < 20
    card = (folder / "README.md").read_text()
    assert rows[best]["model"] in card and "macro" in card.lower()
    # nothing in the folder executes code when read: no pickles
    assert not [p for p in folder.rglob("*") if p.suffix in (".pt", ".pkl", ".bin", ".pickle")]
    # predictions on the test embeddings equal the trained head's test outputs
    test = ds.split_mask("test")
    sub = Embeddings({m: v[test] for m, v in emb.vectors.items()}, ids=emb.ids[test], sources=emb.sources)
    proba = ex.predict_proba(fm, sub, calibrated=False).to_numpy()
    logits = rows.outputs[best].test_logits
    e = np.exp(logits - logits.max(1, keepdims=True))
    assert np.allclose(proba, e / e.sum(1, keepdims=True), atol=1e-5)


def test_choosing_a_head_by_name_and_seed(trained, tmp_path):
    ds, emb, rows = trained
    path = ex.save_model(rows, tmp_path / "late", model="late_fusion", seed=0)
    assert ex.load_model(path).name == "late_fusion"
    with pytest.raises(ValueError, match="seed"):
        ex.save_model(rows, tmp_path / "x", model="late_fusion", seed=7)
    with pytest.raises(ValueError, match="nope"):
        ex.save_model(rows, tmp_path / "y", model="nope")
    with pytest.raises(Exception, match="exists|overwrite"):
        ex.save_model(rows, path, model="late_fusion")


@pytest.mark.parametrize("damage", ["config_field", "weights", "not_a_folder", "model_type", "missing_file"])
def test_a_damaged_or_foreign_folder_is_refused_by_name(saved, tmp_path, damage):
    folder = saved[3]
    if damage == "config_field":
        c = json.loads((folder / "config.json").read_text())
        c["temperature"] = 3.0
        (folder / "config.json").write_text(json.dumps(c))
        target = "config.json"
    elif damage == "weights":
        raw = bytearray((folder / "model.safetensors").read_bytes())
        raw[-3] ^= 0xFF
        (folder / "model.safetensors").write_bytes(bytes(raw))
        target = "model.safetensors"
    elif damage == "not_a_folder":
        folder = tmp_path / "nothing_here"
        folder.mkdir()
        target = "config.json"
    elif damage == "model_type":
        c = json.loads((folder / "config.json").read_text())
        c["model_type"] = "bert"
        (folder / "config.json").write_text(json.dumps(c))
        target = "model_type"
    else:
        (folder / "preprocessing.safetensors").unlink()
        target = "preprocessing.safetensors"
    with pytest.raises(ModelFolderError, match=target):
        ex.load_model(folder)


def test_another_extractor_is_refused_before_anything_is_embedded(saved, tmp_path, tiny_bert):
    ds, emb, rows, folder = saved
    # the same folder name, other weights: the probe vectors differ
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tiny_bert)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    fake = tmp_path / "bert_copy"
    shutil.copytree(tiny_bert, fake)
    model.save_pretrained(fake)
    c = json.loads((folder / "config.json").read_text())
    c["extractors"]["text"]["config"]["id"] = f"hf:{fake}"
    c["extractors"]["text"]["spec"] = f"hf:{fake}"
    other = tmp_path / "retargeted"
    fm = ex.load_model(folder)
    fm.config = c
    fm.save(other)
    frame = pd.DataFrame({"id": ["a", "b"], "text": ["a red cat", "a dog"],
                          "image_path": [str(ds.resolve_path(p)) for p in ds.df.image_path[:2]]})
    with pytest.raises(ex.ExtractorMismatchError, match="probe"):
        ex.predict(other, frame, show_progress=False)
    # precomputed embeddings from another extractor configuration are refused too
    bad = Embeddings(emb.vectors, ids=emb.ids, sources={**emb.sources, "image": {"config": {"id": "timm:other",
                                                                                            "options": {}}}})
    with pytest.raises(ex.ExtractorMismatchError, match="timm:other"):
        ex.predict(folder, bad)


def test_new_records_from_a_table_with_missing_modalities(saved, tmp_path):
    ds, emb, rows, folder = saved
    photos = tmp_path / "new" / "photos"
    photos.mkdir(parents=True)
    for i in range(4):
        shutil.copy(ds.resolve_path(ds.df.image_path[i]), photos / f"p{i}.png")
    table = pd.DataFrame({"id": ["n0", "n1", "n2", "n3"],
                          "text": [ds.df.text[0], "", ds.df.text[2], ds.df.text[3]],
                          "image_path": ["photos/p0.png", "photos/p1.png", "photos/gone.png", "photos/p3.png"]})
    (photos / "p3.png").write_bytes(b"not an image")
    path = tmp_path / "new" / "records.csv"
    table.to_csv(path, index=False)
    preds = ex.predict(folder, path, show_progress=False)
    assert list(preds.id) == ["n0", "n1", "n2", "n3"]
    assert list(preds.missing_text) == [False, True, False, False]
    assert list(preds.missing_image) == [False, False, True, True]
    fm = ex.load_model(folder)
    assert set(preds.prediction) <= set(fm.classes)
    P = preds[[f"proba_{c}" for c in fm.classes]].to_numpy()
    assert np.allclose(P.sum(1), 1, atol=1e-5)
    # the flagged record was scored with the stand-in: the same as giving the training mean by hand
    vec = ex.predict_proba(fm, path, show_progress=False)
    assert np.allclose(vec.to_numpy(), P)
    with pytest.raises(DatasetError, match="strict"):
        ex.predict(folder, path, strict=True, show_progress=False)
    out = ex.save_predictions(preds, tmp_path / "p.csv")
    assert pd.read_csv(out).shape == preds.shape


def test_stand_in_prediction_equals_the_training_mean_by_hand(saved):
    ds, emb, rows, folder = saved
    fm = ex.load_model(folder)
    vectors = {m: v[:5].copy() for m, v in emb.vectors.items()}
    by_hand = {m: v.copy() for m, v in vectors.items()}
    vectors["image"][1] = np.nan
    by_hand["image"][1] = fm.stand_ins["image"]
    got = ex.predict(fm, vectors, ids=list("abcde"))
    assert list(got.missing_image) == [False, True, False, False, False]
    assert np.allclose(got[[c for c in got.columns if c.startswith("proba_")]].to_numpy(),
                       fm.predict_proba(by_hand), atol=1e-6)


def test_columns_and_classes_are_checked_before_extraction(saved, tmp_path):
    folder = saved[3]
    frame = pd.DataFrame({"id": ["a"], "caption": ["x"], "image_path": ["nope.png"]})
    with pytest.raises(DatasetError, match="text"):
        ex.predict(folder, frame, show_progress=False)
    frame = pd.DataFrame({"id": ["a"], "text": ["x"], "image_path": ["nope.png"], "label": ["zebra"]})
    with pytest.raises(DatasetError, match="zebra"):
        ex.predict(folder, frame, show_progress=False)
    assert not list((Path(os.environ["MMFUSION_EMBEDDINGS_DIR"])).glob("predict-frame-*"))


def test_calibrated_and_raw_probabilities_differ_only_by_temperature(saved):
    ds, emb, rows, folder = saved
    fm = ex.load_model(folder)
    cal = ex.predict(fm, emb)
    raw = ex.predict(fm, emb, calibrated=False)
    assert (cal.prediction == raw.prediction).all()
    cols = [f"proba_{c}" for c in fm.classes]
    if abs(fm.temperature - 1) > 1e-3:
        assert not np.allclose(cal[cols].to_numpy(), raw[cols].to_numpy())
    logits = fm.logits(emb.vectors)
    z = logits / fm.temperature
    e = np.exp(z - z.max(1, keepdims=True))
    assert np.allclose(cal[cols].to_numpy(), e / e.sum(1, keepdims=True), atol=1e-5)


def test_embeddings_are_aligned_by_id_not_position(trained):
    ds, emb, rows = trained
    order = np.arange(len(emb.ids))[::-1]
    flipped = Embeddings({m: v[order] for m, v in emb.vectors.items()}, ids=emb.ids[order], sources=emb.sources)
    again = ex.train_heads(ds, flipped, ["early_fusion"], epochs=15, show_progress=False)
    first = [r for r in rows if r["model"] == "early_fusion"][0]
    assert again[0]["macro_f1"] == pytest.approx(first["macro_f1"], abs=1e-9)
    with pytest.raises(KeyError, match=str(emb.ids[4])):
        ex.train_heads(ds, Embeddings({m: np.delete(v, 4, 0) for m, v in emb.vectors.items()},
                                      ids=np.delete(emb.ids, 4)), ["early_fusion"], epochs=1, show_progress=False)
    with pytest.raises(ValueError, match="rows|ids"):
        Embeddings({m: v[:-1] for m, v in emb.vectors.items()}, ids=emb.ids)


# ------------------------------------------------------------------------------------ bring your own vectors
def _made_elsewhere(ds, dim=12, seed=0):
    """Vectors that carry the label (so a head must find it), in shuffled order, as another tool would write."""
    rng = np.random.default_rng(seed)
    y = pd.Categorical(ds.df.label, categories=ds.spec.classes).codes
    centres = rng.normal(size=(len(ds.spec.classes), dim)) * 3
    vec = (centres[y] + rng.normal(size=(len(ds), dim))).astype(np.float32)
    order = rng.permutation(len(ds))
    return ds.df.id.astype(str).to_numpy()[order], vec[order]


def _train_on_import(ds, name, tiny_bert):
    emb = ex.extract_embeddings(ds, {"text": f"hf:{tiny_bert}", "image": f"imported:{name}"}, show_progress=False)
    rows = ex.train_heads(ds, emb, ["image_only", "early_fusion"], epochs=20, show_progress=False)
    return {r["model"]: r for r in rows}


@pytest.mark.parametrize("form", ["array", "npy", "parquet", "csv", "clip_retrieval"])
def test_imported_vectors_train_heads(tmp_path, tiny_bert, form, one_thread):
    ds = ex.load_dataset("synthetic", n=150)
    ids, vec = _made_elsewhere(ds)
    kw = {}
    if form == "array":
        source, kw = vec, {"ids": list(ids)}
    elif form == "npy":
        source = tmp_path / "v.npy"
        np.save(source, vec)
        (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
        kw = {"ids": tmp_path / "ids.txt"}
    elif form == "parquet":
        source = tmp_path / "v.parquet"
        pd.DataFrame({"id": ids, "embedding": list(vec)}).to_parquet(source)
    elif form == "csv":  # the original framework's layout: an id column and one column per dimension
        source = tmp_path / "Embeddings_dinov2_base.csv"
        frame = pd.DataFrame(vec, columns=[str(i) for i in range(vec.shape[1])])
        frame.insert(0, "id", ids)
        frame.to_csv(source, index=False)
    else:  # clip-retrieval: img_emb/img_emb_0.npy + metadata/metadata_0.parquet with image_path
        source = tmp_path / "clip_out"
        (source / "img_emb").mkdir(parents=True)
        (source / "metadata").mkdir()
        half = len(ids) // 2
        paths = ds.df.set_index(ds.df.id.astype(str)).image_path.loc[ids].to_numpy()
        for k, sl in enumerate((slice(0, half), slice(half, None))):
            np.save(source / "img_emb" / f"img_emb_{k}.npy", vec[sl].astype(np.float16))
            pd.DataFrame({"image_path": [str(ds.resolve_path(p)) for p in paths[sl]]}).to_parquet(
                source / "metadata" / f"metadata_{k}.parquet")
    store = import_embeddings(ds, "image", source, "mine", **kw)
    back = store.aligned(ds.df.id.astype(str))
    want = pd.DataFrame(vec, index=ids).loc[ds.df.id.astype(str)].to_numpy()
    if form == "clip_retrieval":  # clip-retrieval writes float16: the store holds exactly those values
        want = want.astype(np.float16).astype(np.float32)
    assert np.array_equal(back, want)
    by = _train_on_import(ds, "mine", tiny_bert)
    assert by["image_only"]["macro_f1"] > 0.8  # the planted signal is found
    # the same vectors again: nothing changes; other vectors are refused and the store kept
    assert import_embeddings(ds, "image", source, "mine", **kw).reused
    with pytest.raises(ImportVectorsError, match="overwrite"):
        import_embeddings(ds, "image", vec[:, ::-1].copy(), "mine", ids=list(ids))
    assert np.array_equal(store.aligned(ds.df.id.astype(str)), back)


@pytest.mark.parametrize("fault,match", [
    ("unknown_id", "zzz"), ("duplicate", "twice|duplicate|appears again"), ("nan", "NaN"), ("width", "width|columns|dimension"),
    ("not_number", "row 3"),
])
def test_import_errors_name_the_file_and_row(tmp_path, fault, match):
    ds = ex.load_dataset("synthetic", n=60)
    ids, vec = _made_elsewhere(ds, dim=4)
    frame = pd.DataFrame(vec, columns=[f"d{i}" for i in range(4)]).astype(object)
    frame.insert(0, "id", ids)
    if fault == "unknown_id":
        frame.loc[2, "id"] = "zzz"
    elif fault == "duplicate":
        frame.loc[5, "id"] = frame.loc[4, "id"]
    elif fault == "nan":
        frame.loc[1, "d2"] = np.nan
    elif fault == "not_number":
        frame.loc[3, "d1"] = "abc"
    path = tmp_path / "vec.csv"
    if fault == "width":
        text = frame.to_csv(index=False).splitlines()
        text[3] = text[3] + ",0.5"
        path.write_text("\n".join(text) + "\n")
    else:
        frame.to_csv(path, index=False)
    with pytest.raises((ImportVectorsError, ValueError), match=match) as e:
        import_embeddings(ds, "image", path, "bad")
    assert "vec.csv" in str(e.value)
