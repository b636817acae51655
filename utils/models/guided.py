"""Image-guided text feature selection (after the MUSTI work): two models.

**The published block** (:class:`TextSelectionFusion`, run kind ``guided``, rows ``guided_tsf``; the default
guided model). One branch per image encoder (a ViT and a ResNet-34 by default), each mixing its image into
the text encoder's *input embeddings*, running the encoder, and scoring by cosine; the branches vote:

    U     = reshape(P v)                               image tokens [B, K, H]        v: image feature [B, D]
    a_t   = softmax_k(e_t . U_k / sqrt(H)) U           what input embedding e_t reads from the image  [B, T, H]
    e'_t  = LayerNorm(e_t + W [e_t; a_t])              learned mix plus residual LayerNorm
    t     = masked mean of encoder(inputs_embeds=e')   the image-conditioned text vector  [B, H]
    logit = s * cos(t, R_c v) + b_c                    per output c (one for a binary task)
    vote  = mean over branches of the probabilities    (returned as logits: log-odds / log-probabilities)

The text encoder is shared by the branches (run once per branch) and fine-tuned; the image features are
cached embeddings of frozen image encoders. The exact layer shapes of the published code were not
available: the equations above are this project's reading of the description (image tokens mixed into the
input embeddings by a learned mix with a residual LayerNorm, cosine scoring, a vote over a ViT and a
ResNet-34 branch).

**Our variant** (:class:`ImageGuidedTextSelector`, run kind ``guided_gated``, rows ``guided_gated``): the image
representation (the ViT and ResNet-34 embeddings side by side) gates the encoder's *output* token features:

    g_t   = sigmoid(W [h_t; v] + b)            h_t: token feature [H], v: image feature [D_img], g_t: [H]
    s     = sum_t m_t * g_t * h_t / sum_t m_t   mask-aware mean of the gated tokens        [H]
    logit = classifier(block([s; v]))          Linear -> ReLU -> Dropout -> BatchNorm -> Linear

It runs on cached token-level text features (:mod:`utils.token_features` writes them) or end to end
(:class:`GuidedEndToEnd` runs the text encoder first). Training and result rows live in
:mod:`utils.experiment.baselines`.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Dict, Mapping, Optional, Sequence

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


# ------------------------------------------------------------------------------- the published block (TSF)
class ImageTokenMixer(nn.Module):
    """Mixes an image into a text's input embeddings: ``embeds [B, T, H]``, ``image [B, D]`` -> ``[B, T, H]``.

    ``n_tokens`` image tokens are made from the image feature; each input embedding reads them (softmax
    attention), and a learned mix of the two is added back through a LayerNorm (see the module docstring).
    """

    def __init__(self, hidden: int, image_dim: int, n_tokens: int = 4):
        super().__init__()
        self.hidden, self.n_tokens = hidden, n_tokens
        self.image_tokens = nn.Linear(image_dim, n_tokens * hidden)
        self.mix = nn.Linear(2 * hidden, hidden)
        self.norm = nn.LayerNorm(hidden)

    def tokens(self, image: torch.Tensor) -> torch.Tensor:
        """The image tokens ``[B, K, H]``."""
        return self.image_tokens(image).view(image.shape[0], self.n_tokens, self.hidden)

    def forward(self, embeds: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        u = self.tokens(image)  # [B, K, H]
        w = torch.softmax(embeds @ u.transpose(1, 2) / math.sqrt(self.hidden), dim=-1)  # [B, T, K]
        read = w @ u  # [B, T, H]
        return self.norm(embeds + self.mix(torch.cat([embeds, read], dim=-1)))


class CosineScorer(nn.Module):
    """``text [B, H]``, ``image [B, D]`` -> ``s * cos(text, R_c image) + b_c`` for each output c: ``[B, n_out]``."""

    def __init__(self, hidden: int, image_dim: int, n_out: int, scale: float = 10.0):
        super().__init__()
        self.hidden, self.n_out = hidden, n_out
        self.image = nn.Linear(image_dim, n_out * hidden)
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))  # learned, starts at ``scale``
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        r = self.image(image).view(image.shape[0], self.n_out, self.hidden)  # [B, C, H]
        cos = nn.functional.cosine_similarity(text.unsqueeze(1), r, dim=-1)  # [B, C]
        return self.log_scale.exp() * cos + self.bias


class TSFBranch(nn.Module):
    """One image encoder's branch: its mixer and its cosine scorer."""

    def __init__(self, hidden: int, image_dim: int, n_out: int, n_tokens: int = 4, scale: float = 10.0):
        super().__init__()
        self.mixer = ImageTokenMixer(hidden, image_dim, n_tokens)
        self.scorer = CosineScorer(hidden, image_dim, n_out, scale)


