"""The hf and timm families, through the real from_pretrained / create_model paths, offline."""

from __future__ import annotations

import numpy as np
import pytest

from utils import extractors
from utils.extractors import ExtractorError, MediaError
from utils.registry import UnknownNameError

from .conftest import write_images


def test_unknown_family_and_alias_list_valid_names():
    with pytest.raises(UnknownNameError) as e:
        extractors.create("nope:model")
    assert "hf" in str(e.value) and "timm" in str(e.value)
    with pytest.raises(UnknownNameError) as e:
        extractors.create("minilmm")
    assert "minilm-offline" in str(e.value)
    with pytest.raises(UnknownNameError, match=r"Did you mean 'effnet-lite0'"):  # issue 19: 35 aliases, no hint
        extractors.create("effnet-lite")
    assert "hf:" in extractors.names() and "random-convnext" in extractors.names()


def test_hf_tiny_bert_shapes_order_and_empty_text(tiny_bert):
    ext = extractors.create(f"hf:{tiny_bert}", pooling="mean")
    texts = ["a small iron block", "", "the cat", "a large feather found on the shelf by the window", "dog"]
    out = ext.encode(texts, batch_size=2, show_progress=False)
    assert out.dtype == np.float32 and out.shape == (5, 32)
    assert np.isfinite(out).all()
    # input order is kept although batches are length-sorted
    rev = ext.encode(texts[::-1], batch_size=2, show_progress=False)
    np.testing.assert_allclose(rev[::-1], out, atol=1e-5)
    # each text alone gives the same vector as inside a padded batch
    single = np.stack([ext.encode([t], show_progress=False)[0] for t in texts])
    np.testing.assert_allclose(single, out, atol=1e-4)
    normed = ext.encode(texts, normalize=True, show_progress=False)
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, atol=1e-5)



def test_hf_texts_of_every_awkward_kind_embed_without_crashing_the_model(tiny_bert, caplog):
    """Issue 20: a 100,000-character text crashed a model whose tokenizer was saved without its length limit
    (512 tokens into 128 position embeddings: a raw RuntimeError); now the position table caps the length.
    Empty, whitespace-only and NUL-only texts embed as the empty text; emoji-only texts, which the vocabulary
    cannot spell, embed as [UNK] and are named in a warning."""
    import logging

    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(tiny_bert).max_position_embeddings == 128
    ext = extractors.create(f"hf:{tiny_bert}", pooling="mean")
    texts = ["the cat", "", "  \t\n ", "the " * 50_000, "the\x00 cat", "\U0001F600\U0001F680\U0001F525", "\x00",
             "the red dog"]
    with caplog.at_level(logging.WARNING, logger="utils"):
        out = ext.encode(texts, batch_size=3, show_progress=False)
    assert out.shape == (8, 32) and np.isfinite(out).all()
    assert np.array_equal(out[1], out[2]) and np.array_equal(out[1], out[6])  # nothing to embed: the empty text
    np.testing.assert_allclose(out[4], out[0], atol=1e-5)  # the NUL byte is dropped, the words kept
    assert not np.allclose(out[3], out[1])  # the long text is embedded (its first 128 tokens), not blanked
    assert "1 text(s) hold only tokens its vocabulary does not know ([UNK]), such as row 5" in caplog.text

def test_hf_pooling_modes_differ(tiny_bert):
    texts = ["a small iron block", "the cat"]
    vecs = {p: extractors.create(f"hf:{tiny_bert}", pooling=p).encode(texts, show_progress=False) for p in ("cls", "mean", "last")}
    assert not np.allclose(vecs["cls"], vecs["mean"]) and not np.allclose(vecs["mean"], vecs["last"])
    with pytest.raises(ValueError, match="pooling"):
        extractors.create(f"hf:{tiny_bert}", pooling="max")


def test_hf_missing_model_says_what_to_do(tmp_path):
    ext = extractors.create(f"hf:{tmp_path / 'no-such-model'}")
    with pytest.raises(ExtractorError, match="save_pretrained"):
        ext.encode(["x"], show_progress=False)


def test_packaged_minilm_is_semantic(minilm_path):
    ext = extractors.create("minilm-offline")
    v = ext.encode(["A man is eating food.", "A man is eating a piece of bread.", "The car drove down the road."],
                   normalize=True, show_progress=False)
    assert v.shape == (3, 384)
    assert v[0] @ v[1] > 0.6 > v[0] @ v[2] + 0.3
    assert "pooling=mean" in ext.describe()  # read from the sentence-transformers pooling config


