"""End-to-end baselines: the backbones themselves under the same fusion heads as the embedding models.

- :class:`FullFusionModel`: a text backbone (BERT, ``bert-base-uncased`` by default) and an image backbone
  (ViT, ``google/vit-base-patch16-224-in21k``); the CLS vectors of both, side by side ``[B, H_t + H_i]``,
  go to an early- or late-fusion head from :mod:`utils.models.fusion`. Backbones are ``frozen``,
  ``finetune`` (all layers) or ``last_n`` (only the last N encoder layers and the final norm train).
  Each backbone keeps its own preprocessing: its tokenizer, its ``AutoImageProcessor`` (:class:`MultimodalCollator`).
- :class:`BertClipClassifier`: BERT for the text and CLIP's vision tower (+ projection) for the image, late
  fusion; starts from locally saved fine-tuned BERT / CLIP folders, optionally with a LoRA adapter on CLIP
  (peft); trained with :class:`WeightedTrainer` (a ``transformers.Trainer`` with a class-weighted loss)
  and ``EarlyStoppingCallback`` (:func:`train_bert_clip`).
- Checkpoints: ``model.safetensors`` (state_dict) + ``config.json`` (:func:`save_checkpoint`); never a pickled
  model; ``.pt`` state dicts load with ``torch.load(weights_only=True)``.

Model names used in result rows: ``bert_vit_<early|late>_<frozen|finetune|last<N>>`` and ``bert_clip_late``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from .fusion import HeadConfig, build_head

log = logging.getLogger(__name__)

DEFAULT_TEXT_MODEL = "bert-base-uncased"
DEFAULT_IMAGE_MODEL = "google/vit-base-patch16-224-in21k"
DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"
TRAIN_MODES = ("frozen", "finetune", "last_n")
FULL_MODEL_RE = re.compile(r"^bert_vit_(early|late)_(frozen|finetune|last(\d+))$")


# --------------------------------------------------------------------------------------- backbones
def load_backbone(model: Union[str, os.PathLike, Any]) -> nn.Module:
    """``AutoModel`` from a hub id / local folder, or randomly initialised from a ``PretrainedConfig``.

    The pooler (unused: we read the CLS hidden state) is removed so every parameter that trains gets a gradient.
    """
    from transformers import AutoModel, PretrainedConfig

    m = AutoModel.from_config(model) if isinstance(model, PretrainedConfig) else AutoModel.from_pretrained(str(model))
    if getattr(m, "pooler", None) is not None:
        m.pooler = None
    return m


def encoder_layers(backbone: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks (``encoder.layer`` for BERT / ViT, ``encoder.layers`` for CLIP)."""
    for path in ("encoder.layer", "encoder.layers", "vision_model.encoder.layers", "layers", "blocks"):
        obj: Any = backbone
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return obj
    raise ValueError(f"cannot find the encoder layers of {type(backbone).__name__}: use train_mode 'frozen' or 'finetune'")


def set_trainable(backbone: nn.Module, mode: str, last_n: int = 2) -> None:
    """``frozen``: nothing trains; ``finetune``: everything; ``last_n``: the last ``last_n`` encoder layers
    and the modules after them (final layer norm / post-layernorm)."""
    if mode not in TRAIN_MODES:
        raise ValueError(f"train_mode must be one of {TRAIN_MODES}, got {mode!r}")
    for p in backbone.parameters():
        p.requires_grad_(mode == "finetune")
    if mode != "last_n":
        return
    layers = encoder_layers(backbone)
    if not 1 <= last_n <= len(layers):
        raise ValueError(f"last_n must be in 1..{len(layers)}, got {last_n}")
    for layer in list(layers)[-last_n:]:
        layer.requires_grad_(True)
    for name in ("layernorm", "post_layernorm", "final_layer_norm", "norm"):
        mod = getattr(backbone, name, None) or getattr(getattr(backbone, "vision_model", None), name, None)
        if isinstance(mod, nn.Module):
            mod.requires_grad_(True)


def _is_frozen(m: nn.Module) -> bool:
    return not any(p.requires_grad for p in m.parameters())


