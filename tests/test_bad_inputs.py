"""Bad inputs give a right result or a clear error, never a wrong result (issue 12): images in every Pillow mode,
media paths outside the dataset, stale fingerprints, cached media checks, tables nobody can train on,
settings checked before extraction, OpenAI answers of the wrong width and leaked secrets, hostile archives."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tarfile
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from utils import data
from utils.data import DatasetError, DatasetSpec, MultimodalDataset
from utils.extractors.images import to_rgb


# ------------------------------------------------------------------------------------------ images
def _grad(dtype, top, w=64, h=8):
    return np.tile(np.linspace(0, top, w), (h, 1)).astype(dtype)


def test_16_bit_and_float_images_are_scaled_not_clipped_to_white():
    """Old code: convert("RGB") clipped I;16 at 255, so a 16-bit gradient came out nearly white."""
    want = np.asarray(Image.fromarray(_grad(np.uint8, 255)).convert("RGB")).astype(int)
    for arr in (_grad(np.uint16, 65535), _grad(np.uint16, 4095), _grad(np.int32, 65535), _grad(np.float32, 1.0)):
        got = np.asarray(to_rgb(Image.fromarray(arr))).astype(int)
        assert got.shape == want.shape and np.abs(got - want).max() <= 1, arr.dtype
    buf = io.BytesIO()
    Image.fromarray(_grad(np.uint16, 65535)).save(buf, format="PNG")
    im = Image.open(io.BytesIO(buf.getvalue()))
    assert im.mode == "I;16" and np.asarray(to_rgb(im)).mean() == pytest.approx(127.5, abs=1)
    wide = Image.fromarray(_grad(np.float32, 1000.0) - 500)  # float outside [0, 1]: by its range
    assert np.asarray(to_rgb(wide))[0, 0, 0] == 0 and np.asarray(to_rgb(wide))[0, -1, 0] == 255


def test_transparency_is_composited_on_white_and_other_modes_convert():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :2, 3] = 0  # left half transparent
    rgba[:, 2:, 3] = 255
    got = np.asarray(to_rgb(Image.fromarray(rgba, "RGBA")))
    assert (got[:, :2] == 255).all() and (got[:, 2:] == [200, 0, 0]).all()
    p = Image.fromarray(np.full((4, 4, 3), 30, np.uint8)).quantize(4)
    p.info["transparency"] = 0
    assert np.asarray(to_rgb(p)).max() == 255  # the transparent palette colour becomes white
    cmyk = Image.fromarray(np.full((4, 4, 3), [10, 120, 250], np.uint8)).convert("CMYK")
    assert np.abs(np.asarray(to_rgb(cmyk)).astype(int) - [10, 120, 250]).max() <= 2
    assert to_rgb(Image.new("1", (3, 3), 1)).mode == "RGB"


def test_image_extractor_embeds_a_16_bit_image_like_its_8_bit_twin(tmp_path):
    from utils import extractors

    Image.fromarray(_grad(np.uint8, 255, 32, 32)).convert("RGB").save(tmp_path / "g8.png")
    Image.fromarray(_grad(np.uint16, 65535, 32, 32)).save(tmp_path / "g16.png")
    Image.new("RGB", (32, 32), (255, 255, 255)).save(tmp_path / "white.png")
    ext = extractors.create("timm:test_vit", pretrained=False)
    v = ext.encode([str(tmp_path / f) for f in ("g8.png", "g16.png", "white.png")], show_progress=False)
    cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    assert cos(v[0], v[1]) > 0.999 and cos(v[1], v[2]) < cos(v[0], v[1]) - 0.01


def _sideways_jpeg(path, orientation=6):
    """A phone photo taken sideways: the sensor's pixels stored 64 wide x 32 high (left half red, right half
    blue) with EXIF orientation ``orientation``, which viewers rotate to 32 wide x 64 high."""
    a = np.zeros((32, 64, 3), np.uint8)
    a[:, :32] = (220, 20, 20)
    a[:, 32:] = (20, 20, 220)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(a).save(path, format="JPEG", quality=95, exif=exif.tobytes())
    return path


def test_exif_orientation_is_applied_wherever_images_are_decoded(tmp_path):
    """Issue 20: orientation 6 was ignored, so a phone photo embedded unrotated (cosine 0.88 with the image as
    displayed). Extraction, the end-to-end batches and the figures all decode through utils.imaging."""
    from utils import extractors
    from utils.imaging import load_rgb, upright

    photo = _sideways_jpeg(tmp_path / "phone.jpg", 6)
    shown = load_rgb(photo)
    assert shown.size == (32, 64)  # rotated 90 degrees clockwise, as a viewer shows it
    a = np.asarray(shown).astype(int)
    assert a[:16, :, 0].mean() > 150 and a[48:, :, 2].mean() > 150  # red on top, blue below after rotation
    with Image.open(photo) as im:
        assert to_rgb(im).size == (32, 64)  # an image opened by the user is turned the same way
    as_displayed = tmp_path / "displayed.png"
    shown.save(as_displayed)  # the same pixels, upright, no EXIF
    upright_already = Image.new("RGB", (5, 7))
    assert upright(upright_already) is upright_already  # no orientation: no copy
    ext = extractors.create("timm:test_vit", pretrained=False)
    v = ext.encode([str(photo), str(as_displayed)], show_progress=False)
    assert float(v[0] @ v[1] / np.linalg.norm(v[0]) / np.linalg.norm(v[1])) > 0.995

    import torch

    from utils.train.batches import MultimodalCollator  # the end-to-end (ViT / CLIP) training batches

    seen = []

    def tokenizer(texts, **kw):
        return {"input_ids": torch.zeros(len(texts), 2, dtype=torch.long)}

    def processor(images, **kw):
        seen.extend(images)
        return {"pixel_values": torch.zeros(len(images), 3, 4, 4)}

    MultimodalCollator(tokenizer, processor)([{"id": "a", "text": "x", "image_path": str(photo), "labels": 0}])
    assert seen[0].size == (32, 64)


def test_a_decompression_bomb_names_the_row_and_how_to_allow_it(tmp_path):
    from utils.extractors.images import load_rgb

    Image.new("L", (20000, 9000)).save(tmp_path / "big.png")  # 180 M pixels: above Pillow's limit
    with pytest.raises(Image.DecompressionBombError, match="MAX_IMAGE_PIXELS"):
        load_rgb(tmp_path / "big.png")


# -------------------------------------------------------------------------------- media and paths
def _image_table(tmp_path, paths, **spec):
    (tmp_path / "img").mkdir(exist_ok=True)
    for p in paths:
        if p and not os.path.isabs(p) and ".." not in p and not (tmp_path / p).exists():
            Image.new("RGB", (4, 4), (len(p) * 9 % 255, 0, 0)).save(tmp_path / p)
    df = pd.DataFrame({"id": [f"r{i}" for i in range(len(paths))], "image_path": paths,
                       "label": ["a", "b"] * (len(paths) // 2), "split": "train"})
    return MultimodalDataset(df, DatasetSpec("imgs", "binary", ["a", "b"], root=str(tmp_path), modalities=["image"], **spec))


@pytest.mark.parametrize("bad", ["/etc/passwd", "../../../../somewhere/x.png", "img/../../x.png"])
def test_media_paths_outside_the_dataset_root_are_refused(tmp_path, bad):
    """Old code opened and embedded /etc/passwd when a table named it."""
    ds = _image_table(tmp_path, ["img/a.png", bad, "img/c.png", "img/d.png"])
    with pytest.raises(DatasetError, match=r"outside the dataset root.*row 1 .*allow_absolute_paths"):
        ds.items("image")
    with pytest.raises(DatasetError, match="row 1"):
        data.check_media(ds)
    allowed = _image_table(tmp_path, ["img/a.png", bad, "img/c.png", "img/d.png"], absolute_paths=True)
    assert allowed.items("image")[1].endswith(os.path.basename(bad))
    inside = _image_table(tmp_path, ["img/a.png", "img/../img/b.png", "img/c.png", "img/d.png"])
    assert inside.items("image")[1] == str(tmp_path / "img/../img/b.png")



def _table_with(folder, value, n=9):
    """records.csv in ``folder`` whose row 5 names ``value`` as its image (the others img/x.png)."""
    rows = [f"r{i},t,{value if i == 5 else 'img/x.png'},{'ab'[i % 2]},{['train', 'val', 'test'][i % 3]}" for i in range(n)]
    (folder / "records.csv").write_text("id,text,image,label,split\n" + "\n".join(rows) + "\n")
    return folder


def test_a_symbolic_link_leading_out_of_the_data_folder_is_refused_naming_the_row_and_target(tmp_path):
    """Issue 20: a link planted in the data folder (the file, or a folder on its way) was followed, so a table
    could make the framework read and embed any file on the machine; lexical checks of the path cannot see it."""
    folder = tmp_path / "t"
    (folder / "img").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(folder / "img/x.png")
    secret = tmp_path / "elsewhere"
    secret.mkdir()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(secret / "s.png")
    os.symlink(secret / "s.png", folder / "img/link.png")  # the file is a link
    os.symlink(secret, folder / "linked")  # a folder on the way is a link
    os.symlink(folder / "img/x.png", folder / "img/inside.png")  # a link that stays inside: fine
    for value in ("img/link.png", "linked/s.png"):
        _table_with(folder, value)
        with pytest.raises(DatasetError, match=rf"outside the dataset root .*symbolic link: row 5 \(id 'r5'\): "
                                                rf".*{value} -> {secret / 's.png'}.*allow_absolute_paths"):
            data.load("table", root=folder, split_column="split", id_column="id")
        ds = data.load("table", root=folder, split_column="split", id_column="id", allow_absolute_paths=True)
        assert ds.items("image")[5].endswith(value)
    _table_with(folder, "img/inside.png")
    ds = data.load("table", root=folder, split_column="split", id_column="id")
    assert ds.media_stats("image").link[5]
    # a dataset built by hand (no load) is refused when the store fingerprints it, before anything is embedded
    _table_with(folder, "img/link.png")
    raw = data.load("table", root=folder, split_column="split", id_column="id", on_missing_image="ignore")
    with pytest.raises(DatasetError, match="symbolic link"):
        raw.fingerprint("image")


def test_a_folder_or_an_empty_file_where_an_image_is_expected_is_named_as_such(tmp_path):
    """A folder was reported as "not found" (misleading: it is there) and a 0-byte file passed the load, to fail
    later inside the extractor; both are named with what is wrong, and on_missing_image='drop' drops them."""
    folder = tmp_path / "t"
    (folder / "img/sub.png").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(folder / "img/x.png")
    (folder / "img/empty.png").write_bytes(b"")
    for value, what in (("img/sub.png", "is a folder, not a file"), ("img/empty.png", "is empty (0 bytes)")):
        _table_with(folder, value)
        with pytest.raises(DatasetError, match=rf"(?s)1 media file\(s\) not usable \(1 {re.escape(what)}\).*row 5 \(id "
                                               rf"'r5'\): .*{value} \({re.escape(what)}\)"):
            data.load("table", root=folder, split_column="split", id_column="id")
        ds = data.load("table", root=folder, split_column="split", id_column="id", on_missing_image="drop")
        assert len(ds) == 8 and "r5" not in set(ds.df["id"])


def test_an_animated_image_embeds_its_first_frame_and_says_so(tmp_path, caplog):
    from utils import extractors

    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)) for _ in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=80, loop=0)
    with Image.open(tmp_path / "anim.gif") as im:
        assert im.n_frames == 3
        im.convert("RGB").save(tmp_path / "first.png")  # the first frame's pixels, as the GIF stores them
        im.seek(2)
        im.convert("RGB").save(tmp_path / "last.png")
    ext = extractors.create("timm:test_vit", pretrained=False)
    with caplog.at_level(logging.WARNING, logger="utils"):
        v = ext.encode([str(tmp_path / "first.png"), str(tmp_path / "anim.gif"), str(tmp_path / "last.png")],
                       show_progress=False)
    assert np.array_equal(v[1], v[0]) and not np.array_equal(v[1], v[2])
    assert ext.last_notes == {1: "animated: its first frame is used"}
    assert "1 animated image(s)" in caplog.text and "first frame" in caplog.text and "anim.gif" in caplog.text

def test_load_allows_absolute_paths_only_when_asked(tmp_path):
    folder = tmp_path / "t"
    (folder / "img").mkdir(parents=True)
    outside = tmp_path / "outside.png"
    Image.new("RGB", (4, 4)).save(outside)
    Image.new("RGB", (4, 4)).save(folder / "img/x.png")
    rows = [f"r{i},t,{outside if i == 0 else 'img/x.png'},{'ab'[i % 2]},{['train', 'val', 'test'][i % 3]}" for i in range(9)]
    (folder / "records.csv").write_text("id,text,image,label,split\n" + "\n".join(rows) + "\n")
    with pytest.raises(DatasetError, match="allow_absolute_paths"):
        data.load("table", root=folder, split_column="split", id_column="id")
    ds = data.load("table", root=folder, split_column="split", id_column="id", allow_absolute_paths=True)
    assert ds.items("image")[0] == str(outside)


def test_fingerprint_sees_a_same_size_replacement_and_content_mode_survives_a_copy(tmp_path):
    """Old code fingerprinted file name + size, so a same-size replacement reused a stale vector."""
    ds = _image_table(tmp_path, ["img/a.png", "img/b.png"])
    before, before_content = ds.fingerprint("image"), ds.fingerprint("image", mode="content")
    victim = tmp_path / "img/b.png"
    st = victim.stat()
    data_ = bytearray(victim.read_bytes())
    data_[-20] ^= 0xFF
    victim.write_bytes(bytes(data_))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000))
    fresh = _image_table(tmp_path, ["img/a.png", "img/b.png"])
    assert fresh.fingerprint("image") != before
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))  # time set back: only the content says it changed
    assert _image_table(tmp_path, ["img/a.png", "img/b.png"]).fingerprint("image", mode="content") != before_content
    # the same bytes elsewhere, with new times: same content fingerprint, other stat fingerprint
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "img", copy / "img", copy_function=shutil.copyfile)
    for f in (copy / "img").iterdir():
        os.utime(f, (1e9, 1e9))
    a = _image_table(tmp_path, ["img/a.png", "img/b.png"])
    b = MultimodalDataset(a.df, DatasetSpec("imgs", "binary", ["a", "b"], root=str(copy), modalities=["image"]))
    assert a.fingerprint("image", mode="content") == b.fingerprint("image", mode="content")
    assert a.fingerprint("image") != b.fingerprint("image")


def test_media_checks_are_cached_and_a_changed_folder_is_checked_again(tmp_path, monkeypatch):
    import utils.data.media as media

    ds = _image_table(tmp_path, [f"img/{i}.png" for i in range(6)])
    calls = []
    real = media.stat_files
    monkeypatch.setattr(media, "stat_files", lambda paths, *a: calls.append(len(paths)) or real(paths, *a))
    s1 = media.media_stats(ds.items("image"), "k1", check="folders")
    s2 = media.media_stats(ds.items("image"), "k1", check="folders")
    assert calls == [6] and s2.checked.startswith("folders (1 checked, 0 changed)")
    (tmp_path / "img/3.png").unlink()  # the folder's time changes
    s3 = media.media_stats(ds.items("image"), "k1", check="folders")
    assert calls == [6, 6] and s3.missing.tolist() == [False, False, False, True, False, False]
    assert (s1.size == s2.size).all()
    media.media_stats(ds.items("image"), "k1", check="full")
    assert calls[-1] == 6  # "full" stats every file


def test_loaded_dataset_keeps_its_file_facts_so_embedding_stats_nothing_again(tmp_path, monkeypatch):
    import utils.data.media as media

    folder = tmp_path / "t"
    (folder / "img").mkdir(parents=True)
    for i in range(9):
        Image.new("RGB", (4, 4), (i, 0, 0)).save(folder / f"img/{i}.png")
    rows = [f"r{i},t{i},img/{i}.png,{'ab'[i % 2]},{['train', 'val', 'test'][i % 3]}" for i in range(9)]
    (folder / "records.csv").write_text("id,text,image,label,split\n" + "\n".join(rows) + "\n")
    ds = data.load("table", root=folder, split_column="split", id_column="id")
    monkeypatch.setattr(media, "stat_files", lambda *a: pytest.fail("stat again"))
    ds.fingerprint("image")


# ------------------------------------------------------------------------------ tables and settings
def test_unknown_loader_option_is_refused_before_reading(tmp_path):
    with pytest.raises(DatasetError, match=r"unknown option\(s\) 'nn' \(did you mean 'n'\?\).*accepts: .*\bn\b"):
        data.load("synthetic", nn=30)
    with pytest.raises(DatasetError, match="label_colum.*did you mean 'label_column'"):
        data.load("table", root=tmp_path, label_colum="x")


def test_datasets_nobody_can_train_on_are_refused_before_extraction(tmp_path):
    from utils import experiment as ex

    df = pd.DataFrame({"id": [f"r{i}" for i in range(12)], "text": "t", "label": "a",
                       "split": ["train", "val", "test"] * 4})
    one = MultimodalDataset(df, DatasetSpec("one", "multiclass", ["a", "b"], modalities=["text"]))
    with pytest.raises(DatasetError, match=r"training rows hold 1 class"):
        ex.extract_embeddings(one, {"text": "hf:nonexistent"}, embeddings_dir=tmp_path)
    no_test = MultimodalDataset(df.assign(split="train", label=["a", "b"] * 6),
                                DatasetSpec("nt", "multiclass", ["a", "b"], modalities=["text"]))
    with pytest.raises(DatasetError, match="no rows in the val and test split"):
        data.check_trainable(no_test)
    assert not any(tmp_path.rglob("*.npy"))


@pytest.mark.parametrize("options, match", [
    ({"epochs": -1}, "epochs"), ({"batch_size": 1}, "batch_size"), ({"seeds": ["a"]}, "seeds"),
    ({"models": ["early_fusion", "nope"]}, "unknown head"), ({"dataset_options": {"nn": 3}}, "did you mean 'n'"),
    ({"extractor_options": {"effnet-lite0": {"precision": "int8"}}}, "precision must be one of"),
    ({"device": "gpu"}, "device must be"), ({"embed_batch_size": 0}, "batch_size"),
])
def test_main_job_settings_are_checked_before_anything_heavy(options, match, monkeypatch):
    from utils import experiment as ex
    from utils.experiment import main as main_mod
    from utils.experiment.main import JobConfigError

    monkeypatch.setattr(main_mod, "load_dataset", lambda *a, **k: pytest.fail("loaded data before checking"))
    with pytest.raises(JobConfigError, match=match):
        ex.run_embedding_experiment(**options)


def test_cli_prints_a_clear_error_without_a_traceback(capsys):
    from utils.__main__ import main

    assert main(["--dataset-options", '{"nn": 30}']) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dataset_options (--dataset-options):") and "Traceback" not in err
    # the values are checked once (by check_job, not again by the CLI), and the error names the flag
    for args, flag, what in [(["--epochs", "0"], "--epochs", "epochs must be"),
                             (["--batch-size", "1"], "--batch-size", "batch_size must be"),
                             (["--embed-batch-size", "0"], "--embed-batch-size", "batch_size must be"),
                             (["--bootstrap", "0"], "--bootstrap", "n_resamples must be"),
                             (["--figure-formats", "png,gif"], "--figure-formats", "gif")]:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and flag in err and what in err and "Traceback" not in err, err


# ------------------------------------------------------------------------------------------- OpenAI
class _Server:
    """An OpenAI-compatible stub that answers what the test sets in ``answer`` (status, embeddings)."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.answer = (200, None)
        self.script = []  # answers given first, one per request, before ``answer``
        self.seen = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                outer.seen.append((self.path, self.headers.get("authorization")))
                status, widths = outer.script.pop(0) if outer.script else outer.answer
                if status != 200:
                    payload = {"error": {"message": f"denied; you sent Authorization: {self.headers.get('authorization')}"}}
                else:
                    widths = widths or [8] * len(body["input"])
                    payload = {"object": "list", "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1},
                               "data": [{"object": "embedding", "index": i, "embedding": _stub_vector(t, w)}
                                        for i, (t, w) in enumerate(zip(body["input"], widths))]}
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.send_header("retry-after", "0")
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


