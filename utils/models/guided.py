"""Image-guided text feature selection (after the MUSTI work).

The image representation (by default a ViT embedding and a ResNet-34 embedding side by side) decides, for
every text token, how much of each of its features to keep:

    g_t   = sigmoid(W [h_t; v] + b)            h_t: token feature [H], v: image feature [D_img], g_t: [H]
    s     = sum_t m_t * g_t * h_t / sum_t m_t   mask-aware mean of the gated tokens        [H]
    logit = classifier(block([s; v]))          Linear -> ReLU -> Dropout -> BatchNorm -> Linear

It runs on cached token-level text features (:mod:`utils.token_features` writes them) or end to end
(:class:`GuidedEndToEnd` runs the text encoder first). Training and result rows live in
:mod:`utils.experiment.baselines`.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from .fusion import block

log = logging.getLogger(__name__)

DEFAULT_TEXT_MODEL = "bert-base-multilingual-cased"  # multilingual BERT (MUSTI is multilingual)
DEFAULT_IMAGE_EXTRACTORS = ("timm:vit_base_patch16_224.augreg2_in21k_ft_in1k", "timm:resnet34.a1_in1k")


class ImageGuidedTextSelector(nn.Module):
    """``tokens [B, T, H]``, ``mask [B, T]``, ``image [B, D]`` -> logits ``[B, n_out]``."""

    def __init__(self, text_dim: int, image_dim: int, n_out: int, hidden: int = 256, dropout: float = 0.2):
        super().__init__()
        self.gate = nn.Linear(text_dim + image_dim, text_dim)  # one gate value per token feature
        self.body = block(text_dim + image_dim, hidden, dropout)
        self.classifier = nn.Linear(hidden, n_out)

    def gates(self, tokens: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Gate values in (0, 1), ``[B, T, H]``."""
        img = image.unsqueeze(1).expand(-1, tokens.shape[1], -1)  # [B, T, D]
        return torch.sigmoid(self.gate(torch.cat([tokens, img], dim=-1)))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        tokens, image = tokens.float(), image.float()
        m = mask.to(tokens.dtype).unsqueeze(-1)  # [B, T, 1]
        gated = self.gates(tokens, image) * tokens * m  # padding contributes nothing
        pooled = gated.sum(1) / m.sum(1).clamp_min(1.0)  # [B, H]
        return self.classifier(self.body(torch.cat([pooled, image], dim=1)))


class GuidedEndToEnd(nn.Module):
    """A text encoder (``AutoModel``) feeding :class:`ImageGuidedTextSelector`; image features precomputed.

    ``input_ids, attention_mask [B, T]``, ``image [B, D]`` -> logits. ``train_encoder=False`` freezes it.
    """

    def __init__(self, encoder: nn.Module, image_dim: int, n_out: int, train_encoder: bool = True, **head: Any):
        super().__init__()
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # unused: the selector reads every token
        self.encoder = encoder
        self.train_encoder = train_encoder
        for p in encoder.parameters():
            p.requires_grad_(train_encoder)
        self.selector = ImageGuidedTextSelector(encoder.config.hidden_size, image_dim, n_out, **head)

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.train_encoder:
            self.encoder.eval()
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, image: torch.Tensor, **text: Any) -> torch.Tensor:
        with torch.set_grad_enabled(self.train_encoder and torch.is_grad_enabled()):
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **text).last_hidden_state
        return self.selector(h, attention_mask, image)
