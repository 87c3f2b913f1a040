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
@click.option("--format", "fmt", default="safetensors", show_default=True,
              type=click.Choice(["safetensors", "npz", "gguf"]))
@click.option("--emotion", default=None, help="gguf: the one emotion of the control vector.")
@click.option("--layer", "layers", multiple=True, type=int,
              help="gguf: emovec layer to steer (>= 2; repeatable; default: the stored layer nearest 2/3 of depth).")
@click.option("--vectors", "vector_set", default=None, type=click.Choice(["denoised", "raw"]),
              help="Which stored vectors (default: denoised when present).")
@click.option("--sidecar", default=None, type=click.Path(), help="Derived-results store of a read-only STORE.")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Output file (default: STORE's name with .vectors.<format>).")
def export(store: str, model: str | None, fmt: str, emotion: str | None, layers: tuple[int, ...],
           vector_set: str | None, sidecar: str | None, out: str | None) -> None:
    """safetensors/npz: one (layer, hidden) tensor per emotion, `layers` (hidden_states indices) and
    `mean_norm`. gguf: a llama.cpp control vector of one --emotion, `direction.N` = mean norm x unit
    vector of emovec layer N+1 (docs/causal.md: loading into llama.cpp, steering-vectors and repeng)."""
    from emovec.analyses.export_vectors import export_vectors

    stem = store.rstrip("/").rsplit("/", 1)[-1].removesuffix(".zip").removesuffix(".zarr") or "store"
    default = f"{stem}.{emotion}.gguf" if fmt == "gguf" and emotion else f"{stem}.vectors.{fmt}"
    target = Path(out) if out else Path(default)
    path = export_vectors(store, target, fmt=fmt, model=model, vector_set=vector_set, sidecar=sidecar,
                          emotion=emotion, layers=layers or None)
    click.echo(f"wrote {path}")
