"""Alignment: gap measures, post-hoc methods (fitted on train), InfoNCE and the unified space."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from utils.align import (
    CCAAlign, CentroidShift, CommonDim, MeanCentering, Procrustes, gap_report, l2_normalize, linear_cka, modality_gap,
    orthogonal_procrustes, pair_similarity, pca_variance,
)


def _cloud(n=200, d=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def test_gap_of_identical_clouds_is_zero_and_of_shifted_ones_is_the_shift():
    a = _cloud()
    assert modality_gap(a, a.copy()) == pytest.approx(0.0, abs=1e-12)
    shift = np.zeros(16)
    shift[3], shift[7] = 3.0, -4.0  # |shift| = 5
    assert modality_gap(a, a + shift, normalize=False) == pytest.approx(5.0, abs=1e-9)
    # normalised (Liang et al.): two point masses on the sphere, e1 and e2 -> gap sqrt(2)
    e1, e2 = np.tile(np.eye(16)[0], (5, 1)) * 3, np.tile(np.eye(16)[1], (5, 1)) * 0.5
    assert modality_gap(e1, e2) == pytest.approx(np.sqrt(2))


def test_gap_needs_equal_dims_with_a_clear_error():
    with pytest.raises(ValueError, match="common dimension"):
        modality_gap(_cloud(d=4), _cloud(d=5))


def test_pair_similarity_cka_and_pca_variance():
    a = _cloud()
    s = pair_similarity(a, a)
    assert s["matched"] == pytest.approx(1.0) and s["unmatched"] < 0.3 and s["matched_wins"] == 1.0
    q, _ = np.linalg.qr(_cloud(16, 16, 1))
    assert linear_cka(a, a @ q * 3.0) == pytest.approx(1.0)  # invariant to rotation and scale
    assert linear_cka(a, _cloud(seed=5)) < 0.2
    x = np.zeros((50, 8))
    x[:, 0] = np.arange(50)  # all variance on one axis
    v = pca_variance(x, (1, 2))
    assert v[1] == pytest.approx(1.0) and v[2] == pytest.approx(1.0)
    rep = gap_report({"text": a, "image": a + 1.0}, "text", "image")
    assert rep["n"] == 200 and rep["gap"] > 0 and rep["cka"] == pytest.approx(1.0)


def _two_modalities(n=300, seed=0, da=12, db=12):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 6))
    a = z @ rng.normal(size=(6, da)) + rng.normal(size=da) * 2 + 0.1 * rng.normal(size=(n, da))
    b = z @ rng.normal(size=(6, db)) + rng.normal(size=db) * 2 + 0.1 * rng.normal(size=(n, db))
    return a, b


def test_lambda_one_closes_the_gap_on_training_data_and_minus_one_doubles_it():
    a, b = _two_modalities()
    before = modality_gap(a, b)
    assert before > 0.3
    ta, tb = CentroidShift(lam=1.0, renormalize=False).fit(a, b).transform(a, b)
    assert modality_gap(ta, tb, normalize=False) == pytest.approx(0.0, abs=1e-10)  # exact before re-normalising
    ta, tb = CentroidShift(lam=1.0).fit(a, b).transform(a, b)
    assert modality_gap(ta, tb) < 0.25 * before
    ta, tb = CentroidShift(lam=-1.0, renormalize=False).fit(a, b).transform(a, b)
    assert modality_gap(ta, tb, normalize=False) == pytest.approx(2 * before)
    ta, tb = CentroidShift(lam=0.0).fit(a, b).transform(a, b)
    assert modality_gap(ta, tb) == pytest.approx(before)


@pytest.mark.parametrize("method", ["pca", "lstsq"])
def test_shift_with_different_dims_uses_a_fitted_map(method):
    a, b = _two_modalities(da=20, db=8)
    cd = CommonDim(method).fit(a, b)
    ta, tb = cd.transform(a, b)
    assert ta.shape == (300, 8) and tb.shape == (300, 8)
    np.testing.assert_allclose(np.linalg.norm(ta, axis=1), 1.0, atol=1e-9)
    if method == "pca":  # only the wider modality is mapped; the narrower one is just normalised
        np.testing.assert_allclose(tb, l2_normalize(b))
    sa, sb = CentroidShift(lam=1.0, common=method, renormalize=False).fit(a, b).transform(a, b)
    assert modality_gap(sa, sb, normalize=False) == pytest.approx(0.0, abs=1e-10)


def test_shift_fitted_on_train_is_applied_unchanged_to_other_rows():
    a, b = _two_modalities(n=400)
    sh = CentroidShift(lam=1.0).fit(a[:200], b[:200])
    g = sh.gap_vector.copy()
    ta, _ = sh.transform(a[200:], b[200:])
    np.testing.assert_allclose(sh.gap_vector, g)  # transform never refits
    expected = l2_normalize(l2_normalize(a[200:]) + 0.5 * g)
    np.testing.assert_allclose(ta, expected)


def test_mean_centering_removes_the_training_means():
    a, b = _two_modalities()
    mc = MeanCentering().fit(a, b)
    np.testing.assert_allclose(mc.means[0], l2_normalize(a).mean(0))
    ta, tb = mc.transform(a, b)
    assert modality_gap(ta, tb) < 0.5 * modality_gap(a, b)


def test_procrustes_recovers_a_known_rotation():
    a = _cloud(100, 8)
    q, _ = np.linalg.qr(_cloud(8, 8, 3))
    np.testing.assert_allclose(orthogonal_procrustes(a, a @ q), q, atol=1e-10)
    p = Procrustes().fit(a, a @ q)
    np.testing.assert_allclose(p.rotation, q, atol=1e-10)
    ta, tb = p.transform(a, a @ q)
    np.testing.assert_allclose(ta, tb, atol=1e-10)


def test_cca_correlates_the_shared_factor():
    a, b = _two_modalities(da=10, db=7)
    ta, tb = CCAAlign(n_components=3).fit(a[:200], b[:200]).transform(a[200:], b[200:])
    assert ta.shape == (100, 3) == tb.shape
    r = np.corrcoef(ta[:, 0], tb[:, 0])[0, 1]
    assert r > 0.9


def _fake_dataset(n=120, seed=0):
    from utils.data.schema import DatasetSpec, MultimodalDataset

    rng = np.random.default_rng(seed)
    labels = np.array(["a", "b", "c", "d"])[np.arange(n) % 4]
    split = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4))
    df = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "text": ["x"] * n, "image_path": ["x.png"] * n,
                       "label": labels, "split": split})
    spec = DatasetSpec(name="fake", task="multiclass", classes=["a", "b", "c", "d"], root="")
    return MultimodalDataset(df, spec), rng


def test_align_embeddings_fits_on_train_only_and_keeps_missing_rows_missing():
    from utils.experiment import align_embeddings, compare_alignments, gap_table
    from utils.experiment import Embeddings

    ds, rng = _fake_dataset()
    y = ds.labels()
    protos = rng.normal(size=(4, 8))
    text = protos[y] + 0.3 * rng.normal(size=(120, 8)) + 3.0
    image = protos[y] @ rng.normal(size=(8, 6)) + 0.3 * rng.normal(size=(120, 6)) - 3.0
    text[5] = np.nan
    emb = Embeddings({"text": text, "image": image}, {"text": "t", "image": "i"}, ids=ds.df["id"])
    aligned, sh = align_embeddings(ds, emb, "shift", lam=1.0)
    train = np.flatnonzero((ds.df.split == "train").to_numpy() & np.isfinite(text).all(1))
    ref = CentroidShift(lam=1.0).fit(text[train], image[train])
    np.testing.assert_allclose(sh.gap_vector, ref.gap_vector)
    assert np.isnan(aligned.vectors["text"][5]).all() and np.isnan(aligned.vectors["image"][5]).all()
    assert aligned.vectors["text"].shape == (120, 6)
    gt = gap_table(ds, aligned)
    base, _ = align_embeddings(ds, emb, "shift", lam=0.0)  # common-dim map only
    before = gap_table(ds, base)
    assert list(gt["split"]) == ["train", "val", "test"]
    assert gt["gap"].iloc[0] < 0.4 * before["gap"].iloc[0]  # re-normalising leaves a little
    rows = compare_alignments(ds, emb, ["shift"], heads=["early_fusion"], epochs=20, batch_size=32, device="cpu")
    assert [r["alignment"] for r in rows] == ["raw (unnormalised)", "none (normalised, pca)", "shift(lambda=1, pca)"]
    assert [r["method"] for r in rows] == ["raw", "none", "shift"]
    assert rows[2]["gap_train_after"] < 0.4 * rows[2]["gap_train_before"]
    assert rows[1]["gap_train_after"] == pytest.approx(rows[1]["gap_train_before"])  # the control does not align
    # was: 0 <= accuracy <= 1. Both modalities carry the class (prototypes + small noise): every head finds it,
    # before and after the shift (chance is 0.25)
    assert all(r["accuracy"] > 0.9 and r["n_test"] == 30 for r in rows), [r["accuracy"] for r in rows]


# ------------------------------------------------------------ contrastive / unified space

def test_infonce_lower_for_aligned_than_shuffled_pairs():
    import torch

    from utils.align.contrastive import InfoNCE, MultiModalInfoNCE

    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(32, 16), dim=1)
    b = torch.nn.functional.normalize(a + 0.1 * torch.randn(32, 16), dim=1)
    scale = torch.tensor(10.0)
    aligned = InfoNCE()(a, b, scale)
    shuffled = InfoNCE()(a, b[torch.randperm(32)], scale)
    assert aligned < shuffled - 1.0
    # hand check: two orthogonal pairs at scale s -> log(1 + e^-s)
    e = torch.eye(2)
    assert float(InfoNCE()(e, e, torch.tensor(3.0))) == pytest.approx(np.log(1 + np.exp(-3.0)), rel=1e-5)
    loss = MultiModalInfoNCE(["text", "image", "audio"], {"image-text": 2.0, ("audio", "text"): 0.5})
    assert loss.weights == {"image-text": 2.0, "audio-text": 0.5, "audio-image": 1.0}
    assert loss.temperature == pytest.approx(0.07)
    total, parts = loss({"text": a, "image": b})  # only the pair present counts
    assert set(parts) == {"image-text"} and float(total.detach()) == pytest.approx(float(parts["image-text"]), rel=1e-5)
    # the per-pair losses stay detached tensors on the batch's device: no host sync per pair and step
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 and not v.requires_grad for v in parts.values())
    with pytest.raises(ValueError, match="unknown modality pairs"):
        MultiModalInfoNCE(["text", "image"], {"audio-text": 1.0})


@pytest.mark.parametrize("n_mod", [2, 3])
def test_unified_space_training_reduces_the_loss(n_mod):
    from utils.align import UnifiedConfig, fit_unified, project, synthetic_modality
    from utils.align.unified import contrastive_loss

    rng = np.random.default_rng(0)
    n = 240
    z = rng.normal(size=(n, 8))
    vectors = {"text": z @ rng.normal(size=(8, 20)) + 0.2 * rng.normal(size=(n, 20)),
               "image": z @ rng.normal(size=(8, 12)) + 0.2 * rng.normal(size=(n, 12))}
    if n_mod == 3:
        vectors["audio"] = z @ rng.normal(size=(8, 10)) + 0.2 * rng.normal(size=(n, 10))
    split = np.array(["train"] * 160 + ["val"] * 40 + ["test"] * 40)
    test_rows = np.arange(200, 240)
    cfg = UnifiedConfig(dim=32, epochs=1, batch_size=64, patience=100, device="cpu")
    untrained = fit_unified(vectors, split, cfg)
    before, _ = contrastive_loss(untrained, vectors, test_rows)
    res = fit_unified(vectors, split, UnifiedConfig(dim=32, epochs=40, batch_size=64, patience=100, device="cpu"))
    after, parts = contrastive_loss(res, vectors, test_rows)
    assert after < 0.7 * before
    assert len(parts) == (1 if n_mod == 2 else 3)
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    out = project(res, vectors)
    assert out["text"].shape == (n, 32)
    np.testing.assert_allclose(np.linalg.norm(out["image"], axis=1), 1.0, atol=1e-5)
    third = synthetic_modality(np.arange(n) % 4, dim=16)
    np.testing.assert_array_equal(third, synthetic_modality(np.arange(n) % 4, dim=16))
    assert third.shape == (n, 16)


def test_cca_caps_components_at_the_data_rank():
    from utils.align.posthoc import CCAAlign

    rng = np.random.default_rng(0)
    z = rng.normal(size=(40, 3))  # both modalities live in a 3-d subspace
    a = z @ rng.normal(size=(3, 20))
    b = z @ rng.normal(size=(3, 12)) + 0.01 * rng.normal(size=(40, 12))
    cca = CCAAlign(n_components=16).fit(a, b)
    assert cca.k == 3
    ta, tb = cca.transform(a, b)
    assert np.isfinite(ta).all() and np.isfinite(tb).all() and ta.shape == (40, 3)


# ------------------------------------------------------------------- the seed's ESC-50 recipe (seed 001)
def test_esc50_seed_recipe_merges_clips_per_class_and_fold(tmp_path):
    """Clips merged per class (within each fold, so the test fold stays unseen), one text folder and one image
    folder per class: each merged file is its source clips end to end, sample for sample."""
    import soundfile as sf

    from utils import data
    from utils.data.esc50 import merge_clips

    from .fixtures_data import build

    fx = build("esc50", tmp_path / "esc50")
    ds = data.load("esc50", root=fx.root, class_texts="class_text_folders", class_images="class_images", merged="merged")
    plain = data.load("esc50", root=fx.root, class_texts="class_text_folders", class_images="class_images")
    assert ds.spec.modalities == ["text", "image", "audio"] and ds.spec.variant != plain.spec.variant
    # one record per (fold, class) present among the usable clips; the fold decides the split as before
    want = plain.df.groupby(["fold", "label"]).size()
    assert len(ds.df) == len(want) and sorted(zip(ds.df["fold"], ds.df["label"])) == sorted(want.index)
    assert (ds.df["split"] == np.where(ds.df["fold"] == 5, "test", np.where(ds.df["fold"] == 4, "val", "train"))).all()
    table = pd.read_csv(fx.root / "meta" / "esc50_merged.csv", dtype=str)
    assert table["n_clips"].astype(int).sum() == len(plain.df)  # every usable clip, once
    for rec in table.to_dict("records")[:4]:
        merged, sr = sf.read(str(fx.root / "merged" / rec["filename"]), dtype="float32")
        parts = [sf.read(str(fx.root / "audio" / s), dtype="float32")[0] for s in rec["sources"].split(" ")]
        assert sr == 8000 and np.array_equal(merged, np.concatenate(parts))
        assert sorted(rec["sources"].split(" ")) == sorted(
            f + ".wav" for f in plain.df["id"][(plain.df["fold"] == int(rec["fold"])) & (plain.df["label"] == rec["category"])])
    # texts from the class's folder of .txt files, images from its folder, k mod n within the class
    dog = ds.df[ds.df["label"] == "dog"].reset_index(drop=True)
    assert [t for t in dog["text"]] == [f"text {k % 3} about the sound of dog" for k in range(len(dog))]
    assert list(dog["image_path"]) == [f"class_images/dog/{k % 2}.png" for k in range(len(dog))]
    assert ds.resolve_path(ds.df["audio_path"].iloc[0]).is_file()
    # made once: a second load reuses the files; clips_per_merge=1 gives back one record per clip
    stamp = (fx.root / "merged" / table["filename"].iloc[0]).stat().st_mtime_ns
    data.load("esc50", root=fx.root, class_texts="class_text_folders", merged="merged")
    assert (fx.root / "merged" / table["filename"].iloc[0]).stat().st_mtime_ns == stamp
    single = data.load("esc50", root=fx.root, merged="single", clips_per_merge=1)
    assert len(single.df) == len(plain.df)
    with pytest.raises(data.DatasetError, match="no text for class"):
        (fx.root / "class_text_folders" / "rain" / "0.txt").write_text("  ")
        for f in (fx.root / "class_text_folders" / "rain").glob("[12].txt"):
            f.unlink()
        data.load("esc50", root=fx.root, class_texts="class_text_folders", merged="merged")
    assert merge_clips(fx.root, "merged") == fx.root / "meta" / "esc50_merged.csv"
