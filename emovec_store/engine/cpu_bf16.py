"""Does this CPU run bfloat16 matmuls natively, so that bf16 compute beats float32?

CPU flags decide where they are clear: on x86, ``avx512_bf16`` or ``amx_bf16`` in ``/proc/cpuinfo``
(without them torch emulates bf16 and is 1.5-7x slower than float32: store-notes §6); on arm64
Linux, the ``bf16`` feature. Elsewhere (macOS, no ``/proc/cpuinfo``, other architectures) a one-off
micro-benchmark of a matmul in both dtypes decides, and its outcome is cached per machine and torch
version in ``$EMOVEC_CACHE_DIR/cpu-bf16.json``.
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from emovec.common.files import atomic_path

from .resolve import cache_dir

#: x86 flags of native bf16 matmul instructions (AVX512-BF16 dot products, AMX tiles).
X86_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
#: Where the kernel lists CPU flags (tests point it at a simulated file).
CPUINFO_PATH = Path("/proc/cpuinfo")
#: bf16 must be at least this much faster than float32 in the micro-benchmark to be chosen.
MIN_SPEEDUP = 1.2
CACHE_NAME = "cpu-bf16.json"


@dataclass(frozen=True)
class Bf16Verdict:
    """Whether to compute in bf16 on this CPU, and why (recorded as ``compute_dtype_reason``)."""

    native: bool
    reason: str


def _flag_lines(cpuinfo: str) -> set[str]:
    """The flags of the first CPU listed (x86 ``flags``, arm64 ``Features``)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def verdict_from_cpuinfo(cpuinfo: str, machine: str) -> Bf16Verdict | None:
    """The verdict of the CPU flags in ``cpuinfo`` (``/proc/cpuinfo`` text); None when they do not say."""
    flags = _flag_lines(cpuinfo)
    if not flags:
        return None
    arch = machine.lower()
    if arch in ("x86_64", "amd64", "i686", "i386"):
        found = [f for f in X86_BF16_FLAGS if f in flags]
        if found:
            return Bf16Verdict(True, f"cpu flags: {', '.join(found)} (native bf16 matmuls)")
        return Bf16Verdict(False, "cpu flags: no avx512_bf16 or amx_bf16 (bf16 would be emulated, slower than "
                                  "float32)")
    if arch in ("aarch64", "arm64"):
        if "bf16" in flags:
            return Bf16Verdict(True, "cpu features: bf16 (native bf16 matmuls)")
        return Bf16Verdict(False, "cpu features: no bf16 (bf16 would be emulated, slower than float32)")
    return None


def matmul_seconds(dtype_name: str, repeats: int = 5) -> float:
    """Median seconds of one ``[256, 576] @ [576, 1536]`` matmul (a small LM's MLP) in ``dtype_name``."""
    import torch

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 576, generator=gen).to(dtype)
    w = torch.randn(576, 1536, generator=gen).to(dtype)
    times = []
    with torch.inference_mode():
        x @ w  # warm-up: kernel selection, first-touch allocation
        for _ in range(repeats):
            t0 = time.perf_counter()
            x @ w
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def machine_key() -> str:
    """What the cached benchmark depends on: processor, architecture, OS, torch and thread count."""
    import torch

    return "|".join((platform.processor() or platform.machine(), platform.machine(), platform.system(),
                     torch.__version__, str(torch.get_num_threads())))


def benchmarked_verdict(cache: Path | None = None) -> Bf16Verdict:
    """Time bf16 against float32 once per machine (cached in ``cache``) and say which is faster."""
    path = cache or cache_dir() / CACHE_NAME
    key = machine_key()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    entry = known.get(key)
    if not (isinstance(entry, dict) and {"float32_s", "bfloat16_s"} <= entry.keys()):
        # interleaved, so that a burst of other load hits both dtypes alike
        fp32 = min(matmul_seconds("float32"), matmul_seconds("float32"))
        bf16 = min(matmul_seconds("bfloat16"), matmul_seconds("bfloat16"))
        entry = {"float32_s": fp32, "bfloat16_s": bf16}
        known[key] = entry
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(known, indent=1))
        except OSError:  # a read-only cache only means the benchmark runs again next time
            pass
    speedup = float(entry["float32_s"]) / max(float(entry["bfloat16_s"]), 1e-12)
    native = speedup >= MIN_SPEEDUP
    return Bf16Verdict(native, f"micro-benchmark: bf16 matmul {speedup:.2f}x the speed of float32 "
                               f"({'>=' if native else '<'} {MIN_SPEEDUP:g}x; cached in {path})")


def cpu_bf16_verdict() -> Bf16Verdict:
    """Whether bf16 compute is the faster choice on this CPU: flags where clear, else the benchmark."""
    try:
        cpuinfo = CPUINFO_PATH.read_text(errors="replace") if os.path.isfile(CPUINFO_PATH) else ""
    except OSError:
        cpuinfo = ""
    return verdict_from_cpuinfo(cpuinfo, platform.machine()) or benchmarked_verdict()
