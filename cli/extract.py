"""`emovec extract`: run a model over a corpus and stream every layer into a store."""
from __future__ import annotations

import json
from typing import Any

import click

from emovec.common.dtype_names import DTYPE_CHOICES
from emovec.common.errors import InputError


@click.command()
@click.option("--model", "model", required=True,
              help="Local HF directory, .gguf file, alias (smollm2-135m, gemma3-270m) or hub id.")
@click.option("--corpus", default="emovec", show_default=True, help="Built-in corpus name or a corpus directory.")
@click.option("--language", "languages", multiple=True, default=("en",), show_default=True,
              help="Corpus languages to include (repeat for several).")
@click.option("--store", "store_path", required=True, type=click.Path(), help="Store directory (NAME.zarr).")
@click.option("--layers", default="all", show_default=True, help="all | every:K | a,b,c (hidden_states indices).")
@click.option("--pooling", multiple=True,
              help="Readout spec, repeatable: mean_from:50, mean[:skip=N], last, assistant, tokens, "
                   "optionally @kind,kind. Default: mean_from:50 and assistant@implicit,intensity.")
@click.option("--dtype", default="auto", show_default=True,
              type=click.Choice(DTYPE_CHOICES), help="Compute dtype (auto: the device's policy, see docs/hardware.md).")
@click.option("--storage-dtype", default="auto", show_default=True,
              type=click.Choice(DTYPE_CHOICES),
              help="Storage dtype (auto: float16 when a screening pass shows it fits with 2x headroom).")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda[:N] | mps")
@click.option("--batch-tokens", default=2048, show_default=True, type=click.IntRange(min=1),
              help="Token budget per batch (rows x padded length).")
@click.option("--threads", default=None, type=click.IntRange(min=1),
              help="CPU threads for torch [default: $EMOVEC_THREADS, else $OMP_NUM_THREADS, else one per core]. "
                   "On a machine busy with other work, fewer threads than cores can be faster.")
@click.option("--mps-recycle-mb", default=None, type=click.FloatRange(min=0),
              help="Apple MPS: when the Metal driver's memory passes this many MB after a batch, flush and go on "
                   "in a fresh process (the store resumes) [default: 80% of the GPU's recommended working set; "
                   "0: never; docs/hardware.md].")
@click.option("--max-length", default=None, type=click.IntRange(min=1), help="Truncate longer stimuli (counted).")
@click.option("--shard", default=None, help="k/n: fill only chunk range k of n (parallel writers, one store).")
@click.option("--scheduler", default=None,
              help="dask.distributed scheduler address: run --shards N shards as tasks on its workers, "
                   "which must all reach --store at the same path (docs/cluster.md).")
@click.option("--shards", default=None, type=click.IntRange(min=1),
              help="With --scheduler: how many shards (tasks) to split the store into.")
@click.option("--chunk-rows", default=None, type=click.IntRange(min=1),
              help="Stimuli per chunk file (default: ~8 MiB per layer chunk); --shard splits chunks.")
