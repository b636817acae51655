"""utils.data.download offline: a local HTTP server with Range support, checksums, malicious archives."""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from utils.data import download as dl

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes


class _Handler(BaseHTTPRequestHandler):
    ranges: list = []
    auths: list = []
    honour_range = True

    def log_message(self, *a):  # keep test output quiet
        pass

    def do_GET(self):
        type(self).ranges.append(self.headers.get("Range"))
        type(self).auths.append(self.headers.get("Authorization"))
        if self.path.startswith("/secret") and self.headers.get("Authorization") is None:
            self.send_response(401); self.end_headers(); return
        if self.path.endswith("/missing"):
            self.send_response(404); self.end_headers(); return
        rng = self.headers.get("Range")
        if rng and type(self).honour_range:
            start = int(rng.split("=")[1].rstrip("-"))
            body = PAYLOAD[start:]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            body = PAYLOAD
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def server():
    _Handler.ranges, _Handler.auths, _Handler.honour_range = [], [], True
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_verifies_checksum_and_skips_existing(server, tmp_path):
    out = dl.download_file(f"{server}/f.bin", tmp_path / "f.bin", sha256=SHA, show_progress=False)
    assert out.read_bytes() == PAYLOAD and not (tmp_path / "f.bin.part").exists()
    dl.download_file(f"{server}/f.bin", tmp_path / "f.bin", sha256=SHA, show_progress=False)
    assert len(_Handler.ranges) == 1  # the second call found the verified file


def test_download_resumes_with_a_range_request(server, tmp_path):
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:40000])
    out = dl.download_file(f"{server}/f.bin", tmp_path / "f.bin", sha256=SHA, show_progress=False)
    assert _Handler.ranges == ["bytes=40000-"] and out.read_bytes() == PAYLOAD


def test_download_restarts_when_server_ignores_range(server, tmp_path):
    _Handler.honour_range = False
    (tmp_path / "f.bin.part").write_bytes(b"garbage" * 10)
    out = dl.download_file(f"{server}/f.bin", tmp_path / "f.bin", sha256=SHA, show_progress=False)
    assert out.read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes_and_raises(server, tmp_path):
    with pytest.raises(dl.DownloadError, match="checksum mismatch for f.bin"):
        dl.download_file(f"{server}/f.bin", tmp_path / "f.bin", sha256="0" * 64, show_progress=False)
    assert not (tmp_path / "f.bin").exists()


def test_http_error_is_clear(server, tmp_path):
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        dl.download_file(f"{server}/missing", tmp_path / "m", show_progress=False)


def test_physionet_credentials_from_env_never_logged(server, tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(dl.ENV_PHYSIONET_USER, raising=False)
    monkeypatch.delenv(dl.ENV_PHYSIONET_PASSWORD, raising=False)
    with pytest.raises(dl.DownloadError, match="PHYSIONET_USERNAME"):
        dl.fetch("mimic_cxr", root=tmp_path / "m", base_url=f"{server}/secret", show_progress=False)
    monkeypatch.setenv(dl.ENV_PHYSIONET_USER, "alice")
    monkeypatch.setenv(dl.ENV_PHYSIONET_PASSWORD, "s3cret-pw")
    with caplog.at_level(logging.DEBUG):
        folder = dl.fetch("mimic_cxr", root=tmp_path / "m", base_url=f"{server}/secret", show_progress=False)
    assert (folder / "mimic-cxr-2.0.0-split.csv.gz").read_bytes() == PAYLOAD
    import base64

    assert _Handler.auths[-1] == "Basic " + base64.b64encode(b"alice:s3cret-pw").decode()
    assert "s3cret-pw" not in caplog.text


def test_manual_datasets_say_where_to_get_them(tmp_path):
    with pytest.raises(dl.ManualDownloadRequired) as e:
        dl.fetch("ham10000", root=tmp_path)
    assert "https://doi.org/10.7910/DVN/DBW86T" in str(e.value) and "CC BY-NC 4.0" in str(e.value)


def test_every_registered_dataset_has_a_source():
    from utils import data

    assert set(data.names()) - {"synthetic"} <= set(dl.SOURCES)


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members:
            z.writestr(name, data)


def _tar(path, members):
    with tarfile.open(path, "w:gz") as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)


def _ti(name, data=b"x", kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
    return info, (data if kind == tarfile.REGTYPE else None)


def test_safe_extraction_of_good_archives(tmp_path):
    _zip(tmp_path / "ok.zip", [("a/b.txt", b"hello"), ("c.txt", b"c")])
    got = dl.extract(tmp_path / "ok.zip", tmp_path / "out")
    assert (tmp_path / "out/a/b.txt").read_bytes() == b"hello" and len(got) == 2
    _tar(tmp_path / "ok.tgz", [_ti("d/e.txt", b"e"), _ti("d/link", kind=tarfile.SYMTYPE, link="e.txt")])
    dl.extract(tmp_path / "ok.tgz", tmp_path / "out2")
    assert (tmp_path / "out2/d/e.txt").read_bytes() == b"e"


@pytest.mark.parametrize("member", ["../evil.txt", "a/../../evil.txt", "/tmp/evil_abs.txt"])
def test_zip_members_escaping_the_target_are_refused(member, tmp_path):
    _zip(tmp_path / "bad.zip", [("fine.txt", b"ok"), (member, b"evil")])
    with pytest.raises(dl.DownloadError, match="unsafe archive member"):
        dl.extract(tmp_path / "bad.zip", tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "fine.txt").exists()


@pytest.mark.parametrize("member", [
    _ti("../evil.txt"), _ti("/abs/evil.txt"), _ti("ln", kind=tarfile.SYMTYPE, link="../../etc/passwd"),
    _ti("ln2", kind=tarfile.SYMTYPE, link="/etc/passwd"), _ti("hard", kind=tarfile.LNKTYPE, link="../x"),
    _ti("dev", kind=tarfile.CHRTYPE),
])
def test_tar_members_escaping_the_target_are_refused(member, tmp_path):
    _tar(tmp_path / "bad.tgz", [_ti("fine.txt"), member])
    with pytest.raises(dl.DownloadError, match="unsafe archive member"):
        dl.extract(tmp_path / "bad.tgz", tmp_path / "out")
    assert not (tmp_path / "out" / "fine.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_fetch_open_dataset_downloads_and_extracts_once(server, tmp_path, monkeypatch):
    _zip(tmp_path / "arch.zip", [("meta/esc50.csv", b"filename\n")])
    data = (tmp_path / "arch.zip").read_bytes()
    global PAYLOAD
    old, PAYLOAD = PAYLOAD, data
    try:
        src = dl.Source("t", "p", "l", "open", "x", "y", files=(dl.RemoteFile(f"{server}/a.zip", hashlib.sha256(data).hexdigest(), True),))
        monkeypatch.setitem(dl.SOURCES, "esc50", src)
        folder = dl.fetch("esc50", root=tmp_path / "esc", show_progress=False)
        assert (folder / "meta/esc50.csv").read_bytes() == b"filename\n"
        dl.fetch("esc50", root=tmp_path / "esc", show_progress=False)
        assert len(_Handler.ranges) == 1
    finally:
        PAYLOAD = old