class FullFusionModel(nn.Module):
    """``input_ids, attention_mask [B, T]``, ``pixel_values [B, 3, S, S]`` -> logits ``[B, n_out]``."""

    def __init__(self, text_backbone: nn.Module, image_backbone: nn.Module, n_out: int, fusion: str = "early_fusion",
                 train_mode: str = "frozen", last_n: int = 2, head_config: HeadConfig = HeadConfig()):
        super().__init__()
        if fusion not in ("early_fusion", "late_fusion"):
            raise ValueError(f"fusion must be 'early_fusion' or 'late_fusion', got {fusion!r}")
        self.text, self.image = text_backbone, image_backbone
        set_trainable(self.text, train_mode, last_n)
        set_trainable(self.image, train_mode, last_n)
        self.dims = {"text": text_backbone.config.hidden_size, "image": image_backbone.config.hidden_size}
        self.head = build_head(fusion, self.dims, n_out, head_config)
        self.fusion, self.train_mode, self.last_n = fusion, train_mode, last_n

    def train(self, mode: bool = True):
        super().train(mode)
        for bb in (self.text, self.image):  # frozen backbones stay deterministic (no dropout)
            if _is_frozen(bb):
                bb.eval()
        return self

    def features(self, input_ids, attention_mask, pixel_values, token_type_ids=None) -> torch.Tensor:
        """CLS vectors side by side ``[B, H_t + H_i]`` (no graph through frozen backbones)."""
        kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        with torch.set_grad_enabled(torch.is_grad_enabled() and not _is_frozen(self.text)):
            t = self.text(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state[:, 0]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not _is_frozen(self.image)):
            v = self.image(pixel_values=pixel_values).last_hidden_state[:, 0]
        return torch.cat([t, v], dim=1)

    def forward(self, input_ids, attention_mask, pixel_values, token_type_ids=None, labels=None) -> torch.Tensor:
        return self.head(self.features(input_ids, attention_mask, pixel_values, token_type_ids))


def parse_full_name(name: str) -> Dict[str, Any]:
    """``bert_vit_late_last2`` -> ``{"fusion": "late_fusion", "train_mode": "last_n", "last_n": 2}``."""
    m = FULL_MODEL_RE.match(name)
    if not m:
        raise ValueError(f"unknown full model {name!r}: use bert_vit_<early|late>_<frozen|finetune|lastN>, e.g. bert_vit_early_frozen")
    mode = "last_n" if m.group(3) else m.group(2)
    return {"fusion": f"{m.group(1)}_fusion", "train_mode": mode, "last_n": int(m.group(3) or 2)}


# ------------------------------------------------------------------------------------ preprocessing
class RecordsDataset(torch.utils.data.Dataset):
    """Rows ``rows`` of a :class:`~utils.data.schema.MultimodalDataset`: ``{id, text, image_path, labels}``."""

    def __init__(self, ds, rows: Sequence[int], targets: torch.Tensor):
        self.ids = ds.df["id"].to_numpy()[np.asarray(rows)]
        self.texts = [ds.items("text")[i] for i in rows] if "text" in ds.df.columns else [""] * len(rows)
        images = ds.items("image")
        self.paths = [images[i] for i in rows]
        self.targets = targets

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        return {"id": str(self.ids[i]), "text": self.texts[i], "image_path": self.paths[i], "labels": self.targets[i]}


class MultimodalCollator:
    """Records -> a batch: the tokenizer's ``input_ids/attention_mask(/token_type_ids)``, the image processor's
    ``pixel_values`` and ``labels``. ``pairs=True`` returns ``(inputs, labels)`` for :func:`utils.train_batches.fit_batches`."""

    def __init__(self, tokenizer, image_processor, max_length: int = 128, pairs: bool = False):
        self.tokenizer, self.image_processor, self.max_length, self.pairs = tokenizer, image_processor, max_length, pairs

    def __call__(self, records: List[Mapping[str, Any]]):
        from PIL import Image

        images = []
        for r in records:
            if r["image_path"] is None:
                raise ValueError(f"row {r['id']}: no image; drop such rows (utils.data.check_media(on_missing_image='drop'))")
            try:
                with Image.open(r["image_path"]) as im:
                    images.append(im.convert("RGB"))
            except OSError as e:
                raise ValueError(f"row {r['id']}: cannot read image {r['image_path']}: {e}") from e
        batch = dict(self.tokenizer([r["text"] or "" for r in records], padding=True, truncation=True,
                                    max_length=self.max_length, return_tensors="pt"))
        batch["pixel_values"] = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        labels = torch.stack([torch.as_tensor(r["labels"]) for r in records])
        if self.pairs:
            return batch, labels
        batch["labels"] = labels
        return batch


