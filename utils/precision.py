"""Numeric precision, shared by extraction and head training.

``"auto"`` means bf16 on CUDA with bf16 (fp16 on older CUDA) and on CPUs that compute bf16 natively
(AVX-512 BF16 / AMX, ARM bf16), fp32 elsewhere. Weights stay fp32; autocast runs matmuls and
convolutions in the reduced precision.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when this CPU computes bf16 natively (x86 AVX-512 BF16 or AMX; ARM bf16)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def resolve_precision(precision: str, device) -> str:
    """``"auto"`` -> the fastest precision that keeps vectors within cosine 0.99 of fp32 on ``device``."""
    check_precision(precision)
    if precision != "auto":
        return precision
    kind = getattr(device, "type", str(device))
    if kind == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if kind == "cpu" and cpu_has_bf16():
        return "bf16"
    return "fp32"


def torch_dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device, precision: str):
    """A context manager running ops in ``precision`` (already resolved) on ``device``."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch_dtype(precision))
