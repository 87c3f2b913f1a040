"""Device and dtype policy (docs/hardware.md).

CPU: bfloat16 compute where the CPU has native bf16 matmuls (AVX512-BF16 or AMX on x86, the bf16
feature on arm64; a cached micro-benchmark where the flags do not say: :mod:`.cpu_bf16`), float32
otherwise (emulated bf16 is 1.5–7× slower; store-notes §6). Torch threads =
``--threads``, else ``$EMOVEC_THREADS``, else ``$OMP_NUM_THREADS``, else the cores this process may
use (on a machine shared with other busy processes fewer threads can be faster:
``benchmarks/README.md``). CUDA: bfloat16 where supported, else float16 (float32 for
architectures whose activations overflow fp16, such as Gemma). Apple MPS: allocator watermarks set
before torch loads, float16 (float32 for Gemma), torch 2.8.x refused (wrong ``F.linear`` results on
non-contiguous inputs, pytorch #161640).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from emovec.common.dtype_names import DTYPE_CHOICES, FLOAT_DTYPES, canonical_dtype

from ..errors import InputError

#: Architectures whose residual stream exceeds float16's range (Gemma-3-270M: |x| up to 103,795).
FP16_UNSAFE_ARCHS = ("gemma", "gemma2", "gemma3", "gemma3_text")
COMPUTE_DTYPES = ("auto", *FLOAT_DTYPES)


def set_mps_environment() -> None:
    """Set MPS allocator limits and CPU fallback; effective only before torch is imported."""
    if sys.platform == "darwin":
        os.environ.setdefault("PYTORCH_MPS_HIGH_WATERMARK_RATIO", "1.0")
        os.environ.setdefault("PYTORCH_MPS_LOW_WATERMARK_RATIO", "0.8")
        os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


#: Environment variables that set the CPU thread count when ``--threads`` is not given, in order.
THREAD_VARIABLES = ("EMOVEC_THREADS", "OMP_NUM_THREADS")


def cpu_threads(threads: int | None = None) -> tuple[int, str]:
    """(torch threads for CPU compute, where the number came from).

    ``threads`` (``--threads``) first, then ``$EMOVEC_THREADS``, then ``$OMP_NUM_THREADS``, then
    the cores this process may use. A variable that is set but not a positive integer is refused
    (:class:`InputError`) rather than silently ignored.
    """
    if threads is not None:
        if threads < 1:
            raise InputError(f"--threads must be at least 1, got {threads}", field="threads")
        return threads, "--threads"
    for name in THREAD_VARIABLES:
        text = os.environ.get(name, "").strip()
        if name == "OMP_NUM_THREADS":  # OpenMP allows a list for nested levels: the first is ours
            text = text.split(",")[0].strip()
        if not text:
            continue
        if not text.isdigit() or int(text) < 1:
            raise InputError(f"${name} must be a positive integer (threads), got {text!r}", field=name)
        return int(text), f"${name}"
    return available_cores(), "cores"


@dataclass(frozen=True)
class DevicePlan:
    """Where and how a model runs."""

    device: str
    compute_dtype: str
    threads: int | None
    bucket: int            # padded lengths are rounded up to a multiple of this (MPS: few shapes)
    empty_cache_every: int  # batches between cache flushes (0 = never)
    compute_dtype_reason: str = ""  # why compute_dtype was chosen (recorded in the model's provenance)


def resolve_device(device: str = "auto") -> str:
    """``auto`` → cuda, then mps, then cpu (whichever torch can use); other names pass through."""
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else "cpu"


def choose(device: str = "auto", dtype: str = "auto", model_type: str = "", *,
           threads: int | None = None) -> DevicePlan:
    """Pick device, compute dtype and threads; raises :class:`InputError` for impossible choices.

    ``threads`` applies to CPU compute (see :func:`cpu_threads` for the defaults)."""
    import torch

    name = canonical_dtype(dtype)
    if name is None:
        raise InputError(f"unknown --dtype {dtype!r}; choose from {', '.join(DTYPE_CHOICES)}", field="dtype")
    dtype = name
    device = resolve_device(device)
    kind = device.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda requested but torch sees no CUDA device", field="device")
    if kind == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InputError("--device mps requested but MPS is not available", field="device")
        if torch.__version__.startswith("2.8."):
            raise InputError(f"torch {torch.__version__} computes F.linear wrongly on MPS (pytorch #161640); "
                             "install torch >= 2.9 or use --device cpu", field="device")
    if kind not in ("cpu", "cuda", "mps"):
        raise InputError(f"unknown --device {device!r}; use auto, cpu, cuda[:N] or mps", field="device")
    n_threads = None
    if kind == "cpu":
        n_threads, _ = cpu_threads(threads)
        torch.set_num_threads(n_threads)  # before the dtype policy: its micro-benchmark runs on these threads
    if dtype == "auto":
        dtype, reason = _auto_dtype(kind, model_type)
    else:
        reason = f"requested: {dtype}"
    return DevicePlan(device, dtype, n_threads, 32 if kind == "mps" else 1, 50 if kind == "mps" else 0, reason)


def _auto_dtype(kind: str, model_type: str) -> tuple[str, str]:
    """(compute dtype, why) for ``--dtype auto`` on a device of this kind."""
    import torch

    unsafe16 = model_type in FP16_UNSAFE_ARCHS
    if kind == "cpu":
        from .cpu_bf16 import cpu_bf16_verdict

        verdict = cpu_bf16_verdict()
        return ("bfloat16" if verdict.native else "float32"), verdict.reason
    if kind == "cuda" and torch.cuda.is_bf16_supported():
        return "bfloat16", "cuda: bf16 supported"
    if unsafe16:
        return "float32", f"{kind}: {model_type} activations exceed float16's range" + (
            " and this GPU has no bf16" if kind == "cuda" else "")
    return "float16", f"{kind}: float16" + (" (this GPU has no bf16)" if kind == "cuda" else "")


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def empty_cache(device: str) -> None:
    import torch

    if device.startswith("mps"):
        torch.mps.empty_cache()
    elif device.startswith("cuda"):
        torch.cuda.empty_cache()
