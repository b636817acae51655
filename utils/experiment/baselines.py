"""Baselines next to the fusion heads, each producing the same result rows:

- :func:`train_logreg`: scikit-learn logistic regression on the same cached embeddings (the floor);
- :func:`train_tsf`: the published MUSTI block (image tokens mixed into the text encoder's input embeddings,
  cosine scores, a vote over a ViT and a ResNet-34 branch), end to end; the default guided model;
- :func:`train_guided`: our gated variant of image-guided text selection, on cached token features;
- :func:`train_full_models`: BERT + ViT end to end (frozen, fine-tuned or last-N layers) under the fusion heads;
- :func:`train_bert_clip`: the BERT + CLIP late-fusion classifier, trained with a ``transformers.Trainer``.

Selection and early stopping use the validation split; metrics are on the test split.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..config import merge_config
from ..embed import Embeddings
from ..features import Standardizer, split_rows, stack, usable_rows
from ..metrics import classification_metrics
from ..runtime import seed_list
from .heads import HeadOutputs, HeadRecipe, TrainedHeads
from .rows import result_row

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------- logistic regression
def train_logreg(
    ds,
    embeddings: Embeddings,
    seeds: Union[int, Sequence[int]] = 0,
    modalities: Optional[Sequence[str]] = None,
    C: float = 1.0,
    max_iter: int = 2000,
    class_weight: Optional[str] = None,
    standardize: bool = True,
) -> List[Dict[str, Any]]:
    """Logistic regression on the modalities side by side (standardised with training statistics); one row per seed.

    The validation split is not used for fitting (no early stopping); metrics are on test. ``train_s_per_epoch`` is
    the fit time. The rows are a :class:`TrainedHeads` that keep their test and validation outputs (log-probabilities
    as logits), so ``report()`` scores them beside the heads (``rows += train_logreg(...)`` keeps them aligned).
    """
    from ..models.classic import fit_logreg, logreg_n_params, logreg_proba

    embeddings = embeddings.for_dataset(ds)
    mods = list(modalities or embeddings.modalities)
    X = stack(embeddings.vectors, mods).astype(np.float64)
    usable = usable_rows(X)
    parts = split_rows(ds.df["split"].to_numpy(), usable)
    Xtr, Xva, Xte = X[parts["train"]], X[parts["val"]], X[parts["test"]]
    if standardize:
        scaler = Standardizer.fit(Xtr)
        Xtr, Xva, Xte = scaler(Xtr), scaler(Xva), scaler(Xte)
    y = ds.labels()
    rows = TrainedHeads(recipe=HeadRecipe(ds, embeddings.vectors, parts, y, {}, None, standardize,
                                          dict(embeddings.sources)))
    for seed in seed_list(seeds):
        t0 = time.perf_counter()
        clf = fit_logreg(Xtr, y[parts["train"]], ds.spec.task, C, max_iter, class_weight, seed)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        proba = logreg_proba(clf, Xte, ds.spec.task, len(ds.spec.classes))
        inference_s = time.perf_counter() - t0
        rows.append(result_row(
            "logreg", ds.spec, y[parts["test"]], proba, parts=parts, seed=seed, modalities=mods,
            extractors={k: embeddings.extractors[k] for k in mods}, train_s=train_s, inference_s=inference_s,
            n_params=logreg_n_params(clf), rows_without_vectors=int((~usable).sum()),
            config={"C": C, "max_iter": max_iter, "class_weight": class_weight}, standardize=standardize,
        ))
        val = logreg_proba(clf, Xva, ds.spec.task, len(ds.spec.classes)) if len(Xva) else np.zeros((0,))
        rows.outputs[-1] = HeadOutputs(mods, proba, proba_logits(proba, ds.spec.task), proba_logits(val, ds.spec.task))
    return rows


def proba_logits(proba: np.ndarray, task: str) -> np.ndarray:
    """Logits ``[N, n_out]`` that give back ``proba`` (log-probabilities for multiclass, log-odds otherwise)."""
    p = np.clip(np.asarray(proba, np.float64), 1e-7, 1 - 1e-7)
    if task == "multiclass":
        return np.log(p).astype(np.float32)
    return np.log(p / (1 - p)).reshape(len(p), -1).astype(np.float32)


# ------------------------------------------------------------------------------------ image-guided selection
def image_branches(ds, extractors: Sequence[str], options: Optional[Dict[str, Dict[str, Any]]] = None,
                   **embed_kw: Any) -> Tuple[Dict[str, np.ndarray], List[str]]:
    """Each image extractor's embedding of ``ds`` (cached in the store), ``{branch: [N, D]}`` in the order
    given, and the extractors' names. A branch is named after its model (``image_<model id>``, e.g.
    ``image_resnet34_a1_in1k``). ``options`` maps an extractor spec to its options."""
    from .steps import embed_config, extract_embeddings, extractor_options

    by_spec = extractor_options(list(extractors), options)
    cfg = embed_config(**embed_kw)  # one config for every extractor
    parts: Dict[str, np.ndarray] = {}
    names = []
    for spec in extractors:
        emb = extract_embeddings(ds, {"image": spec}, {spec: by_spec.get(spec, {})}, cfg)
        key = "image_" + "".join(c if c.isalnum() else "_" for c in str(spec).rsplit(":", 1)[-1].rsplit("/", 1)[-1])
        if key in parts:
            raise ValueError(f"two image extractors give the branch name {key!r}: {list(extractors)}")
        parts[key] = np.asarray(emb.vectors["image"], dtype=np.float32)
        names.append(emb.extractors["image"])
    return parts, names


def image_guide_features(ds, extractors: Sequence[str], options: Optional[Dict[str, Dict[str, Any]]] = None,
                         **embed_kw: Any) -> Tuple[np.ndarray, List[str]]:
    """The guiding image representation of the gated variant: the extractors' embeddings side by side, ``[N, sum D]``."""
    parts, names = image_branches(ds, extractors, options, **embed_kw)
    return np.concatenate(list(parts.values()), axis=1).astype(np.float32), names


