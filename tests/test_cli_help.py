"""Every command's help works, and the CLI loads heavy libraries only in the commands that use them.

The import checks run in a fresh interpreter and look at ``sys.modules``, so their verdict does not
depend on how fast the machine is (``emovec --help`` is timed in the notes, not here).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from emovec.cli.main import cli

#: Libraries that cost 0.1-1 s to import each; `emovec --help` must load none of them.
HEAVY = ("numpy", "pandas", "xarray", "zarr", "dask", "torch", "transformers", "emovec_store")


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        out.append((*prefix, name))
        if isinstance(cmd, click.Group):
            out += _commands(cmd, (*prefix, name))
    return out


COMMANDS = _commands(cli)


def test_the_command_tree_is_complete() -> None:
    top = {c[0] for c in COMMANDS}
    assert {"analyze", "corpus", "demo", "extract", "models", "store"} <= top
    assert ("store", "info") in COMMANDS and ("corpus", "import") in COMMANDS


@pytest.mark.parametrize("args", [(), *COMMANDS], ids=lambda a: " ".join(a) or "emovec")
def test_help_of_every_command(args: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")
    cmd: click.Command = cli
    for name in args:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[name]
    first_line = (cmd.help or "").strip().splitlines()[0]
    assert first_line[:40] in " ".join(result.output.split())


def _loaded_after(code: str) -> dict[str, bool]:
    """Which HEAVY modules are in sys.modules after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _run_cli(*args: str) -> str:
    return ("from emovec.cli.main import cli\n"
            f"try:\n    cli({list(args)!r}, prog_name='emovec')\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code")


def test_help_imports_no_heavy_library() -> None:
    loaded = _loaded_after(_run_cli("--help"))
    assert not any(loaded.values()), [m for m, v in loaded.items() if v]


def test_subcommand_help_imports_no_heavy_library() -> None:
    for args in (("extract", "--help"), ("corpus", "import", "--help"), ("store", "info", "--help")):
        loaded = _loaded_after(_run_cli(*args))
        assert not any(loaded.values()), (args, [m for m, v in loaded.items() if v])


def test_models_list_imports_no_heavy_library() -> None:
    loaded = _loaded_after(_run_cli("models", "list"))  # the model table is in emovec_store.engine
    assert not any(v for m, v in loaded.items() if m != "emovec_store"), [m for m, v in loaded.items() if v]


def test_store_info_does_not_import_torch(tmp_path: Path) -> None:
    from emovec_store.demo import write_demo_store

    write_demo_store(tmp_path / "d.zarr", n=16, layers=2, hidden=8)
    loaded = _loaded_after(_run_cli("store", "info", str(tmp_path / "d.zarr")))
    assert loaded["emovec_store"] and loaded["zarr"]
    assert not loaded["torch"] and not loaded["transformers"]


def test_importing_the_engine_does_not_import_torch() -> None:
    loaded = _loaded_after("import emovec_store.engine")
    assert loaded["emovec_store"] and not loaded["torch"] and not loaded["transformers"]