def load_preprocessing(text_model: str, image_model: str):
    """The tokenizer of ``text_model`` and the image processor of ``image_model`` (each backbone's own)."""
    from transformers import AutoImageProcessor, AutoTokenizer

    return AutoTokenizer.from_pretrained(str(text_model)), AutoImageProcessor.from_pretrained(str(image_model))


# ------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(model: nn.Module, folder: os.PathLike, config: Mapping[str, Any]) -> Path:
    """``folder/model.safetensors`` (the state_dict) and ``folder/config.json`` (what rebuilds the model)."""
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(dict(config), indent=1, default=str))
    return folder


def load_state(folder: os.PathLike) -> Dict[str, torch.Tensor]:
    """The state_dict in ``folder`` (``model.safetensors``, or a ``.pt`` loaded with ``weights_only=True``)."""
    folder = Path(folder)
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(folder / "model.safetensors"))
    pts = sorted(folder.glob("*.pt"))
    if not pts:
        raise FileNotFoundError(f"{folder}: no model.safetensors or *.pt state dict")
    return torch.load(pts[0], map_location="cpu", weights_only=True)


def full_model_config(model: FullFusionModel, n_out: int, head_config: HeadConfig) -> Dict[str, Any]:
    return {
        "kind": "FullFusionModel", "n_out": n_out, "fusion": model.fusion, "train_mode": model.train_mode, "last_n": model.last_n,
        "head": asdict(head_config), "text_config": model.text.config.to_dict(), "image_config": model.image.config.to_dict(),
    }


def load_full_model(folder: os.PathLike) -> FullFusionModel:
    """Rebuild a :class:`FullFusionModel` from :func:`save_checkpoint` output (configs + safetensors, no hub access)."""
    from transformers import AutoConfig

    cfg = json.loads((Path(folder) / "config.json").read_text())

    def backbone(d: Dict[str, Any]):
        d = dict(d)
        return load_backbone(AutoConfig.for_model(d.pop("model_type"), **d))

    model = FullFusionModel(backbone(cfg["text_config"]), backbone(cfg["image_config"]), cfg["n_out"], cfg["fusion"],
                            cfg["train_mode"], cfg["last_n"], HeadConfig(**cfg["head"]))
    model.load_state_dict(load_state(folder))
    return model.eval()


# --------------------------------------------------------------------------------- training helpers
@dataclass
class FullTrainConfig:
    epochs: int = 5  # end-to-end epochs are expensive: a few, with early stopping on validation
    batch_size: int = 16
    lr: float = 2e-5  # backbone learning rate (fine-tuning); the head uses head_lr
    head_lr: float = 1e-3
    patience: Optional[int] = 2
    max_length: int = 128
    num_workers: int = 0  # DataLoader workers decoding images
    class_weights: Any = None
    loss: str = "auto"
    device: str = "auto"
    head: HeadConfig = field(default_factory=HeadConfig)


def _split_rows(ds) -> Dict[str, np.ndarray]:
    has_image = np.array([p is not None for p in ds.items("image")])
    split = ds.df["split"].to_numpy()
    return {s: np.flatnonzero((split == s) & has_image) for s in ("train", "val", "test")}


def _loaders(ds, rows, collator, batch_size: int, num_workers: int, seed: int):
    from torch.utils.data import DataLoader

    from .losses import targets_tensor

    y = targets_tensor(ds.labels(), ds.spec.task)
    out = {}
    for s, idx in rows.items():
        g = torch.Generator().manual_seed(seed)
        out[s] = DataLoader(RecordsDataset(ds, idx, y[idx]), batch_size=batch_size, shuffle=(s == "train"), generator=g,
                            collate_fn=collator, num_workers=num_workers, drop_last=(s == "train" and len(idx) % batch_size == 1))
    return out


