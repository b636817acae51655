"""The prepared device check (benchmarks/gpu_check.sh) in smoke mode, as CI runs it: every step runs on the
CPU, writes its figures as `section.name: value` lines with the device first, and a broken step is reported
in the file (not hidden) while the others still run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _figures(path: Path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(": ")
        out[key] = value
    return out


def test_gpu_check_smoke_writes_every_figure_with_its_device(tmp_path):
    out = tmp_path / "gpu_check.txt"
    t0 = time.monotonic()
    run = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--smoke", "--device", "cpu", "--out",
                          str(out)], capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHON": sys.executable})
    took = time.monotonic() - t0
    assert run.returncode == 0, run.stdout[-3000:] + (tmp_path / "gpu_check.txt.log").read_text()[-3000:]
    assert took < 120, f"smoke mode took {took:.0f}s; it must stay under 2 minutes"
    f = _figures(out)
    assert f["mode"] == "smoke" and f["failed_steps"] == "0"
    sections = ("images", "images_device_decode", "text", "heads", "bootstrap")
    for section in sections:
        assert f[f"{section}.device"] == "cpu" and f[f"{section}.device_name"], section
        assert f[f"{section}.precision"] in ("fp32", "bf16", "fp16")
    for key in ("images.test_vit_ours_images_per_s", "images.test_vit_naive_fp32_images_per_s",
                "images.test_vit_ceiling_images_per_s", "images_device_decode.test_vit_ours_images_per_s",
                "text.ours_texts_per_s", "text.sentence_transformers_texts_per_s", "heads.ours_samples_per_s",
                "heads.original_samples_per_s", "heads.naive_samples_per_s", "bootstrap.numpy_s", "bootstrap.device_s"):
        assert float(f[key]) > 0, key
    assert f["images.test_vit_batch_size"] == "32"  # batch_size auto: 32 off CUDA
    assert float(f["images.test_vit_cosine_vs_fp32"]) > 0.99  # the fast path gives the fp32 vectors
    assert float(f["images_device_decode.test_vit_cosine_vs_fp32"]) > 0.99  # decoded by torchvision, resized in torch
    assert float(f["text.cosine_vs_sentence_transformers"]) > 0.99
    assert abs(float(f["heads.ours_macro_f1"]) - float(f["heads.original_macro_f1"])) < 0.1
    assert float(f["heads.speedup_vs_original"]) > 1.5  # the in-memory trainer beats the DataLoader loop even tiny
    # the floor of a step (AdamW's kernel + the first layer's two matmuls, each timed alone) is below ours' step,
    # and each ceiling is a baseline's step over that floor
    floor, ours = float(f["heads.floor_total_ms"]), float(f["heads.ours_ms_per_step"])
    assert 0 < floor < ours
    want = float(f["heads.naive_ms_per_step"]) / floor
    assert abs(float(f["heads.ceiling_speedup_vs_naive"]) - want) < 0.05 * want
    assert float(f["bootstrap.max_abs_difference"]) < 1e-9  # the device bootstrap gives numpy's samples


def test_gpu_check_reports_a_failed_step_and_runs_the_rest(tmp_path):
    out = tmp_path / "g.txt"
    run = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--smoke", "--device", "no-such-device",
                          "--out", str(out)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHON": sys.executable})
    f = _figures(out)
    assert run.returncode == 5 and f["failed_steps"] == "5"
    assert all(f[f"{s}.error"].startswith("exit ") for s in ("images", "images_device_decode", "text", "heads", "bootstrap"))
