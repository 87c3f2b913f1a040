"""Captures equal output_hidden_states for every architecture; batching changes nothing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from emovec_store.engine.blocks import find_blocks, find_final_norm
from emovec_store.engine.device import DevicePlan
from emovec_store.engine.hooks import StopForward, capture
from emovec_store.engine.load import load
from emovec_store.engine.plan import format_and_tokenize
from emovec_store.engine.readouts import parse_readout
from emovec_store.engine.resolve import resolve
from emovec_store.engine.runner import BatchRunner

from .tiny_models import ARCHS, build_model

TEXTS = [
    "she opened the door and the rain came in .",
    "my mother was at the window when the train was not there , so we went back home .",
    "he had a phone in his hand .",
    "the dog ran out of the room and down to the car , then back to the door , and then it was night "
    "again and the morning was a long time from there .",
]


@pytest.fixture(scope="module", params=sorted(ARCHS))
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    directory = build_model(request.param, tmp_path_factory.mktemp(request.param))
    return load(resolve(str(directory)), device="cpu", compute_dtype="float32")


def test_hooks_equal_output_hidden_states(tiny) -> None:
    model, tok = tiny.model, tiny.tokenizer
    n = model.config.num_hidden_layers
    enc = tok(TEXTS[1], return_tensors="pt")
    with torch.inference_mode():
        reference = model(**enc, output_hidden_states=True).hidden_states
        path, blocks = find_blocks(model)
        with capture(blocks, list(range(n + 1)), lambda h: h.clone()) as got:
            try:
                model(**enc)
            except StopForward:
                pass
        for layer in range(n):
            torch.testing.assert_close(got[layer], reference[layer], rtol=1e-5, atol=1e-5)
        # HF's last entry has the final norm applied; our last capture is the raw residual
        norm = find_final_norm(model, path)
        assert norm is not None
        torch.testing.assert_close(norm(got[n]), reference[n], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(got[n], reference[n])


def test_forward_stops_at_the_deepest_layer_and_hooks_are_removed(tiny) -> None:
    model = tiny.model
    _, blocks = find_blocks(model)
    calls: list[str] = []
    before = [(len(b._forward_hooks), len(b._forward_pre_hooks)) for b in blocks]  # HF may keep its own
    spies = [blocks[-1].register_forward_hook(lambda *a: calls.append("last block")),
             model.get_output_embeddings().register_forward_hook(lambda *a: calls.append("lm head"))]
    try:
        runner = BatchRunner(tiny, [0, 1], DevicePlan("cpu", "float32", None, 1, 0))
        out = runner.run([[5, 6, 7]], parse_readout("last"))
        assert out.shape == (2, 1, model.config.hidden_size if hasattr(model.config, "hidden_size")
                             else model.config.n_embd)
        assert calls == []
    finally:
        for s in spies:
            s.remove()
    assert [(len(b._forward_hooks), len(b._forward_pre_hooks)) for b in blocks] == before


@pytest.mark.parametrize("spec", ["mean_from:5", "mean_from:50", "mean_from:5:short=all", "mean", "mean:skip=1",
                                  "last", "assistant", "tokens"])
def test_batched_equals_one_at_a_time(tmp_path: Path, spec: str) -> None:
    loaded = load(resolve(str(build_model("llama", tmp_path / "m"))), device="cpu", compute_dtype="float32")
    readout = parse_readout(spec)
    ids, _ = format_and_tokenize(loaded.tokenizer, TEXTS, readout, None)
    runner = BatchRunner(loaded, [0, 1, 2, 3], DevicePlan("cpu", "float32", None, 1, 0))
    batched = runner.run(ids, readout)
    single = np.concatenate([runner.run([t], readout) for t in ids], axis=1)
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)
    if readout.kind == "mean_from" and readout.start == 5:
        # equals a numpy pooling of the per-token capture
        tokens = runner.run([ids[1]], parse_readout("tokens"))
        np.testing.assert_allclose(single[:, 1], tokens[:, 5:].mean(axis=1), rtol=1e-5, atol=1e-6)


def test_short_text_rule_is_explicit() -> None:
    half, whole = parse_readout("mean_from:50"), parse_readout("mean_from:50:short=all")
    assert half.window(80) == (50, 80) and whole.window(80) == (50, 80)
    assert half.window(30) == (15, 30) and whole.window(30) == (0, 30)
    assert half.is_short(50) and not half.is_short(51)
    assert "n//2" in half.short_text_rule and half.name == "mean_from_50"
    assert whole.name == "mean_from_50_short_all"
    assert parse_readout("assistant@implicit,intensity").kinds == ("implicit", "intensity")


def test_device_policy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from emovec_store.engine import cpu_bf16, device
    from emovec_store.errors import InputError

    for name in device.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    cpuinfo = tmp_path / "cpuinfo"  # a CPU without native bf16 (tests/test_engine_dtype.py: with)
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2\n")
    monkeypatch.setattr(cpu_bf16, "CPUINFO_PATH", cpuinfo)
    monkeypatch.setattr(cpu_bf16.platform, "machine", lambda: "x86_64")
    plan = device.choose("cpu", "auto")
    assert plan.compute_dtype == "float32" and plan.threads == device.available_cores()
    assert torch.get_num_threads() == plan.threads
    with pytest.raises(InputError, match="no CUDA device"):
        device.choose("cuda", "auto")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch, "__version__", "2.8.1")
    with pytest.raises(InputError, match="pytorch #161640"):
        device.choose("mps", "auto")
    monkeypatch.setattr(torch, "__version__", "2.9.0")
    mps = device.choose("mps", "auto", model_type="gemma3_text")
    assert (mps.compute_dtype, mps.bucket) == ("float32", 32)
    assert device.choose("mps", "auto", model_type="llama").compute_dtype == "float16"


def test_padded_lengths_are_bucketed_without_changing_results(tmp_path: Path) -> None:
    loaded = load(resolve(str(build_model("qwen2", tmp_path / "m"))), device="cpu", compute_dtype="float32")
    readout = parse_readout("mean_from:5")
    ids, _ = format_and_tokenize(loaded.tokenizer, TEXTS, readout, None)
    plain = BatchRunner(loaded, [1, 3], DevicePlan("cpu", "float32", None, 1, 0)).run(ids, readout)
    bucketed = BatchRunner(loaded, [1, 3], DevicePlan("cpu", "float32", None, 32, 0)).run(ids, readout)
    np.testing.assert_allclose(bucketed, plain, rtol=1e-4, atol=1e-5)


def test_cpu_threads_come_from_the_option_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from emovec_store.engine import device
    from emovec_store.errors import InputError

    for name in device.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert device.cpu_threads() == (device.available_cores(), "cores")
    monkeypatch.setenv("OMP_NUM_THREADS", "3,1")  # OpenMP's nested form: the outer level is ours
    assert device.cpu_threads() == (3, "$OMP_NUM_THREADS")
    monkeypatch.setenv("EMOVEC_THREADS", "2")
    assert device.cpu_threads() == (2, "$EMOVEC_THREADS")
    assert device.cpu_threads(1) == (1, "--threads")
    before = torch.get_num_threads()
    try:
        assert device.choose("cpu", "auto").threads == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    monkeypatch.setenv("EMOVEC_THREADS", "many")
    with pytest.raises(InputError, match="EMOVEC_THREADS must be a positive integer"):
        device.cpu_threads()
