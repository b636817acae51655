"""Every extractor family beyond hf/timm, offline: tiny random-weight models saved locally and loaded
through the real code paths, a tiny GGUF for llama.cpp, a local HTTP stub for the OpenAI API."""

from __future__ import annotations

import base64
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from utils import extractors
from utils.extractors import ExtractorError, MediaError, catalog

from .conftest import write_images
from .tiny_models import make_clap, make_clip, make_siglip, make_vision, write_tiny_gguf, write_tones


def _cos(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-models")
    out = {k: make_vision(root / k, k) for k in ("vit", "dinov2", "convnext", "sam")}
    out["clip"] = make_clip(root / "clip")
    out["siglip"] = make_siglip(root / "siglip")
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("imgs"), 6, size=40)


# ------------------------------------------------------------------------------------------- aliases
ORIGINAL_21 = [
    "dinov2-small", "dinov2-base", "dinov2-large", "dinov2-giant", "sam-base", "sam-large", "sam-huge",
    "convnextv2-tiny", "convnextv2-base", "convnextv2-large", "convnext-tiny", "convnext-small", "convnext-base",
    "convnext-large", "swin-tiny", "swin-small", "swin-base", "vit-base", "vit-large", "clip-vit-b16", "clip-vit-l14",
]


def test_aliases_resolve_to_family_hub_id_and_dimension():
    from transformers.image_utils import IMAGENET_DEFAULT_MEAN, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    rows = {r["alias"]: r for r in catalog.table()}
    assert set(ORIGINAL_21) <= set(rows) and "siglip-base" in rows
    want = {
        "dinov2-giant": ("hf-image", "facebook/dinov2-giant", 1536),
        "sam-huge": ("hf-image", "facebook/sam-vit-huge", 256),
        "convnextv2-large": ("hf-image", "facebook/convnextv2-large-22k-224", 1536),
        "swin-base": ("hf-image", "microsoft/swin-base-patch4-window7-224", 1024),
        "vit-large": ("hf-image", "google/vit-large-patch16-224-in21k", 1024),
        # the original framework swapped its two CLIP names: B/16 is 512-d, L/14 is 768-d
        "clip-vit-b16": ("clip", "openai/clip-vit-base-patch16", 512),
        "clip-vit-l14": ("clip", "openai/clip-vit-large-patch14", 768),
        "siglip-base": ("clip", "google/siglip-base-patch16-224", 768),
    }
    for alias, (family, model_id, dim) in want.items():
        assert extractors.parse_spec(alias)[:2] == (family, model_id)
        assert extractors.alias_dim(alias) == dim
    details = extractors.names(details=True)
    for alias, row in rows.items():
        family, model_id, _ = extractors.parse_spec(alias)
        assert f"{family}:{model_id}" == row["spec"] and family in extractors._FAMILY_MODULES
        assert alias in extractors.names()
        assert any(line.startswith(f"{alias}: ") and f"{row['dim']}-d" in line for line in details)
        assert extractors.create(alias).id == row["spec"]  # builds without touching the hub
    # each model's own statistics: CLIP's and SigLIP's are not ImageNet's
    for alias in ("clip-vit-b16", "clip-vit-l14"):
        assert np.allclose(rows[alias]["mean"], OPENAI_CLIP_MEAN) and np.allclose(rows[alias]["std"], OPENAI_CLIP_STD)
        assert not np.allclose(rows[alias]["mean"], IMAGENET_DEFAULT_MEAN)
    assert rows["siglip-base"]["mean"] == [0.5] * 3 and rows["vit-base"]["std"] == [0.5] * 3
    assert rows["sam-base"]["size"] == 1024 and rows["dinov2-base"]["mean"] == list(IMAGENET_DEFAULT_MEAN)


