"""`extract`: stream the activations of every requested layer of a causal LM into a store.

This module orchestrates: check the request, load the model, prepare each readout, set up the
store under the setup lock, write the readouts (:mod:`.readout_job`), finalize when every batch of
every shard is done. With MPS recycling (:mod:`.recycle`) the same runs in child processes, one after
the other, each resuming where the one before stopped, and their results are merged.
"""
from __future__ import annotations

import dataclasses
import resource
import time
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import layout
from ..errors import InputError, Interrupted
from ..layout import parse_layers
from ..progress import held_lock, remove_lock_dir
from ..store import create
from ..store import open as open_store
from . import device as device_policy
from . import recycle
from .blocks import find_blocks, hidden_size_of, n_layers_of
from .load import load, pickle_weights_allowed, pickle_weights_are_allowed
from .options import ExtractOptions, parse_shard
from .readout_job import ReadoutJob, ReadoutResult, Target, select_stimuli
from .recycle import MemoryWatch
from .resolve import resolve
from .runner import BatchRunner

__all__ = ["LAYER_CONVENTION", "ExtractOptions", "ExtractionResult", "ReadoutResult", "check_stimuli", "extract",
           "finalize_if_done", "parse_shard"]

LAYER_CONVENTION = ("hidden_states index: 0 = input of decoder block 0 (embeddings), i = output of decoder "
                    "block i-1; raw residual stream, no final norm")


@dataclass
class ExtractionResult:
    """The outcome of :func:`extract` (``--json`` prints it).

    When MPS recycling ran it in several processes (``processes``), :meth:`merged` sums what adds up
    (each readout's batches and tokens written and seconds, and ``load_seconds``: every process loads
    the model), keeps the largest ``peak_rss_mb`` (each process's own peak) and takes the rest from
    the last process (``finalized``; store, model, layers, skips and threads are the same in each)."""

    store: str
    model: str
    layers: list[int]
    readouts: list[ReadoutResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    finalized: bool = False
    load_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    threads: int | None = None  # torch CPU threads (None off CPU)
    processes: int = 1          # processes that ran it (more than 1 when MPS recycling restarted it)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExtractionResult:
        """The result :meth:`to_dict` gave (as a child process sends it back)."""
        return cls(**{**data, "readouts": [ReadoutResult(**r) for r in data["readouts"]]})

    @classmethod
    def merged(cls, parts: list[ExtractionResult]) -> ExtractionResult:
        """One result for an extraction that ran as ``parts``, one per process, in order (see the class)."""
        readouts: dict[str, ReadoutResult] = {}
        for part in parts:
            for r in part.readouts:
                readouts[r.readout] = _added(readouts[r.readout], r) if r.readout in readouts else r
        last = parts[-1]
        return dataclasses.replace(last, readouts=list(readouts.values()),
                                   load_seconds=sum(p.load_seconds for p in parts),
                                   peak_rss_mb=max(p.peak_rss_mb for p in parts),
                                   processes=sum(p.processes for p in parts))


def _added(before: ReadoutResult, after: ReadoutResult) -> ReadoutResult:
    """One readout's results of two processes, the second continuing the first."""
    tokens, seconds = before.tokens_written + after.tokens_written, before.seconds + after.seconds
    return dataclasses.replace(after, batches_written=before.batches_written + after.batches_written,
                               tokens_written=tokens, seconds=seconds,
                               tokens_per_s=tokens / seconds if seconds > 0 else 0.0)


def check_stimuli(stimuli: pd.DataFrame) -> None:
    """Refuse an empty table, a table without texts or an empty text (naming the stimulus)."""
    if len(stimuli) == 0:
        raise InputError("the corpus has no stimuli")
    if "text" not in stimuli.columns:
        raise InputError("the stimulus table has no 'text' column", field="text")
    for sid, text in zip(stimuli["stimulus"], stimuli["text"]):
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"stimulus {sid!r} has an empty text", field="text")


