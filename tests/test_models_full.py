"""End-to-end baselines (tiny BERT + tiny ViT / tiny CLIP saved locally), the Trainer subclass, LoRA, checkpoints, runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.models.fusion import HeadConfig, build_head
from utils.train import n_params


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread


def _batch(tiny_bert, tiny_vit_folder, n=4):
    from utils.models.full import load_preprocessing

    tok, proc = load_preprocessing(str(tiny_bert), str(tiny_vit_folder))
    b = dict(tok(["a small iron block", "the red car", "a blue silk piece on the desk", "lead"][:n], padding=True, return_tensors="pt"))
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (48, 48, 3), dtype=np.uint8) for _ in range(n)]
    b["pixel_values"] = proc(images=imgs, return_tensors="pt")["pixel_values"]
    return b


def _model(tiny_bert, tiny_vit_folder, fusion, mode, last_n=1, n_out=3):
    from utils.models.full import FullFusionModel, load_backbone

    torch.manual_seed(0)
    return FullFusionModel(load_backbone(str(tiny_bert)), load_backbone(str(tiny_vit_folder)), n_out, fusion, mode, last_n,
                           HeadConfig(hidden=16, late_hidden=8))


@pytest.mark.parametrize("fusion", ["early_fusion", "late_fusion"])
@pytest.mark.parametrize("mode", ["frozen", "finetune", "last_n"])
def test_full_model_shapes_counts_and_gradients(tiny_bert, tiny_vit_folder, fusion, mode):
    m = _model(tiny_bert, tiny_vit_folder, fusion, mode)
    head = n_params(build_head(fusion, {"text": 32, "image": 32}, 3, HeadConfig(hidden=16, late_hidden=8)))
    from utils.models.full import encoder_layers

    layer = n_params(encoder_layers(m.text)[-1], trainable_only=False)
    vit_layer = n_params(encoder_layers(m.image)[-1], trainable_only=False)
    backbones = n_params(m.text, False) + n_params(m.image, False)
    want = {"frozen": head, "finetune": head + backbones, "last_n": head + layer + vit_layer + 2 * 32}[mode]  # + ViT final layernorm
    assert n_params(m) == want
    assert m.text.pooler is None and m.image.pooler is None  # unused poolers removed
    b = _batch(tiny_bert, tiny_vit_folder)
    m.train()
    out = m(**b)
    assert out.shape == (4, 3)
    out.square().sum().backward()
    for name, p in m.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reached {name}"
        else:
            assert p.grad is None, f"frozen {name} got a gradient"


def test_full_model_checkpoint_round_trip_without_pickle(tiny_bert, tiny_vit_folder, tmp_path):
    from utils.models.full import full_model_config, load_full_model, load_state, parse_full_name, save_checkpoint

    m = _model(tiny_bert, tiny_vit_folder, "late_fusion", "last_n").eval()
    folder = save_checkpoint(m, tmp_path / "ckpt", full_model_config(m, 3, HeadConfig(hidden=16, late_hidden=8)))
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    m2 = load_full_model(folder)
    b = _batch(tiny_bert, tiny_vit_folder)
    with torch.no_grad():
        assert torch.allclose(m(**b), m2(**b), atol=1e-6)
    # a .pt state dict loads with weights_only=True
    (tmp_path / "pt").mkdir()
    torch.save(m.state_dict(), tmp_path / "pt" / "model.pt")
    assert set(load_state(tmp_path / "pt")) == set(m.state_dict())
    assert parse_full_name("bert_vit_late_last3") == {"fusion": "late_fusion", "train_mode": "last_n", "last_n": 3}
    with pytest.raises(ValueError, match="unknown full model"):
        parse_full_name("bert_vit_mid_frozen")


def test_train_full_models_rows(tiny_bert, tiny_vit_folder):
    from utils.data import load
    from utils.experiment import FullTrainConfig, train_full_models

    ds = load("synthetic", n=40)
    rows = train_full_models(ds, ["bert_vit_early_last1"], str(tiny_bert), str(tiny_vit_folder), seeds=[0],
                             config=FullTrainConfig(epochs=2, batch_size=8, patience=None, max_length=24), show_progress=False)
    (r,) = rows
    assert r["model"] == "bert_vit_early_last1" and r["epochs_run"] == 2 and len(r["epoch_seconds"]) == 2
    assert r["n_params"] < r["n_params_total"] and r["peak_memory_mb"] > 0
    assert r["n_test"] == int((ds.df.split == "test").sum()) and len(r["history"]) == 2
    cm = np.asarray(r["confusion_matrix"])  # the scores follow from the test predictions, by hand
    assert cm.sum() == r["n_test"] and r["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())


def test_full_model_defaults_and_workers(tiny_bert, tiny_vit_folder, monkeypatch):
    """Issue 21: the seed's 2 DataLoader workers are the default (was 0, and BERT + CLIP hard-coded 0); workers
    decode the images without changing what is learnt: the same seed gives the same losses with 0 or 2."""
    import utils.train as train
    from utils.data import load
    from utils.experiment import FullTrainConfig, train_full_models

    cfg = FullTrainConfig()
    assert (cfg.batch_size, cfg.lr, cfg.head_lr, cfg.num_workers) == (16, 2e-5, 1e-3, 2)
    seen = []
    real = train.record_loaders
    monkeypatch.setattr(train, "record_loaders", lambda *a, **k: seen.append(a[3]) or real(*a, **k))
    ds = load("synthetic", n=40)
    runs = {w: train_full_models(ds, ["bert_vit_late_last1"], str(tiny_bert), str(tiny_vit_folder), seeds=[0],
                                 config=FullTrainConfig(epochs=2, batch_size=8, patience=None, max_length=24, num_workers=w,
                                                        lr=1e-3), show_progress=False)[0] for w in (0, 2)}
    assert seen == [0, 2]
    assert [h["train_loss"] for h in runs[0]["history"]] == pytest.approx([h["train_loss"] for h in runs[2]["history"]], rel=1e-5)
    assert runs[0]["macro_f1"] == pytest.approx(runs[2]["macro_f1"]) and runs[2]["train_config"]["num_workers"] == 2


def test_bert_clip_trainer_one_epoch_offline(tiny_bert, tiny_clip_folder, tmp_path):
    from utils.data import load
    from utils.experiment import train_bert_clip

    ds = load("synthetic", n=40)
    row, trainer = train_bert_clip(ds, tiny_bert, tiny_clip_folder, tmp_path / "out", epochs=1, batch_size=8, lr=1e-3, max_length=24)
    assert type(trainer).__name__ == "WeightedTrainer" and trainer.state.epoch == pytest.approx(1.0)
    counts = np.bincount(ds.labels()[ds.split_mask("train")], minlength=4)
    np.testing.assert_allclose(trainer.loss_fn.weight.numpy(), counts.sum() / (4 * counts), rtol=1e-6)  # balanced class weights
    assert row["model"] == "bert_clip_late" and row["epochs_run"] == 1
    # the row's test scores, by hand from the trained model's own test logits
    from utils.experiment.baselines import record_datasets
    from utils.models.losses import targets_tensor

    parts, data = record_datasets(ds, targets_tensor(ds.labels(), "multiclass"))
    pred = trainer.predict(data["test"]).predictions.argmax(1)
    y = ds.labels()[parts["test"]]
    assert row["accuracy"] == pytest.approx((pred == y).mean())
    f1 = [2 * ((pred == c) & (y == c)).sum() / ((pred == c).sum() + (y == c).sum()) for c in range(4) if (pred == c).any() or (y == c).any()]
    assert row["macro_f1"] == pytest.approx(np.mean(f1))
    # the seed's 2 DataLoader workers (was hard-coded 0) and one learning rate unless head_lr is given
    assert trainer.args.dataloader_num_workers == 2 and {g["initial_lr"] for g in trainer.optimizer.param_groups} == {1e-3}
    _, t2 = train_bert_clip(ds, tiny_bert, tiny_clip_folder, tmp_path / "out2", epochs=1, batch_size=8, lr=2e-5, head_lr=1e-3,
                            max_length=24, num_workers=0)
    assert t2.args.dataloader_num_workers == 0
    groups = t2.optimizer.param_groups
    assert [g["initial_lr"] for g in groups] == [2e-5, 1e-3]
    assert sum(p.numel() for p in groups[1]["params"]) == n_params(t2.model.head)
    assert row["n_params"] == n_params(trainer.model) > 0
    saved = list((tmp_path / "out").rglob("model.safetensors"))
    assert saved and not list((tmp_path / "out").rglob("pytorch_model*.bin"))  # model checkpoints are safetensors
    assert any(type(cb).__name__ == "EarlyStoppingCallback" for cb in trainer.callback_handler.callbacks)


def test_lora_adapted_clip_loads_from_local_folders(tiny_bert, tiny_clip_folder, tmp_path):
    from transformers import CLIPModel

    from utils.models.full import add_lora, load_bert_clip, load_clip_image_encoder

    peft_model = add_lora(CLIPModel.from_pretrained(str(tiny_clip_folder)), r=4)
    trainable = n_params(peft_model)
    assert 0 < trainable < n_params(peft_model, trainable_only=False) / 10  # only the adapters train
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # as if fine-tuned (B starts at zero)
    peft_model.save_pretrained(tmp_path / "lora")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = peft_model.get_image_features(pixel_values=x)
        want = getattr(want, "pooler_output", want)
        base = load_clip_image_encoder(tiny_clip_folder).eval()(x)
        got = load_clip_image_encoder(tiny_clip_folder, tmp_path / "lora").eval()(x)
    assert got.shape == (2, 16)
    assert torch.allclose(got, want, atol=1e-4) and not torch.allclose(got, base, atol=1e-3)
    m = load_bert_clip(tiny_bert, tiny_clip_folder, 3, lora_path=tmp_path / "lora")
    assert m.head.classifier.out_features == 3 and n_params(m) == n_params(m, trainable_only=False)


def test_run_seeds_spread_results_table_and_grid(tiny_bert, tiny_vit_folder, tmp_path):
    import pandas as pd

    from utils.experiment import runs

    emb = {"text": f"hf:{tiny_bert}", "image": "timm:test_vit"}
    opts = {"extractor_options": {"timm:test_vit": {"pretrained": False}}, "epochs": 4}
    paper = runs.run_grid(["synthetic"], {"tiny": emb}, ["early_fusion", "logreg"], seeds=[0, 1, 2],
                          full_models=["bert_vit_early_frozen"], dataset_options={"synthetic": {"n": 60}}, embedding_options=opts,
                          full_options={"text_model": str(tiny_bert), "image_model": str(tiny_vit_folder), "epochs": 1, "max_length": 24},
                          out_dir=tmp_path)
    assert set(paper["model"]) == {"early_fusion", "logreg", "bert_vit_early_frozen"}
    assert set(paper["approach"]) == {"embedding model", "full model"} and (paper["seeds"] == 3).all()
    assert (tmp_path / "paper_table.csv").is_file() and (tmp_path / "comparison.png").stat().st_size > 1000
    df = runs.load_runs()
    assert len(df) == 9 and sorted(df.seed.unique()) == [0, 1, 2]
    r = df.iloc[0]
    assert r["config"]["kind"] == "embedding" and "torch" in r["versions"] and isinstance(r["history"], list) and r["peak_memory_mb"] > 0
    # the spread: std over seeds as defined (ddof=1), computed by hand from the rows
    ef = df[df.model == "early_fusion"]
    s = runs.summarize(df)
    got = s.set_index("model").loc["early_fusion"]
    assert got["macro_f1"] == pytest.approx(ef.macro_f1.mean()) and got["macro_f1_std"] == pytest.approx(np.std(ef.macro_f1, ddof=1))
    assert got["seeds"] == 3
    # appending accumulates
    runs.append_runs(df.head(2).to_dict("records"))
    assert len(pd.read_parquet(runs.runs_path())) == 11
    with pytest.raises(ValueError, match="unknown config keys"):
        runs.full_config({"kind": "embedding", "fusions": []})


def test_end_to_end_records_build_in_linear_time():
    """20,000 rows: the table's texts and paths are read once, not once per row (was quadratic: 2,000 rows 2.1 s)."""
    import time

    import pandas as pd
    import torch

    from utils.data import DatasetSpec, MultimodalDataset
    from utils.experiment.baselines import record_datasets
    from utils.models.losses import targets_tensor

    n = 20_000
    df = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "text": [f"text {i}" for i in range(n)],
                       "image_path": [f"img/{i}.png" for i in range(n)], "label": ["a", "b"] * (n // 2),
                       "split": (["train"] * 8 + ["val", "test"]) * (n // 10)})
    ds = MultimodalDataset(df, DatasetSpec("big", "binary", ["a", "b"], root="/data"))
    calls = {"items": 0}
    items = ds.items

    def counting(modality):
        calls["items"] += 1
        return items(modality)

    ds.items = counting
    t0 = time.perf_counter()
    parts, records = record_datasets(ds, targets_tensor(ds.labels(), "binary"))
    seconds = time.perf_counter() - t0
    assert calls["items"] == 2 and seconds < 5.0  # texts and paths read once for all splits
    assert len(records["train"]) == 16_000 and len(records["test"]) == 2_000
    r = records["test"][5]
    i = parts["test"][5]
    assert r["id"] == f"r{i}" and r["text"] == f"text {i}" and r["image_path"] == f"/data/img/{i}.png"
    assert torch.equal(r["labels"], targets_tensor(ds.labels(), "binary")[i])