def _stub_vector(text, width):
    """The stub's embedding of ``text``: its first bytes, so different texts get different vectors."""
    raw = (text.encode() + bytes(width))[:width]
    return [0.5 + b / 512 for b in raw]


@pytest.fixture
def server(monkeypatch):
    s = _Server()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-VERYSECRET-0001")
    yield s
    s.httpd.shutdown()


def _openai(server, model="text-embedding-3-small", **kw):
    from utils import extractors

    return extractors.create(f"openai:{model}", base_url=server.url, backoff=0.0, max_retries=1, encoding_format="float",
                             **kw)


def test_openai_answers_of_the_wrong_width_are_refused(server):
    from utils.extractors import ExtractorError

    with pytest.raises(ExtractorError, match="8-d vectors where 256-d were expected"):
        _openai(server, dimensions=256).encode(["a", "b"], show_progress=False)
    with pytest.raises(ExtractorError, match="8-d vectors where 1536-d .*size of text-embedding-3-small"):
        _openai(server).encode(["a"], show_progress=False)
    server.answer = (200, [8, 5])
    with pytest.raises(ExtractorError, match=r"different widths \[5, 8\]"):
        _openai(server, model="custom").encode(["a", "b"], show_progress=False)
    ext = _openai(server, model="custom", max_inputs_per_request=1)
    server.answer = (200, None)
    ext.encode(["a"], show_progress=False)
    server.answer = (200, [6])
    with pytest.raises(ExtractorError, match="6-d vectors where 8-d .*earlier answers"):
        ext.encode(["b"], show_progress=False)


