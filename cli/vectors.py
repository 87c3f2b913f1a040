"""`emovec vectors`: the emotion vectors of a store, for other tools."""
from __future__ import annotations

from pathlib import Path

import click


@click.group()
def vectors() -> None:
    """Emotion vectors written by `emovec analyze`."""


@vectors.command("export")
@click.argument("store")
@click.option("--model", default=None, help="Model slug in STORE (default: its only model).")
@click.option("--format", "fmt", default="safetensors", show_default=True, type=click.Choice(["safetensors", "npz"]))
@click.option("--vectors", "vector_set", default=None, type=click.Choice(["denoised", "raw"]),
              help="Which stored vectors (default: denoised when present).")
@click.option("--sidecar", default=None, type=click.Path(), help="Derived-results store of a read-only STORE.")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Output file (default: STORE's name with .vectors.<format>).")
def export(store: str, model: str | None, fmt: str, vector_set: str | None, sidecar: str | None,
           out: str | None) -> None:
    """Write one (layer, hidden) tensor per emotion, `layers` (hidden_states indices) and `mean_norm`
    (docs/causal.md says how to load them into steering-vectors and repeng)."""
    from emovec.analyses.export_vectors import export_vectors

    stem = store.rstrip("/").rsplit("/", 1)[-1].removesuffix(".zip").removesuffix(".zarr") or "store"
    target = Path(out) if out else Path(f"{stem}.vectors.{fmt}")
    path = export_vectors(store, target, fmt=fmt, model=model, vector_set=vector_set, sidecar=sidecar)
    click.echo(f"wrote {path}")
