"""Metrics against hand-computed values: absent classes, multilabel absent labels, binary one-class splits,
and retrieval results that FAISS pads."""

from __future__ import annotations

import math

import numpy as np
import pytest

from utils.metrics import classification_metrics


def onehot(idx, n):
    out = np.full((len(idx), n), 0.01)
    out[np.arange(len(idx)), idx] = 0.97
    return out


def test_a_class_absent_from_test_and_predictions_is_not_scored():
    y = np.array([0, 1, 2, 0, 1, 2])  # class "d" (3) appears nowhere
    m = classification_metrics(y, onehot(y, 4), "multiclass", ["a", "b", "c", "d"])
    assert m["macro_f1"] == 1.0 and m["weighted_f1"] == 1.0  # was 0.75: "d" counted as F1 = 0
    assert m["n_classes_scored"] == 3 and m["per_class_f1"]["d"] is None


def test_a_class_only_predicted_is_scored_as_zero():
    y = np.array([0, 0, 1, 1])
    pred = np.array([0, 3, 1, 1])  # one row predicted as the absent class "d"
    m = classification_metrics(y, onehot(pred, 4), "multiclass", ["a", "b", "c", "d"])
    # per class: a: P=1, R=1/2 -> 2/3; b: 1; d: 0 (a false positive); c: absent everywhere
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["n_classes_scored"] == 3 and m["per_class_f1"]["c"] is None and m["per_class_f1"]["d"] == 0.0
    # weighted by support: a 2, b 2, d 0
    assert m["weighted_f1"] == pytest.approx((2 * 2 / 3 + 2 * 1) / 4)


def test_multilabel_absent_label_is_not_scored():
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=float)  # label 2 never present
    m = classification_metrics(y, np.where(y > 0, 0.9, 0.1), "multilabel", ["x", "y", "z"])
    assert m["macro_f1"] == 1.0  # was 0.667
    assert m["n_classes_scored"] == 2 and m["per_class_f1"]["z"] is None and m["accuracy"] == 1.0


def test_binary_split_with_one_class():
    y = np.zeros(5, dtype=int)  # only negatives in this split
    m = classification_metrics(y, np.array([0.1, 0.2, 0.3, 0.2, 0.9]), "binary", ["neg", "pos"])
    # negatives: TP 4, FN 1 -> F1 8/9; positives: predicted once, never true -> F1 0; both scored
    assert m["n_classes_scored"] == 2 and m["macro_f1"] == pytest.approx((8 / 9 + 0) / 2)
    assert math.isnan(m["roc_auc"]) and m["roc_auc_classes"] == 0
    right = classification_metrics(y, np.full(5, 0.1), "binary", ["neg", "pos"])
    assert right["macro_f1"] == 1.0 and right["n_classes_scored"] == 1 and right["per_class_f1"]["pos"] is None


def test_validation_monitor_uses_the_same_metric():
    import torch

    from utils.train import classification_evaluator

    ev = classification_evaluator("multiclass", ["a", "b", "c", "d"])
    y = torch.tensor([0, 1, 2, 0])
    logits = torch.nn.functional.one_hot(y, 4).float() * 5
    assert ev(logits, y)["val_macro_f1"] == 1.0


def test_padded_retrieval_results_never_count():
    from utils.retrieval import Collection, build_index, modality_share, recall_at_k

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 5
    image = centres[np.arange(200) % 4] + rng.normal(size=(200, 8))
    ids = np.array([f"r{i}" for i in range(200)])
    # IVF with one probed list of about 50 rows: asking for 100 hits leaves FAISS padding (row -1)
    index = build_index(image, ids, kind="ivf", nlist=4, nprobe=1)
    query = centres[1:2] + 0.1  # lands in the list of class 1, which does not hold row 0
    scores, hit = index.search(query, k=100)
    padded = np.array([h is None for h in hit[0]])
    assert padded.any() and np.isinf(scores[0][padded]).all()
    # before the fix padded slots became row 0 ("r0"), a hit for a query whose key is r0
    assert recall_at_k(["r0"], hit, ks=(100,))[100] == 0.0
    text = image + rng.normal(size=image.shape) * 0.1
    coll = Collection.build({"text": text, "image": image}, ids, kind="ivf", nlist=4, nprobe=1)
    _, hits, mods = coll.search(query, k=100, target="image")
    n_found = sum(m is not None for m in mods[0])
    share = modality_share(mods, ks=(100,))
    assert n_found < 100 and list(share.columns) == ["k", "image"] and share["image"][0] == pytest.approx(n_found / 100)
