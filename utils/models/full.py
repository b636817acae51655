"""End-to-end baselines: the backbones themselves under the same fusion heads as the embedding models.

- :class:`FullFusionModel`: a text backbone (BERT, ``bert-base-uncased`` by default) and an image backbone
  (ViT, ``google/vit-base-patch16-224-in21k``); the CLS vectors of both, side by side ``[B, H_t + H_i]``,
  go to an early- or late-fusion head from :mod:`utils.models.fusion`. Backbones are ``frozen``,
  ``finetune`` (all layers) or ``last_n`` (only the last N encoder layers and the final norm train).
  Each backbone keeps its own preprocessing: its tokenizer, its ``AutoImageProcessor`` (:func:`load_preprocessing`).
- :class:`BertClipClassifier`: BERT for the text and CLIP's vision tower (+ projection) for the image, late
  fusion; starts from locally saved fine-tuned BERT / CLIP folders, optionally with a LoRA adapter on CLIP
  (peft). It trains with ``utils.train.hf_trainer.WeightedTrainer`` (a ``transformers.Trainer`` with a
  class-weighted loss): :func:`utils.experiment.baselines.train_bert_clip`.
- Checkpoints: ``model.safetensors`` (state_dict) + ``config.json`` (:func:`save_checkpoint`); never a pickled
  model; ``.pt`` state dicts load with ``torch.load(weights_only=True)``.

Model names used in result rows: ``bert_vit_<early|late>_<frozen|finetune|last<N>>`` and ``bert_clip_late``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

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


# ------------------------------------------------------------------------------------ optimisation
def param_groups(model: nn.Module, lr: float, head_lr: float) -> List[Dict[str, Any]]:
    """AdamW groups: backbone parameters at ``lr`` (fine-tuning rate), head parameters at ``head_lr``."""
    head = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("head.")]
    body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
    return [g for g in ({"params": body, "lr": lr}, {"params": head, "lr": head_lr}) if g["params"]]


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


CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin")


def resolve_clip(clip_path: os.PathLike, base: Optional[os.PathLike] = None) -> Tuple[str, Optional[Path]]:
    """``(model to load, state dict to apply over it or None)`` for a CLIP path: a hub id or folder loads as it
    is; a ``.pt`` / ``.pth`` / ``.bin`` state dict goes over ``base`` (default :data:`DEFAULT_CLIP_MODEL`). The
    model and its image processor are both resolved through this, so they always come from the same place."""
    if str(clip_path).endswith(CHECKPOINT_SUFFIXES) and Path(clip_path).is_file():
        return str(base or DEFAULT_CLIP_MODEL), Path(clip_path)
    if str(clip_path).endswith(CHECKPOINT_SUFFIXES) and not Path(clip_path).exists():
        raise FileNotFoundError(f"CLIP checkpoint {clip_path} not found: give an existing .pt / .pth / .bin state "
                                "dict, a model folder or a hub id")
    return str(clip_path), None


def load_clip_processor(clip_path: os.PathLike, base: Optional[os.PathLike] = None):
    """The image processor of the CLIP that :func:`load_clip_image_encoder` loads for ``clip_path``."""
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(resolve_clip(clip_path, base)[0])


def load_clip_image_encoder(clip_path: os.PathLike, lora_path: Optional[os.PathLike] = None,
                            lora_alpha: Optional[float] = None, base: Optional[os.PathLike] = None) -> ClipImageEncoder:
    """CLIP from a hub id or local (fine-tuned) folder, optionally adapted with LoRA (merged into the weights).

    ``lora_path``: a peft adapter folder, or a ``.pt`` state dict (``clip_lora_best.pt``: LoRA weights, or a
    whole fine-tuned CLIP state dict; a training checkpoint holding ``model_state_dict`` works too).
    ``clip_path`` may itself be such a ``.pt`` file; the base model is then ``base`` (default
    :data:`DEFAULT_CLIP_MODEL`; see :func:`resolve_clip`).
    ``lora_alpha``: the LoRA scale numerator, when the ``.pt`` does not record it (see :func:`apply_state_dict`).
    """
    from transformers import CLIPModel

    source, weights = resolve_clip(clip_path, base)
    clip = CLIPModel.from_pretrained(source)
    for extra in (weights, lora_path):
        if extra is None:
            continue
        if Path(extra).is_dir():
            from peft import PeftModel

            clip = PeftModel.from_pretrained(clip, str(extra)).merge_and_unload()
        else:
            clip = apply_state_dict(clip, extra, lora_alpha)
    clip.requires_grad_(True)  # peft loads adapters for inference (frozen base); the merged encoder fine-tunes
    return ClipImageEncoder(clip)


def read_state_dict(path: os.PathLike) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """A ``.pt`` state dict (``weights_only=True``) and the training config stored beside it, if any
    (``{"model_state_dict": ..., "config": {...}}`` checkpoints, or an ``adapter_config.json`` in the folder)."""
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    config: Dict[str, Any] = {}
    if isinstance(obj, dict):
        for key in ("model_state_dict", "state_dict", "model"):
            if isinstance(obj.get(key), dict):
                config = obj.get("config") if isinstance(obj.get("config"), dict) else {}
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: not a state dict of tensors (got {type(obj).__name__})")
    side = Path(path).with_name("adapter_config.json")
    if side.is_file():
        config = {**json.loads(side.read_text()), **config}
    return {k.removeprefix("module."): v for k, v in obj.items()}, config


def apply_state_dict(clip: nn.Module, path: os.PathLike, lora_alpha: Optional[float] = None) -> nn.Module:
    """Load ``path`` into ``clip``: LoRA weights (``...q_proj.lora_A.weight`` / ``lora_B``) are rebuilt as a peft
    adapter (rank from their shapes, target modules from their names) and merged; other weights are loaded by
    name. Key prefixes such as ``base_model.model.`` or ``clip.`` are matched to CLIP's own names.

    The LoRA scale is ``lora_alpha / r``: taken from ``lora_alpha``, else the checkpoint's stored config
    (``lora_alpha`` or ``alpha``), else an ``adapter_config.json`` beside the file; a file that records none
    is refused with the value to pass (a wrong scale would give silently wrong features).
    """
    state, config = read_state_dict(path)
    names = set(clip.state_dict())

    def clip_name(key: str) -> Optional[str]:
        parts = key.replace(".default.", ".").replace(".base_layer.", ".").split(".")
        for i in range(len(parts)):
            cand = ".".join(parts[i:])
            if cand in names or "vision_model." + cand in names:
                return cand if cand in names else "vision_model." + cand
        return None

    lora = {k: v for k, v in state.items() if ".lora_A." in k or ".lora_B." in k}
    plain = {clip_name(k): v for k, v in state.items() if k not in lora}
    unknown = [k for k, n in zip([k for k in state if k not in lora], plain) if n is None]
    plain.pop(None, None)
    if plain:
        missing = clip.load_state_dict(plain, strict=False)
        log.info("%s: %d CLIP weights loaded by name (%d CLIP weights not in the file)", path, len(plain),
                 len(missing.missing_keys))
    if lora:
        from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

        modules, ranks, adapters = set(), set(), {}
        for k, v in lora.items():
            module, _, rest = k.replace(".default.", ".").partition(".lora_")
            target = clip_name(module + ".weight")
            if target is None:
                raise ValueError(f"{path}: LoRA weight {k!r} names no CLIP module")
            modules.add(module.rsplit(".", 1)[-1])
            if rest.startswith("A."):
                ranks.add(int(v.shape[0]))
            adapters["base_model.model." + target[: -len(".weight")] + ".lora_" + rest] = v
        alpha = lora_alpha if lora_alpha is not None else config.get("lora_alpha", config.get("alpha"))
        if alpha is None:
            raise ValueError(
                f"{path}: LoRA weights of rank {sorted(ranks)} but no lora_alpha recorded with them; pass "
                "lora_alpha=<the value used in training> (peft's default is 8; scale = lora_alpha / r)")
        if len(ranks) != 1:
            raise ValueError(f"{path}: LoRA layers of different ranks {sorted(ranks)} are not supported")
        peft_model = get_peft_model(clip, LoraConfig(r=ranks.pop(), lora_alpha=float(alpha), target_modules=sorted(modules)))
        result = set_peft_model_state_dict(peft_model, adapters)
        left = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
        if left:
            raise ValueError(f"{path}: LoRA weights not loaded: {left[:5]}")
        clip = peft_model.merge_and_unload()
        log.info("%s: LoRA (r=%d, alpha=%s, modules %s) merged into CLIP", path, peft_model.peft_config["default"].r,
                 alpha, sorted(modules))
    if not plain and not lora:
        raise ValueError(f"{path}: none of its {len(state)} weights match a CLIP weight (first: {list(state)[:3]})")
    if unknown:
        log.warning("%s: %d weight(s) match no CLIP weight and were ignored (first: %s)", path, len(unknown), unknown[:3])
    return clip


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
                   head_config: HeadConfig = HeadConfig(), lora_alpha: Optional[float] = None,
                   clip_base: Optional[os.PathLike] = None) -> BertClipClassifier:
    """:class:`BertClipClassifier` from a (fine-tuned) BERT folder and CLIP (+ optional LoRA: a peft folder or a
    ``.pt`` state dict such as ``clip_lora_best.pt``; see :func:`load_clip_image_encoder`)."""
    from transformers import AutoModel

    return BertClipClassifier(AutoModel.from_pretrained(str(bert_path)), load_clip_image_encoder(clip_path, lora_path, lora_alpha, clip_base),
                              n_out, head_config)
