"""`emovec trace`: how a text projects onto every emotion vector, token by token."""
from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("text", required=False)
@click.option("--store", required=True, help="Store with emotion vectors (`emovec analyze` writes them).")
@click.option("--file", "text_file", default=None, type=click.Path(dir_okay=False), help="Read the text from a file.")
@click.option("--stimulus", default=None, help="Trace a stimulus of the store's per-token readout instead (no model).")
@click.option("--model", default=None, help="Model slug in the store (default: its only model).")
@click.option("--load", "load_as", default=None, help="Path or alias to load the model from (default: provenance).")
@click.option("--layer", "layers", multiple=True, type=int, help="hidden_states index (repeatable; default 2/3 depth).")
@click.option("--smooth", default=1, show_default=True, type=click.IntRange(min=1),
              help="Trailing moving average over N tokens.")
@click.option("--out", "out_dir", default="trace", show_default=True, type=click.Path(file_okay=False))
def trace(text: str | None, store: str, text_file: str | None, stimulus: str | None, model: str | None,
          load_as: str | None, layers: tuple[int, ...], smooth: int, out_dir: str) -> None:
    """Project TEXT (or --file, or a --stimulus of a per-token readout) onto every emotion vector.

    Writes trace.csv, one heatmap PNG and one HTML page per layer to --out.
    """
    from emovec.analyses import trace as tr
    from emovec.analyses.source import open_store
    from emovec.analyses.steer import default_layer, pick_model, read_vectors
    from emovec.analyses.store_model import load_store_model
    from emovec.common.files import require_writable_folder
    from emovec.report.trace_view import trace_heatmap_png, trace_html
    from emovec_store.errors import InputError

    given = [x for x in (text, text_file, stimulus) if x]
    if len(given) != 1:
        raise InputError("give exactly one of TEXT, --file or --stimulus")
    require_writable_folder(out_dir, "the trace folder")
    st = open_store(store)
    slug = pick_model(st, model)
    stored = [int(x) for x in read_vectors(st, slug)["layer"].values]
    units = tr.unit_vectors(st, slug, list(layers) or [default_layer(stored)])
    if stimulus:
        result = tr.trace_from_store(st, slug, stimulus, units)
    else:
        if text_file:
            try:
                text = Path(text_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"cannot read {text_file!r}: {exc}") from None
        assert text is not None
        loaded = load_store_model(st.model_attrs(slug), load_as)
        result = tr.trace_from_model(loaded.model, loaded.tokenizer, text, units)
    result = tr.smooth(result, smooth)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tr.trace_table(result).to_csv(out / "trace.csv", index=False)
    tokens = [str(t) for t in result["token"].values]
    emotions = [str(e) for e in result["emotion"].values]
    for layer in result["layer"].values:
        values = result.sel(layer=layer).transpose("emotion", "position").to_numpy()
        title = f"{slug} layer {int(layer)}" + (f", smoothed over {smooth} tokens" if smooth > 1 else "")
        (out / f"trace_layer{int(layer)}.png").write_bytes(trace_heatmap_png(values, emotions, tokens, title=title))
        (out / f"trace_layer{int(layer)}.html").write_text(trace_html(values, emotions, tokens, title=title))
    click.echo(f"{len(tokens)} tokens x {len(emotions)} emotions x {result.sizes['layer']} layer(s); wrote {out}/")
