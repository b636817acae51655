"""Timing helpers shared by the benchmark scripts: medians over repeats, and the device each figure came from."""

from __future__ import annotations

import statistics
import time
from typing import Callable, Optional

DEVICE_HELP = "where to run: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps"


def synchronize(device) -> None:
    """Wait for queued GPU work, so a timer measures it (no-op on a CPU)."""
    kind = getattr(device, "type", str(device or "cpu"))
    if kind.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)
    elif kind == "mps":
        import torch

        torch.mps.synchronize()


def median_time(fn: Callable[[], object], repeats: int, device: Optional[object] = None) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls (GPU work included when ``device`` is one)."""
    times = []
    for _ in range(repeats):
        synchronize(device)
        t = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def add_device_argument(parser) -> None:
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)


def describe_device(device: str = "auto", precision: Optional[str] = None):
    """Resolve ``device`` and print the lines every benchmark starts with: ``device``, ``device_name``
    (the GPU's name, or the CPU's), ``precision`` (what ``auto`` resolves to there). Returns the torch device."""
    import platform

    import torch

    from utils.runtime import resolve_device, resolve_precision

    dev = resolve_device(device)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
    elif dev.type == "mps":
        name = "Apple MPS"
    else:
        name = f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads, " \
               f"{torch.backends.cpu.get_cpu_capability()})"
    print(f"device: {dev}")
    print(f"device_name: {name}")
    print(f"precision: {resolve_precision(precision or 'auto', dev)}")
    print(f"torch: {torch.__version__}", flush=True)
    return dev
