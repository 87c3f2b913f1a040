"""`emovec steer`: dose–response of steering a model along its emotion vectors, against controls."""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import click


def _user_scorer(spec: str) -> tuple[str, Any]:
    from emovec_store.errors import InputError

    module, _, name = spec.partition(":")
    if not module or not name:
        raise InputError(f"--scorer {spec!r}: expected MODULE:FUNCTION (a callable: text -> number)")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"--scorer {spec!r}: {exc}") from None
    if not callable(fn):
        raise InputError(f"--scorer {spec!r} is not callable")
    return name, fn


@click.command()
@click.argument("store")
@click.option("--model", default=None, help="Model slug in STORE (default: its only model).")
@click.option("--load", "load_as", default=None,
              help="Path or alias to load the model from (default: the one the store's provenance names).")
@click.option("--emotion", "emotions", multiple=True, required=True, help="Emotion to steer towards (repeatable).")
@click.option("--layer", default=None, type=int,
              help="hidden_states index to steer (default: the stored layer nearest 2/3 of depth).")
@click.option("--strengths", default="-0.5:0.5:5", show_default=True,
              help="START:STOP:N or a,b,c; fractions of the layer's mean residual norm (0 always runs).")
@click.option("--rollouts", default=2, show_default=True, type=click.IntRange(min=1), help="Seeded rollouts per cell.")
@click.option("--prompts", "prompts_file", default=None, type=click.Path(dir_okay=False),
              help="Prompts file, one per line (default: 3 built-in neutral prompts).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of rollouts, random directions, bootstrap.")
@click.option("--random-controls", default=3, show_default=True, type=click.IntRange(min=1),
              help="Random directions of matched norm (p >= 1/(n+1)).")
@click.option("--max-new-tokens", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--from-position", "from_position", default=None, metavar="P|generated",
              help="Add the vector only at token positions >= P (0-based, prompt included); 'generated': "
                   "only at the generated tokens (default: every position).")
@click.option("--vectors", "vector_set", default=None, type=click.Choice(["denoised", "raw"]),
              help="Which stored vectors (default: denoised when present).")
@click.option("--scorer", "scorers", multiple=True, help="Extra scorer MODULE:FUNCTION(text) -> float (repeatable).")
@click.option("--sidecar", default=None, type=click.Path(), help="Derived-results store of a read-only STORE.")
@click.option("--device", default="cpu", show_default=True, help="cpu | cuda[:N] | mps")
@click.option("--threads", default=None, type=click.IntRange(min=1),
              help="CPU threads for torch [default: $EMOVEC_THREADS, else $OMP_NUM_THREADS, else one per core]. "
                   "On a busy machine one thread can be much faster.")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Output directory (default: STORE's name with .steer).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def steer(store: str, model: str | None, load_as: str | None, emotions: tuple[str, ...], layer: int | None,
          strengths: str, rollouts: int, prompts_file: str | None, seed: int, random_controls: int,
          max_new_tokens: int, from_position: str | None, vector_set: str | None, scorers: tuple[str, ...],
          sidecar: str | None, device: str, threads: int | None, out_dir: str | None, no_progress: bool) -> None:
    """Steer the model of STORE along each --emotion vector at several strengths and measure the effect.

    Controls: random directions of the same norm and the least similar emotion's vector. Scorers:
    VADER valence, NRC Emotion Lexicon affects (share of words), the unsteered model's emotion
    read-out of the text, its perplexity (fluency).
    Writes dose_response.csv, slopes.csv, generations.csv, results.json and dose_response.png.
    """
    from emovec.analyses import dose_response as dr
    from emovec.analyses.steer import steering_source
    from emovec.analyses.store_model import load_store_model
    from emovec.common.files import require_writable_folder
    from emovec.report.steer_plots import dose_response_png

    settings = dr.SteerSettings(emotions=list(emotions), strengths=dr.parse_strengths(strengths),
                                prompts=dr.read_prompts(prompts_file) if prompts_file else dr.NEUTRAL_PROMPTS[:3],
                                rollouts=rollouts, seed=seed, random_controls=random_controls,
                                max_new_tokens=max_new_tokens,
                                from_position=dr.parse_from_position(from_position) if from_position else None)
    extra = dict(_user_scorer(s) for s in scorers)
    source = steering_source(store, model, layer=layer, vector_set=vector_set, sidecar=sidecar)
    for e in emotions:
        source.unit(e)  # an unknown emotion is refused before the model loads
    if device.startswith("cpu"):
        import torch

        from emovec_store.engine.device import cpu_threads

        torch.set_num_threads(cpu_threads(threads)[0])
    out = Path(out_dir) if out_dir else Path(store.rstrip("/")).with_suffix(".steer")
    require_writable_folder(out, "the steering folder")
    loaded = load_store_model(source.model_attrs, load_as, device=device)
    from tqdm import tqdm

    with tqdm(desc="steer", unit="gen", disable=no_progress) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
        result = dr.run_steering(loaded.model, loaded.tokenizer, source, settings, extra_scorers=extra,
                                 progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    result.cells.to_csv(out / "dose_response.csv", index=False)
    result.slopes.to_csv(out / "slopes.csv", index=False)
    result.generations.to_csv(out / "generations.csv", index=False)
    payload = {**result.to_dict(), "examples": dr.examples(result).to_dict(orient="records")}
    (out / "results.json").write_text(json.dumps(payload, indent=1, default=float))
    shown = ["vader", "nrc:positive", "nrc:negative", *[f"readout:{e}" for e in emotions], *extra, "perplexity"]
    title = f"{source.model} layer {source.layer}: steering along emotion vectors"
    (out / "dose_response.png").write_bytes(dose_response_png(payload["cells"], shown, title=title))
    click.echo(f"layer {source.layer}, mean residual norm {source.mean_norm:.2f}; "
               f"{len(result.generations)} generations; controls: "
               + ", ".join(f"{t} -> {c}" for t, c in result.controls.items()))
    for row in result.slopes[result.slopes["scorer"].isin(shown)].itertuples():
        click.echo(f"  {row.emotion:<12} {row.scorer:<18} slope {row.slope:+.3f} "
                   f"[{row.ci_low:+.3f}, {row.ci_high:+.3f}]"
                   f"  |random| max {row.random_abs_max:.3f}  p {row.p_vs_random:.3f}"
                   f"  control {row.control_emotion} {row.control_slope:+.3f}")
    for cond, sides in result.perplexity_doubling.items():
        click.echo(f"  perplexity doubles ({cond}): +{sides['positive']} / {sides['negative']}")
    click.echo(f"wrote {out}/")