def test_openai_credentials_never_reach_the_manifest_repr_or_errors(server, caplog):
    from utils.extractors import ExtractorError

    url = server.url.replace("http://", "http://alice:hunter2@") + "?api-key=qk-777&region=eu"
    from utils import extractors

    ext = extractors.create("openai:custom", base_url=url, backoff=0.0, max_retries=1)
    shown = json.dumps(ext.config()) + repr(ext) + ext.slug
    assert "hunter2" not in shown and "qk-777" not in shown and "region=eu" in shown
    assert ext.encode(["a"], show_progress=False).shape == (1, 8)  # the real URL is used for requests
    assert len(server.seen) == 1 and "qk-777" in server.seen[-1][0]
    for status in (400, 500):
        server.answer = (status, None)
        with caplog.at_level(logging.DEBUG), pytest.raises(ExtractorError) as e:
            _openai(server, model="custom").encode(["a"], show_progress=False)
        text = str(e.value) + repr(e.value) + caplog.text + str(e.value.__cause__) + str(e.value.__context__)
        assert "VERYSECRET" not in text and "Bearer ***" in str(e.value), text


def test_credentials_in_a_base_url_stay_out_of_library_logs_and_the_query_string_survives(server, caplog):
    """Issue 20: with logging at INFO, httpx logged the full base_url (user:password@ and ?api-key=); an api_key
    typed into the extractor options was echoed in the error; a base_url with a query string sent requests to a
    mangled path (/v1/?api-key=...embeddings)."""
    from utils import extractors

    url = server.url.replace("http://", "http://alice:hunter2@") + "?api-key=qk-777&region=eu"
    ext = extractors.create("openai:custom", base_url=url, backoff=0.0, max_retries=1)
    with caplog.at_level(logging.DEBUG):
        assert ext.encode(["a"], show_progress=False).shape == (1, 8)
        server.answer = (500, None)
        with pytest.raises(Exception):
            ext.encode(["b"], show_progress=False)
    path = server.seen[0][0]
    assert path.split("?")[0] == "/v1/embeddings" and "api-key=qk-777" in path and "region=eu" in path, path
    logged = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert "hunter2" not in logged and "qk-777" not in logged and "VERYSECRET" not in logged, logged
    assert "127.0.0.1" in logged  # the lines are there, redacted, not dropped

    with pytest.raises(Exception) as e:
        extractors.create("openai:custom", api_key="sk-typed-in-OPTIONS-42", base_url=server.url)
    assert "sk-typed-in-OPTIONS-42" not in str(e.value) and "OPENAI_API_KEY" in str(e.value)


