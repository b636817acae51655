"""Head training on data larger than memory: StreamingBatches through the one loop, same results as in memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.features import Standardizer
from utils.models.fusion import build_head
from utils.models.losses import targets_tensor
from utils.train import (
    StandardizeConcat, StreamingBatches, TensorBatches, TrainConfig, fit, fit_batches, predict_proba,
    streaming_standardizer,
)


def blobs(n=3000, d=24, classes=3, seed=0):
    """Gaussian blobs, rows sorted by class (as a store written class by class would be: the hard case)."""
    rng = np.random.default_rng(seed)
    y = np.sort(rng.integers(0, classes, n))
    centers = rng.normal(0, 1.0, (classes, d))
    X = (centers[y] + rng.normal(0, 1.6, (n, d))).astype(np.float32)
    return X, y


def memmap(tmp_path, X, name="x.npy"):
    np.save(tmp_path / name, X)
    return np.load(tmp_path / name, mmap_mode="r")


def test_data_that_fits_is_batched_exactly_like_tensor_batches(tmp_path, one_thread):
    X, y = blobs(500)
    mm = memmap(tmp_path, X)
    s = StreamingBatches({"x": mm}, torch.as_tensor(y), 64, shuffle=True, seed=3, memory_budget_mb=64)
    t = TensorBatches({"x": torch.as_tensor(X)}, torch.as_tensor(y), 64, shuffle=True, seed=3)
    assert s.fits and len(s) == len(t)
    for _ in range(2):  # two passes: the same permutation each pass
        for (xs, ys), (xt, yt) in zip(s, t, strict=True):
            assert torch.equal(xs["x"], xt["x"]) and torch.equal(ys, yt)


def test_streamed_passes_cover_every_row_once_in_a_new_order(tmp_path):
    X, y = blobs(1000, d=8)
    X[:, 0] = np.arange(1000)  # row number in column 0
    mm = memmap(tmp_path, X)
    budget = 1000 * 8 * 4 * 2 / 5 / 2**20  # windows of about 200 rows: the data does not fit
    s = StreamingBatches({"x": mm}, torch.as_tensor(y), 32, shuffle=True, seed=0, memory_budget_mb=budget)
    assert not s.fits and 150 <= s.window_rows <= 250
    orders = []
    for _ in range(2):
        seen = torch.cat([xb["x"][:, 0] for xb, _ in s]).long()
        assert sorted(seen.tolist()) == list(range(1000))  # each row exactly once per pass
        orders.append(seen)
    assert not torch.equal(orders[0], orders[1])
    assert abs(np.corrcoef(orders[0].numpy(), np.arange(1000))[0, 1]) < 0.3  # shuffled, not disk order
    batches = list(s)
    ys = torch.cat([yb for _, yb in batches])
    xs = torch.cat([xb["x"][:, 0] for xb, _ in batches]).long()
    assert torch.equal(ys, torch.as_tensor(y)[xs])  # targets travel with their rows


def test_rows_select_and_align_several_inputs_and_the_transform_standardises(tmp_path):
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(300, 5)).astype(np.float32), rng.normal(size=(200, 3)).astype(np.float32)
    a, b = memmap(tmp_path, A, "a.npy"), memmap(tmp_path, B, "b.npy")
    rows = {"a": rng.permutation(300)[:150], "b": rng.integers(0, 200, 150)}
    X = np.concatenate([A[rows["a"]], B[rows["b"]]], axis=1)
    scaler = streaming_standardizer({"a": a, "b": b}, ["a", "b"], rows, chunk_rows=40)
    ref = Standardizer.fit(X)
    np.testing.assert_allclose(scaler.mean, ref.mean, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(scaler.std, ref.std, rtol=1e-6)
    s = StreamingBatches({"a": a, "b": b}, torch.arange(150), 16, rows=rows, transform=StandardizeConcat(["a", "b"], scaler),
                         memory_budget_mb=60 * 8 * 4 * 2 / 2**20, prefetch=True)  # ~30 rows a window, read ahead
    assert not s.fits and s.n_features == 8
    got = {int(j): xb["x"][i].numpy() for xb, yb in s for i, j in enumerate(yb)}
    assert sorted(got) == list(range(150))
    np.testing.assert_allclose(np.stack([got[j] for j in range(150)]), scaler(X), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="raise memory_budget_mb"):
        StreamingBatches({"a": a}, torch.zeros(300), 64, shuffle=True, memory_budget_mb=0.001)
    with pytest.raises(ValueError, match="pass rows="):
        StreamingBatches({"a": a, "b": b}, torch.zeros(300), 16)


def test_streaming_fit_matches_the_in_memory_fit(tmp_path, one_thread):
    X, y = blobs(3000)
    rng = np.random.default_rng(0)
    split = rng.permutation(3000)
    tr, va, te = np.sort(split[:2000]), np.sort(split[2000:2500]), np.sort(split[2500:])
    mm = memmap(tmp_path, X)
    Xtr_disk = memmap(tmp_path, X[tr], "train.npy")  # the training rows on disk (store order: sorted by class)
    cfg = TrainConfig(epochs=15, batch_size=64, seed=0, device="cpu", precision="fp32", patience=None)

    def run(X_train, config, seed):
        torch.manual_seed(seed)
        model = build_head("early_fusion", {"x": X.shape[1]}, 3)
        res = fit(model, X_train, y[tr], X[va], y[va], "multiclass", ["a", "b", "c"], config)
        return res, float((predict_proba(res.model, mm[te], "multiclass").argmax(1) == y[te]).mean())

    in_memory = [run(X[tr], TrainConfig(**{**cfg.__dict__, "seed": s}), s) for s in (0, 1, 2)]
    small = TrainConfig(**{**cfg.__dict__, "memory_budget_mb": X[tr].nbytes / 2 / 2**20})  # windows of 1/4 of the data
    streamed, acc = run(Xtr_disk, small, 0)
    accs = [a for _, a in in_memory]
    # the shuffle differs (windows of chunks), so the result may differ by what another seed changes
    assert abs(acc - np.mean(accs)) <= max(0.02, 3 * np.std(accs)), (acc, accs)
    assert abs(streamed.history[-1]["val_loss"] - in_memory[0][0].history[-1]["val_loss"]) < 0.05

    # with a budget that holds the data, the streaming source trains to the very same weights
    ref = in_memory[0][0].model
    torch.manual_seed(0)
    model = build_head("early_fusion", {"x": X.shape[1]}, 3)
    train = StreamingBatches({"x": Xtr_disk}, targets_tensor(y[tr], "multiclass"), 64, shuffle=True, seed=0)
    val = StreamingBatches({"x": mm}, targets_tensor(y[va], "multiclass"), 8192, rows={"x": va})
    res = fit_batches(model, train, val, "multiclass", ["a", "b", "c"], cfg)
    for p, q in zip(res.model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(p, q)


def test_predict_proba_streams_a_large_memmap(tmp_path):
    X, _ = blobs(2000, d=16)
    mm = memmap(tmp_path, X)
    model = build_head("early_fusion", {"x": 16}, 3).eval()
    a = predict_proba(model, X, "multiclass", batch_size=256)
    b = predict_proba(model, mm, "multiclass", batch_size=256, memory_budget_mb=mm.nbytes / 8 / 2**20)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_plain_passes_keep_the_examples_order_whatever_the_rows(tmp_path):
    rng = np.random.default_rng(2)
    A = rng.normal(size=(400, 4)).astype(np.float32)
    a = memmap(tmp_path, A)
    rows = rng.permutation(400)[:300]  # examples point at rows in no particular disk order
    s = StreamingBatches({"a": a}, torch.arange(300), 32, rows={"a": rows}, memory_budget_mb=50 * 16 * 4 / 2**20)
    assert not s.fits
    xs = torch.cat([xb["a"] for xb, _ in s])
    ys = torch.cat([yb for _, yb in s])
    assert torch.equal(ys, torch.arange(300))  # predictions come back in the examples' order
    np.testing.assert_array_equal(xs.numpy(), A[rows])