def test_timm_random_init_is_deterministic_and_uses_model_preprocessing(tmp_path):
    paths = write_images(tmp_path, 5)
    a = extractors.create("timm:test_vit", pretrained=False, seed=1)
    b = extractors.create("timm:test_vit", pretrained=False, seed=1)
    c = extractors.create("timm:test_vit", pretrained=False, seed=2)
    va, vb, vc = (e.encode(paths, batch_size=2, show_progress=False) for e in (a, b, c))
    assert va.shape[0] == 5 and va.dtype == np.float32
    np.testing.assert_array_equal(va, vb)
    assert not np.allclose(va, vc)
    assert "RANDOM weights" in a.describe()
    assert tuple(a.data_config["input_size"][1:]) == (160, 160)  # test_vit's own size, not a fixed 224


def test_timm_loads_a_local_weights_file(tmp_path):
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(5)
    ref = timm.create_model("test_resnet", pretrained=False, num_classes=0).eval()
    wfile = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(wfile))
    paths = write_images(tmp_path / "img", 3)
    ext = extractors.create("timm:test_resnet", weights_file=str(wfile), precision="fp32")  # vs an fp32 reference
    got = ext.encode(paths, show_progress=False)
    cfg = timm.data.resolve_model_data_config(ref)
    tf = timm.data.create_transform(**cfg, is_training=False)
    from PIL import Image

    with torch.inference_mode():
        want = ref(torch.stack([tf(Image.open(p).convert("RGB")) for p in paths])).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_timm_bad_image_names_row_and_path_or_is_skipped(tmp_path):
    paths = write_images(tmp_path, 4)
    paths[2].write_bytes(b"not a png")
    ext = extractors.create("timm:test_vit", pretrained=False)
    with pytest.raises(MediaError) as e:
        ext.encode(paths, batch_size=2, show_progress=False)
    assert "row 2" in str(e.value) and str(paths[2]) in str(e.value) and "on_error='skip'" in str(e.value)
    out = ext.encode(paths, batch_size=2, show_progress=False, on_error="skip")
    assert np.isnan(out[2]).all() and np.isfinite(out[[0, 1, 3]]).all()
    assert list(ext.last_failures) == [2]


def test_timm_unknown_model_is_clear():
    ext = extractors.create("timm:not_a_model_xyz", pretrained=False)
    with pytest.raises(ExtractorError, match="unknown model"):
        ext.encode(["x.png"], show_progress=False)


def test_nul_bytes_are_dropped_from_texts_before_any_family_sees_them():
    """A NUL byte ends a C string: llama.cpp or a server could read "ab\\x00cd" as "ab". Every text family gets the
    text without them (the dataset counts a NUL-only text as blank, so heads use the stand-in for it)."""
    from utils.extractors.base import Extractor

    seen = []

    class Echo(Extractor):
        family, modality = "echo", "text"

        def _encode(self, items, batch_size, device, show_progress, on_error):
            seen.extend(items)
            return np.zeros((len(items), 2), np.float32)

    Echo("m").encode(["ab\x00cd", "\x00", "plain", None], show_progress=False)
    assert seen == ["abcd", "", "plain", None]
def test_catalog_families_are_consistent():
    """Issue 21: aliases of one family (the name before its last '-') share one extractor family and one input
    size, unless the hub id names another resolution; a backend variant ('-timm' / '-hf') has its twin's width.
    dinov2-small was timm at 518 px while dinov2-base/large/giant were transformers at 224 px."""
    import re

    from utils.extractors import catalog

    rows = {r["alias"]: r for r in catalog.table()}
    variants = {a: r for a, r in rows.items() if a.endswith(catalog.BACKEND_SUFFIXES)}
    groups = {}
    for alias, r in rows.items():
        if alias not in variants:
            groups.setdefault(alias.rsplit("-", 1)[0], []).append(r)
    assert len(groups["dinov2"]) == 4 and len(groups["convnext"]) == 4 and len(groups["sam"]) == 3
    for name, members in groups.items():
        families = {r["spec"].split(":", 1)[0] for r in members}
        assert len(families) == 1, f"{name}: aliases on several extractor families {families}"
        written = {r["alias"]: re.search(r"[-_](224|256|384|448|512|518)(?:$|[-_.])", r["spec"]) for r in members}
        for r in members:
            if written[r["alias"]]:  # the id names its resolution: the catalog must say the same
                assert r["size"] == int(written[r["alias"]].group(1)), r
        sizes = {r["size"] for r in members if not written[r["alias"]]}
        assert len(sizes) <= 1, f"{name}: one family at several input sizes {sizes}"
    for alias, r in variants.items():
        twin = rows[alias.rsplit("-", 1)[0]]
        assert r["dim"] == twin["dim"] and r["spec"] != twin["spec"]
    assert extractors.parse_spec("dinov2-small")[:2] == ("hf-image", "facebook/dinov2-small")
    assert {rows[f"dinov2-{s}"]["size"] for s in ("small", "base", "large", "giant")} == {224}
    assert extractors.parse_spec("dinov2-small-timm")[:2] == ("timm", "vit_small_patch14_dinov2.lvd142m")
    assert extractors.alias_dim("dinov2-small") == 384 == extractors.alias_dim("dinov2-small-timm")