@dataclass
class TSFConfig:
    epochs: int = 5  # end to end: a few epochs, early stopping on validation
    batch_size: int = 16  # as the other end-to-end baselines (see README, "Models, baselines and experiments")
    lr: float = 2e-5  # text encoder fine-tuning rate (scored best in benchmarks/full_model_lr.py; README)
    head_lr: float = 1e-3  # the new modules: mixers and cosine scorers
    patience: Optional[int] = 2  # epochs without validation improvement before stopping
    monitor: str = "val_loss"  # what "improvement" means (utils.train.loop.MONITORS)
    max_length: int = 128  # tokenizer max length
    n_image_tokens: int = 4  # image tokens each branch makes from its image feature
    scale: float = 10.0  # starting cosine scale (learned)
    train_encoder: bool = True  # False: the encoder is frozen (its gradients still reach the mixers)
    class_weights: Any = None  # None, "balanced" or explicit weights
    loss: str = "auto"  # "auto", "ce", "bce" or "focal" (the MUSTI notebook: focal, gamma 2, alpha 0.3, as the seed)
    focal_gamma: float = 2.0
    focal_alpha: Any = None
    device: str = "auto"


def train_tsf(
    ds,
    text_model: Union[str, os.PathLike],
    images: Dict[str, np.ndarray],
    seeds: Union[int, Sequence[int]] = 0,
    config: Optional[TSFConfig] = None,
    **options: Any,
) -> List[Dict[str, Any]]:
    """Train :class:`~utils.models.guided.TextSelectionFusion` end to end; one ``guided_tsf`` row per seed.

    ``images``: branch name -> cached image features ``[N, D]`` aligned with ``ds`` (:func:`image_branches`);
    rows without every branch's vector are left out. Texts are tokenized once; the encoder trains at
    ``lr``, the mixers and scorers at ``head_lr``. ``config`` / ``options``: :class:`TSFConfig` fields.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    from ..models.full import param_groups
    from ..models.guided import TextSelectionFusion
    from ..models.losses import targets_tensor
    from ..runtime import n_params, peak_memory_mb, resolve_device
    from ..train import TensorBatches, TrainConfig, config_dict, fit_batches, predict_batches_proba

    cfg = merge_config(TSFConfig, config, options, "train_tsf")
    if not images:
        raise ValueError("train_tsf: no image branches; pass {name: [N, D] features}, e.g. from image_branches()")
    feats = {k: np.asarray(v, dtype=np.float32) for k, v in images.items()}
    bad = {k: v.shape for k, v in feats.items() if v.ndim != 2 or len(v) != len(ds.df)}
    if bad:
        raise ValueError(f"train_tsf: image features must be [N={len(ds.df)}, D] aligned with the dataset; got {bad}")
    usable = np.logical_and.reduce([usable_rows(v) for v in feats.values()])
    parts = split_rows(ds.df["split"].to_numpy(), usable)
    scalers = {k: Standardizer.fit(v[parts["train"]]) for k, v in feats.items()}
    texts = ds.items("text") if "text" in ds.df.columns else [""] * len(ds.df)
    tokenizer = AutoTokenizer.from_pretrained(str(text_model))
    enc = tokenizer([t or "" for t in texts], padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt")
    y = ds.labels()
    targets = targets_tensor(y, ds.spec.task)
    dev = resolve_device(cfg.device)
    rows: List[Dict[str, Any]] = []
    for seed in seed_list(seeds):

        def data(s: str, shuffle: bool) -> TensorBatches:
            i = parts[s]
            inputs = {"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                      **{k: torch.from_numpy(scalers[k](v[i])) for k, v in feats.items()}}
            return TensorBatches(inputs, targets[i], cfg.batch_size, shuffle, seed)

        tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.head_lr, patience=cfg.patience,
                           monitor=cfg.monitor, class_weights=cfg.class_weights, loss=cfg.loss,
                           focal_gamma=cfg.focal_gamma, focal_alpha=cfg.focal_alpha, seed=seed, device=cfg.device)
        torch.manual_seed(seed)
        model = TextSelectionFusion(AutoModel.from_pretrained(str(text_model)), {k: v.shape[1] for k, v in feats.items()},
                                    ds.spec.num_outputs, ds.spec.task, cfg.n_image_tokens, cfg.scale, cfg.train_encoder)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        res = fit_batches(model, data("train", True), data("val", False), ds.spec.task, ds.spec.classes, tcfg,
                          y_train=y[parts["train"]], param_groups=param_groups(model, cfg.lr, cfg.head_lr))
        t0 = time.perf_counter()
        proba = predict_batches_proba(res.model, data("test", False), ds.spec.task)
        inference_s = time.perf_counter() - t0
        rows.append(result_row(
            "guided_tsf", ds.spec, y[parts["test"]], proba, fit=res, parts=parts, seed=seed, family="full",
            modalities=["text", "image"], extractors={"text": str(text_model), "image": " + ".join(feats)},
            inference_s=inference_s, config={**asdict(cfg), "loop": config_dict(tcfg)}, epoch_seconds=res.epoch_seconds,
            n_params_total=n_params(res.model, trainable_only=False), peak_memory_mb=peak_memory_mb(dev),
        ))
        log.info("guided_tsf seed %d: test macro-F1 %.3f, acc %.3f", seed, rows[-1]["macro_f1"], rows[-1]["accuracy"])
    return rows


def train_guided(
    ds,
    token_folder: os.PathLike,
    image_features: np.ndarray,
    seeds: Sequence[int] = (0,),
    epochs: int = 30,
    batch_size: int = 32,
    hidden: int = 256,
    device: str = "auto",
    **train_options: Any,
) -> List[Dict[str, Any]]:
    """Train :class:`~utils.models.guided.ImageGuidedTextSelector` (our gated variant) on cached token features;
    one ``guided_gated`` row per seed."""
    import torch

    from ..models.guided import ImageGuidedTextSelector
    from ..models.losses import targets_tensor
    from ..token_features import load_token_features
    from ..train import TensorBatches, TrainConfig, fit_batches, predict_batches_proba

    tokens, mask = load_token_features(token_folder, list(ds.df["id"]))
    y = ds.labels()
    img = image_features.astype(np.float32)
    parts = split_rows(ds.df["split"].to_numpy(), usable_rows(img))
    scaler = Standardizer.fit(img[parts["train"]])
    rows = []
    for seed in seed_list(seeds):

        def data(s: str, shuffle: bool) -> TensorBatches:
            i = parts[s]
            inputs = {"tokens": torch.from_numpy(np.asarray(tokens[i], dtype=np.float32)),
                      "mask": torch.from_numpy(np.asarray(mask[i])), "image": torch.from_numpy(scaler(img[i]))}
            return TensorBatches(inputs, targets_tensor(y[i], ds.spec.task), batch_size, shuffle, seed)

        cfg = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, device=device, **train_options)
        torch.manual_seed(seed)
        model = ImageGuidedTextSelector(tokens.shape[2], img.shape[1], ds.spec.num_outputs, hidden)
        res = fit_batches(model, data("train", True), data("val", False), ds.spec.task, ds.spec.classes, cfg,
                          y_train=y[parts["train"]])
        t0 = time.perf_counter()
        proba = predict_batches_proba(res.model, data("test", False), ds.spec.task)
        inference_s = time.perf_counter() - t0
        rows.append(result_row("guided_gated", ds.spec, y[parts["test"]], proba, fit=res, config=cfg, parts=parts,
                               modalities=["text", "image"], inference_s=inference_s))
    return rows


# -------------------------------------------------------------------------------------------- end to end
@dataclass
class FullTrainConfig:
    # Where these differ from the seed (batch 64, AdamW 1e-3 for everything), the README says why
    # ("Models, baselines and experiments"; measured by benchmarks/full_model_lr.py).
    epochs: int = 5  # end-to-end epochs are expensive: a few, with early stopping on validation
    batch_size: int = 16  # BERT's fine-tuning batch; 4x the seed's optimizer steps per epoch
    lr: float = 2e-5  # backbone learning rate (fine-tuning): scored best against the seed's 1e-3 (full_model_lr.py)
    head_lr: float = 1e-3  # the new fusion head: the seed's rate
    patience: Optional[int] = 2
    max_length: int = 128  # tokenizer max length
    num_workers: int = 2  # DataLoader workers decoding images while the model trains (the seed's 2; 0: in process)
    class_weights: Any = None  # None, "balanced" or explicit weights
    loss: str = "auto"  # "auto", "ce", "bce" or "focal"
    focal_gamma: float = 2.0  # focal loss focusing parameter
    focal_alpha: Any = None  # focal loss alpha: scalar (binary) or one per class
    device: str = "auto"
    head: Any = field(default_factory=lambda: default_head_config())  # a utils.models.HeadConfig


def default_head_config() -> Any:
    """The fusion heads' default :class:`~utils.models.fusion.HeadConfig` (imported here: models need torch)."""
    from ..models.fusion import HeadConfig

    return HeadConfig()


