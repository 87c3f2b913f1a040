"""`emovec analyze`: the emotion-geometry suite on a store, written back, with a report."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import click


def default_out_dir(store: str) -> Path:
    """``runs/smollm2.zarr`` → ``runs/smollm2.analysis`` (a URL: ``./<name>.analysis``)."""
    name = store.rstrip("/").rsplit("/", 1)[-1]
    stem = name.removesuffix(".zip").removesuffix(".zarr") or "store"
    parent = Path(store.rstrip("/")).parent if "://" not in store else Path.cwd()
    return parent / f"{stem}.analysis"


@click.command()
@click.argument("store")
@click.option("--model", "models", multiple=True, help="Model slug (repeatable; default: every model).")
@click.option("--readout", default=None, help="Story readout (default: mean_from_50).")
@click.option("--layers", default=None, help="all | every:K | a,b,c (default: every stored layer).")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Report directory (default: STORE's name with .analysis).")
@click.option("--permutations", "n_permutations", default=1000, show_default=True, type=click.IntRange(min=99),
              help="Permutations per test; p = (k+1)/(n+1).")
@click.option("--bootstrap", "n_bootstrap", default=1000, show_default=True, type=click.IntRange(min=99),
              help="Bootstrap resamples per CI.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of every resampling.")
@click.option("--denoise", default=0.5, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Neutral-PCA variance to project out of the vectors.")
@click.option("--no-denoise", is_flag=True, help="Use raw vectors.")
@click.option("--baseline", default="mean", show_default=True, type=click.Choice(["mean", "neutral"]),
              help="Vectors are class means minus the mean of class means, or minus the neutral mean.")
@click.option("--no-lens", is_flag=True, help="Skip the logit lens (it loads the model).")
@click.option("--no-write", is_flag=True, help="Do not write vectors back into the store.")
@click.option("--sidecar", default=None, type=click.Path(), help="Derived-results store for read-only stores.")
@click.option("--norms", default=None, type=click.Path(dir_okay=False),
              help="TSV of human norms (word, valence, arousal[, dominance]) for emotions the store has none for.")
@click.option("--layer-block", default=8, show_default=True, type=click.IntRange(min=1),
              help="Layers analysed together; memory grows with it, the results do not change.")
@click.option("--scheduler", default=None, help="dask.distributed scheduler address (default: local threads).")
@click.option("--json", "as_json", is_flag=True, help="Print results.json to stdout as well.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def analyze(store: str, models: tuple[str, ...], readout: str | None, layers: str | None, out_dir: str | None,
            n_permutations: int, n_bootstrap: int, seed: int, denoise: float, no_denoise: bool, baseline: str,
            no_lens: bool, no_write: bool, sidecar: str | None, norms: str | None, layer_block: int,
            scheduler: str | None, as_json: bool, no_progress: bool) -> None:
    """Emotion vectors, geometry against human norms, probes against text baselines, implicit
    scenarios, intensity, layers and the logit lens for every model of STORE.

    Writes REPORT.md, report.html, results.json and PNG plots to --out (replacing what an earlier run
    wrote there), and the vectors to the store's derived/ group.
    """
    from emovec.analyses.pipeline import STEPS, AnalyzeOptions
    from emovec.analyses.pipeline import analyze as run_analyze
    from emovec.analyses.scale import scheduler_context
    from emovec.common.files import require_writable_folder
    from emovec.report import render

    options = AnalyzeOptions(models=models or None, readout=readout, layers=layers, n_permutations=n_permutations,
                             n_bootstrap=n_bootstrap, seed=seed, denoise=None if no_denoise else denoise,
                             baseline=baseline, lens=not no_lens, write=not no_write,  # type: ignore[arg-type]
                             sidecar=sidecar, norms=norms, layer_block=layer_block)
    command = command_line(click.get_current_context())
    out = Path(out_dir) if out_dir else default_out_dir(store)
    require_writable_folder(out, "the report folder")
    from tqdm import tqdm

    with scheduler_context(scheduler):
        bar = tqdm(total=len(STEPS) * max(1, len(models) or 1), desc="analyze", unit="step",
                   disable=no_progress, file=sys.stderr)
        finished = [0, 0]  # steps of the models already done; the current model's total

        def progress(step: str, done: int, total: int) -> None:
            if done == 0 and bar.n > finished[0]:  # the next model starts
                finished[0] = bar.n
            bar.total = max(bar.total, finished[0] + total)
            bar.update(finished[0] + done - bar.n)
            bar.set_postfix_str(step)

        results = run_analyze(store, options, command=command, progress=progress)
        bar.update(bar.total - bar.n)
        bar.close()
    files = render(results, out)
    if as_json:
        click.echo(json.dumps(results, indent=1))
        return
    for line in headline_lines(results):
        click.echo(line)
    click.echo(f"report: {out / 'REPORT.md'} and {out / 'report.html'} ({len(files)} files)")


def command_line(ctx: click.Context) -> str:
    """The command as the user gave it (options they set, in declaration order), for results.json."""
    words = ["emovec", ctx.info_name or "analyze"]
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name or "") != click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name or ""]
        if isinstance(param, click.Argument):
            words.append(str(value))
        elif isinstance(param, click.Option) and param.is_flag:
            words.append(param.opts[0])
        else:
            for item in value if isinstance(value, tuple) else (value,):
                words += [param.opts[0], str(item)]
    return " ".join(shlex.quote(w) for w in words)


def headline_lines(results: dict[str, Any]) -> list[str]:
    """One line per model: the CV-fitted valence r and the probe margin at the default layer."""
    lines = []
    for model, res in results["models"].items():
        layer = res["default_layer"]
        i = res["layers"].index(layer)
        parts = [f"{model} ({res['readout']}, layer {layer} of {res['layers'][-1]}):"]
        for key, label in (("cv_valence", "valence r"), ("cv_arousal", "arousal r")):
            est = (res.get("geometry") or {}).get(key)
            if est:
                parts.append(f"{label} {_fmt(est[i])}")
        margin = (res.get("probes") or {}).get("margin")
        if margin:
            parts.append(f"probe − best text baseline {_fmt(margin[i])}")
        lines.append(" ".join(parts))
    return lines


def _fmt(est: dict[str, Any]) -> str:
    if est.get("value") is None:
        return "n/a"
    ci = est.get("ci") or [None, None]
    ci_text = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if None not in ci else ""
    return f"{est['value']:.2f}{ci_text}"