# ----------------------------------------------------------------------------------- clip / siglip
@pytest.mark.parametrize("kind,alias", [("clip", "clip-vit-b16"), ("siglip", "siglip-base")])
def test_clip_siglip_use_their_own_statistics_and_match_the_model(models, images, kind, alias):
    import torch
    from PIL import Image

    ext = extractors.create(f"clip:{models[kind]}", precision="fp32")
    got = ext.encode(images, batch_size=4, show_progress=False)
    want = catalog.expected_preprocessing(catalog.BACKBONES[alias][0].split(":", 1)[1])
    assert np.allclose(ext.preprocessing["mean"], want["mean"]) and np.allclose(ext.preprocessing["std"], want["std"])
    # by hand: resize to 32 px, scale to [0, 1], normalise with the model's own mean/std
    mean, std = np.array(want["mean"]), np.array(want["std"])
    px = np.stack([
        ((np.asarray(Image.open(p).convert("RGB").resize((32, 32), Image.BICUBIC), dtype=np.float32) / 255 - mean) / std)
        .transpose(2, 0, 1) for p in images
    ]).astype(np.float32)
    model = ext._model
    with torch.inference_mode():
        ref = model.get_image_features(pixel_values=torch.from_numpy(px))
    ref = getattr(ref, "pooler_output", ref).numpy()
    assert got.shape == ref.shape
    assert _cos(got, ref).min() > 0.999  # resize kernels differ slightly; the statistics must not


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_clip_text_tower_is_comparable_and_keeps_order(models, images, kind):
    texts = ["a red cat", "the dog on the shelf by the window", "iron", "a large feather"]
    img = extractors.create(f"clip:{models[kind]}", precision="fp32").encode(images[:2], show_progress=False)
    ext = extractors.create(f"clip:{models[kind]}", modality="text", precision="fp32")
    assert ext.modality == "text"
    vec = ext.encode(texts, batch_size=2, show_progress=False)
    assert vec.shape == (4, img.shape[1])  # one shared projected space
    alone = np.stack([ext.encode([t], show_progress=False)[0] for t in texts])
    np.testing.assert_allclose(alone, vec, atol=1e-4)  # length-sorted batches, input order kept
    assert not np.allclose(vec[0], vec[1])
    with pytest.raises(ValueError, match="modality"):
        extractors.create(f"clip:{models[kind]}", modality="audio")


# ------------------------------------------------------------------------------------------ hf-image
def test_hf_image_families_pool_as_documented(models, images):
    import torch
    from PIL import Image

    dims = {"vit": 32, "dinov2": 32, "convnext": 16, "sam": 16}
    for kind, dim in dims.items():
        ext = extractors.create(f"hf-image:{models[kind]}", precision="fp32")
        v = ext.encode(images, batch_size=4, show_progress=False)
        assert v.shape == (6, dim) and np.isfinite(v).all(), kind
        assert ext._channels_last == (kind == "convnext"), kind
        if kind == "vit":  # CLS token of the last hidden state (ViT's pooler is an extra tanh layer)
            assert ext._pooling == "cls"
            x = ext._transform(Image.open(images[0]).convert("RGB"))[None]
            with torch.inference_mode():
                ref = ext._model(pixel_values=x).last_hidden_state[:, 0].numpy()
            np.testing.assert_allclose(v[:1], ref, rtol=1e-4, atol=1e-5)
        if kind == "sam":  # the image encoder at the processor's native size (1024 px on the hub; 64 here)
            assert ext._pooling == "mean" and ext._transform.output_shape() == (3, 64, 64)


def test_hf_image_bad_file_names_the_row(models, tmp_path):
    paths = write_images(tmp_path, 3)
    paths[1].write_bytes(b"truncated")
    ext = extractors.create(f"hf-image:{models['vit']}")
    with pytest.raises(MediaError, match="row 1"):
        ext.encode(paths, show_progress=False)
    out = ext.encode(paths, show_progress=False, on_error="skip")
    assert np.isnan(out[1]).all() and list(ext.last_failures) == [1]