def record_datasets(ds, targets) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """Rows with an image in each split and their :class:`~utils.train.batches.RecordsDataset` (linear time)."""
    from ..train import RecordsDataset

    images = ds.items("image")
    texts = ds.items("text") if "text" in ds.df.columns else [""] * len(ds.df)
    parts = split_rows(ds.df["split"].to_numpy(), np.array([p is not None for p in images]))
    return parts, {s: RecordsDataset.from_dataset(ds, idx, targets[idx], texts, images) for s, idx in parts.items()}


def train_full_models(
    ds,
    models: Sequence[str] = ("bert_vit_early_frozen", "bert_vit_late_frozen", "bert_vit_early_finetune", "bert_vit_late_finetune"),
    text_model: str = "bert-base-uncased",
    image_model: str = "google/vit-base-patch16-224-in21k",
    seeds: Union[int, Sequence[int]] = 0,
    config: Optional[FullTrainConfig] = None,
    show_progress: bool = True,
    checkpoint_dir: Optional[os.PathLike] = None,
) -> List[Dict[str, Any]]:
    """Train each ``bert_vit_*`` model for each seed end to end; one result row per (model, seed).

    ``checkpoint_dir``: save each model there (safetensors + config JSON).
    """
    import torch
    from ..runtime import progress_bar as tqdm

    from ..models.full import (
        FullFusionModel, full_model_config, load_backbone, load_preprocessing, param_groups, parse_full_name,
        save_checkpoint,
    )
    from ..models.losses import targets_tensor
    from ..runtime import n_params, peak_memory_mb, resolve_device, set_seed
    from ..train import MultimodalCollator, TrainConfig, config_dict, fit_batches, predict_batches_proba, record_loaders

    config = config or FullTrainConfig()
    tokenizer, processor = load_preprocessing(text_model, image_model)
    collator = MultimodalCollator(tokenizer, processor, config.max_length, pairs=True)
    y = ds.labels()
    parts, records = record_datasets(ds, targets_tensor(y, ds.spec.task))
    dev = resolve_device(config.device)
    rows: List[Dict[str, Any]] = []
    for name, seed in tqdm([(m, s) for m in models for s in seed_list(seeds)], desc="full models", disable=not show_progress):
        spec = parse_full_name(name)
        set_seed(seed)
        model = FullFusionModel(load_backbone(text_model), load_backbone(image_model), ds.spec.num_outputs,
                                spec["fusion"], spec["train_mode"], spec["last_n"], config.head)
        loaders = record_loaders(records, collator, config.batch_size, config.num_workers, seed)
        tcfg = TrainConfig(epochs=config.epochs, batch_size=max(2, config.batch_size), lr=config.head_lr,
                           patience=config.patience, class_weights=config.class_weights, loss=config.loss,
                           focal_gamma=config.focal_gamma, focal_alpha=config.focal_alpha, seed=seed, device=config.device)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        res = fit_batches(model, loaders["train"], loaders["val"], ds.spec.task, ds.spec.classes, tcfg,
                          y_train=y[parts["train"]], param_groups=param_groups(model, config.lr, config.head_lr))
        t0 = time.perf_counter()
        proba = predict_batches_proba(res.model, loaders["test"], ds.spec.task)
        inference_s = time.perf_counter() - t0
        row = result_row(
            name, ds.spec, y[parts["test"]], proba, fit=res, parts=parts, seed=seed, family="full",
            modalities=["text", "image"], extractors={"text": str(text_model), "image": str(image_model)},
            inference_s=inference_s, config={**asdict(config), "model": spec, "loop": config_dict(tcfg)},
            epoch_seconds=res.epoch_seconds, n_params_total=n_params(res.model, trainable_only=False),
            peak_memory_mb=peak_memory_mb(dev),
        )
        if checkpoint_dir:
            save_checkpoint(res.model, Path(checkpoint_dir) / f"{name}_seed{seed}",
                            full_model_config(res.model, ds.spec.num_outputs, config.head))
        rows.append(row)
        log.info("%-24s seed %d: test macro-F1 %.3f, acc %.3f (%.2f s/epoch)", name, seed, row["macro_f1"],
                 row["accuracy"], row["train_s_per_epoch"])
    return rows


