"""Tiny random-weight models of every extractor family, saved locally (no hub), for offline tests.

Each builder writes a folder (or file) that the real loading path (``from_pretrained`` / ``Llama``)
reads, and takes well under a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .conftest import WORDS


def word_tokenizer(specials=("<pad>", "<unk>", "<s>", "</s>")):
    """A fast word-level tokenizer over WORDS that wraps each text in <s> ... </s>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate([*specials, *WORDS, ".", ","])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])]
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                  eos_token="</s>", model_max_length=64)
    return tok, vocab


def _text_config(vocab):
    return dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=64, pad_token_id=vocab["<pad>"], bos_token_id=vocab["<s>"],
                eos_token_id=vocab["</s>"])


VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)


def make_clip(folder: Path) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tok, vocab = word_tokenizer()
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=_text_config(vocab), vision_config=VISION, projection_dim=16)).save_pretrained(folder)
    # the processor's defaults are OpenAI CLIP's own mean/std, as on the hub
    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=proc, tokenizer=tok).save_pretrained(folder)
    return folder


def make_siglip(folder: Path) -> Path:
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    tok, vocab = word_tokenizer()
    torch.manual_seed(0)
    SiglipModel(SiglipConfig(text_config=_text_config(vocab), vision_config=VISION)).save_pretrained(folder)
    SiglipProcessor(image_processor=SiglipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok).save_pretrained(folder)
    return folder


def make_vision(folder: Path, kind: str) -> Path:
    """Tiny ``vit`` / ``dinov2`` / ``convnext`` / ``sam`` folders with their own processors."""
    import torch
    import transformers as t

    torch.manual_seed(0)
    if kind == "vit":
        model = t.ViTModel(t.ViTConfig(**{k: v for k, v in VISION.items()}))
        proc = t.ViTImageProcessor(size={"height": 32, "width": 32})
    elif kind == "dinov2":
        model = t.Dinov2Model(t.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                                             image_size=28, patch_size=14))
        proc = t.BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 28, "width": 28},
                                   image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    elif kind == "convnext":
        model = t.ConvNextModel(t.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2))
        proc = t.ConvNextImageProcessor(size={"shortest_edge": 32}, image_mean=[0.485, 0.456, 0.406],
                                        image_std=[0.229, 0.224, 0.225])
    elif kind == "sam":
        vc = t.SamVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=64, patch_size=16,
                               output_channels=16, mlp_dim=64, window_size=2, global_attn_indexes=[1])
        model = t.SamModel(t.SamConfig(vision_config=vc.to_dict()))
        proc = t.SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})
    else:
        raise ValueError(kind)
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    return folder


def make_clap(folder: Path) -> Path:
    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

    tok, vocab = word_tokenizer(specials=("<s>", "<pad>", "</s>", "<unk>"))
    audio = dict(depths=[1, 1], num_attention_heads=[2, 4], patch_embeds_hidden_size=16, hidden_size=32,
                 enable_fusion=False)
    torch.manual_seed(0)
    ClapModel(ClapConfig(text_config=_text_config(vocab), audio_config=audio, projection_dim=16)).save_pretrained(folder)
    ClapProcessor(feature_extractor=ClapFeatureExtractor(), tokenizer=tok).save_pretrained(folder)
    return folder


def write_tiny_gguf(path: Path, n_embd: int = 64, n_layer: int = 2, n_head: int = 4, n_ff: int = 128, seed: int = 0) -> Path:
    """A tiny llama-architecture GGUF (SPM tokenizer with byte tokens, random F32 weights)."""
    import gguf

    rng = np.random.default_rng(seed)
    words = "a the cat dog man eating food bread car road music sky red blue iron block".split()
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581" + w for w in words] + ["\u2581"]
    types = [2, 3, 3] + [6] * 256 + [1] * (len(words) + 1)
    scores = [0.0] * 259 + [-float(i) for i in range(len(words) + 1)]
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_context_length(256)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)

    def rand(*shape):
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    w.add_tensor("token_embd.weight", rand(len(tokens), n_embd))
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    for i in range(n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(n_embd, np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(p + name + ".weight", rand(n_embd, n_embd))
        w.add_tensor(p + "ffn_norm.weight", np.ones(n_embd, np.float32))
        w.add_tensor(p + "ffn_gate.weight", rand(n_ff, n_embd))
        w.add_tensor(p + "ffn_up.weight", rand(n_ff, n_embd))
        w.add_tensor(p + "ffn_down.weight", rand(n_embd, n_ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_tones(folder: Path, rates=(16000, 44100, 48000), seconds: float = 0.5) -> list:
    """Short sine tones (WAV, mono and stereo) at several sampling rates."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, sr in enumerate(rates):
        t = np.arange(int(sr * seconds)) / sr
        x = (0.3 * np.sin(2 * np.pi * 220 * (i + 1) * t)).astype(np.float32)
        if i == 1:
            x = np.stack([x, x], axis=1)  # stereo
        p = folder / f"tone{i}.wav"
        sf.write(p, x, sr)
        paths.append(p)
    return paths


def make_tiny_vit(folder: Path) -> Path:
    """A tiny ViT folder for the full-model baselines (built once per folder)."""
    folder = Path(folder)
    return folder if (folder / "config.json").is_file() else make_vision(folder, "vit")


def make_tiny_clip(folder: Path) -> Path:
    """A tiny CLIP folder for the BERT + CLIP baseline (built once per folder)."""
    folder = Path(folder)
    return folder if (folder / "config.json").is_file() else make_clip(folder)