def soft_vote(logits: Sequence[torch.Tensor], task: str) -> torch.Tensor:
    """The mean of the branches' probabilities, as logits the task's loss reads.

    ``binary`` / ``multilabel``: the log-odds of the mean sigmoid, ``log(mean p) - log(mean (1 - p))``
    (computed with log-sum-exp, never from rounded probabilities); ``multiclass``: the log of the mean softmax.
    """
    stacked = torch.stack([z.float() for z in logits])  # [M, B, C]
    if task == "multiclass":
        return torch.logsumexp(torch.log_softmax(stacked, dim=-1), dim=0) - math.log(len(logits))
    if task not in ("binary", "multilabel"):
        raise ValueError(f"task must be 'binary', 'multiclass' or 'multilabel', got {task!r}")
    lsig = nn.functional.logsigmoid
    return torch.logsumexp(lsig(stacked), dim=0) - torch.logsumexp(lsig(-stacked), dim=0)


class TextSelectionFusion(nn.Module):
    """The published MUSTI block (module docstring): one branch per image feature, each mixing its image into
    the text encoder's input embeddings; cosine scores; a soft vote over the branches.

    ``input_ids, attention_mask [B, T]`` and one image feature per branch (keyword = branch name, ``[B, D_b]``)
    -> logits ``[B, n_out]``. ``image_dims``: branch name -> feature width (e.g. ``{"vit": 768, "resnet34": 512}``).
    The new modules live under ``head`` (so :func:`utils.models.full.param_groups` gives them the head rate).
    """

    def __init__(self, encoder: nn.Module, image_dims: Mapping[str, int], n_out: int, task: Optional[str] = None,
                 n_image_tokens: int = 4, scale: float = 10.0, train_encoder: bool = True):
        super().__init__()
        if not image_dims:
            raise ValueError("TextSelectionFusion needs at least one image branch, e.g. {'vit': 768, 'resnet34': 512}")
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # unused: the text vector is the masked mean of the tokens
        self.encoder, self.train_encoder = encoder, train_encoder
        for p in encoder.parameters():
            p.requires_grad_(train_encoder)
        self.task = task or ("binary" if n_out == 1 else "multiclass")
        hidden = encoder.config.hidden_size
        self.head = nn.ModuleDict({name: TSFBranch(hidden, int(d), n_out, n_image_tokens, scale)
                                   for name, d in image_dims.items()})

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.train_encoder:
            self.encoder.eval()
        return self

    def branch_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      token_type_ids: Optional[torch.Tensor] = None, **images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Each branch's own logits ``{name: [B, n_out]}`` (before the vote)."""
        missing = [b for b in self.head if b not in images]
        if missing:
            raise ValueError(f"no image feature for branch(es) {missing}: pass them as keywords {list(self.head)}")
        embeds = self.encoder.get_input_embeddings()(input_ids)  # [B, T, H]
        m = attention_mask.to(embeds.dtype).unsqueeze(-1)  # [B, T, 1]
        kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        out = {}
        for name, branch in self.head.items():
            image = images[name].float()
            # a frozen encoder still passes gradients back to the mixer in front of it
            h = self.encoder(inputs_embeds=branch.mixer(embeds, image), attention_mask=attention_mask, **kw).last_hidden_state
            text = (h * m).sum(1) / m.sum(1).clamp_min(1.0)  # [B, H]
            out[name] = branch.scorer(text, image)
        return out

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: Optional[torch.Tensor] = None,
                **images: torch.Tensor) -> torch.Tensor:
        return soft_vote(list(self.branch_logits(input_ids, attention_mask, token_type_ids, **images).values()), self.task)

