"""Runtime helpers shared by every layer: devices, numeric precision, seeds, sizes, memory.

- :func:`resolve_device`: ``"auto"`` picks CUDA, then Apple MPS, then CPU.
- Precision: ``"auto"`` means bf16 where the hardware computes it natively (CUDA compute capability 8.0
  and up; CPUs with AVX-512 BF16 / AMX / ARM bf16), fp16 on older CUDA GPUs, fp32 elsewhere. Weights stay
  fp32 on the CPU; :func:`autocast` runs matmuls and convolutions in the reduced precision.
- :func:`set_seed`, :func:`n_params`, :func:`peak_memory_mb`, :func:`keep_large_blocks_on_heap`.

torch is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# with precision="auto" on a CPU, head training uses bf16 from this input width on. Measured on a 2-core
# AVX-512 BF16 CPU at batch 64 under autocast: 704 features ran 1.7x slower in bf16 (casts dominate), 4,864
# features 1.3x faster. With bf16 matmuls inside oneDNN (no casts; torch >= 2.9, see cpu_bf16_matmuls), on a
# 2-core AMX CPU: 768 features break even (1.39 / 1.44 ms of CPU per step), 1,536 run 1.2x faster in bf16.
CPU_BF16_MIN_FEATURES = 2048
CPU_BF16_MIN_FEATURES_ONEDNN = 1024


# --------------------------------------------------------------------------------------------- devices
def resolve_device(device: Optional[Any] = "auto") -> "torch.device":  # noqa: F821
    """``"auto"`` picks CUDA, then Apple MPS, then CPU; anything else is passed to ``torch.device``."""
    import torch

    if isinstance(device, torch.device):
        return device
    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for but CUDA is not available; use device='auto' or 'cpu'")
    return dev


# ------------------------------------------------------------------------------------------- precision
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


def cuda_has_native_bf16(device: Any = None) -> bool:
    """True on CUDA GPUs of compute capability 8.0 and up (Ampere, Hopper, ...), which compute bf16 natively.

    ``torch.cuda.is_bf16_supported()`` also says yes where bf16 is only emulated (slower than fp16), so the
    capability is what counts.
    """
    import torch

    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def resolve_precision(precision: str, device: Any) -> str:
    """``"auto"`` -> the fastest precision that keeps vectors within cosine 0.99 of fp32 on ``device``."""
    check_precision(precision)
    if precision != "auto":
        return precision
    kind = getattr(device, "type", str(device))
    if kind == "cuda":
        return "bf16" if cuda_has_native_bf16(device if not isinstance(device, str) else None) else "fp16"
    if kind == "cpu" and cpu_has_bf16():
        return "bf16"
    return "fp32"


def resolve_train_precision(precision: str, device: Any, n_features: Optional[int] = None) -> str:
    """The precision head training runs in: as :func:`resolve_precision`, except that ``"auto"`` on a CPU
    keeps inputs narrower than :func:`cpu_bf16_min_features` in fp32 (there the casts cost more than the
    small matmuls save). ``n_features=None`` (inputs that are not one feature matrix) means fp32 on a CPU."""
    resolved = resolve_precision(precision, device)
    if precision == "auto" and resolved == "bf16" and getattr(device, "type", str(device)) == "cpu":
        if n_features is None or n_features < cpu_bf16_min_features():
            return "fp32"
    return resolved


def cpu_bf16_min_features() -> int:
    """The input width from which ``precision="auto"`` trains heads in bf16 on a CPU with native bf16:
    :data:`CPU_BF16_MIN_FEATURES_ONEDNN` where oneDNN runs the matmuls in bf16 (no casts), else
    :data:`CPU_BF16_MIN_FEATURES` (autocast)."""
    return CPU_BF16_MIN_FEATURES_ONEDNN if cpu_bf16_matmuls_supported() else CPU_BF16_MIN_FEATURES


def torch_dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: Any, precision: str):
    """A context manager running ops in ``precision`` (already resolved) on ``device``."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch_dtype(precision))


