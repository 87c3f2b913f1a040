"""Every CLI subcommand on hostile inputs ends in a one-line error with a documented exit code, never
a traceback (issue #8). The subcommands are discovered from the click group, so a new command is
covered as soon as it is registered.

Exit codes (common/errors.py): 1 integrity problems (``store verify``, ``corpus validate``), 2 bad
input (click's usage errors too), 3 store problems.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from emovec.cli.main import cli

DOCUMENTED_EXIT_CODES = {1, 2, 3}

#: (command, hostile input or option) cases that still end in a traceback in code other helpers are
#: changing; left out here and reported to the lead, to be put back once fixed
LEFT_OUT: dict[tuple[str, str], str] = {}


def _leaves(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _leaves(command, (*prefix, name))
        else:
            yield (*prefix, name), command


COMMANDS = dict(_leaves(cli))


def _hostile_paths(root: Path) -> dict[str, Path]:
    """Inputs that are wrong wherever a path (store, corpus, model, source) is expected."""
    root.mkdir(parents=True, exist_ok=True)
    regular = root / "regular-file.zarr"
    regular.write_text("not a store, corpus or model\n")
    garbage_zip = root / "garbage.zip"
    garbage_zip.write_bytes(b"PK\x03\x04" + os.urandom(200))
    corpus = root / "garbage-corpus"
    corpus.mkdir()
    (corpus / "emotions.json").write_text("[" * 100_000)  # nested past Python's recursion limit
    (corpus / "stories").write_text("a file where a directory belongs")
    store = root / "garbage-store.zarr"
    store.mkdir()
    (store / "zarr.json").write_bytes(b"\x00\xff garbage")
    loop = root / "loop.zarr"
    os.symlink(loop.name, loop)
    return {"missing": root / "missing", "regular-file": regular, "garbage-zip": garbage_zip, "garbage-corpus": corpus,
            "garbage-store": store, "symlink-loop": loop, "under-a-file": regular / "child"}


#: (command, hostile input) pairs where the input is not wrong: `demo` creates the store it is given
NOT_HOSTILE = {("demo", "missing")}


def _inputs(command: click.Command) -> list[click.Parameter]:
    """The parameters a hostile value goes into: every required one, or when nothing is required the
    first optional argument or path option, so that the command reads it."""
    required = [p for p in command.params if p.required]
    if required:
        return required
    first = next((p for p in command.params if isinstance(p, click.Argument)), None) or next(
        (p for p in command.params if isinstance(p, click.Option) and isinstance(p.type, click.Path)), None)
    return [first] if first is not None else []


def _arguments(command: click.Command, value: str, override: tuple[click.Option, str] | None = None) -> list[str]:
    """The command line with ``value`` in each of :func:`_inputs` (a choice gets its first choice), and
    ``override`` (an option and its value) added or put in place of that option's input."""
    args: list[str] = []
    for param in _inputs(command):
        filled = param.type.choices[0] if isinstance(param.type, click.Choice) else value
        if override is not None and param is override[0]:
            continue
        if isinstance(param, click.Option):
            args += [param.opts[0], str(filled)]
        else:
            args.append(str(filled))
    if override is not None:
        args += [override[0].opts[0], override[1]]
    return args


def _problem(result: Result) -> str | None:
    """What is wrong with how a command ended on hostile input, or None when it ended well."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return f"{type(result.exception).__name__}: {str(result.exception)[:200]}"
    if "Traceback" in result.output:
        return "a traceback in the output"
    if result.exit_code not in DOCUMENTED_EXIT_CODES:
        return f"exit {result.exit_code}"
    if result.exit_code != 1 and "Error" not in result.stderr:  # exit 1 reports problems on stdout
        return "no error line on stderr"
    return None


def _run_all(runner: CliRunner, command_lines: list[list[str]]) -> None:
    """Run every command line; fail with the list of those that did not end well (all, not the first)."""
    failures = []
    for args in command_lines:
        problem = _problem(runner.invoke(cli, args))
        if problem is not None:
            failures.append(f"emovec {' '.join(args)}: {problem}")
    assert not failures, "\n".join(failures)


def test_commands_are_discovered() -> None:
    names = {" ".join(path) for path in COMMANDS}
    assert {"extract", "analyze", "corpus import", "store verify", "models pull", "demo"} <= names


@pytest.mark.parametrize("path", [p for p, c in COMMANDS.items() if c.params], ids=" ".join)  # not `models list`
def test_hostile_paths_end_in_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             path: tuple[str, ...]) -> None:
    command = COMMANDS[path]
    monkeypatch.chdir(tmp_path)  # whatever a command writes to a relative path lands here, not in the checkout
    hostile = _hostile_paths(tmp_path / "inputs")
    _run_all(CliRunner(), [[*path, *_arguments(command, str(value))] for name, value in hostile.items()
                           if (" ".join(path), name) not in {*LEFT_OUT, *NOT_HOSTILE}])


BAD_OPTION_VALUES = ("nonsense", "-1", "")


def _options(command: click.Command) -> list[click.Option]:
    """Options that take a value; path options are left to the hostile paths (any name is a valid path)."""
    return [p for p in command.params if isinstance(p, click.Option) and not p.is_flag and p.name != "help"
            and not isinstance(p.type, click.Path)]


@pytest.mark.parametrize("path", [p for p, c in COMMANDS.items() if _options(c)], ids=" ".join)
def test_bad_option_values_end_in_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                path: tuple[str, ...]) -> None:
    command = COMMANDS[path]
    missing = str(tmp_path / "missing.zarr")
    monkeypatch.chdir(tmp_path)
    _run_all(CliRunner(), [[*path, *_arguments(command, missing, (option, bad))]
                           for option in _options(command) for bad in BAD_OPTION_VALUES
                           if (" ".join(path), option.opts[0]) not in LEFT_OUT])