def extract(model: str, stimuli: pd.DataFrame, store: str | Path, options: ExtractOptions | None = None,
            **overrides: Any) -> ExtractionResult:
    """Extract pooled (or per-token) residual activations of ``model`` for ``stimuli`` into ``store``.

    Resumes by default: batches already flagged done are skipped. Refuses to append to a store made
    with a different corpus, model, tokenizer or readout plan (the message lists the mismatch).
    The store is finalized when every batch of every readout is done (the last shard does it).

    Parameters
    ----------
    model : local HF directory, ``.gguf`` file, alias (``smollm2-135m``, ``gemma3-270m``) or hub id.
    stimuli : stimulus table (``stimulus``, ``text`` and labels such as ``kind``, ``emotion``).
    options : an :class:`ExtractOptions` (default: all defaults).
    overrides : any :class:`ExtractOptions` field by name (``layers="every:4"``, ``dtype="float32"``,
        ``pooling=["last"]``, ``shard="0/2"``...), applied over ``options``.

    Ctrl-C (KeyboardInterrupt) keeps every batch written so far and raises :class:`Interrupted`
    saying what is saved; the same call again resumes. The ``NAME.zarr.locks/`` folder is removed on
    the way out, unless another process still holds a lock in it.

    On macOS the MPS allocator limits and CPU fallback are set first (environment variables that
    torch reads when it loads), so call this before anything imports torch to get them.

    On MPS the extraction runs in fresh processes, one after another, each stopping once the Metal
    driver's memory passes ``mps_recycle_mb`` (:mod:`.recycle`; docs/hardware.md): a script that calls
    this must do so under ``if __name__ == "__main__":``, because each of them imports the script
    again (otherwise an :class:`InputError` says so), or pass ``mps_recycle_mb=0``. Not when models are
    kept (:func:`~emovec_store.engine.load.models_kept`) or this process is daemonic.
    """
    recycle.refuse_unguarded_main()
    store_path = Path(store)
    try:
        opts = dataclasses.replace(options or ExtractOptions(), **overrides)
        device_policy.set_mps_environment()  # before torch loads: nothing above imports it
        if recycle.recycling(opts.mps_recycle_mb, device_policy.resolve_device(opts.device)):
            return _extract_recycled(model, stimuli, store_path, opts)
        return _extract(model, stimuli, store_path, opts)[0]
    except KeyboardInterrupt:
        raise Interrupted(_saved_so_far(store_path)) from None
    finally:
        with suppress(OSError):  # tidying up must not hide what happened
            remove_lock_dir(store_path)


def _saved_so_far(store_path: Path) -> str:
    """What an interrupted extraction leaves in the store, and how to go on."""
    if not (store_path / "zarr.json").is_file():
        return f"nothing was written to {str(store_path)!r} yet; run the same command again to start"
    try:
        st = open_store(store_path, allow_partial=True)
        if st.complete:
            return f"{str(store_path)!r} is complete (finalized)"
        parts = []
        for m in st.models:
            for r in st.readouts(m):
                p = st.progress(m, r)
                parts.append(f"{m}/{r} {p.done}/{p.total}")
    except Exception:  # the message must not fail: say less
        return f"the finished batches are kept in {str(store_path)!r}; run the same command again to resume"
    return (f"saved {', '.join(parts) or 'no'} batches in {str(store_path)!r} (every finished batch is kept); "
            "run the same command again to resume")


def _extract_recycled(model: str, stimuli: pd.DataFrame, store_path: Path,
                      options: ExtractOptions) -> ExtractionResult:
    """The extraction in fresh processes, each going on where the one before stopped, until one ends it."""
    parts: list[ExtractionResult] = []
    while True:
        out = recycle.in_fresh_process(_segment, model, stimuli, str(store_path), options,
                                       pickle_weights_are_allowed())
        parts.append(ExtractionResult.from_dict(out["result"]))
        if not out["recycle"]:
            return ExtractionResult.merged(parts)


def _segment(model: str, stimuli: pd.DataFrame, store: str, options: ExtractOptions,
             allow_pickle: bool) -> dict[str, Any]:
    """A child process's part of a recycled extraction: its result, and whether it stopped for memory."""
    with pickle_weights_allowed(allow_pickle):
        result, stopped = _extract(model, stimuli, Path(store), options, watch_memory=True)
    return {"result": result.to_dict(), "recycle": stopped}