# head training on a CPU with threads=None: one thread on machines with at most this many cores (see train_threads)
FEW_CORES = 2


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def train_threads(threads: Optional[int]) -> Optional[int]:
    """The CPU threads head training runs with: ``threads`` when given; for ``None``, 1 on a machine with at most
    :data:`FEW_CORES` cores, else ``None`` (torch's setting, every core).

    Why: at batch 64 a training step is ~30 small ops, each an OpenMP parallel region. On 2 cores the second
    thread saves at most ~1.6x (measured CPU time per step: 3.9 ms on one thread, 4.2 ms over two), and when
    anything else runs on the machine the idle thread spins at every barrier while the busy one waits for a
    core: measured 10-25x slower than one thread on a shared 2-core machine (README "Speed")."""
    if threads is not None:
        return int(threads)
    return 1 if available_cores() <= FEW_CORES else None


@contextlib.contextmanager
def cpu_threads(n: Optional[int]):
    """Run the block with ``torch.set_num_threads(n)`` and restore the previous count after it (``None``: leave
    torch's setting as it is)."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def cpu_bf16_matmuls_supported() -> bool:
    """True when this torch build lets oneDNN run fp32 matmuls with bf16 arithmetic
    (``torch.backends.mkldnn.matmul.fp32_precision``, torch 2.9 and later) and this CPU computes bf16 natively."""
    import torch

    mk = getattr(torch.backends, "mkldnn", None)
    return bool(mk is not None and mk.is_available() and hasattr(getattr(mk, "matmul", None), "fp32_precision")
                and cpu_has_bf16())


@contextlib.contextmanager
def cpu_bf16_matmuls(enabled: bool = True):
    """Within the block, fp32 matmuls and linear layers on the CPU compute in bf16 inside oneDNN (fp32 in and out,
    bf16 products, fp32 sums), and the previous setting is restored after it.

    Head training uses this for ``precision="bf16"`` on a CPU instead of autocast: autocast casts the fp32 weights
    to bf16 in every forward pass and the bf16 gradients back to fp32 in every backward pass (two passes over the
    first layer's 1.2 M weights per step); oneDNN converts while it packs the operands, and the other ops stay in
    fp32. Measured at batch 64 on 4,864 features: 3.2 ms of CPU per step against 3.9 ms with autocast."""
    if not enabled:
        yield
        return
    import torch

    mm = torch.backends.mkldnn.matmul
    before = mm.fp32_precision
    mm.fp32_precision = "bf16"
    try:
        yield
    finally:
        mm.fp32_precision = before


# ------------------------------------------------------------------------------------------ batch sizes
DEFAULT_BATCH_SIZE = 32  # extraction batch size where memory does not decide it (CPU, MPS)
AUTO_BATCH_FRACTION = 0.6  # share of the free GPU memory an automatic batch may fill (decoding, copies: the rest)


def batch_size_for_memory(free_bytes: float, per_item_bytes: float, fixed_bytes: float = 0.0,
                          fraction: float = AUTO_BATCH_FRACTION, most: int = 1024) -> int:
    """The largest power of two ``b <= most`` with ``fixed + b * per_item <= fraction * free`` (at least 1)."""
    budget = fraction * float(free_bytes) - max(float(fixed_bytes), 0.0)
    if per_item_bytes <= 0:
        return int(most)
    n = int(budget // float(per_item_bytes))
    if n < 1:
        return 1
    return int(min(most, 1 << (n.bit_length() - 1)))


def auto_batch_size(device: Any, probe: Callable[[int], Any], default: int = DEFAULT_BATCH_SIZE, most: int = 1024, sizes: "tuple[int, int]" = (4, 8), fraction: float = AUTO_BATCH_FRACTION) -> int:
    """A batch size chosen from free GPU memory: ``default`` off CUDA; on CUDA, ``probe(b)`` (one forward pass of
    ``b`` items, the largest kind the run will see) runs at two sizes, the peak memory they allocate gives the
    bytes per item and the fixed part, and the batch is the largest power of two that fills at most ``fraction``
    of the memory free on the device (:func:`batch_size_for_memory`)."""
    import logging

    import torch

    dev = resolve_device(device)
    if dev.type != "cuda":
        return int(default)
    torch.cuda.synchronize(dev)
    torch.cuda.empty_cache()  # blocks the allocator keeps would otherwise count as used
    peaks = []
    for b in sizes:
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        probe(b)
        torch.cuda.synchronize(dev)
        peaks.append(max(torch.cuda.max_memory_allocated(dev) - base, 0))
    (s1, s2), (p1, p2) = sizes, peaks
    per_item = (p2 - p1) / (s2 - s1) if p2 > p1 else p2 / s2
    fixed = max(p1 - s1 * per_item, 0.0)
    torch.cuda.empty_cache()
    free, _total = torch.cuda.mem_get_info(dev)
    chosen = batch_size_for_memory(free, per_item, fixed, fraction, most)
    logging.getLogger(__name__).info("batch size %d from free GPU memory (%.0f MiB free, %.1f MiB per item, "
                                     "%.0f MiB fixed)", chosen, free / 2**20, per_item / 2**20, fixed / 2**20)
    return chosen


# ------------------------------------------------------------------------------------ seeds and sizes
def set_seed(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seed_list(seeds: Any, what: str = "seeds") -> "list[int]":
    """The one normalisation of a ``seeds`` argument: an integer (Python or numpy) or a sequence of them becomes
    a list of Python ints. Refused with a clear ``ValueError``: booleans, fractions, strings, an empty list and
    repeated seeds (a seed run twice would count twice in every mean, spread and interval)."""
    import numbers

    items = [seeds] if isinstance(seeds, numbers.Integral) or not hasattr(seeds, "__iter__") or isinstance(
        seeds, (str, bytes)) else list(seeds)
    out = []
    for s in items:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise ValueError(f"{what}: each seed must be an integer, got {s!r} ({type(s).__name__}); e.g. seeds=[0, 1, 2]")
        out.append(int(s))
    if not out:
        raise ValueError(f"{what}: give at least one seed, e.g. seeds=[0]")
    if len(set(out)) != len(out):
        twice = sorted({s for s in out if out.count(s) > 1})
        raise ValueError(f"{what}: seed(s) {twice} appear more than once in {out}; each seed is one independent run")
    return out


def n_params(model: Any, trainable_only: bool = True) -> int:
    """Parameters of a torch module (trainable ones only by default)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def peak_memory_mb(device: Any = None) -> float:
    """Peak memory: CUDA max allocated for a GPU, else the process's peak resident set (MB)."""
    import torch

    dev = resolve_device(device if device is not None else "auto")
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


_HEAP_TUNED: Optional[bool] = None


def keep_large_blocks_on_heap() -> bool:
    """Ask glibc to serve large blocks (up to 64 MiB) from the heap and keep freed ones for reuse.

    Every backward pass allocates a fresh gradient for the first layer (4,864 x 256 floats = 5 MB in the
    benchmark setting). By default glibc maps such blocks from the OS and unmaps them when freed, so each
    step pays ~1,200 page faults: a third of a step at batch 64 on a CPU. Raising the mmap threshold
    keeps them on the heap. Linux/glibc only, once per process; set ``MMFUSION_NO_MALLOPT=1`` to skip it.
    """
    global _HEAP_TUNED
    if _HEAP_TUNED is not None:
        return _HEAP_TUNED
    _HEAP_TUNED = False
    if not sys.platform.startswith("linux") or os.environ.get("MMFUSION_NO_MALLOPT"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        _HEAP_TUNED = bool(libc.mallopt(m_mmap_threshold, 64 << 20)) and bool(libc.mallopt(m_trim_threshold, 256 << 20))
    except (OSError, AttributeError):
        pass
    return _HEAP_TUNED


def in_notebook() -> bool:
    """True inside a Jupyter kernel (a notebook, Colab, or papermill running one)."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython

        return getattr(get_ipython(), "kernel", None) is not None
    except Exception:  # noqa: BLE001
        return False


def progress_bar(iterable: Any = None, **options: Any):
    """A tqdm progress bar, the one every loop of this package uses.

    In a terminal: tqdm's bar on stderr. In a notebook: the same plain text bar, on stdout and redrawn at most
    once a second, rather than tqdm's widget. The widget warns ``IProgress not found`` without ipywidgets, and a
    notebook saved by papermill keeps only its first state ("0%"); the text bar's last line is its final state,
    in Jupyter, Colab and papermill alike."""
    from tqdm.std import tqdm

    if in_notebook():
        options.setdefault("file", sys.stdout)
        options.setdefault("mininterval", 1.0)
        options.setdefault("ncols", 100)
    return tqdm(iterable, **options)