# ------------------------------------------------------------------------------------------- BERT + CLIP
@dataclass
class BertClipConfig:
    epochs: int = 5  # upper bound; early stopping on the validation loss
    batch_size: int = 16
    lr: float = 2e-5  # BERT and CLIP fine-tuning rate (and the head's, unless head_lr)
    head_lr: Optional[float] = None  # the fusion head's own rate (None: lr, one rate as the seed's Trainer)
    patience: int = 2  # evaluations without improvement before stopping
    num_workers: int = 2  # DataLoader workers decoding images (the seed's 2; 0: in process)
    class_weights: Any = "balanced"  # binary: pos_weight = n_negative / n_positive
    loss: str = "auto"  # "auto", "ce", "bce" or "focal"
    focal_gamma: float = 2.0
    focal_alpha: Any = None
    max_length: int = 128  # tokenizer max length
    lora_alpha: Optional[float] = None  # LoRA scale numerator when a .pt LoRA does not record it
    clip_base: Optional[str] = None  # the CLIP a .pt clip_path is applied over (None: openai/clip-vit-base-patch32)
    seed: int = 0
    device: str = "auto"


def trainer_metrics(task: str, classes: Sequence[str]):
    """``compute_metrics`` for ``transformers.Trainer``: accuracy, macro / weighted F1 and ROC-AUC of the logits."""
    import torch

    from ..models.losses import probabilities
    from ..train import labels_from_targets

    def compute(pred) -> Dict[str, float]:
        logits = torch.as_tensor(pred.predictions).float()
        y = labels_from_targets(torch.as_tensor(pred.label_ids), task)
        m = classification_metrics(y, probabilities(logits, task).numpy(), task, classes)
        return {k: float(m[k]) for k in ("accuracy", "macro_f1", "weighted_f1", "roc_auc")}

    return compute


