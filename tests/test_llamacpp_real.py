"""The llamacpp family on a real model: the packaged all-MiniLM-L6-v2 converted to GGUF with llama.cpp's own
converter (shipped in the llama-cpp-python source distribution), against the hf family on the same texts.

The conversion is cached (``MMFUSION_CACHE_DIR``, default ``~/.cache/mmfusion``, keyed by the
llama-cpp-python version), so only the first run pays for the sdist download and the conversion (~5 s).
"""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "",
    "Un texte en français, avec des accents : é à ü.",
    "word " * 700,  # longer than the model's 512-token window: truncated the same way by both families
]


def cache_dir() -> Path:
    return Path(os.environ.get("MMFUSION_CACHE_DIR") or Path.home() / ".cache" / "mmfusion").expanduser()


def converter_folder(version: str, dest: Path) -> Path:
    """``vendor/llama.cpp`` (converter, ``conversion/``, ``gguf-py/``) from the llama-cpp-python sdist."""
    folder = dest / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
    if (folder / "convert_hf_to_gguf.py").is_file():
        return folder
    dest.mkdir(parents=True, exist_ok=True)
    got = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
                          f"llama-cpp-python=={version}", "-d", str(dest)], capture_output=True, text=True)
    sdists = sorted(dest.glob(f"llama_cpp_python-{version}.tar.gz"))
    if got.returncode != 0 or not sdists:
        pytest.skip(f"the llama-cpp-python {version} sdist could not be downloaded: {got.stderr[-300:]}")
    prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    wanted = (prefix + "convert_hf_to_gguf.py", prefix + "conversion/", prefix + "gguf-py/")
    with tarfile.open(sdists[0]) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(wanted) and (m.isfile() or m.isdir())]
        tar.extractall(dest, members=members, filter="data")
    return folder


@pytest.fixture(scope="session")
def minilm_gguf(minilm_path) -> Path:
    version = md.version("llama-cpp-python")
    out = cache_dir() / "test-gguf" / f"all-MiniLM-L6-v2-f16-llamacpp{version}.gguf"
    if out.is_file():
        return out
    folder = converter_folder(version, cache_dir() / "test-gguf" / "sdist")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(folder / "gguf-py")])}
    tmp = out.with_suffix(".partial")
    run = subprocess.run([sys.executable, str(folder / "convert_hf_to_gguf.py"), str(minilm_path), "--outfile", str(tmp),
                          "--outtype", "f16"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    tmp.replace(out)
    return out


@pytest.mark.slow
def test_llamacpp_vectors_match_the_hf_family_on_a_real_model(minilm_gguf):
    from utils import extractors

    gguf = extractors.create(f"llamacpp:{minilm_gguf}")
    a = gguf.encode(TEXTS, batch_size=4, show_progress=False)
    b = extractors.create("minilm-offline", precision="fp32").encode(TEXTS, batch_size=4, show_progress=False)
    assert a.shape == b.shape == (len(TEXTS), 384)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert (cos >= 0.99).all(), cos
    # the pooling comes from the file (mean, as sentence-transformers), the window from its training context
    assert gguf.pooling_type == 1 and gguf.n_ctx == 512
    # and the vectors mean something: related sentences are closer than unrelated ones
    n = a / np.linalg.norm(a, axis=1, keepdims=True)
    assert n[0] @ n[1] > 0.6 > n[0] @ n[2]
