"""`emovec models list|pull|rm`: the built-in model aliases and emovec's model cache."""
from __future__ import annotations

import os

import click

# emovec_store.engine.resolve needs only the standard library: `emovec models list` stays fast.


def _mib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


@click.group()
def models() -> None:
    """Built-in models that install offline from PyPI, and the cache emovec keeps for models."""


@models.command(name="list")
def list_cmd() -> None:
    """Aliases, whether they are installed and their size, and what each holds in the cache.

    The cache ($EMOVEC_CACHE_DIR, default ~/.cache/emovec) holds assembled GGUF files and the float32
    weights dequantized from each GGUF on its first load; `emovec models rm` frees it.
    """
    from emovec_store.engine.resolve import ALIASES, alias_size, cache_dir, cache_entries, path_size

    entries = cache_entries()
    sizes = {name: sum(path_size(p) for p in paths) for name, paths in entries.items()}
    for name, alias in ALIASES.items():
        size = alias_size(alias)
        state = (f"installed, {_mib(size)}" if size is not None
                 else f"not installed (emovec models pull {name}: about {alias.download_mib} MiB from PyPI)")
        cached = f"cache {_mib(sizes[name])}" if entries[name] else "nothing cached"
        click.echo(f"{name:<14} {alias.description}  [{state}; {cached}]")
    root = cache_dir()
    click.echo(f"\ncache {root} ({'$EMOVEC_CACHE_DIR' if _env_cache() else 'set $EMOVEC_CACHE_DIR to move it'}): "
               f"{_mib(sum(sizes.values()))}")
    for name, paths in entries.items():
        for p in paths:
            what = "assembled GGUF" if p.parent.name == "gguf" else "dequantized float32 weights"
            owner = name or "GGUF given by path"
            label = f"{p.parent.name}/{p.name}"
            click.echo(f"  {label:<52} {_mib(path_size(p)):>9}  {what} ({owner})")
    if any(entries.values()):
        click.echo("free it: emovec models rm ALIAS (or an entry above, e.g. dequantized/NAME); --all for everything")


def _env_cache() -> bool:
    return bool(os.environ.get("EMOVEC_CACHE_DIR"))


@models.command()
@click.argument("alias")
def pull(alias: str) -> None:
    """Install an alias's packages (pip --no-deps) and assemble its GGUF file."""
    from emovec_store.engine.resolve import pull as pull_alias

    click.echo(f"{alias}: {pull_alias(alias)}")


@models.command(name="rm")
@click.argument("names", nargs=-1)
@click.option("--all", "remove_all", is_flag=True, help="Remove every cache entry.")
def rm_cmd(names: tuple[str, ...], remove_all: bool) -> None:
    """Remove the cache entries of model ALIASes (or named entries of `emovec models list`).

    The next use assembles or dequantizes again. Installed packages stay: `pip uninstall` them.
    """
    from emovec_store.engine.resolve import ALIASES, cache_dir, cache_entries, remove_cache

    if remove_all == bool(names):
        raise click.UsageError("name one or more aliases or cache entries, or pass --all")
    if remove_all:
        names = tuple(n for n, paths in cache_entries().items() if n and paths)
        names += tuple(f"{p.parent.name}/{p.name}" for p in cache_entries()[""])
    removed = [r for name in names for r in remove_cache(name)]
    root = cache_dir()
    for path, size in removed:
        click.echo(f"removed {path} ({_mib(size)})")
    click.echo(f"freed {_mib(sum(s for _, s in removed))} in {root}" if removed else f"nothing cached for "
               f"{', '.join(names) or 'any model'} in {root}")
    packages = [p for n in names if n in ALIASES for p in ALIASES[n].packages]
    if packages and not remove_all:
        click.echo(f"the installed packages stay; remove them with: pip uninstall {' '.join(packages)}")