def train_bert_clip(
    ds,
    bert_path: os.PathLike,
    clip_path: os.PathLike,
    output_dir: os.PathLike,
    lora_path: Optional[os.PathLike] = None,
    config: Optional[BertClipConfig] = None,
    **options: Any,
) -> Tuple[Dict[str, Any], Any]:
    """Train :class:`~utils.models.full.BertClipClassifier` with ``WeightedTrainer``; early stopping on validation loss.

    ``lora_path``: a peft adapter folder or a ``.pt`` state dict of the LoRA weights (``clip_lora_best.pt``);
    ``clip_path`` may be such a ``.pt`` too (over the default CLIP); ``lora_alpha`` when the file lacks it.
    ``config`` / ``options``: :class:`BertClipConfig` fields. Returns a result row (model ``bert_clip_late``,
    with the validation metrics of the best epoch as ``val_*``) and the trainer. The best epoch's weights
    are restored (``load_best_model_at_end``); checkpoints are safetensors.
    """
    import torch
    from transformers import AutoTokenizer, EarlyStoppingCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from ..models.full import load_bert_clip, load_clip_processor
    from ..models.losses import probabilities, targets_tensor
    from ..runtime import n_params, peak_memory_mb, resolve_device, set_seed
    from ..train import MultimodalCollator, TrainConfig, task_loss
    from ..train.hf_trainer import weighted_trainer_class

    cfg = merge_config(BertClipConfig, config, options, "train_bert_clip")
    set_seed(cfg.seed)
    dev = resolve_device(cfg.device)
    tokenizer = AutoTokenizer.from_pretrained(str(bert_path))
    processor = load_clip_processor(clip_path, cfg.clip_base)  # resolved like the model: a .pt has no processor
    model = load_bert_clip(bert_path, clip_path, ds.spec.num_outputs, lora_path, lora_alpha=cfg.lora_alpha,
                           clip_base=cfg.clip_base)
    y = ds.labels()
    parts, data = record_datasets(ds, targets_tensor(y, ds.spec.task))
    loss_cfg = TrainConfig(class_weights=cfg.class_weights, loss=cfg.loss, focal_gamma=cfg.focal_gamma,
                           focal_alpha=cfg.focal_alpha)
    loss_fn = task_loss(ds.spec.task, len(ds.spec.classes), loss_cfg, y[parts["train"]])
    optimizers = (None, None)  # the Trainer's own AdamW at lr
    if cfg.head_lr is not None:
        from ..models.full import param_groups

        optimizers = (torch.optim.AdamW(param_groups(model, cfg.lr, cfg.head_lr), weight_decay=0.0), None)
    args = TrainingArguments(
        output_dir=str(output_dir), num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size, learning_rate=cfg.lr, eval_strategy="epoch", save_strategy="epoch",
        load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False, save_total_limit=2,
        save_only_model=True, logging_strategy="epoch", report_to="none", seed=cfg.seed, data_seed=cfg.seed,
        remove_unused_columns=False, label_names=["labels"], use_cpu=dev.type == "cpu", dataloader_num_workers=cfg.num_workers,
        disable_tqdm=True,
    )
    trainer = weighted_trainer_class()(
        model=model, args=args, data_collator=MultimodalCollator(tokenizer, processor, cfg.max_length),
        train_dataset=data["train"], eval_dataset=data["val"], compute_metrics=trainer_metrics(ds.spec.task, ds.spec.classes),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience)], loss_fn=loss_fn, optimizers=optimizers,
    )
    trainer.remove_callback(PrinterCallback)  # library code logs, never prints
    out = trainer.train()
    epochs_run = int(round(trainer.state.epoch or cfg.epochs))
    t0 = time.perf_counter()
    pred = trainer.predict(data["test"])
    inference_s = time.perf_counter() - t0
    logits = torch.as_tensor(pred.predictions)
    proba = probabilities(logits, ds.spec.task).numpy()
    history = [h for h in trainer.state.log_history if "eval_loss" in h]
    best = min(history, key=lambda h: h["eval_loss"]) if history else {}
    row = result_row(
        "bert_clip_late", ds.spec, y[parts["test"]], proba, parts=parts, seed=cfg.seed, family="full",
        modalities=["text", "image"],
        extractors={"text": str(bert_path), "image": str(clip_path) + (f" + LoRA {lora_path}" if lora_path else "")},
        train_s=out.metrics["train_runtime"], inference_s=inference_s, n_params=n_params(trainer.model),
        config={**asdict(cfg), "class_weights": str(cfg.class_weights)}, peak_memory_mb=peak_memory_mb(dev),
        **{f"val_{k}": best.get(f"eval_{k}") for k in ("accuracy", "macro_f1", "weighted_f1", "roc_auc")},
    )
    row.update(train_s_per_epoch=out.metrics["train_runtime"] / max(epochs_run, 1), epochs_run=epochs_run,
               best_epoch=int(best.get("epoch", epochs_run)), history=history)
    return row, trainer
