"""The compute dtype policy (bf16 on CPUs with native bf16 matmuls), its record, and bf16's accuracy."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emovec_store.engine import cpu_bf16, device
from emovec_store.engine.device import DevicePlan
from emovec_store.engine.load import load
from emovec_store.engine.plan import format_and_tokenize
from emovec_store.engine.readouts import parse_readout
from emovec_store.engine.resolve import resolve
from emovec_store.engine.runner import BatchRunner

from .test_engine_models import TEXTS
from .tiny_models import build_model

X86_WITH_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\n"
X86_WITHOUT = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n"
ARM_WITH_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.fixture
def simulated_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point the policy at a fake /proc/cpuinfo on a given architecture; the benchmark cache in tmp."""
    monkeypatch.setenv("EMOVEC_CACHE_DIR", str(tmp_path / "cache"))

    def simulate(cpuinfo: str | None, machine: str = "x86_64") -> None:
        path = tmp_path / "cpuinfo"
        if cpuinfo is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(cpuinfo)
        monkeypatch.setattr(cpu_bf16, "CPUINFO_PATH", path)
        monkeypatch.setattr(cpu_bf16.platform, "machine", lambda: machine)

    return simulate


def test_flags_decide_where_they_are_clear() -> None:
    assert cpu_bf16.verdict_from_cpuinfo(X86_WITH_BF16, "x86_64") == cpu_bf16.Bf16Verdict(
        True, "cpu flags: avx512_bf16 (native bf16 matmuls)")
    assert cpu_bf16.verdict_from_cpuinfo(X86_WITHOUT, "x86_64").native is False  # type: ignore[union-attr]
    assert cpu_bf16.verdict_from_cpuinfo("flags : amx_bf16 avx2\n", "x86_64").native is True  # type: ignore[union-attr]
    assert cpu_bf16.verdict_from_cpuinfo(ARM_WITH_BF16, "aarch64").native is True  # type: ignore[union-attr]
    assert cpu_bf16.verdict_from_cpuinfo("Features : fp asimd\n", "aarch64").native is False  # type: ignore[union-attr]
    assert cpu_bf16.verdict_from_cpuinfo("", "x86_64") is None  # no flags listed: unclear
    assert cpu_bf16.verdict_from_cpuinfo(X86_WITH_BF16, "riscv64") is None  # an architecture we cannot read


def test_auto_on_cpu_picks_bf16_with_native_flags_and_float32_without(simulated_cpu) -> None:
    simulated_cpu(X86_WITH_BF16)
    plan = device.choose("cpu", "auto")
    assert plan.compute_dtype == "bfloat16" and "avx512_bf16" in plan.compute_dtype_reason
    simulated_cpu(X86_WITHOUT)
    plan = device.choose("cpu", "auto")
    assert plan.compute_dtype == "float32" and "no avx512_bf16" in plan.compute_dtype_reason
    simulated_cpu(ARM_WITH_BF16, "aarch64")
    assert device.choose("cpu", "auto").compute_dtype == "bfloat16"
    simulated_cpu(X86_WITH_BF16)  # an explicit dtype is never overridden
    assert (device.choose("cpu", "float32").compute_dtype, device.choose("cpu", "fp32").compute_dtype_reason) == (
        "float32", "requested: float32")


def test_unclear_flags_run_the_benchmark_once_and_cache_it(simulated_cpu, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    simulated_cpu(None, "arm64")  # e.g. macOS: no /proc/cpuinfo
    timings = {"float32": 2e-3, "bfloat16": 1e-3}  # simulated: bf16 twice as fast
    calls: list[str] = []

    def timed(name: str, repeats: int = 5) -> float:
        calls.append(name)
        return timings[name]

    monkeypatch.setattr(cpu_bf16, "matmul_seconds", timed)
    plan = device.choose("cpu", "auto")
    assert plan.compute_dtype == "bfloat16" and "2.00x" in plan.compute_dtype_reason
    cache = tmp_path / "cache" / cpu_bf16.CACHE_NAME
    (entry,) = json.loads(cache.read_text()).values()
    assert entry == {"float32_s": 2e-3, "bfloat16_s": 1e-3}
    n_calls = len(calls)
    timings["bfloat16"] = 1.0  # a second run would now say float32: the cached verdict stands
    assert device.choose("cpu", "auto").compute_dtype == "bfloat16" and len(calls) == n_calls
    cache.unlink()
    assert device.choose("cpu", "auto").compute_dtype == "float32" and len(calls) > n_calls


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_bf16_pooled_readouts_stay_within_a_cosine_bound_of_float32(arch: str, tmp_path: Path) -> None:
    model = build_model(arch, tmp_path / arch)
    spec = parse_readout("mean_from:5")
    pooled = {}
    for dtype in ("float32", "bfloat16"):
        loaded = load(resolve(str(model)), device="cpu", compute_dtype=dtype)
        ids, _ = format_and_tokenize(loaded.tokenizer, TEXTS, spec, None)
        pooled[dtype] = BatchRunner(loaded, [0, 1, 2, 3], DevicePlan("cpu", dtype, None, 1, 0)).run(ids, spec)
    fp32, bf16 = pooled["float32"], pooled["bfloat16"]
    assert bf16.dtype == np.float32  # pooled in float32 whatever the compute dtype
    assert not np.array_equal(fp32[1:], bf16[1:])  # the bf16 run really computed in bf16
    cosine = (fp32 * bf16).sum(-1) / (np.linalg.norm(fp32, axis=-1) * np.linalg.norm(bf16, axis=-1))
    # measured on these tiny random models: min 0.99991 (layer 3); bf16 keeps 8 significant bits
    assert cosine.min() >= 0.999


def test_an_extraction_records_the_compute_dtype_and_why(simulated_cpu, tmp_path: Path) -> None:
    import emovec_store
    from emovec.corpus import load_corpus
    from emovec_store.engine import extract

    model = build_model("llama", tmp_path / "m")
    stimuli = load_corpus("emovec").iloc[:6].reset_index(drop=True)
    simulated_cpu(X86_WITH_BF16)
    result = extract(str(model), stimuli, tmp_path / "bf16.zarr", pooling=["mean_from:50"], progress=False)
    attrs = emovec_store.open(tmp_path / "bf16.zarr").model_attrs(result.model)
    assert attrs["compute_dtype"] == "bfloat16" and "avx512_bf16" in attrs["compute_dtype_reason"]
    simulated_cpu(X86_WITHOUT)
    extract(str(model), stimuli, tmp_path / "fp32.zarr", pooling=["mean_from:50"], progress=False)
    attrs = emovec_store.open(tmp_path / "fp32.zarr").model_attrs(result.model)
    assert attrs["compute_dtype"] == "float32" and "no avx512_bf16" in attrs["compute_dtype_reason"]
