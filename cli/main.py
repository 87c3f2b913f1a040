"""Root `emovec` command group; turns library errors into one-line messages with their exit codes.

The command modules import click and the standard library at the top and everything heavy (numpy,
pandas, zarr, xarray, torch, emovec_store) inside the command functions, so `emovec --help` and the
help of every command load none of it (tests/test_cli_help.py checks).
"""
from __future__ import annotations

import os
import sys
from typing import Any

import click

from emovec.common.errors import EmovecError


class EmovecGroup(click.Group):
    """A click group that prints an :class:`EmovecError` as one line and exits with its code.

    Set ``EMOVEC_DEBUG=1`` to get the traceback instead.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EmovecError as exc:
            if os.environ.get("EMOVEC_DEBUG") == "1":
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=EmovecGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="emovec", prog_name="emovec")  # looked up only when asked for
def cli() -> None:
    """emovec: how does an open-weight LLM represent emotion?"""


def _register() -> None:
    from . import analyze as analyze_cmds
    from . import corpus as corpus_cmds
    from . import extract as extract_cmds
    from . import models as models_cmds
    from . import store as store_cmds

    cli.add_command(analyze_cmds.analyze)
    cli.add_command(corpus_cmds.corpus)
    cli.add_command(extract_cmds.extract)
    cli.add_command(models_cmds.models)
    cli.add_command(store_cmds.store)
    cli.add_command(store_cmds.demo)


_register()