def test_secrets_typed_into_cli_extractor_options_are_not_echoed(capsys):
    from utils.__main__ import main

    opts = '{"base_url": "http://u:pw-SECRET-7@127.0.0.1:9/v1?api-key=QK-SECRET", "bogus": 1, "token": "TOK-SECRET"}'
    assert main(["--text", "openai:custom", "--text-options", opts]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err and "127.0.0.1:9/v1" in err  # the error still says what is wrong, and where
    assert "SECRET" not in err, err
    assert main(["--text", "openai:custom", "--text-options", '{"api_key": "sk-typed-SECRET-99"}']) == 2
    err = capsys.readouterr().err
    assert "OPENAI_API_KEY" in err and "SECRET" not in err, err


# ---------------------------------------------------------------------------------------- archives
def _tar_links(path, links):
    with tarfile.open(path, "w") as t:
        for name, target in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            t.addfile(info)


@pytest.mark.parametrize("links", [
    [("sub", "."), ("esc", "sub/..")],  # the chain the old check let through
    [("a", "b/.."), ("b", "x/y/../..")],  # a link through a link defined later
    [("loop1", "loop2/x"), ("loop2", "loop1/x")],
])
def test_tar_link_chains_are_resolved_before_anything_is_written(tmp_path, links):
    from utils.data import download as dl

    _tar_links(tmp_path / "a.tar", links)
    with pytest.raises(dl.DownloadError, match="unsafe archive member"):
        dl.extract(tmp_path / "a.tar", tmp_path / "out")
    assert not any((tmp_path / "out").iterdir())


def test_archives_have_a_size_limit_with_a_clear_way_past_it(tmp_path):
    from utils.data import download as dl

    with zipfile.ZipFile(tmp_path / "b.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.bin", b"\0" * (3 << 20))
    with pytest.raises(dl.DownloadError, match=r"would expand to 3.0 MB .*max_bytes=3145728"):
        dl.extract(tmp_path / "b.zip", tmp_path / "out", max_bytes=1 << 20)
    assert not any((tmp_path / "out").iterdir())
    assert len(dl.extract(tmp_path / "b.zip", tmp_path / "out", max_bytes=3 << 20)) == 1


def test_end_to_end_batches_decode_16_bit_images_as_the_extractors_do(tmp_path, tiny_bert, tiny_vit_folder):
    """The end-to-end baselines read images through the same decoding as extraction (was convert("RGB"):
    a 16-bit gradient turned white)."""
    from PIL import Image

    from utils.imaging import load_rgb
    from utils.models.full import load_preprocessing
    from utils.train import MultimodalCollator

    grad = (np.linspace(0, 65535, 32 * 32).reshape(32, 32)).astype(np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(grad).save(path)
    tok, proc = load_preprocessing(str(tiny_bert), str(tiny_vit_folder))
    batch = MultimodalCollator(tok, proc, 8)([{"id": "r0", "text": "x", "image_path": str(path), "labels": 0}])
    want = proc(images=[load_rgb(path)], return_tensors="pt")["pixel_values"]
    white = proc(images=[Image.new("RGB", (32, 32), "white")], return_tensors="pt")["pixel_values"]
    assert np.allclose(batch["pixel_values"].numpy(), want.numpy())
    assert not np.allclose(batch["pixel_values"].numpy(), white.numpy(), atol=0.1)


def test_the_api_key_echoed_by_a_server_reaches_no_log_record_result_file_or_traceback(server, tmp_path):
    """Issue 20: a server that echoes the Authorization header in its error bodies (a 500 retried, then a 400 that
    stops the job): with every logger at DEBUG, an extraction that succeeds after the retry, heads trained, the
    results, report and store written, and a failing extraction whose traceback is formatted, the key appears
    nowhere: not in any log record (message, arguments, exception text), any file written, or the traceback."""
    import traceback

    from utils import experiment as ex
    from utils.extractors import ExtractorError

    key = os.environ["OPENAI_API_KEY"]
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            text = record.getMessage() + repr(record.args)
            if record.exc_info:
                text += "".join(traceback.format_exception(*record.exc_info))
            records.append(f"{record.name}: {text}")

    root = logging.getLogger()
    handler, level = Keep(logging.DEBUG), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        n = 40
        df = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "text": [f"note {i} {'ab'[i % 2] * 3}" for i in range(n)],
                           "label": ["a", "b"] * (n // 2), "split": (["train"] * 6 + ["val"] * 2 + ["test"] * 2) * (n // 10)})
        ds = MultimodalDataset(df, DatasetSpec("secrets", "binary", ["a", "b"], modalities=["text"]))
        spec = "openai:custom"
        options = {spec: {"base_url": server.url, "backoff": 0.0, "max_retries": 2, "encoding_format": "float"}}
        server.script = [(500, None)]  # the first request fails with the key in its body, the retry succeeds
        emb = ex.extract_embeddings(ds, {"text": spec}, options, embeddings_dir=tmp_path / "emb", show_progress=False)
        rows = ex.train_heads(ds, emb, ["text_only"], epochs=2, show_progress=False)
        ex.save_results(rows, tmp_path / "results" / "r.json", tmp_path / "results" / "r.csv")
        ex.report(rows, out_dir=tmp_path / "results", name="secrets", shapley=False, figure_formats=("png",))
        server.answer = (400, None)
        with pytest.raises(ExtractorError) as e:
            ex.extract_embeddings(ds, {"text": spec}, {spec: {**options[spec], "dimensions": 8}},
                                  embeddings_dir=tmp_path / "emb2", show_progress=False)
        shown = "".join(traceback.format_exception(e.value)) + repr(e.value)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert sum(1 for _, auth in server.seen if auth == f"Bearer {key}") >= 3  # the key was sent and echoed back
    assert any("HTTP 500, retrying" in r for r in records)  # the retried failure was logged
    assert "HTTP 400" in shown and "denied; you sent Authorization: Bearer ***" in shown  # the echo, redacted
    assert len(records) > 20
    leaks = [r for r in records if key in r or "VERYSECRET" in r]
    assert not leaks, leaks[:3]
    assert "VERYSECRET" not in shown, shown
    written = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert any(f.suffix == ".json" for f in written) and any(f.suffix == ".npy" for f in written)
    assert not [f for f in written if b"VERYSECRET" in f.read_bytes()]


@pytest.mark.slow
def test_the_api_key_echoed_by_a_server_is_not_in_an_executed_notebook(server, tmp_path, monkeypatch):
    """The text-embedding notebook run with the OpenAI family against the echoing server (its first request fails
    and is retried): neither the executed notebook (every output, logs included) nor its result files hold the
    key."""
    import papermill as pm

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    monkeypatch.setenv("PYTHONPATH", repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    server.script = [(500, None)]
    spec = "openai:custom"
    pm.execute_notebook(
        os.path.join(repo, "generate_text_embeddings.ipynb"), str(tmp_path / "executed.ipynb"), kernel_name="python3",
        cwd=str(tmp_path), progress_bar=False, log_output=False,
        parameters={"DATASET_OPTIONS": {"n": 60}, "EXTRACTORS": [spec], "RESULTS_DIR": str(tmp_path / "results"),
                    "EMBEDDINGS_DIR": str(tmp_path / "embeddings"),
                    "EXTRACTOR_OPTIONS": {spec: {"base_url": server.url, "backoff": 0.0, "max_retries": 2,
                                                 "encoding_format": "float"}}})
    executed = (tmp_path / "executed.ipynb").read_text()
    assert "HTTP 500, retrying" in executed  # the failure is in the notebook's output, without the key
    assert sum(1 for _, auth in server.seen if auth and "VERYSECRET" in auth) >= 2
    written = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert len(written) > 3 and not [f for f in written if b"VERYSECRET" in f.read_bytes()]


def test_embed_batch_size_is_auto_by_default_and_takes_a_number_or_auto(capsys):
    """The extraction batch defaults to "auto" (from free GPU memory on CUDA, 32 on a CPU) in the CLI, the job
    config and the notebooks; anything but a whole number or auto is refused by the CLI, naming the option."""
    from utils.__main__ import parser
    from utils.experiment import MainJobConfig
    from utils.notebooks import embed_model

    assert parser().parse_args([]).embed_batch_size == "auto" == MainJobConfig().embed_batch_size
    assert parser().parse_args(["--embed-batch-size", "AUTO"]).embed_batch_size == "auto"
    assert parser().parse_args(["--embed-batch-size", "64"]).embed_batch_size == 64
    assert embed_model.parameters("synthetic", {})["EMBED_BATCH_SIZE"] == "auto"
    with pytest.raises(SystemExit):
        parser().parse_args(["--embed-batch-size", "many"])
    assert "--embed-batch-size: give a whole number or auto, got 'many'" in capsys.readouterr().err