def _extract(model: str, stimuli: pd.DataFrame, store_path: Path, options: ExtractOptions, *,
             watch_memory: bool = False) -> tuple[ExtractionResult, bool]:
    """The extraction in this process; with ``watch_memory``, it stops once the driver's memory passes the
    recycling threshold (True in the second place), its finished batches flushed."""
    device_policy.set_mps_environment()  # before torch loads: nothing above imports it
    started = time.monotonic()
    check_stimuli(stimuli)
    if store_path.exists() and not store_path.is_dir():
        raise InputError(f"{str(store_path)!r} is a file, not a store directory; choose another --store path",
                         field="store")
    if store_path.exists() and not (store_path / "zarr.json").exists() and any(store_path.iterdir()):
        raise InputError(f"{str(store_path)!r} exists and is not an emovec store; choose another --store path")
    source = resolve(model)
    device = device_policy.resolve_device(options.device)
    # the architecture only matters for the dtype policy off-CPU; reading it may parse a whole GGUF
    hint = _model_type_hint(source) if options.dtype == "auto" and not device.startswith("cpu") else ""
    plan = device_policy.choose(device, options.dtype, hint, threads=options.threads)
    loaded = load(source, device=plan.device, compute_dtype=plan.compute_dtype,
                  trust_remote_code=options.trust_remote_code)
    n_layers, hidden = n_layers_of(loaded.model), hidden_size_of(loaded.model)
    layer_list = parse_layers(options.layers, n_layers)
    blocks_path, _ = find_blocks(loaded.model)
    slug = source.slug
    provenance = {**loaded.provenance, "n_layers": n_layers, "d_model": hidden, "blocks": blocks_path,
                  "layer_convention": LAYER_CONVENTION, "padding_side": "right", "torch_threads": plan.threads,
                  "compute_dtype_reason": plan.compute_dtype_reason}
    result = ExtractionResult(str(store_path), slug, layer_list, load_seconds=time.monotonic() - started,
                              threads=plan.threads)
    runner = BatchRunner(loaded, layer_list, plan)
    watch = MemoryWatch.start(options.mps_recycle_mb, plan.device) if watch_memory else None  # the model loaded
    jobs: list[ReadoutJob] = []
    for spec in options.specs:
        rows = select_stimuli(stimuli, spec)
        if len(rows) == 0:
            result.skipped.append(f"{spec.text}: no stimuli of kind {', '.join(spec.kinds or ())}")
            continue
        if spec.kind == "assistant" and not isinstance(getattr(loaded.tokenizer, "chat_template", None), str):
            if options.explicit_pooling:
                raise InputError(f"pooling 'assistant' needs a chat template, and {model!r} has none; "
                                 "use mean_from:50 or last", field="pooling")
            result.skipped.append(f"{spec.text}: {model} has no chat template")
            continue
        jobs.append(ReadoutJob.prepare(spec, rows, loaded, options.max_length))
    setup_lock = layout.lock_dir(store_path) / "setup.lock"
    with held_lock(setup_lock):  # serialises setup and finalize across shards of one store
        st = create(store_path, stimuli, store_text=options.store_text)
        target = Target(st, slug, layer_list, hidden, runner, options, watch)
        # Every check against what the store already holds runs before anything is written.
        model_exists = slug in st.models
        if model_exists:
            st.add_model(slug, provenance, identity=loaded.identity)
        new = [job for job in jobs if not (model_exists and job.matches_existing(target))]
        if new or not model_exists:
            st.reopen()
        if not model_exists:
            st.add_model(slug, provenance, identity=loaded.identity)
        for job in new:
            job.plan_group(target)
    stopped = False
    for job in jobs:
        result.readouts.append(job.write(target))
        stopped = watch is not None and watch.tripped_mb is not None
        if stopped:
            break
    result.finalized = not stopped and finalize_if_done(store_path)
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result, stopped


def finalize_if_done(store_path: Path) -> bool:
    """Finalize the store if every batch of every readout is done (under the setup lock that shards
    share); True when the store is complete afterwards. Each shard calls it when it ends, so the last
    one to finish finalizes; :func:`~emovec_store.engine.cluster.extract_on_cluster` calls it once
    more after all its shards succeeded."""
    with held_lock(layout.lock_dir(store_path) / "setup.lock"):  # reopen: other shards may have finished meanwhile
        final = open_store(store_path, mode="r+", allow_partial=True)
        if not final.complete and all(final.progress(m, r).complete
                                      for m in final.models for r in final.readouts(m)):
            final.finalize()
        return open_store(store_path, allow_partial=True).complete


def _model_type_hint(source: Any) -> str:
    """The config's model_type without loading weights (for the compute dtype policy)."""
    try:
        import transformers

        if source.kind in ("gguf", "alias"):
            path = Path(source.path)
            cfg = transformers.AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
        else:  # a hub id: only a cached config (the load below checks the hub once, quickly)
            cfg = transformers.AutoConfig.from_pretrained(source.path, local_files_only=source.kind == "hub")
        return str(getattr(getattr(cfg, "text_config", None) or cfg, "model_type", ""))
    except Exception:  # the real load below reports problems with a proper message
        return ""
