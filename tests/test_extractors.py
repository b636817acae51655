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
# ------------------------------------------------------------------ speed paths (issue 18), run on the CPU
def _photos(folder, n=6, seed=0):
    """Blocky JPEGs of different sizes (photo-like for the codec), plus a grey JPEG, a PNG, a CMYK JPEG and a JPEG
    stored sideways with an EXIF rotation: the last four must take the Pillow way even when decoding on the device."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        h, w = (int(v) for v in rng.integers(40, 90, size=2))
        base = rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        arr = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))[:h, :w]
        paths.append(folder / f"p{i}.jpg")
        Image.fromarray(arr).save(paths[-1], quality=92)
    im = Image.fromarray(arr)
    im.convert("L").save(folder / "grey.jpg", quality=92)
    im.save(folder / "still.png")
    im.convert("CMYK").save(folder / "cmyk.jpg", quality=92)
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(folder / "sideways.jpg", quality=92, exif=exif)
    return paths + [folder / n for n in ("grey.jpg", "still.png", "cmyk.jpg", "sideways.jpg")]


def test_device_decoding_on_the_cpu_gives_the_pillow_vectors(tmp_path):
    """decode="device" (torchvision's decode_jpeg on the model's device, resize there) runs on a CPU too: the same
    vectors as the Pillow path within cosine 0.999; files it must not decode there come back identical."""
    from utils.extractors.images import JpegBytesOrPixels

    paths = _photos(tmp_path)
    kinds = [JpegBytesOrPixels(paths, lambda im: im, (3, 8, 8))[i][0] is not None for i in range(len(paths))]
    assert kinds == [True] * 7 + [False] * 3  # RGB and grey JPEGs as bytes; PNG, CMYK and rotated the Pillow way
    pil = extractors.create("timm:test_vit", pretrained=False, precision="fp32", decode="pil")
    dev = extractors.create("timm:test_vit", pretrained=False, precision="fp32", decode="device")
    a = pil.encode(paths, batch_size=4, device="cpu", show_progress=False)
    b = dev.encode(paths, batch_size=4, device="cpu", show_progress=False)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.999, cos
    np.testing.assert_array_equal(a[7:], b[7:])
    assert not np.array_equal(a[:7], b[:7])  # really decoded and resized by the other path


def test_device_decoding_reports_bad_files_like_the_pillow_path(tmp_path):
    paths = _photos(tmp_path, n=3)[:3]
    paths[1].write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    ext = extractors.create("timm:test_vit", pretrained=False, decode="device")
    with pytest.raises(MediaError) as e:
        ext.encode(paths, batch_size=2, device="cpu", show_progress=False)
    assert "row 1" in str(e.value)
    out = ext.encode(paths, batch_size=2, device="cpu", show_progress=False, on_error="skip")
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all() and list(ext.last_failures) == [1]


def test_device_transform_follows_the_timm_steps(tmp_path):
    import timm
    import torch
    from PIL import Image
    from utils.extractors.images import decode_jpegs_on, device_transform

    path = _photos(tmp_path, n=1)[0]
    cfg = timm.data.resolve_model_data_config(timm.create_model("test_vit", pretrained=False, num_classes=0))
    tf = timm.data.create_transform(**cfg, is_training=False)
    want = tf(Image.open(path).convert("RGB"))
    img, bad = decode_jpegs_on("cpu", [torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8),
                                       torch.frombuffer(bytearray(b"\xff\xd8\xff no jpeg"), dtype=torch.uint8)])
    assert bad is None  # one bad file does not fail the batch
    got = device_transform(tf)(img)
    assert got.shape == want.shape and (got - want).abs().mean() < 0.02  # resampling differs by rounding only
    assert device_transform(lambda im: im) is None  # anything but those steps: the Pillow way


def test_decode_and_compile_choices():
    import torch

    from utils.extractors.images import COMPILE_MIN_ITEMS, wants_compile, wants_device_decode

    cuda, cpu = torch.device("cuda:0"), torch.device("cpu")
    jpgs, pngs = ["a.jpg", "b.JPEG", "c.png"], ["a.png", "b.png"]
    assert wants_device_decode("auto", cuda, True, jpgs) and not wants_device_decode("auto", cuda, True, pngs)
    assert not wants_device_decode("auto", cpu, True, jpgs)  # on a CPU the Pillow workers are as fast
    assert not wants_device_decode("auto", cuda, False, jpgs)  # a transform that cannot run on tensors
    assert wants_device_decode("device", cpu, True, pngs) and not wants_device_decode("pil", cuda, True, jpgs)
    with pytest.raises(ValueError, match="decode"):
        wants_device_decode("gpu", cuda, True, jpgs)
    assert wants_compile("auto", cuda, COMPILE_MIN_ITEMS) and not wants_compile("auto", cuda, COMPILE_MIN_ITEMS - 1)
    assert not wants_compile("auto", cpu, 10**7) and wants_compile(True, cpu, 1) and not wants_compile(False, cuda, 10**7)


def test_compiled_forward_is_used_with_one_batch_shape(tmp_path, monkeypatch):
    """compile=True: the forward pass goes through torch.compile (faked here: compiling takes a minute), once,
    and the last, smaller batch is padded to the batch size so one graph serves every batch."""
    import torch

    paths = write_images(tmp_path, 7)
    calls, shapes = [], []

    def fake_compile(fn, **kw):
        calls.append(fn)
        return lambda x: shapes.append(tuple(x.shape)) or fn(x)

    monkeypatch.setattr(torch, "compile", fake_compile)
    ext = extractors.create("timm:test_vit", pretrained=False, precision="fp32", compile=True)
    got = ext.encode(paths, batch_size=3, device="cpu", show_progress=False)
    ext.encode(paths, batch_size=3, device="cpu", show_progress=False)
    plain = extractors.create("timm:test_vit", pretrained=False, precision="fp32", compile=False)
    want = plain.encode(paths, batch_size=3, device="cpu", show_progress=False)
    assert len(calls) == 1 and {s[0] for s in shapes} == {3} and len(shapes) == 6
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_auto_batch_size_from_free_gpu_memory_with_a_faked_cuda(monkeypatch):
    """The memory arithmetic of batch_size="auto", with torch.cuda's memory counters faked: a probe that
    allocates 300 MiB of workspace plus 20 MiB per item, 8 GiB free -> the largest power of two in 60% of it."""
    import torch

    import utils.runtime as rt

    MiB = 2**20
    state = {"alloc": 50 * MiB, "peak": 50 * MiB, "free": 8 * 1024 * MiB}
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: state.update(peak=state["alloc"]))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: state["alloc"])
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: state["peak"])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (state["free"], 16 * 1024 * MiB))
    probed = []

    def probe(b):
        probed.append(b)
        state["peak"] = state["alloc"] + 300 * MiB + b * 20 * MiB

    cuda = torch.device("cuda:0")
    assert rt.auto_batch_size(cuda, probe) == 128  # (0.6 * 8192 - 300) / 20 = 230 -> 128
    assert probed == [4, 8]
    state["free"] = 600 * MiB
    assert rt.auto_batch_size(cuda, probe) == 2  # (360 - 300) / 20 = 3 -> 2
    state["free"] = 100 * MiB
    assert rt.auto_batch_size(cuda, probe) == 1  # never below one
    state["free"] = 10**6 * MiB
    assert rt.auto_batch_size(cuda, probe, most=512) == 512
    assert rt.auto_batch_size(torch.device("cpu"), probe) == rt.DEFAULT_BATCH_SIZE and len(probed) == 8


def test_auto_batch_size_probes_the_model_and_is_used(tmp_path, monkeypatch, tiny_bert):
    """The extractors hand auto_batch_size a probe that runs their model on inputs of the run's size (images:
    blank tensors of the model's input shape; text: the longest texts), and batch with what it returns."""
    import utils.extractors.text_hf as text_hf
    import utils.runtime as rt

    seen = []

    def fake(device, probe, default=32, most=1024):
        probe(4)
        probe(8)
        return 3

    monkeypatch.setattr(rt, "auto_batch_size", fake)
    ext = extractors.create("timm:test_vit", pretrained=False, precision="fp32")
    ext.load("cpu")
    real = ext._forward
    ext._forward = lambda x: seen.append(tuple(x.shape)) or real(x)
    ext.encode(write_images(tmp_path, 7), device="cpu", show_progress=False)  # batch_size="auto" by default
    assert seen == [(4, 3, 160, 160), (8, 3, 160, 160), (3, 3, 160, 160), (3, 3, 160, 160), (1, 3, 160, 160)]

    monkeypatch.setattr(text_hf, "auto_batch_size", fake)
    text = extractors.create(f"hf:{tiny_bert}")
    texts = ["a b", "a b c d e f g h i j k", "c", "d e", "f", "g h i"]
    got = text.encode(texts, device="cpu", show_progress=False)
    want = text.encode(texts, batch_size=3, device="cpu", show_progress=False)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        text.encode(texts, batch_size=0, show_progress=False)