def _param_groups(model: nn.Module, lr: float, head_lr: float) -> List[Dict[str, Any]]:
    """AdamW groups: backbone parameters at ``lr`` (fine-tuning rate), head parameters at ``head_lr``."""
    head = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("head.")]
    body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
    return [g for g in ({"params": body, "lr": lr}, {"params": head, "lr": head_lr}) if g["params"]]


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory: CUDA max allocated for a GPU, else the process's peak resident set (MB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def train_full_models(
    ds,
    models: Sequence[str] = ("bert_vit_early_frozen", "bert_vit_late_frozen", "bert_vit_early_finetune", "bert_vit_late_finetune"),
    text_model: str = DEFAULT_TEXT_MODEL,
    image_model: str = DEFAULT_IMAGE_MODEL,
    seeds: Union[int, Sequence[int]] = 0,
    config: FullTrainConfig = FullTrainConfig(),
    show_progress: bool = True,
    checkpoint_dir: Optional[os.PathLike] = None,
) -> List[Dict[str, Any]]:
    """Train each ``bert_vit_*`` model for each seed end to end; one result row per (model, seed).

    Rows carry the same fields as :func:`utils.experiment.train_heads` rows. Early stopping and model
    selection use the validation split; metrics are on test. ``checkpoint_dir``: save each model there.
    """
    from tqdm.auto import tqdm

    from ..config import library_versions, resolve_device
    from ..metrics import classification_metrics
    from ..train import TrainConfig, n_params, set_seed
    from ..train_batches import fit_batches, predict_batches
    from .losses import probabilities

    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    tokenizer, processor = load_preprocessing(text_model, image_model)
    collator = MultimodalCollator(tokenizer, processor, config.max_length, pairs=True)
    rows_by_split = _split_rows(ds)
    y = ds.labels()
    dev = resolve_device(config.device)
    rows: List[Dict[str, Any]] = []
    for name, seed in tqdm([(m, s) for m in models for s in seeds], desc="full models", disable=not show_progress):
        spec = parse_full_name(name)
        set_seed(seed)
        model = FullFusionModel(load_backbone(text_model), load_backbone(image_model), ds.spec.num_outputs,
                                spec["fusion"], spec["train_mode"], spec["last_n"], config.head)
        loaders = _loaders(ds, rows_by_split, collator, config.batch_size, config.num_workers, seed)
        tcfg = TrainConfig(epochs=config.epochs, batch_size=max(2, config.batch_size), lr=config.head_lr, patience=config.patience,
                           class_weights=config.class_weights, loss=config.loss, seed=seed, device=config.device)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        res = fit_batches(model, loaders["train"], loaders["val"], ds.spec.task, ds.spec.classes, tcfg,
                          y_train=y[rows_by_split["train"]], param_groups=_param_groups(model, config.lr, config.head_lr))
        t0 = time.perf_counter()
        logits, _ = predict_batches(res.model, loaders["test"])
        inference_s = time.perf_counter() - t0
        m = classification_metrics(y[rows_by_split["test"]], probabilities(logits, ds.spec.task).numpy(), ds.spec.task, ds.spec.classes)
        row = {
            "model": name, "family": "full", "dataset": ds.spec.key, "task": ds.spec.task, "seed": seed,
            "modalities": ["text", "image"], "extractors": {"text": str(text_model), "image": str(image_model)},
            **{k: m[k] for k in ("accuracy", "macro_f1", "weighted_f1", "roc_auc", "per_class_f1", "confusion_matrix")},
            "train_s_per_epoch": res.train_s_per_epoch, "train_s": res.train_seconds, "epoch_seconds": res.epoch_seconds,
            "inference_s": inference_s, "n_params": n_params(res.model), "n_params_total": n_params(res.model, trainable_only=False),
            "epochs_run": res.epochs_run, "best_epoch": res.best_epoch, "history": res.history,
            "n_train": len(rows_by_split["train"]), "n_val": len(rows_by_split["val"]), "n_test": len(rows_by_split["test"]),
            "peak_memory_mb": peak_memory_mb(dev), "train_config": {**asdict(config), "model": spec},
            "versions": library_versions(),
        }
        if checkpoint_dir:
            save_checkpoint(res.model, Path(checkpoint_dir) / f"{name}_seed{seed}", full_model_config(res.model, ds.spec.num_outputs, config.head))
        rows.append(row)
        log.info("%-24s seed %d: test macro-F1 %.3f, acc %.3f (%.2f s/epoch)", name, seed, row["macro_f1"], row["accuracy"], row["train_s_per_epoch"])
    return rows