# ----------------------------------------------------------------------------------------- precision
def test_reduced_precision_agrees_with_fp32_and_is_recorded(models, images, monkeypatch):

    for spec, opts in ((f"hf-image:{models['convnext']}", {}), ("timm:test_resnet", {"pretrained": False})):
        ref = extractors.create(spec, precision="fp32", **opts).encode(images, show_progress=False)
        for precision in ("bf16", "fp16"):
            ext = extractors.create(spec, precision=precision, **opts)
            got = ext.encode(images, show_progress=False)
            assert _cos(got, ref).mean() >= 0.99, (spec, precision)
            assert ext.resolved_precision() == precision and "precision_resolved" not in ext.config()
    # auto: bf16 on a CPU with native bf16, fp32 on one without (the manifest records which)
    import utils.runtime

    monkeypatch.setattr(utils.runtime, "cpu_has_bf16", lambda: True)
    assert extractors.create(spec, **opts).resolved_precision() == "bf16"
    monkeypatch.setattr(utils.runtime, "cpu_has_bf16", lambda: False)
    ext = extractors.create(spec, **opts)
    assert ext.resolved_precision() == "fp32" and ext.config()["options"]["precision"] == "auto"
    with pytest.raises(ValueError, match="precision"):
        extractors.create(spec, precision="int8")


def test_manifest_records_precision(tmp_path, monkeypatch):
    from utils import data
    from utils.embed import embed

    ds = data.load("synthetic", n=40)
    store = embed(ds, "image", "timm:test_resnet", extractor_options={"pretrained": False, "precision": "bf16"},
                  show_progress=False)
    m = store.manifest()
    assert m["extractor"]["options"]["precision"] == "bf16" and m["precision"] == "bf16" and store.precision == "bf16"
    assert store.aligned(ds.df["id"]).shape[0] == 40