@click.option("--sync-interval", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds between commits of done flags; a crash loses at most this much work.")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Use N stimuli spread evenly over the corpus.")
@click.option("--store-text", is_flag=True, help="Also store the stimulus texts.")
@click.option("--trust-remote-code", is_flag=True, help="Allow model code from the model's repository.")
@click.option("--allow-pickle", is_flag=True,
              help="Accept pickle weights (pytorch_model.bin...), read with torch's weights-only unpickler.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def extract(model: str, corpus: str, languages: tuple[str, ...], store_path: str, layers: str,
            pooling: tuple[str, ...], dtype: str, storage_dtype: str, device: str, batch_tokens: int,
            max_length: int | None, shard: str | None, scheduler: str | None, shards: int | None,
            chunk_rows: int | None, sync_interval: float,
            threads: int | None, mps_recycle_mb: float | None, limit: int | None, store_text: bool,
            trust_remote_code: bool, allow_pickle: bool, as_json: bool, no_progress: bool) -> None:
    """Stream residual activations of every requested layer of MODEL over a corpus into a store.

    Resumes by default; refuses to mix models, tokenizers, corpora or pooling plans in one store.
    """
    if (scheduler is None) != (shards is None):
        raise InputError("--scheduler and --shards go together: --scheduler ADDRESS --shards N", field="scheduler")
    if scheduler is not None and shard is not None:
        raise InputError("--shard k/n is for one local process; with --scheduler, --shards N splits the store",
                         field="shard")
    from emovec.corpus import load_corpus
    from emovec.corpus.sample import spread_sample
    from emovec_store.engine import ExtractOptions
    from emovec_store.engine import extract as run_extract  # sets the MPS environment before torch loads
    from emovec_store.engine.load import pickle_weights_allowed

    options = ExtractOptions(layers=layers, pooling=list(pooling) or None, dtype=dtype, storage_dtype=storage_dtype,
                             device=device, batch_tokens=batch_tokens, max_length=max_length, shard=shard,
                             chunk_rows=chunk_rows, sync_interval=sync_interval, threads=threads,
                             mps_recycle_mb=mps_recycle_mb, trust_remote_code=trust_remote_code,
                             store_text=store_text, progress=not no_progress)
    stimuli = spread_sample(load_corpus(corpus, languages=languages), limit)
    if scheduler is not None and shards is not None:
        _on_cluster(model, stimuli, store_path, scheduler, shards, options, allow_pickle, as_json)
        return
    with pickle_weights_allowed(allow_pickle):
        result = run_extract(model, stimuli, store_path, options)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    click.echo(f"model {result.model}: {len(result.layers)} layers ({result.layers[0]}..{result.layers[-1]}), "
               f"loaded in {result.load_seconds:.1f} s"
               + (f"; {result.threads} CPU thread{'s' if result.threads != 1 else ''}" if result.threads else ""))
    for r in result.readouts:
        click.echo(f"  {r.readout:<14} {r.stimuli} stimuli, {r.batches_written}/{r.batches} batches written now, "
                   f"{r.tokens_written} tokens in {r.seconds:.1f} s ({r.tokens_per_s:,.0f} tok/s), "
                   f"stored as {r.storage_dtype}; truncated {r.truncated}, short texts {r.short_texts}")
    for note in result.skipped:
        click.echo(f"  skipped {note}")
    if result.processes > 1:
        click.echo(f"  ran in {result.processes} processes (MPS recycling: a fresh one each time the driver's "
                   "memory passed --mps-recycle-mb)")
    state = "complete (finalized)" if result.finalized else "incomplete (other shards pending)"
    click.echo(f"store {result.store}: {state}; peak RSS {result.peak_rss_mb:.0f} MB")
    click.echo(f"next: emovec store info {result.store}")


def _on_cluster(model: str, stimuli: Any, store_path: str, scheduler: str, shards: int, options: Any,
                allow_pickle: bool, as_json: bool) -> None:
    """``--scheduler ADDRESS --shards N``: the shards as tasks on a dask.distributed cluster."""
    from emovec_store.engine import extract_on_cluster

    result = extract_on_cluster(model, stimuli, store_path, scheduler, shards, options, allow_pickle=allow_pickle)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    workers = sorted({s.worker for s in result.shards})
    loads = sum(s.loaded_model for s in result.shards)
    click.echo(f"{shards} shard{'s' if shards != 1 else ''} on {len(workers)} worker{'s' if len(workers) != 1 else ''}"
               f" of {result.scheduler} (the model loaded {loads} time{'s' if loads != 1 else ''})")
    for s in result.shards:
        assert s.result is not None  # a failed shard raised
        written = sum(r.batches_written for r in s.result.readouts)
        total = sum(r.batches for r in s.result.readouts)
        click.echo(f"  shard {s.shard}/{shards} on {s.worker}: {written}/{total} batches written now")
    click.echo(f"store {result.store}: complete (finalized)")
    click.echo(f"next: emovec store info {result.store}")