# ------------------------------------------------------------------------------------- BERT + CLIP
class ClipImageEncoder(nn.Module):
    """CLIP's vision tower and projection: ``pixel_values`` -> the projected image embedding ``[B, P]``."""

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        self.vision_model = clip_model.vision_model
        self.visual_projection = clip_model.visual_projection
        self.out_dim = clip_model.config.projection_dim

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.visual_projection(self.vision_model(pixel_values=pixel_values).pooler_output)


def load_clip_image_encoder(clip_path: os.PathLike, lora_path: Optional[os.PathLike] = None) -> ClipImageEncoder:
    """CLIP from a local (fine-tuned) folder; with ``lora_path`` a peft LoRA adapter is applied and merged."""
    from transformers import CLIPModel

    clip = CLIPModel.from_pretrained(str(clip_path))
    if lora_path is not None:
        from peft import PeftModel

        clip = PeftModel.from_pretrained(clip, str(lora_path)).merge_and_unload()
        clip.requires_grad_(True)  # peft loads adapters for inference (frozen base); the merged encoder fine-tunes
    return ClipImageEncoder(clip)


def add_lora(clip_model: nn.Module, r: int = 8, alpha: int = 16, dropout: float = 0.0,
             target_modules: Sequence[str] = ("q_proj", "v_proj")):
    """Wrap a CLIP model with LoRA adapters (peft) for parameter-efficient fine-tuning; save with ``save_pretrained``."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(clip_model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules)))


class BertClipClassifier(nn.Module):
    """Late fusion of a BERT text encoder (CLS) and a CLIP image encoder (projected embedding)."""

    def __init__(self, bert: nn.Module, image_encoder: ClipImageEncoder, n_out: int, head_config: HeadConfig = HeadConfig()):
        super().__init__()
        if getattr(bert, "pooler", None) is not None:
            bert.pooler = None
        self.text, self.image = bert, image_encoder
        self.head = build_head("late_fusion", {"text": bert.config.hidden_size, "image": image_encoder.out_dim}, n_out, head_config)

    def forward(self, input_ids, attention_mask, pixel_values, token_type_ids=None, labels=None) -> torch.Tensor:
        kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        t = self.text(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state[:, 0]
        return self.head(torch.cat([t, self.image(pixel_values)], dim=1))


def load_bert_clip(bert_path: os.PathLike, clip_path: os.PathLike, n_out: int, lora_path: Optional[os.PathLike] = None,
                   head_config: HeadConfig = HeadConfig()) -> BertClipClassifier:
    """:class:`BertClipClassifier` from locally saved (fine-tuned) BERT and CLIP folders (+ optional LoRA adapter)."""
    from transformers import AutoModel

    return BertClipClassifier(AutoModel.from_pretrained(str(bert_path)), load_clip_image_encoder(clip_path, lora_path), n_out, head_config)


def _weighted_trainer_class():
    from transformers import Trainer

    class WeightedTrainer(Trainer):
        """A ``Trainer`` whose loss is the task loss with class weights (or focal loss): ``loss_fn(logits, labels)``."""

        def __init__(self, *args: Any, loss_fn: nn.Module, **kw: Any):
            super().__init__(*args, **kw)
            self.loss_fn = loss_fn

        def get_train_dataloader(self):
            """Drop the last training batch only when it would hold one row (BatchNorm cannot train on
            it); evaluation loaders keep every row."""
            keep = self.args.dataloader_drop_last
            self.args.dataloader_drop_last = keep or len(self.train_dataset) % self._train_batch_size == 1
            try:
                return super().get_train_dataloader()
            finally:
                self.args.dataloader_drop_last = keep

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            logits = model(**inputs)
            loss = self.loss_fn.to(logits.device)(logits, labels)
            return (loss, {"logits": logits}) if return_outputs else loss

    return WeightedTrainer


def __getattr__(name: str):  # WeightedTrainer without importing transformers at module import
    if name == "WeightedTrainer":
        return _weighted_trainer_class()
    raise AttributeError(name)


def train_bert_clip(
    ds,
    bert_path: os.PathLike,
    clip_path: os.PathLike,
    output_dir: os.PathLike,
    lora_path: Optional[os.PathLike] = None,
    epochs: int = 5,
    batch_size: int = 16,
    lr: float = 2e-5,
    patience: int = 2,
    class_weights: Any = "balanced",
    loss: str = "auto",
    max_length: int = 128,
    seed: int = 0,
    device: str = "auto",
) -> Tuple[Dict[str, Any], Any]:
    """Train :class:`BertClipClassifier` with :class:`WeightedTrainer`; early stopping on validation loss.

    Returns a result row (model ``bert_clip_late``) and the trainer. The best epoch's weights are
    restored (``load_best_model_at_end``); checkpoints are safetensors.
    """
    from transformers import AutoImageProcessor, AutoTokenizer, EarlyStoppingCallback, TrainingArguments

    from ..config import library_versions, resolve_device
    from ..metrics import classification_metrics
    from ..train import n_params, set_seed
    from .losses import class_weight_vector, make_loss, probabilities, targets_tensor

    set_seed(seed)
    dev = resolve_device(device)
    tokenizer = AutoTokenizer.from_pretrained(str(bert_path))
    processor = AutoImageProcessor.from_pretrained(str(clip_path))
    model = load_bert_clip(bert_path, clip_path, ds.spec.num_outputs, lora_path)
    rows = _split_rows(ds)
    y = ds.labels()
    yt = targets_tensor(y, ds.spec.task)
    data = {s: RecordsDataset(ds, idx, yt[idx]) for s, idx in rows.items()}
    w = class_weight_vector(y[rows["train"]], ds.spec.task, len(ds.spec.classes), class_weights)
    loss_fn = make_loss(ds.spec.task, w, loss)
    args = TrainingArguments(
        output_dir=str(output_dir), num_train_epochs=epochs, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size, learning_rate=lr, eval_strategy="epoch", save_strategy="epoch",
        load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False, save_total_limit=2,
        save_only_model=True, logging_strategy="epoch", report_to="none", seed=seed, data_seed=seed,
        remove_unused_columns=False, label_names=["labels"], use_cpu=dev.type == "cpu", dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = _weighted_trainer_class()(
        model=model, args=args, data_collator=MultimodalCollator(tokenizer, processor, max_length), train_dataset=data["train"],
        eval_dataset=data["val"], callbacks=[EarlyStoppingCallback(early_stopping_patience=patience)], loss_fn=loss_fn,
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # library code logs, never prints
    out = trainer.train()
    epochs_run = int(round(trainer.state.epoch or epochs))
    t0 = time.perf_counter()
    pred = trainer.predict(data["test"])
    inference_s = time.perf_counter() - t0
    logits = torch.as_tensor(pred.predictions)
    m = classification_metrics(y[rows["test"]], probabilities(logits, ds.spec.task).numpy(), ds.spec.task, ds.spec.classes)
    history = [h for h in trainer.state.log_history if "eval_loss" in h]
    best_epoch = int(min(history, key=lambda h: h["eval_loss"])["epoch"]) if history else epochs_run
    row = {
        "model": "bert_clip_late", "family": "full", "dataset": ds.spec.key, "task": ds.spec.task, "seed": seed,
        "modalities": ["text", "image"], "extractors": {"text": str(bert_path), "image": str(clip_path) + (f" + LoRA {lora_path}" if lora_path else "")},
        **{k: m[k] for k in ("accuracy", "macro_f1", "weighted_f1", "roc_auc", "per_class_f1", "confusion_matrix")},
        "train_s_per_epoch": out.metrics["train_runtime"] / max(epochs_run, 1), "train_s": out.metrics["train_runtime"],
        "inference_s": inference_s, "n_params": n_params(trainer.model), "epochs_run": epochs_run, "best_epoch": best_epoch,
        "history": history, "n_train": len(rows["train"]), "n_val": len(rows["val"]), "n_test": len(rows["test"]),
        "peak_memory_mb": peak_memory_mb(dev), "versions": library_versions(),
        "train_config": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "patience": patience, "class_weights": str(class_weights), "loss": loss},
    }
    return row, trainer
