"""Heads, losses, metrics and the trainer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from utils.metrics import classification_metrics
from utils.models import HEADS, HeadConfig, build_head, head_modalities
from utils.models.losses import class_weight_vector, make_loss, targets_tensor
from utils.train import TrainConfig, fit, n_params, predict_proba


def test_early_fusion_has_the_documented_shape_and_size():
    m = build_head("early_fusion", {"text": 10, "image": 6}, n_out=4)
    kinds = [type(x).__name__ for x in m.body] + [type(m.classifier).__name__]
    assert kinds == ["Linear", "ReLU", "Dropout", "BatchNorm1d", "Linear"]
    assert m.body[2].p == 0.2
    assert n_params(m) == (16 * 256 + 256) + 2 * 256 + (256 * 4 + 4)
    assert m(torch.randn(5, 16)).shape == (5, 4)


def test_late_fusion_has_two_blocks_per_modality():
    m = build_head("late_fusion", {"text": 10, "image": 6}, n_out=1)
    assert len(m.branches) == 2 and all(len(b) == 2 for b in m.branches)
    per_branch = lambda d: (d * 128 + 128) + 2 * 128 + (128 * 128 + 128) + 2 * 128  # noqa: E731
    assert n_params(m) == per_branch(10) + per_branch(6) + (256 * 1 + 1)
    assert m(torch.randn(3, 16)).shape == (3, 1)
    # the image branch only sees the image columns
    x = torch.randn(4, 16)
    m.eval()
    y1 = m.branches[1](x[:, 10:])
    x2 = x.clone()
    x2[:, :10] = 0
    assert torch.allclose(m.branches[1](x2[:, 10:]), y1)


def test_single_modality_heads_and_configurable_widths():
    assert set(HEADS.names()) >= {"early_fusion", "late_fusion", "text_only", "image_only", "audio_only"}
    m = build_head("text_only", {"text": 10, "image": 6}, 3, HeadConfig(hidden=32))
    assert m.body[0].in_features == 10 and m.body[0].out_features == 32
    assert head_modalities("image_only", ["text", "image"]) == ["image"]
    with pytest.raises(ValueError, match="fuses"):
        head_modalities("early_fusion", ["text"])


def test_binary_class_weights_become_pos_weight():
    y = np.array([0] * 90 + [1] * 10)
    w = class_weight_vector(y, "binary", 2, "balanced")
    assert w.tolist() == [9.0]
    logits = torch.tensor([[0.3], [-1.2]])
    t = targets_tensor(np.array([1, 0]), "binary")
    got = make_loss("binary", w)(logits, t).item()
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    want = (-9.0 * math.log(sig(0.3)) - math.log(1 - sig(-1.2))) / 2
    assert got == pytest.approx(want, rel=1e-6)
    assert class_weight_vector(y, "binary", 2, [1.0, 4.0]).tolist() == [4.0]


def test_multiclass_balanced_weights():
    y = np.array([0, 0, 0, 1, 2, 2])
    w = class_weight_vector(y, "multiclass", 3, "balanced")
    np.testing.assert_allclose(w.numpy(), [6 / 9, 6 / 3, 6 / 6])


def test_metrics_against_hand_computed_values():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.9])
    m = classification_metrics(y, p, "binary", ["neg", "pos"])
    assert m["accuracy"] == 0.5 and m["roc_auc"] == 0.75
    assert m["confusion_matrix"] == [[1, 1], [1, 1]]
    yc = np.array([0, 1, 2, 2])
    pc = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])
    mc = classification_metrics(yc, pc, "multiclass", ["a", "b", "c"])
    assert mc["accuracy"] == 0.75
    assert mc["per_class_f1"] == {"a": pytest.approx(2 / 3), "b": 1.0, "c": pytest.approx(2 / 3)}
    assert mc["macro_f1"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert mc["roc_auc"] == pytest.approx(np.mean([1.0, 1.0, 0.75]))
    ym = np.array([[1, 0], [1, 1]])
    pm = np.array([[0.9, 0.2], [0.8, 0.3]])
    mm = classification_metrics(ym, pm, "multilabel", ["x", "y"])
    assert mm["accuracy"] == 0.5  # subset accuracy
    assert mm["roc_auc_classes"] == 1  # label x has a single class in y_true: left out of the macro AUC


def _blobs(n, d=8, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(classes, size=n)
    centres = rng.normal(0, 3, (classes, d))
    return (centres[y] + rng.normal(0, 1, (n, d))).astype(np.float32), y


def test_fit_learns_a_separable_problem_and_loss_falls():
    X, y = _blobs(600)
    Xv, yv = _blobs(200, seed=1)
    model = build_head("text_only", {"text": 8}, 3)
    res = fit(model, X[:400], y[:400], Xv, yv, "multiclass", ["a", "b", "c"], TrainConfig(epochs=15, patience=None))
    hist = [h["train_loss"] for h in res.history]
    assert hist[-1] < 0.5 * hist[0]
    proba = predict_proba(res.model, X[400:], "multiclass")
    assert (proba.argmax(1) == y[400:]).mean() > 0.9
    assert res.epochs_run == 15 and res.train_s_per_epoch > 0


def test_early_stopping_restores_the_best_validation_epoch():
    # labels are noise: validation loss rises as the head memorises the training set
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 20)).astype(np.float32)
    y = rng.integers(2, size=300)
    Xv, yv = rng.normal(size=(100, 20)).astype(np.float32), rng.integers(2, size=100)
    cfg = TrainConfig(epochs=60, patience=5, lr=1e-2)
    res = fit(build_head("text_only", {"text": 20}, 1), X, y, Xv, yv, "binary", ["n", "p"], cfg)
    losses = [h["val_loss"] for h in res.history]
    assert res.best_epoch == int(np.argmin(losses)) + 1
    assert res.epochs_run == res.best_epoch + 5 < 60
    # the returned weights are those of the best epoch
    from utils.models.losses import make_loss as ml

    with torch.no_grad():
        res.model.eval()
        logits = res.model(torch.from_numpy(Xv))
        val_loss = ml("binary")(logits, targets_tensor(yv, "binary")).item()
    assert val_loss == pytest.approx(min(losses), rel=1e-5)


def test_fit_is_reproducible_with_a_seed():
    X, y = _blobs(200)
    runs = []
    for _ in range(2):
        torch.manual_seed(7)  # the head's initial weights
        res = fit(build_head("text_only", {"text": 8}, 3), X[:150], y[:150], X[150:], y[150:], "multiclass",
                  ["a", "b", "c"], TrainConfig(epochs=3, seed=7))
        runs.append(predict_proba(res.model, X, "multiclass"))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_monitor_choice_is_validated():
    with pytest.raises(ValueError, match="monitor"):
        TrainConfig(monitor="test_loss")


def test_reduced_precision_training_matches_fp32_quality_and_is_recorded():
    X, y = _blobs(600, d=16)
    scores = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        res = fit(build_head("text_only", {"text": 16}, 3), X[:400], y[:400], X[400:500], y[400:500], "multiclass",
                  ["a", "b", "c"], TrainConfig(epochs=8, patience=None, precision=precision))
        assert res.precision == precision
        scores[precision] = (predict_proba(res.model, X[500:], "multiclass").argmax(1) == y[500:]).mean()
    assert scores["fp32"] > 0.9 and abs(scores["fp32"] - scores["bf16"]) <= 0.03
    with pytest.raises(ValueError, match="precision"):
        fit(build_head("text_only", {"text": 16}, 3), X[:50], y[:50], X[50:60], y[50:60], "multiclass",
            ["a", "b", "c"], TrainConfig(epochs=1, precision="fp8"))


def test_heap_tuning_is_idempotent_and_can_be_switched_off():
    import subprocess
    import sys

    from utils.train import keep_large_blocks_on_heap

    first = keep_large_blocks_on_heap()
    assert keep_large_blocks_on_heap() is first
    code = "from utils.train import keep_large_blocks_on_heap as k; print(k())"
    env = {**__import__("os").environ, "MMFUSION_NO_MALLOPT": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_auto_precision_keeps_narrow_inputs_in_fp32_on_cpu(monkeypatch):
    import utils.runtime

    monkeypatch.setattr(utils.runtime, "cpu_has_bf16", lambda: True)
    X, y = _blobs(100, d=16)
    narrow = fit(build_head("text_only", {"text": 16}, 3), X[:80], y[:80], X[80:], y[80:], "multiclass",
                 ["a", "b", "c"], TrainConfig(epochs=1, device="cpu"))
    assert narrow.precision == "fp32"
    wide_X = np.repeat(X, utils.runtime.cpu_bf16_min_features() // 16, axis=1)
    wide = fit(build_head("text_only", {"text": wide_X.shape[1]}, 3), wide_X[:80], y[:80], wide_X[80:], y[80:],
               "multiclass", ["a", "b", "c"], TrainConfig(epochs=1, device="cpu"))
    assert wide.precision == "bf16"


# ------------------------------------------------------------------ speed knobs of the loop (issue 18)
def test_train_threads_picks_one_thread_on_two_cores_and_keeps_an_explicit_count(monkeypatch):
    import utils.runtime as rt

    monkeypatch.setattr(rt, "available_cores", lambda: 2)
    assert rt.train_threads(None) == 1 and rt.train_threads(3) == 3
    monkeypatch.setattr(rt, "available_cores", lambda: 16)
    assert rt.train_threads(None) is None  # torch's own setting on a larger machine
    with pytest.raises(ValueError, match="threads"):
        TrainConfig(threads=0)


def test_the_loop_trains_with_the_configured_threads_and_restores_them_after():
    from utils.models.losses import make_loss
    from utils.train import TensorBatches, train_loop

    X, y = _blobs(200)
    seen = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train = TensorBatches({"x": torch.from_numpy(X[:150])}, torch.from_numpy(y[:150]), 32, shuffle=True)
        val = TensorBatches({"x": torch.from_numpy(X[150:])}, torch.from_numpy(y[150:]), 64)
        res = train_loop(build_head("text_only", {"text": 8}, 3), train, val, make_loss("multiclass"),
                         TrainConfig(epochs=2, patience=None, threads=1, device="cpu"),
                         on_epoch_end=lambda row: seen.append(torch.get_num_threads()))
        assert seen == [1, 1] and torch.get_num_threads() == 2
        assert res.epochs_run == 2 and len(res.history) == 2
    finally:
        torch.set_num_threads(before)


def test_cpu_bf16_training_runs_matmuls_in_onednn_without_autocast(monkeypatch):
    """precision="bf16" on a CPU: oneDNN's bf16 matmuls on fp32 tensors (no weight / gradient casts), not autocast;
    the setting is on only inside the training passes and the result is as good as fp32."""
    import utils.runtime as rt
    import utils.train.loop as loop

    if not rt.cpu_bf16_matmuls_supported():
        pytest.skip("this torch build or CPU has no bf16 matmuls in oneDNN")
    seen, modes = [], []
    real = loop.autocast
    monkeypatch.setattr(loop, "autocast", lambda dev, precision: seen.append(precision) or real(dev, precision))
    X, y = _blobs(600, d=16)
    torch.manual_seed(0)
    res = fit(build_head("text_only", {"text": 16}, 3), X[:400], y[:400], X[400:500], y[400:500], "multiclass",
              ["a", "b", "c"], TrainConfig(epochs=6, patience=None, precision="bf16", device="cpu"))
    assert res.precision == "bf16" and set(seen) == {"fp32"}  # autocast never asked for bf16
    assert torch.backends.mkldnn.matmul.fp32_precision != "bf16"  # restored after training
    assert (predict_proba(res.model, X[500:], "multiclass").argmax(1) == y[500:]).mean() > 0.9
    # inside the block a matmul really is computed from bf16-rounded operands
    a, b = torch.randn(64, 512), torch.randn(512, 64)
    exact = a @ b
    with rt.cpu_bf16_matmuls():
        modes.append(torch.backends.mkldnn.matmul.fp32_precision)
        approx = a @ b
    want = a.bfloat16().float() @ b.bfloat16().float()
    assert modes == ["bf16"]
    assert (approx - want).abs().max() < 1e-3 < (exact - want).abs().max()


def test_train_loop_takes_its_settings_from_the_config():
    import inspect

    from utils.train import train_loop

    params = inspect.signature(train_loop).parameters
    assert len(params) <= 9 and "precision" not in params and "show_progress" not in params
    assert all(params[p].kind is inspect.Parameter.KEYWORD_ONLY
               for p in ("evaluate", "param_groups", "extra_modules", "on_epoch_end"))


def test_fit_keeps_the_features_resident_and_steps_make_no_copies(monkeypatch):
    """The features are converted to one tensor on the training device once; every step's batch is already there,
    so move() hands back the very tensors it is given (on a GPU: no host-to-device copy per step)."""
    import utils.train.classify as classify
    import utils.train.loop as loop

    conversions, moved = [], []
    real_as_tensor, real_move = classify.as_tensor, loop.move
    monkeypatch.setattr(classify, "as_tensor", lambda x, dev, dtype=torch.float32: conversions.append(dev)
                        or real_as_tensor(x, dev, dtype))

    def spy(inputs, dev):
        out = real_move(inputs, dev)
        moved.append(all(o is i for o, i in zip(out.values(), inputs.values())) if isinstance(inputs, dict) else out is inputs)
        return out

    monkeypatch.setattr(loop, "move", spy)
    X, y = _blobs(300)
    fit(build_head("text_only", {"text": 8}, 3), X[:200], y[:200], X[200:], y[200:], "multiclass", ["a", "b", "c"],
        TrainConfig(epochs=2, patience=None, batch_size=32, device="cpu"))
    assert len(conversions) == 2  # the training and the validation features, once each
    assert len(moved) >= 2 * 2 * (200 // 32) and all(moved)


def _twin_steps(n_steps, make_step, *, groups=None, drop_grad_at=None, reload_at=None):
    """Two copies of one model trained on the same batches: one with ``opt.step()``, one with ``make_step(opt)``;
    returns both models and optimizers."""
    import copy

    from utils.train.loop import make_optimizer

    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(40, 16), torch.nn.ReLU(), torch.nn.BatchNorm1d(16),
                               torch.nn.Linear(16, 3))
    models = [base, copy.deepcopy(base)]
    opts = [make_optimizer(groups(m) if groups else m.parameters(), 1e-3, 1e-2) for m in models]
    steppers = [opts[0].step, make_step(opts[1])]
    gen = torch.Generator().manual_seed(1)
    X, y = torch.randn(400, 40, generator=gen), torch.randint(3, (400,), generator=gen)
    for i in range(n_steps):
        xb, yb = X[(i * 16) % 368:(i * 16) % 368 + 32], y[(i * 16) % 368:(i * 16) % 368 + 32]
        for m, o, st in zip(models, opts, steppers):
            if reload_at == i:  # a state loaded mid-training (what resuming from a checkpoint does)
                o.load_state_dict(copy.deepcopy(o.state_dict()))
            o.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(m(xb), yb).backward()
            if drop_grad_at == i:
                m[0].bias.grad = None  # a parameter without a gradient in this step
            st()
    return models, opts


def _same(models, opts):
    a, b = models
    same_weights = all(torch.equal(x, z) for x, z in zip(a.state_dict().values(), b.state_dict().values()))
    same_state = all(torch.equal(opts[0].state[p][k], opts[1].state[q][k])
                     for p, q in zip(a.parameters(), b.parameters()) for k in ("step", "exp_avg", "exp_avg_sq"))
    return same_weights and same_state


def test_optimizer_step_is_bit_for_bit_torch_adamw_and_skips_its_per_step_python(monkeypatch):
    from utils.train.loop import OptimizerStep

    calls = []
    stepper = {}

    def make(opt):
        stepper["s"] = s = OptimizerStep(opt)
        real = opt.step
        monkeypatch.setattr(opt, "step", lambda *a, **k: calls.append(1) or real(*a, **k))
        return s

    models, opts = _twin_steps(40, make)
    assert stepper["s"].fast and stepper["s"].groups is not None
    assert len(calls) == 1  # only the first step (which creates the state) went through torch.optim
    assert _same(models, opts)
    # two parameter groups with their own learning rates, a step where one parameter has no gradient, and a
    # state loaded mid-way: still the same numbers as torch.optim
    two = lambda m: [{"params": list(m[0].parameters()), "lr": 3e-3}, {"params": list(m[2:].parameters())}]
    for kw in ({"groups": two}, {"drop_grad_at": 7}, {"reload_at": 11}, {"groups": two, "drop_grad_at": 3}):
        assert _same(*_twin_steps(20, OptimizerStep, **kw)), kw


def test_optimizer_step_leaves_other_optimizers_and_options_to_torch():
    from utils.train.loop import OptimizerStep

    p = [torch.nn.Parameter(torch.randn(3))]
    assert not OptimizerStep(torch.optim.SGD(p, lr=0.1)).fast
    assert not OptimizerStep(torch.optim.AdamW(p, lr=0.1, amsgrad=True, fused=True)).fast
    assert not OptimizerStep(torch.optim.AdamW(p, lr=0.1, foreach=False)).fast
    assert OptimizerStep(torch.optim.AdamW(p, lr=0.1, fused=True)).fast
    # an optimizer it leaves alone still steps, through its own step()
    w = torch.nn.Parameter(torch.ones(3))
    sgd = OptimizerStep(torch.optim.SGD([w], lr=0.5))
    w.grad = torch.ones(3)
    sgd()
    sgd.zero_grad()
    assert torch.equal(w.detach(), torch.full((3,), 0.5)) and w.grad is None
