from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep caches and debug switches of the developer's machine out of tests."""
    monkeypatch.setenv("EMOVEC_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("EMOVEC_DEBUG", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a test module: tiny models gain nothing from more, and lose a lot on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of a tiny random llama (config, weights, tokenizer), built once per test module."""
    from tests.tiny_models import build_model

    return build_model("llama", tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="module")
def tiny_llama(llama_dir: Path) -> tuple[Any, Any]:
    """A tiny random llama (model in eval mode, tokenizer), built once per test module."""
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(llama_dir).eval()
    return model, transformers.AutoTokenizer.from_pretrained(llama_dir)


@pytest.fixture
def unreachable_scheduler() -> str:
    """A dask scheduler address on localhost where nothing listens (a port bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"