# -------------------------------------------------------------------------------------------- openai
class _Stub:
    """A local OpenAI-compatible embeddings server. ``script``: list of statuses to answer first."""

    def __init__(self, key="sk-test-123", dim=8):
        self.key, self.dim, self.script, self.requests = key, dim, [], []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep pytest output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                stub.requests.append({"body": body, "auth": self.headers.get("authorization")})
                status = stub.script.pop(0) if stub.script else 200
                if self.headers.get("authorization") != f"Bearer {stub.key}":
                    status = 401
                if status != 200:
                    payload = json.dumps({"error": {"message": f"status {status}", "type": "x"}}).encode()
                    self.send_response(status)
                    self.send_header("retry-after", "0")
                else:
                    dim = body.get("dimensions") or stub.dim
                    data = []
                    for i, text in enumerate(body["input"]):
                        vec = stub.vector(text, dim)
                        emb = (base64.b64encode(vec.astype("<f4").tobytes()).decode()
                               if body.get("encoding_format") == "base64" else vec.tolist())
                        data.append({"object": "embedding", "index": i, "embedding": emb})
                    data.reverse()  # the client must order by index
                    payload = json.dumps({"object": "list", "data": data, "model": body["model"],
                                          "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()
                    self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @staticmethod
    def vector(text, dim):
        rng = np.random.default_rng(sum(text.encode()) + len(text))
        return rng.standard_normal(dim).astype(np.float32)


@pytest.fixture
def stub(monkeypatch):
    s = _Stub()
    monkeypatch.setenv("OPENAI_API_KEY", s.key)
    yield s
    s.server.shutdown()


@pytest.mark.parametrize("fmt", [None, "float"])  # None: the client's default, base64
def test_openai_float_and_base64_in_input_order(stub, fmt):
    texts = ["a cat", "the dog", "", "music in the sky", "iron"]
    ext = extractors.create("openai:text-embedding-3-small", base_url=stub.url, encoding_format=fmt,
                            max_inputs_per_request=2, dimensions=8)
    got = ext.encode(texts, show_progress=False)
    want = np.stack([_Stub.vector(t if t else " ", 8) for t in texts])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert len(stub.requests) == 3 and all(len(r["body"]["input"]) <= 2 for r in stub.requests)
    assert stub.requests[0]["body"]["dimensions"] == 8
    assert stub.requests[0]["body"].get("encoding_format", "base64") == (fmt or "base64")
    assert ext.config()["options"] == {"base_url": stub.url, "dimensions": 8}  # the key is never in the manifest


def test_openai_retries_429_then_succeeds(stub, caplog):
    stub.script = [429, 500]
    ext = extractors.create("openai:text-embedding-3-small", base_url=stub.url, backoff=0.01, dimensions=8)
    with caplog.at_level(logging.WARNING):
        got = ext.encode(["a cat"], show_progress=False)
    np.testing.assert_allclose(got[0], _Stub.vector("a cat", 8))
    assert len(stub.requests) == 3 and ext.requests_made == 3
    assert "HTTP 429" in caplog.text and stub.key not in caplog.text
    stub.script = [429] * 5
    with pytest.raises(ExtractorError, match="giving up after 3 attempts"):
        extractors.create("openai:x", base_url=stub.url, backoff=0.0, max_retries=2).encode(["a"], show_progress=False)


def test_openai_401_is_not_retried_and_never_shows_the_key(stub, monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-secret")
    ext = extractors.create("openai:text-embedding-3-small", base_url=stub.url, backoff=0.01)
    with caplog.at_level(logging.DEBUG), pytest.raises(ExtractorError, match="refused the API key") as e:
        ext.encode(["a cat"], show_progress=False)
    assert len(stub.requests) == 1 and "OPENAI_API_KEY" in str(e.value)
    assert "sk-wrong-secret" not in str(e.value) + repr(e.value) + caplog.text + repr(ext)


def test_openai_key_from_dotenv_and_missing_key_message(stub, monkeypatch, tmp_path):
    import utils.config as config

    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ExtractorError, match="no API key"):
        extractors.create("openai:text-embedding-3-small").encode(["x"], show_progress=False)
    monkeypatch.setattr(config, "_dotenv_cache", {"OPENAI_API_KEY": stub.key})
    got = extractors.create("openai:text-embedding-3-small", base_url=stub.url, dimensions=8).encode(["x"], show_progress=False)
    assert got.shape == (1, 8) and stub.requests[-1]["auth"] == f"Bearer {stub.key}"


def test_openai_packing_and_truncation(stub, caplog):
    from utils.extractors.text_openai import pack_requests

    assert pack_requests([5, 5, 5, 5], max_inputs=3, max_tokens=100) == [[0, 1, 2], [3]]
    assert pack_requests([60, 30, 20, 90], max_inputs=10, max_tokens=100) == [[0, 1], [2], [3]]
    ext = extractors.create("openai:m", base_url=stub.url, max_input_tokens=4, max_tokens_per_request=5)
    long = "iron granite lead steel feather paper foam"  # 42 bytes: about 14 tokens by the 3-byte estimate
    with caplog.at_level(logging.WARNING):
        ext.encode([long, "cat", "dog"], show_progress=False)
    sent = [t for r in stub.requests for t in r["body"]["input"]]
    assert sent[0] == long[:12] and "truncated" in caplog.text
    # 4 + 1 tokens fill the first request; the third text goes in a second one
    assert [r["body"]["input"] for r in stub.requests] == [[long[:12], "cat"], ["dog"]]


# ------------------------------------------------------------------------------------------ llamacpp
@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


def test_llamacpp_gguf_pooled_finite_and_in_order(gguf_file, caplog):
    import llama_cpp

    texts = ["a cat", "the dog eating food on the road", "", "red"]
    ext = extractors.create(f"llamacpp:{gguf_file}", n_ctx=64, n_threads=1)
    v = ext.encode(texts, batch_size=2, show_progress=False)
    assert v.shape == (4, 64) and np.isfinite(v).all()
    assert ext.pooling_type == llama_cpp.LLAMA_POOLING_TYPE_MEAN  # llama files say NONE: we pin mean
    alone = np.stack([ext.encode([t], show_progress=False)[0] for t in texts])
    np.testing.assert_allclose(alone, v, rtol=1e-3, atol=1e-4)
    last = extractors.create(f"llamacpp:{gguf_file}", pooling="last", n_ctx=64).encode(texts[:2], show_progress=False)
    assert not np.allclose(last, v[:2])
    with caplog.at_level(logging.WARNING):
        cut = extractors.create(f"llamacpp:{gguf_file}", n_ctx=8).encode(["a cat " * 20], show_progress=False)
    assert "truncated to n_ctx=8" in caplog.text and np.isfinite(cut).all()


def test_llamacpp_bad_paths_are_clear(tmp_path):
    with pytest.raises(ExtractorError, match="not a .gguf file"):
        extractors.create(f"llamacpp:{tmp_path / 'none.gguf'}").encode(["x"], show_progress=False)
    from utils.extractors.text_llamacpp import resolve_gguf

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF nonsense")
    with pytest.raises(ExtractorError, match="could not load"):
        extractors.create(f"llamacpp:{bad}").encode(["x"], show_progress=False)
    assert resolve_gguf(str(bad)) == bad


# ---------------------------------------------------------------------------------------------- clap
@pytest.fixture(scope="module")
def clap_model(tmp_path_factory):
    return make_clap(tmp_path_factory.mktemp("clap") / "clap")


def test_resample_to_the_models_rate():
    from utils.extractors.audio_clap import resample

    sr, f = 16000, 440.0
    x = np.sin(2 * np.pi * f * np.arange(sr) / sr).astype(np.float32)
    y = resample(x, sr, 48000)
    assert len(y) == 48000 and y.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * 48000 / len(y) - f) < 2  # the tone keeps its pitch
    assert resample(x, sr, sr) is x or np.array_equal(resample(x, sr, sr), x)


def test_clap_audio_and_text_towers(clap_model, tmp_path):
    paths = write_tones(tmp_path / "audio")
    ext = extractors.create(f"clap:{clap_model}", precision="fp32")
    a = ext.encode(paths, batch_size=2, show_progress=False)
    assert a.shape == (3, 16) and np.isfinite(a).all() and ext.sampling_rate == 48000
    np.testing.assert_allclose(ext.encode(paths[:1], show_progress=False)[0], a[0], rtol=1e-4, atol=1e-5)
    t = extractors.create(f"clap:{clap_model}", modality="text", precision="fp32").encode(["a dog", "music"], show_progress=False)
    assert t.shape == (2, 16) and not np.allclose(t[0], t[1])


def test_clap_corrupt_audio_raise_or_skip_through_the_store(clap_model, tmp_path):
    import pandas as pd

    from utils.data.schema import DatasetSpec, MultimodalDataset
    from utils.embed import embed

    paths = write_tones(tmp_path / "audio")
    (tmp_path / "audio" / "bad.wav").write_bytes(b"RIFF....WAVEtruncated")
    rows = [{"id": f"r{i}", "text": "x", "image_path": None, "audio_path": str(p), "label": "a" if i % 2 else "b",
             "split": "train"} for i, p in enumerate([*paths, tmp_path / "audio" / "bad.wav"])]
    ds = MultimodalDataset(pd.DataFrame(rows), DatasetSpec(name="audio-test", task="binary", classes=["a", "b"], modalities=["text", "audio"]))
    ext = extractors.create(f"clap:{clap_model}", precision="fp32")
    with pytest.raises(MediaError, match="row 3"):
        ext.encode(ds.items("audio"), show_progress=False)
    store = embed(ds, "audio", ext, on_error="skip", show_progress=False, batch_size=2)
    assert list(store.failed) == ["r3"] and "Error" in store.failed["r3"]
    vec = store.aligned(["r0", "r1", "r2", "r3"], missing="nan")
    assert np.isfinite(vec[:3]).all() and np.isnan(vec[3]).all()


# -------------------------------------------------------------------------- generate notebooks' steps
def test_generate_rows_preview_umap_and_reuse(tiny_bert, tmp_path):
    import json

    from utils import data
    from utils.experiment import generate as gen

    ds = data.load("synthetic", n=40)
    specs = [f"hf:{tiny_bert}", "timm:test_vit"]
    with pytest.raises(ValueError, match="embeds image"):
        gen.generate(ds, "text", specs[1:], show_progress=False)
    rows = gen.generate(ds, "text", specs[:1], batch_size=8, show_progress=False)
    (r,) = rows
    assert (r["dim"], r["count"], r["failed"], r["reused"], r["complete"]) == (32, 40, 0, False, True)
    assert r["seconds"] > 0 and (tmp_path / "embeddings") in __import__("pathlib").Path(r["store"]).parents
    again = gen.generate(ds, "text", specs[:1], show_progress=False)
    assert again[0]["reused"] and again[0]["store"] == r["store"]
    assert len(gen.preview(rows, n=2)) == 2
    # gen.umap_plot runs in the generate_*_embeddings notebooks under test_notebooks (numba start-up is slow)
    out = json.loads(gen.save_rows(rows, tmp_path / "r.json").read_text())
    assert out[0]["dim"] == 32 and out[0]["store"] == r["store"]
