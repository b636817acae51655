"""Tiny random-weight ViT and CLIP folders for the full-model tests and notebook CI (no network).

Saved with ``save_pretrained`` (weights + image processor) and loaded back through the real
``AutoModel`` / ``CLIPModel`` / ``AutoImageProcessor.from_pretrained`` path.
"""

from __future__ import annotations

from pathlib import Path


def make_tiny_vit(folder: Path, image_size: int = 32) -> Path:
    """A 2-layer, 32-wide ViT on ``image_size`` px images (patch 8) with its ``ViTImageProcessor``."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    cfg = ViTConfig(image_size=image_size, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64)
    torch.manual_seed(0)
    ViTModel(cfg).save_pretrained(folder)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return folder


def make_tiny_clip(folder: Path, image_size: int = 32) -> Path:
    """A tiny CLIP (text and vision towers 2 layers x 32, projection 16) with its ``CLIPImageProcessor``.

    The BERT + CLIP classifier reads text with BERT, so no CLIP tokenizer is saved.
    """
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=32, bos_token_id=1, eos_token_id=2, pad_token_id=0),
        vision_config=dict(image_size=image_size, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return folder
