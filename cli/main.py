"""Root `emovec` command group; turns library errors into one-line messages with their exit codes.

The command modules import click and the standard library at the top and everything heavy (numpy,
pandas, zarr, xarray, torch, emovec_store) inside the command functions, so `emovec --help` and the
help of every command load none of it (tests/test_cli_help.py checks).
"""
from __future__ import annotations

import atexit
import inspect
import logging
import os
import sys
from typing import Any

import click

from emovec.common.errors import EmovecError, Interrupted, StoreError

#: Exit code of a filesystem error no command reported itself (that of store problems).
FILESYSTEM_EXIT_CODE = StoreError.exit_code


class EmovecGroup(click.Group):
    """A click group that prints an :class:`EmovecError` as one line and exits with its code.

    Ctrl-C exits 130 with one line: the command's own :class:`Interrupted` message where it has one
    (``extract`` says what was saved and that rerunning resumes), a generic line otherwise. An
    ``OSError`` no command turned into its own message (an output folder on a read-only filesystem, a
    full disk, no permission) is one line naming the file, exit 3 like other store and file problems.
    Set ``EMOVEC_DEBUG=1`` to get the traceback instead.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EmovecError as exc:
            if os.environ.get("EMOVEC_DEBUG") == "1":
                raise
            click.echo(f"{exc.label}: {exc}", err=True)
            atexit.unregister(_quiet_at_exit)  # once, however many commands fail in this process
            atexit.register(_quiet_at_exit)
            sys.exit(exc.exit_code)
        except OSError as exc:  # a folder or file the command could not read or write: one line, not a traceback
            if os.environ.get("EMOVEC_DEBUG") == "1":
                raise
            if isinstance(exc, BrokenPipeError):  # `emovec … | head`: the reader left; nothing to say
                sys.exit(1)
            where = f": {exc.filename!r}" if exc.filename else ""
            click.echo(f"Error: {exc.strerror or exc}{where}", err=True)
            sys.exit(FILESYSTEM_EXIT_CODE)
        except KeyboardInterrupt:  # click would print "Aborted!" and exit 1, the integrity-failure code
            if os.environ.get("EMOVEC_DEBUG") == "1":
                raise
            click.echo("Interrupted: stopped before the command finished; run it again to redo it", err=True)
            sys.exit(Interrupted.exit_code)


def _quiet_abandoned_reads(unraisable: Any) -> None:
    """Python's hook for unraisable exceptions once a command has failed with its one line and the
    process exits: reads of a URL store still in flight (zarr reads several keys at once, and the
    first failure ends the command) are closed at exit, and their own failures would print as
    "Exception ignored ... Traceback". They have nothing to add: nothing is said for coroutines, and
    anything else goes to Python's default hook."""
    if inspect.iscoroutine(unraisable.object):
        return
    sys.__unraisablehook__(unraisable)


def _quiet_at_exit() -> None:
    sys.unraisablehook = _quiet_abandoned_reads


class _EchoHandler(logging.Handler):
    """Notes of the ``emovec`` logger (downloads, cache writes) as lines on stderr, through click."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


def _show_notes() -> None:
    """Let the library say what it fetches and writes (INFO on the ``emovec`` logger), once per process."""
    log = logging.getLogger("emovec")
    if not any(isinstance(h, _EchoHandler) for h in log.handlers):
        log.addHandler(_EchoHandler())
    log.setLevel(logging.INFO)


@click.group(cls=EmovecGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="emovec", prog_name="emovec")  # looked up only when asked for
def cli() -> None:
    """emovec: how does an open-weight LLM represent emotion?"""
    _show_notes()


def _register() -> None:
    from . import analyze as analyze_cmds
    from . import compare as compare_cmds
    from . import corpus as corpus_cmds
    from . import extract as extract_cmds
    from . import models as models_cmds
    from . import steer as steer_cmds
    from . import store as store_cmds
    from . import trace as trace_cmds
    from . import vectors as vectors_cmds

    cli.add_command(analyze_cmds.analyze)
    cli.add_command(corpus_cmds.corpus)
    cli.add_command(extract_cmds.extract)
    cli.add_command(models_cmds.models)
    cli.add_command(store_cmds.store)
    cli.add_command(store_cmds.demo)
    cli.add_command(steer_cmds.steer)
    cli.add_command(vectors_cmds.vectors)
    cli.add_command(trace_cmds.trace)
    cli.add_command(compare_cmds.compare)


_register()
