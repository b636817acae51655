"""Focal loss, logistic-regression baseline, image-guided text selection and the multi-input trainer."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from utils.models.losses import FocalLoss, class_weight_vector, make_loss, targets_tensor
from utils.train import TrainConfig, fit, n_params
from utils.train import TensorBatches, fit_batches, predict

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread


sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731


# ------------------------------------------------------------------------------------------ focal loss
def test_focal_loss_equals_cross_entropy_at_gamma_zero():
    torch.manual_seed(0)
    logits, t = torch.randn(7, 4), torch.tensor([0, 1, 2, 3, 0, 1, 2])
    assert FocalLoss("multiclass", gamma=0)(logits, t).item() == pytest.approx(torch.nn.functional.cross_entropy(logits, t).item(), rel=1e-6)
    lb, tb = torch.randn(6, 1), torch.tensor([[1.0], [0], [1], [0], [0], [1]])
    pw = torch.tensor([3.0])
    want = torch.nn.BCEWithLogitsLoss(pos_weight=pw)(lb, tb).item()
    assert FocalLoss("binary", gamma=0, pos_weight=pw)(lb, tb).item() == pytest.approx(want, rel=1e-6)
    assert make_loss("binary", pw, "focal", gamma=0)(lb, tb).item() == pytest.approx(want, rel=1e-6)


def test_focal_loss_against_hand_computed_values():
    # multiclass: logits [2, 0, 0] true class 0 and [0, 1, 0] true class 2; gamma 2; alpha per class
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    t = torch.tensor([0, 2])
    p0 = math.exp(2) / (math.exp(2) + 2)
    p1 = 1 / (2 + math.e)
    fl = lambda p: -((1 - p) ** 2) * math.log(p)  # noqa: E731
    assert FocalLoss("multiclass", 2.0)(logits, t).item() == pytest.approx((fl(p0) + fl(p1)) / 2, rel=1e-6)
    alpha = [0.5, 1.0, 2.0]
    got = FocalLoss("multiclass", 2.0, alpha)(logits, t).item()
    assert got == pytest.approx((0.5 * fl(p0) + 2.0 * fl(p1)) / 2, rel=1e-6)
    # binary: positive with logit 0.3, negative with logit -1.2; gamma 2, alpha 0.25
    lb, tb = torch.tensor([[0.3], [-1.2]]), torch.tensor([[1.0], [0.0]])
    pos = -0.25 * (1 - sig(0.3)) ** 2 * math.log(sig(0.3))
    neg = -0.75 * sig(-1.2) ** 2 * math.log(1 - sig(-1.2))
    assert FocalLoss("binary", 2.0, 0.25)(lb, tb).item() == pytest.approx((pos + neg) / 2, rel=1e-6)
    # easy examples are down-weighted relative to cross-entropy
    assert FocalLoss("multiclass", 2.0)(logits, t).item() < torch.nn.functional.cross_entropy(logits, t).item()


def test_focal_loss_is_selectable_in_training_and_validated():
    y = np.array([0, 0, 0, 1, 2, 2])
    w = class_weight_vector(y, "multiclass", 3, "balanced")
    loss = make_loss("multiclass", w, "focal", gamma=1.0)
    assert isinstance(loss, FocalLoss) and torch.allclose(loss.alpha, w)  # class weights become alpha
    with pytest.raises(ValueError, match="loss must be one of"):
        make_loss("binary", None, "hinge")
    with pytest.raises(ValueError, match="does not fit"):
        make_loss("multiclass", None, "bce")
    from utils.models import build_head

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6)).astype(np.float32)
    yb = (X[:, 0] > 0).astype(int)
    res = fit(build_head("text_only", {"text": 6}, 1), X[:150], yb[:150], X[150:], yb[150:], "binary", ["n", "p"],
              TrainConfig(epochs=15, patience=None, loss="focal", focal_gamma=2.0, focal_alpha=0.5, lr=1e-2))
    assert res.history[-1]["train_loss"] < 0.5 * res.history[0]["train_loss"]


# ---------------------------------------------------------------------------------------------- logreg
def test_logreg_rows_are_compatible_and_counted():
    from utils.data import load
    from utils.experiment import Embeddings
    from utils.experiment import train_logreg

    ds = load("synthetic", n=80)
    y = ds.labels()
    rng = np.random.default_rng(0)
    text = np.eye(4)[y] * 3 + rng.normal(size=(80, 4))  # separable text features
    emb = Embeddings({"text": text.astype(np.float32), "image": rng.normal(size=(80, 3)).astype(np.float32)}, {"text": "t", "image": "i"}, ids=ds.df["id"])
    rows = train_logreg(ds, emb, seeds=[0, 1])
    assert [r["model"] for r in rows] == ["logreg", "logreg"] and [r["seed"] for r in rows] == [0, 1]
    r = rows[0]
    assert {"accuracy", "macro_f1", "roc_auc", "train_s_per_epoch", "inference_s", "n_params"} <= set(r)
    assert r["n_params"] == 7 * 4 + 4  # coefficients of 7 features x 4 classes + 4 intercepts
    assert r["accuracy"] > 0.8 and r["n_test"] == int((ds.df.split == "test").sum())


# ---------------------------------------------------------------------------------------------- guided
def test_guided_selector_shapes_params_mask_and_gradients():
    from utils.models.guided import ImageGuidedTextSelector

    H, D, T = 8, 6, 5
    m = ImageGuidedTextSelector(H, D, n_out=3, hidden=16)
    assert n_params(m) == ((H + D) * H + H) + ((H + D) * 16 + 16 + 2 * 16) + (16 * 3 + 3)
    tok, img = torch.randn(4, T, H), torch.randn(4, D)
    mask = torch.tensor([[1, 1, 1, 0, 0]] * 4)
    m.eval()
    out = m(tok, mask, img)
    assert out.shape == (4, 3)
    tok2 = tok.clone()
    tok2[:, 3:] = 100.0  # padding positions must not matter
    assert torch.allclose(m(tok2, mask, img), out)
    g = m.gates(tok, img)
    assert g.shape == (4, T, H) and bool(((g > 0) & (g < 1)).all())
    assert not torch.allclose(m.gates(tok, img + 1.0), g)  # the image steers the gates
    m.train()
    m(tok, mask, img).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


def test_guided_learns_and_early_stopping_restores_best_epoch():
    from utils.models.guided import ImageGuidedTextSelector

    rng = np.random.default_rng(0)
    n, T, H, D = 240, 6, 8, 4
    tokens = rng.normal(size=(n, T, H)).astype(np.float32)
    mask = np.ones((n, T), np.uint8)
    img = rng.normal(size=(n, D)).astype(np.float32)
    y = ((tokens[:, :, 0].mean(1) > 0) ^ (img[:, 0] > 0)).astype(int)  # needs both modalities
    data = lambda sl, sh: TensorBatches({"tokens": tokens[sl], "mask": mask[sl], "image": img[sl]}, targets_tensor(y[sl], "binary"), 32, sh)  # noqa: E731
    torch.manual_seed(0)
    m = ImageGuidedTextSelector(H, D, 1, hidden=32)
    res = fit_batches(m, data(slice(0, 200), True), data(slice(200, n), False), "binary", ["a", "b"], TrainConfig(epochs=15, patience=None, lr=1e-2))
    assert res.history[-1]["train_loss"] < 0.6 * res.history[0]["train_loss"]
    # noise labels: validation loss rises; the best validation epoch's weights are restored
    yn = rng.integers(2, size=n)
    noisy = lambda sl, sh: TensorBatches({"tokens": tokens[sl], "mask": mask[sl], "image": img[sl]}, targets_tensor(yn[sl], "binary"), 32, sh)  # noqa: E731
    torch.manual_seed(0)
    r2 = fit_batches(ImageGuidedTextSelector(H, D, 1, hidden=64), noisy(slice(0, 200), True), noisy(slice(200, n), False), "binary",
                     ["a", "b"], TrainConfig(epochs=40, patience=4, lr=3e-2))
    losses = [h["val_loss"] for h in r2.history]
    assert r2.best_epoch == int(np.argmin(losses)) + 1 and r2.epochs_run == r2.best_epoch + 4
    logits, t = predict(r2.model, noisy(slice(200, n), False))
    assert make_loss("binary")(logits, t).item() == pytest.approx(min(losses), rel=1e-5)


def test_token_feature_cache_and_end_to_end_agree(tiny_bert, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from utils.models.guided import GuidedEndToEnd
    from utils.token_features import cache_token_features, load_token_features

    texts = ["a small iron block", "the red car on the road", ""]
    ids = ["r0", "r1", "r2"]
    folder = cache_token_features(texts, ids, str(tiny_bert), tmp_path / "tok", max_length=12, show_progress=False)
    tokens, mask = load_token_features(folder)
    assert tokens.shape == (3, 12, 32) and tokens.dtype == np.float16 and mask.shape == (3, 12)
    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    assert mask.sum(1).tolist() == [len(tok(t)["input_ids"]) for t in texts]  # [CLS] ... [SEP]
    assert np.all(tokens[mask == 0] == 0)
    man = json.loads((folder / "manifest.json").read_text())
    assert man["max_length"] == 12 and man["hidden"] == 32
    t2, m2 = load_token_features(folder, ["r2", "r0"])  # reordered by id
    assert np.array_equal(t2[1], tokens[0]) and np.array_equal(m2[0], mask[2])
    with pytest.raises(KeyError, match="no token features"):
        load_token_features(folder, ["zz"])
    # end to end = encoder + selector; on the same inputs it matches the selector on cached features
    torch.manual_seed(0)
    e2e = GuidedEndToEnd(AutoModel.from_pretrained(str(tiny_bert)), image_dim=5, n_out=2, train_encoder=False).eval()
    img = torch.randn(3, 5)
    b = tok(texts, padding="max_length", max_length=12, return_tensors="pt")
    out = e2e(b["input_ids"], b["attention_mask"], img)
    cached = e2e.selector(torch.from_numpy(tokens.astype(np.float32)), torch.from_numpy(np.array(mask)), img)
    assert torch.allclose(out, cached, atol=1e-2)
    assert all(not p.requires_grad for p in e2e.encoder.parameters())


def test_guided_end_to_end_gradients_and_train_guided_on_cache(tiny_bert, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from utils.data import load
    from utils.experiment import image_guide_features, train_guided
    from utils.models.guided import GuidedEndToEnd, ImageGuidedTextSelector
    from utils.token_features import cache_token_features

    torch.manual_seed(0)
    e2e = GuidedEndToEnd(AutoModel.from_pretrained(str(tiny_bert)), image_dim=4, n_out=3, train_encoder=True, hidden=16)
    b = AutoTokenizer.from_pretrained(str(tiny_bert))(["a small iron block", "red silk"], padding=True, return_tensors="pt")
    e2e.train()
    e2e(b["input_ids"], b["attention_mask"], torch.randn(2, 4)).square().sum().backward()
    assert all(p.grad is not None for p in e2e.parameters()), "every encoder and selector parameter gets a gradient"

    ds = load("synthetic", n=40)
    img, names = image_guide_features(ds, ("timm:test_vit", "timm:test_resnet"), {s: {"pretrained": False} for s in ("timm:test_vit", "timm:test_resnet")},
                                      show_progress=False)
    assert img.shape[0] == 40 and len(names) == 2 and img.shape[1] > 0
    folder = cache_token_features(ds.items("text"), list(ds.df["id"]), str(tiny_bert), tmp_path / "tok", max_length=24, show_progress=False)
    rows = train_guided(ds, folder, img, seeds=[0, 1], epochs=3, batch_size=8, hidden=16)
    assert [r["model"] for r in rows] == ["guided_gated", "guided_gated"]
    assert rows[0]["n_params"] == n_params(ImageGuidedTextSelector(32, img.shape[1], 4, 16))
    assert rows[0]["n_test"] == int((ds.df.split == "test").sum()) and rows[0]["seed"] == 0 and rows[1]["seed"] == 1


def test_guided_gated_on_cache_learns_a_planted_congruence(tiny_bert, tmp_path):
    """Was: 0 <= accuracy <= 1 (true of any model). Text and image each say nothing about the label (chance
    0.5); only reading the colour word from the cached tokens and comparing it with the image decides it."""
    from utils.experiment import train_guided
    from utils.token_features import cache_token_features

    from .planted import congruence

    ds, images = congruence(400, seed=0)
    folder = cache_token_features(ds.items("text"), list(ds.df["id"]), str(tiny_bert), tmp_path / "tok", max_length=16,
                                  show_progress=False)
    img = np.concatenate(list(images.values()), axis=1)
    rows = train_guided(ds, folder, img, seeds=[0, 1], epochs=30, batch_size=32, hidden=64, device="cpu", lr=1e-2, patience=None)
    assert all(r["macro_f1"] > 0.85 for r in rows), [r["macro_f1"] for r in rows]
    # the same model with the image features shuffled across rows cannot find it
    shuffled = img[np.random.default_rng(1).permutation(len(img))]
    (r,) = train_guided(ds, folder, shuffled, seeds=[0], epochs=30, batch_size=32, hidden=64, device="cpu", lr=1e-2, patience=None)
    assert r["macro_f1"] < 0.7


def test_guided_run_kind_and_metric_monitor(tiny_bert):
    from utils import experiment as runs

    rows = runs.run_seeds({"kind": "guided_gated", "dataset_options": {"n": 40}, "text_model": str(tiny_bert), "max_length": 16,
                           "image_extractors": ["timm:test_vit", "timm:test_resnet"], "hidden": 16, "epochs": 3, "batch_size": 8,
                           "extractor_options": {"timm:test_vit": {"pretrained": False}, "timm:test_resnet": {"pretrained": False}},
                           "train": {"monitor": "val_macro_f1", "patience": None}}, seeds=[0, 1])
    assert [r["model"] for r in rows] == ["guided_gated", "guided_gated"] and rows[0]["config"]["kind"] == "guided_gated"
    assert all(len(r["history"]) == 3 and "val_macro_f1" in r["history"][0] for r in rows)
    s = runs.summarize(rows)
    assert s.loc[0, "seeds"] == 2 and s.loc[0, "accuracy_std"] == pytest.approx(np.std([r["accuracy"] for r in rows], ddof=1))


# ------------------------------------------------------------------------- the published MUSTI block (TSF)
def _tsf(tiny_bert, n_out=1, task=None, train_encoder=True, dims=(6, 5), tokens=3):
    from transformers import AutoModel

    from utils.models.guided import TextSelectionFusion

    torch.manual_seed(0)
    return TextSelectionFusion(AutoModel.from_pretrained(str(tiny_bert)), {"image_vit": dims[0], "image_resnet": dims[1]},
                               n_out, task, n_image_tokens=tokens, train_encoder=train_encoder)


def _tsf_batch(tiny_bert, dims=(6, 5)):
    from transformers import AutoTokenizer

    b = AutoTokenizer.from_pretrained(str(tiny_bert))(["a small iron block", "red silk on the shelf", "the cat"],
                                                       padding=True, return_tensors="pt")
    torch.manual_seed(1)
    return {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"],
            "image_vit": torch.randn(3, dims[0]), "image_resnet": torch.randn(3, dims[1])}


def test_tsf_shapes_parameter_count_and_gradients(tiny_bert):
    from utils.models.full import param_groups

    H, K = 32, 3
    m = _tsf(tiny_bert, n_out=2, task="multiclass", tokens=K)
    b = _tsf_batch(tiny_bert)
    m.train()
    out = m(**b)
    assert out.shape == (3, 2)
    branches = m.branch_logits(**b)
    assert list(branches) == ["image_vit", "image_resnet"] and all(v.shape == (3, 2) for v in branches.values())
    # per branch, by hand: image tokens D*K*H + K*H, mix 2H*H + H, LayerNorm 2H, cosine scorer D*C*H + C*H + scale + C
    branch = lambda D, C=2: (D * K * H + K * H) + (2 * H * H + H) + 2 * H + (D * C * H + C * H) + 1 + C  # noqa: E731
    assert n_params(m.head) == branch(6) + branch(5)
    assert n_params(m) == n_params(m.head) + n_params(m.encoder) and m.encoder.pooler is None
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters()), "a parameter got no gradient"
    groups = param_groups(m, 2e-5, 1e-3)  # the encoder at the fine-tuning rate, the new modules at the head rate
    assert [g["lr"] for g in groups] == [2e-5, 1e-3] and sum(p.numel() for p in groups[1]["params"]) == n_params(m.head)
    # a frozen encoder still passes gradients back to the mixers in front of it
    frozen = _tsf(tiny_bert, train_encoder=False)
    frozen.train()
    frozen(**b).sum().backward()
    assert n_params(frozen) == n_params(frozen.head) and not frozen.encoder.training
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in frozen.head.parameters())
    assert all(p.grad is None for p in frozen.encoder.parameters())
    with pytest.raises(ValueError, match="no image feature for branch"):
        m(input_ids=b["input_ids"], attention_mask=b["attention_mask"], image_vit=b["image_vit"])


def test_tsf_image_tokens_change_the_encoder_input(tiny_bert):
    """The image enters before the encoder (published block), not after it (our gated variant)."""
    m = _tsf(tiny_bert).eval()
    b = _tsf_batch(tiny_bert)
    seen = []
    hook = m.encoder.embeddings.register_forward_hook(lambda mod, args, kw, out: seen.append(kw["inputs_embeds"].clone()),
                                                      with_kwargs=True)
    with torch.no_grad():
        m.branch_logits(**b)
        other = dict(b, image_vit=b["image_vit"] + 1.0)
        m.branch_logits(**other)
    hook.remove()
    assert len(seen) == 4  # one encoder pass per branch, twice
    words = m.encoder.get_input_embeddings()(b["input_ids"])
    assert seen[0].shape == words.shape and not torch.allclose(seen[0], words)  # mixed, not the plain word embeddings
    assert not torch.allclose(seen[0], seen[2])  # another ViT feature: another encoder input for the ViT branch
    assert torch.allclose(seen[1], seen[3])  # ... and the same one for the ResNet branch
    # by hand for the ViT branch: LayerNorm(e + W [e; softmax(e U^T / sqrt(H)) U])
    mixer = m.head["image_vit"].mixer
    u = mixer.image_tokens(b["image_vit"]).view(3, 3, 32)
    read = torch.softmax(words @ u.transpose(1, 2) / 32 ** 0.5, dim=-1) @ u
    want = torch.nn.functional.layer_norm(words + mixer.mix(torch.cat([words, read], -1)), (32,), mixer.norm.weight, mixer.norm.bias)
    assert torch.allclose(seen[0], want, atol=1e-5)


def test_tsf_scores_by_cosine_and_votes_by_averaging_probabilities(tiny_bert):
    from utils.models.guided import CosineScorer, soft_vote

    # the vote, by hand: binary branches at logits 0 and 2 -> p = (0.5 + sigmoid(2)) / 2, returned as log-odds
    p = (0.5 + sig(2.0)) / 2
    got = soft_vote([torch.tensor([[0.0]]), torch.tensor([[2.0]])], "binary")
    assert got.item() == pytest.approx(math.log(p / (1 - p)), rel=1e-6)
    # extreme logits stay finite (log-sum-exp, not log of a rounded probability)
    assert torch.isfinite(soft_vote([torch.tensor([[60.0]]), torch.tensor([[80.0]])], "binary")).all()
    # multiclass: the log of the mean softmax
    a, b = torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([[0.0, 3.0, 0.0]])
    want = torch.log((torch.softmax(a, -1) + torch.softmax(b, -1)) / 2)
    assert torch.allclose(soft_vote([a, b], "multiclass"), want, atol=1e-6)
    assert torch.allclose(torch.softmax(soft_vote([a, b], "multiclass"), -1), torch.exp(want), atol=1e-6)
    # the model's output is the vote of its branches
    m = _tsf(tiny_bert).eval()
    batch = _tsf_batch(tiny_bert)
    with torch.no_grad():
        branches = m.branch_logits(**batch)
        assert torch.allclose(m(**batch), soft_vote(list(branches.values()), "binary"))
    # cosine scoring, by hand: s * cos(t, R v) + b
    sc = CosineScorer(4, 3, 1, scale=5.0)
    t, v = torch.randn(2, 4), torch.randn(2, 3)
    r = sc.image(v)
    want = 5.0 * torch.nn.functional.cosine_similarity(t, r, dim=-1)[:, None] + sc.bias
    assert torch.allclose(sc(t, v), want, atol=1e-6)
    assert torch.allclose(sc(3.0 * t, v), sc(t, v), atol=1e-5)  # the text vector's length does not count


def test_tsf_learns_a_planted_congruence_end_to_end(tiny_bert):
    """The published block through train_tsf (the tiny random BERT trained with it): neither modality alone says
    anything about the label, together they decide it. With the images shuffled across rows it cannot."""
    from utils.experiment import train_tsf

    from .planted import congruence

    ds, images = congruence(400, seed=0)
    opts = dict(epochs=10, batch_size=32, lr=3e-3, head_lr=3e-3, patience=None, max_length=16, device="cpu")
    (row,) = train_tsf(ds, tiny_bert, images, seeds=[0], **opts)
    assert row["model"] == "guided_tsf" and row["n_test"] == int((ds.df.split == "test").sum())
    assert row["macro_f1"] > 0.85, row["macro_f1"]
    rng = np.random.default_rng(1)
    perm = rng.permutation(len(ds.df))
    (shuffled,) = train_tsf(ds, tiny_bert, {k: v[perm] for k, v in images.items()}, seeds=[0], **opts)
    assert shuffled["macro_f1"] < 0.7, shuffled["macro_f1"]
    with pytest.raises(ValueError, match="aligned with the dataset"):
        train_tsf(ds, tiny_bert, {"image_a": images["image_a"][:10]}, seeds=[0], **opts)


def test_guided_run_kind_is_the_published_block(tiny_bert, tmp_path):
    from utils import experiment as ex

    rows = ex.run_seeds({"kind": "guided", "dataset_options": {"n": 40}, "text_model": str(tiny_bert), "max_length": 16,
                         "image_extractors": ["timm:test_vit", "timm:test_resnet"], "epochs": 1, "batch_size": 8,
                         "extractor_options": {"timm:test_vit": {"pretrained": False}, "timm:test_resnet": {"pretrained": False}},
                         "train": {"loss": "focal", "focal_gamma": 2.0, "focal_alpha": 0.3}}, seeds=[0])
    (r,) = rows
    assert r["model"] == "guided_tsf" and r["config"]["kind"] == "guided" and r["config"]["lr"] == 2e-5
    assert r["train_config"]["loss"] == "focal" and r["train_config"]["focal_alpha"] == 0.3
    assert r["extractors"]["image"].count("test_") == 2  # one branch per image extractor


def test_logreg_probabilities_cover_classes_absent_from_training():
    from utils.models.classic import fit_logreg, logreg_proba

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = np.array([0, 2, 3] * 20)  # classes 1 and 4 never seen in training
    clf = fit_logreg(X, y, "multiclass")
    p = logreg_proba(clf, X[:5], "multiclass", n_classes=5)
    assert p.shape == (5, 5)
    assert np.allclose(p[:, [1, 4]], 0) and np.allclose(p.sum(1), 1)
    np.testing.assert_allclose(p[:, [0, 2, 3]], clf.predict_proba(X[:5]))
