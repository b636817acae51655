"""The BERT + CLIP classifier as its users keep it: a CLIP LoRA saved as a ``.pt`` state dict
(``clip_lora_best.pt``) beside a fine-tuned BERT folder, and the binary path (one logit, ``pos_weight``)
with validation / test accuracy and F1 from the Trainer's ``compute_metrics``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def fine_tuned_lora(tiny_clip_folder):
    from peft import get_peft_model_state_dict
    from transformers import CLIPModel

    from utils.models.full import add_lora

    peft_model = add_lora(CLIPModel.from_pretrained(str(tiny_clip_folder)), r=4, alpha=8)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # as if fine-tuned (B starts at zero)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = peft_model.get_image_features(pixel_values=x)
    return peft_model, get_peft_model_state_dict(peft_model), x, getattr(want, "pooler_output", want)


def test_lora_pt_state_dict_loads_and_matches_the_adapter(fine_tuned_lora, tiny_clip_folder, tmp_path):
    from utils.models.full import load_clip_image_encoder

    peft_model, lora_state, x, want = fine_tuned_lora
    torch.save(lora_state, tmp_path / "clip_lora_best.pt")  # LoRA weights only, as peft saves them
    with pytest.raises(ValueError, match="lora_alpha"):
        load_clip_image_encoder(tiny_clip_folder, tmp_path / "clip_lora_best.pt")  # scale unknown: refused, not guessed
    with torch.no_grad():
        got = load_clip_image_encoder(tiny_clip_folder, tmp_path / "clip_lora_best.pt", lora_alpha=8).eval()(x)
        base = load_clip_image_encoder(tiny_clip_folder).eval()(x)
    assert torch.allclose(got, want, atol=1e-4) and not torch.allclose(got, base, atol=1e-3)
    # a training checkpoint: the whole peft model's state dict with the config it was trained with
    torch.save({"epoch": 3, "model_state_dict": peft_model.state_dict(), "config": {"lora_alpha": 8}},
               tmp_path / "ckpt.pt")
    with torch.no_grad():
        got2 = load_clip_image_encoder(tiny_clip_folder, tmp_path / "ckpt.pt").eval()(x)
    assert torch.allclose(got2, want, atol=1e-4)
    # a file that is not CLIP's is refused by name
    torch.save({"unrelated.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="match a CLIP weight"):
        load_clip_image_encoder(tiny_clip_folder, tmp_path / "other.pt")


def binary_table(folder, n=48, positives=12):
    from PIL import Image

    rng = np.random.default_rng(0)
    (folder / "img").mkdir(parents=True)
    rows = []
    for i in range(n):
        label = int(i < positives)
        arr = np.full((32, 32, 3), 200 if label else 40, np.uint8) + rng.integers(0, 30, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / "img" / f"{i}.png")
        rows.append({"text": "a red car on the road" if label else "a small iron block", "image": f"img/{i}.png",
                     "label": label, "split": ["train", "train", "val", "test"][i % 4]})
    pd.DataFrame(rows).to_csv(folder / "records.csv", index=False)


def test_binary_bert_clip_one_logit_pos_weight_and_compute_metrics(tiny_bert, tiny_clip_folder, fine_tuned_lora, tmp_path):
    from utils import data
    from utils.experiment import train_bert_clip

    _, lora_state, _, _ = fine_tuned_lora
    torch.save(lora_state, tmp_path / "clip_lora_best.pt")
    binary_table(tmp_path / "posts")
    ds = data.load("table", root=tmp_path / "posts", text_column="text", image_column="image", label_column="label",
                   split_column="split", positive_class="1")
    assert ds.spec.task == "binary" and ds.spec.classes == ["0", "1"]
    row, trainer = train_bert_clip(ds, tiny_bert, tiny_clip_folder, tmp_path / "out", tmp_path / "clip_lora_best.pt",
                                   epochs=2, batch_size=8, lr=1e-3, max_length=16, lora_alpha=8)
    assert trainer.model.head.classifier.out_features == 1  # one logit
    y = ds.labels()[ds.split_mask("train")]
    assert isinstance(trainer.loss_fn, torch.nn.BCEWithLogitsLoss)
    assert trainer.loss_fn.pos_weight.tolist() == pytest.approx([(y == 0).sum() / (y == 1).sum()])  # 3.0
    # validation accuracy and F1 from compute_metrics, test metrics in the row: each recomputed by hand from the
    # restored best model's own logits (was: 0 <= value <= 1)
    from utils.experiment.baselines import record_datasets
    from utils.models.losses import targets_tensor

    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    assert len(evals) == 2 and {"eval_accuracy", "eval_macro_f1", "eval_roc_auc"} <= set(evals[0])
    parts, records = record_datasets(ds, targets_tensor(ds.labels(), "binary"))

    def by_hand(split):
        pred = (trainer.predict(records[split]).predictions.reshape(-1) > 0).astype(int)
        y = ds.labels()[parts[split]]
        f1 = [2 * ((pred == c) & (y == c)).sum() / ((pred == c).sum() + (y == c).sum()) for c in (0, 1)
              if (pred == c).any() or (y == c).any()]
        return (pred == y).mean(), np.mean(f1)

    val_acc, val_f1 = by_hand("val")
    assert row["val_accuracy"] == pytest.approx(val_acc) and row["val_macro_f1"] == pytest.approx(val_f1)
    test_acc, test_f1 = by_hand("test")
    assert row["task"] == "binary" and row["n_test"] == 12
    assert row["accuracy"] == pytest.approx(test_acc) and row["macro_f1"] == pytest.approx(test_f1)
    assert "LoRA" in row["extractors"]["image"]


def test_a_pt_clip_checkpoint_runs_through_the_full_model_notebook(tiny_clip_folder, tiny_bert, tmp_path, monkeypatch):
    """CLIP_MODEL may be a ``.pt`` state dict (a fine-tuned CLIP as users keep it): its image processor comes from
    the same base as its weights (CLIP_BASE), not from the .pt file (which used to fail with a UnicodeDecodeError)."""
    import json
    import os
    from pathlib import Path

    import papermill as pm
    from transformers import CLIPModel

    from utils.models.full import load_clip_processor, resolve_clip

    clip = CLIPModel.from_pretrained(str(tiny_clip_folder))
    with torch.no_grad():
        for p in clip.vision_model.parameters():
            p.mul_(1.01)  # "fine-tuned"
    pt = tmp_path / "clip_finetuned.pt"
    torch.save(clip.state_dict(), pt)
    assert resolve_clip(pt, tiny_clip_folder) == (str(tiny_clip_folder), pt)
    assert load_clip_processor(pt, tiny_clip_folder).__class__.__name__.startswith("CLIP")

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "rows.json"
    monkeypatch.setenv("PYTHONPATH", str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    pm.execute_notebook(
        str(repo / "notebooks/full_model_synthetic.ipynb"), str(tmp_path / "run.ipynb"), kernel_name="python3",
        cwd=str(tmp_path), progress_bar=False, log_output=False,
        parameters={"DATASET_OPTIONS": {"n": 120}, "TEXT_MODEL": str(tiny_bert), "CLIP_MODEL": str(pt),
                    "CLIP_BASE": str(tiny_clip_folder), "FULL_MODELS": [], "FUSION": ["logreg"],
                    "TEXT_EXTRACTOR": f"hf:{tiny_bert}", "IMAGE_EXTRACTOR": "timm:test_vit",
                    "EXTRACTOR_OPTIONS": {"timm:test_vit": {"pretrained": False}}, "EPOCHS": 1, "N_SEEDS": 1,
                    "MAX_LENGTH": 32, "RESULTS_JSON": str(out), "RESULTS_DIR": str(tmp_path / "results")})
    rows = [r for r in json.loads(out.read_text()) if r["model"] == "bert_clip_late"]
    assert len(rows) == 1 and str(pt) in rows[0]["extractors"]["image"]
    assert rows[0]["train_config"]["clip_base"] == str(tiny_clip_folder)
