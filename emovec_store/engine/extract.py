"""`extract`: stream the activations of every requested layer of a causal LM into a store."""
from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emovec.common.compare import mismatches

from .. import layout
from ..dtypes import FLOAT16_MAX, parse_storage_dtype
from ..errors import IncompatibleStoreError, InputError, Interrupted
from ..layout import parse_layers
from ..progress import lock_file, remove_lock_dir
from ..store import Store, create
from ..store import open as open_store
from . import device as device_policy
from .blocks import find_blocks, hidden_size_of, n_layers_of
from .hooks import StopForward, capture
from .load import LoadedModel, load
from .plan import format_and_tokenize, plan_batches
from .readouts import DEFAULT_READOUTS, ReadoutSpec, parse_readout
from .resolve import resolve

LAYER_CONVENTION = ("hidden_states index: 0 = input of decoder block 0 (embeddings), i = output of decoder "
                    "block i-1; raw residual stream, no final norm")
#: fp16 storage only with 2x headroom below float16's maximum (store-notes §2.5).
FP16_SAFE_MAX = FLOAT16_MAX / 2


@dataclass
class ReadoutResult:
    """What one readout's extraction did."""

    readout: str
    spec: str
    stimuli: int
    batches: int
    batches_written: int
    tokens_written: int
    seconds: float
    tokens_per_s: float
    truncated: int
    short_texts: int
    storage_dtype: str


@dataclass
class ExtractionResult:
    """The outcome of :func:`extract` (``--json`` prints it)."""

    store: str
    model: str
    layers: list[int]
    readouts: list[ReadoutResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    finalized: bool = False
    load_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    threads: int | None = None  # torch CPU threads (None off CPU)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``k/n`` → (k, n) with 0 <= k < n."""
    if text is None:
        return None
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit()) or not 0 <= int(k) < int(n):
        raise InputError(f"--shard takes k/n with 0 <= k < n, got {text!r}", field="shard")
    return int(k), int(n)


def check_stimuli(stimuli: pd.DataFrame) -> None:
    if len(stimuli) == 0:
        raise InputError("the corpus has no stimuli")
    if "text" not in stimuli.columns:
        raise InputError("the stimulus table has no 'text' column", field="text")
    for sid, text in zip(stimuli["stimulus"], stimuli["text"]):
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"stimulus {sid!r} has an empty text", field="text")


@contextmanager
def _store_lock(store_path: Path, name: str) -> Iterator[None]:
    """Serialise store setup and finalize across processes writing shards of one store."""
    fd = lock_file(layout.lock_dir(store_path) / f"{name}.lock")
    assert fd is not None  # a blocking lock always comes back
    try:
        yield
    finally:
        os.close(fd)  # drops the flock


class _Runner:
    """Runs batches through the model and pools inside the hooks."""

    def __init__(self, loaded: LoadedModel, layers: list[int], plan: device_policy.DevicePlan) -> None:
        import torch

        self.torch = torch
        self.model = loaded.model
        _, self.blocks = find_blocks(self.model)
        self.layers = layers
        self.plan = plan
        tok = loaded.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)

    def run(self, token_ids: Sequence[Sequence[int]], spec: ReadoutSpec) -> np.ndarray:
        """``[layer, rows, hidden]`` pooled activations (``[layer, tokens, hidden]`` for ``tokens``)."""
        torch = self.torch
        lengths = [len(t) for t in token_ids]
        width = -(-max(lengths) // self.plan.bucket) * self.plan.bucket
        ids = torch.full((len(token_ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(token_ids), width), dtype=torch.long)
        weights = torch.zeros((len(token_ids), width), dtype=torch.float32)
        for i, toks in enumerate(token_ids):  # right padding: real tokens keep positions 0..n-1
            ids[i, :len(toks)] = torch.as_tensor(toks)
            mask[i, :len(toks)] = 1
            lo, hi = spec.window(len(toks))
            weights[i, lo:hi] = 1.0 / (hi - lo)
        dev = self.plan.device
        ids, mask, weights = ids.to(dev), mask.to(dev), weights.to(dev)
        keep = mask.bool()

        if spec.kind == "tokens":
            def reduce(h: Any) -> Any:
                return h[keep].float()
        else:
            def reduce(h: Any) -> Any:
                return torch.einsum("bt,bth->bh", weights, h.float())

        with torch.inference_mode(), capture(self.blocks, self.layers, reduce) as records:
            try:
                self.model(input_ids=ids, attention_mask=mask, use_cache=False)
            except StopForward:
                pass
        out: np.ndarray = torch.stack([records[layer] for layer in self.layers]).cpu().numpy()
        return out


def _storage_from_screen(peak: float, compute_dtype: str) -> str:
    """float16 when the screened max |x| leaves 2x headroom, else bf16 bits (bf16 compute) or float32."""
    if peak < FP16_SAFE_MAX:
        return "float16"
    return "bfloat16" if compute_dtype == "bfloat16" else "float32"


def _select(stimuli: pd.DataFrame, spec: ReadoutSpec) -> pd.DataFrame:
    if spec.kinds is None:
        return stimuli
    kinds = stimuli["kind"] if "kind" in stimuli.columns else pd.Series([""] * len(stimuli))
    return stimuli[kinds.isin(spec.kinds).to_numpy()]


def extract(model: str, stimuli: pd.DataFrame, store: str | Path, *, layers: str | Sequence[int] = "all",
            pooling: Sequence[str] | None = None, dtype: str = "auto", storage_dtype: str = "auto",
            device: str = "auto", batch_tokens: int = 2048, max_length: int | None = None,
            shard: str | tuple[int, int] | None = None, chunk_rows: int | None = None,
            sync_interval: float = 1.0, threads: int | None = None,
            trust_remote_code: bool = False, store_text: bool = False, progress: bool = True) -> ExtractionResult:
    """Extract pooled (or per-token) residual activations of ``model`` for ``stimuli`` into ``store``.

    Resumes by default: batches already flagged done are skipped. Refuses to append to a store made
    with a different corpus, model, tokenizer or readout plan (the message lists the mismatch).
    The store is finalized when every batch of every readout is done (the last shard does it).

    Parameters
    ----------
    model : local HF directory, ``.gguf`` file, alias (``smollm2-135m``, ``gemma3-270m``) or hub id.
    stimuli : stimulus table (``stimulus``, ``text`` and labels such as ``kind``, ``emotion``).
    layers : ``"all"``, ``"every:K"``, ``"a,b,c"`` or a sequence of hidden_states indices.
    pooling : readout specs (see :mod:`emovec_store.engine.readouts`); default
        ``mean_from:50`` for every stimulus plus ``assistant`` for implicit/intensity ones.
    dtype, storage_dtype : compute and storage dtypes (``auto`` = policy and screening pass).
    shard : ``"k/n"`` to fill only chunk range k of n (several processes, one store).
    chunk_rows : stimuli per chunk file (default: about 8 MiB per layer chunk); shards split chunks.
    sync_interval : seconds between commits of done flags (data is flushed first); a crash loses at
        most this much work.
    threads : torch threads on CPU (default ``$EMOVEC_THREADS``, else ``$OMP_NUM_THREADS``, else
        one per core this process may use).

    Ctrl-C (KeyboardInterrupt) keeps every batch written so far and raises :class:`Interrupted`
    saying what is saved; the same call again resumes. The ``NAME.zarr.locks/`` folder is removed on
    the way out, unless another process still holds a lock in it.

    On macOS the MPS allocator limits and CPU fallback are set first (environment variables that
    torch reads when it loads), so call this before anything imports torch to get them.
    """
    store_path = Path(store)
    try:
        return _extract(model, stimuli, store_path, layers=layers, pooling=pooling, dtype=dtype,
                        storage_dtype=storage_dtype, device=device, batch_tokens=batch_tokens,
                        max_length=max_length, shard=shard, chunk_rows=chunk_rows, sync_interval=sync_interval,
                        threads=threads, trust_remote_code=trust_remote_code, store_text=store_text,
                        progress=progress)
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


def _extract(model: str, stimuli: pd.DataFrame, store_path: Path, *, layers: str | Sequence[int],
             pooling: Sequence[str] | None, dtype: str, storage_dtype: str, device: str, batch_tokens: int,
             max_length: int | None, shard: str | tuple[int, int] | None, chunk_rows: int | None,
             sync_interval: float, threads: int | None, trust_remote_code: bool, store_text: bool,
             progress: bool) -> ExtractionResult:
    device_policy.set_mps_environment()  # before torch loads: nothing above imports it
    started = time.monotonic()
    check_stimuli(stimuli)
    explicit = pooling is not None
    specs = [parse_readout(p) for p in (pooling or DEFAULT_READOUTS)]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InputError(f"two pooling specs map to the same readout: {', '.join(names)}", field="pooling")
    shard_kn = parse_shard(shard) if isinstance(shard, str) or shard is None else shard
    if storage_dtype != "auto":
        storage_dtype = parse_storage_dtype(storage_dtype)
    if store_path.exists() and not (store_path / "zarr.json").exists() and any(store_path.iterdir()):
        raise InputError(f"{str(store_path)!r} exists and is not an emovec store; choose another --store path")
    source = resolve(model)
    device = device_policy.resolve_device(device)
    # the architecture only matters for the dtype policy off-CPU; reading it may parse a whole GGUF
    hint = _model_type_hint(source) if dtype == "auto" and not device.startswith("cpu") else ""
    plan = device_policy.choose(device, dtype, hint, threads=threads)
    loaded = load(source, device=plan.device, compute_dtype=plan.compute_dtype,
                  trust_remote_code=trust_remote_code)
    n_layers, hidden = n_layers_of(loaded.model), hidden_size_of(loaded.model)
    layer_list = parse_layers(layers, n_layers)
    blocks_path, _ = find_blocks(loaded.model)
    slug = source.slug
    provenance = {**loaded.provenance, "n_layers": n_layers, "d_model": hidden, "blocks": blocks_path,
                  "layer_convention": LAYER_CONVENTION, "padding_side": "right", "torch_threads": plan.threads}
    result = ExtractionResult(str(store_path), slug, layer_list, load_seconds=time.monotonic() - started,
                              threads=plan.threads)
    runner = _Runner(loaded, layer_list, plan)
    prepared: list[_Prepared] = []
    for spec in specs:
        rows = _select(stimuli, spec)
        if len(rows) == 0:
            result.skipped.append(f"{spec.text}: no stimuli of kind {', '.join(spec.kinds or ())}")
            continue
        if spec.kind == "assistant" and not isinstance(getattr(loaded.tokenizer, "chat_template", None), str):
            if explicit:
                raise InputError(f"pooling 'assistant' needs a chat template, and {model!r} has none; "
                                 "use mean_from:50 or last", field="pooling")
            result.skipped.append(f"{spec.text}: {model} has no chat template")
            continue
        prepared.append(_prepare(spec, rows, loaded, max_length))
    with _store_lock(store_path, "setup"):
        st = create(store_path, stimuli, store_text=store_text)
        # Every check against what the store already holds runs before anything is written.
        model_exists = slug in st.models
        if model_exists:
            st.add_model(slug, provenance, identity=loaded.identity)
        new = [p for p in prepared if not (model_exists and _matches_existing(st, slug, p, layer_list, hidden,
                                                                              storage_dtype))]
        if new or not model_exists:
            st.reopen()
        if not model_exists:
            st.add_model(slug, provenance, identity=loaded.identity)
        for p in new:
            _plan_readout(st, slug, p, runner, plan, layer_list, hidden, storage_dtype, batch_tokens, chunk_rows)
    for p in prepared:
        result.readouts.append(_write_readout(st, slug, p, runner, plan, shard_kn, sync_interval, progress))
    with _store_lock(store_path, "setup"):  # reopen: other shards may have finished meanwhile
        final = open_store(store_path, mode="r+", allow_partial=True)
        if not final.complete and all(final.progress(m, r).complete
                                      for m in final.models for r in final.readouts(m)):
            final.finalize()
        result.finalized = open_store(store_path, allow_partial=True).complete
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


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


@dataclass
class _Prepared:
    """A readout request with its stimuli tokenized."""

    spec: ReadoutSpec
    ids: list[str]
    token_ids: list[list[int]]
    attrs: dict[str, Any]
    first_batch: np.ndarray | None = None  # batch 0's activations, computed by the screening pass
    first_batch_seconds: float = 0.0        # ...and the time that took (counted when it is written)

    @property
    def by_id(self) -> dict[str, list[int]]:
        return dict(zip(self.ids, self.token_ids))


def _prepare(spec: ReadoutSpec, rows: pd.DataFrame, loaded: LoadedModel, max_length: int | None) -> _Prepared:
    ids = rows["stimulus"].astype(str).tolist()
    token_ids, n_truncated = format_and_tokenize(loaded.tokenizer, rows["text"].tolist(), spec, max_length)
    attrs = {**spec.to_dict(), "max_length": max_length, "truncated": n_truncated,
             "short_texts": sum(spec.is_short(len(t)) for t in token_ids),
             "add_special_tokens": spec.kind != "assistant"}
    return _Prepared(spec, ids, token_ids, attrs)


def _matches_existing(st: Store, slug: str, p: _Prepared, layer_list: list[int], hidden: int,
                      storage_dtype: str) -> bool:
    """True when the readout exists and was planned for the same request; raises when it differs."""
    if p.spec.name not in st.readouts(slug):
        return False
    stored = st.readout_attrs(slug, p.spec.name)
    run = {**p.attrs, "layers": layer_list, "hidden": hidden}
    diff = mismatches(stored, run, keys=run)
    if storage_dtype != "auto":
        diff += mismatches(stored, {"storage_dtype": storage_dtype}, keys=["storage_dtype"])
    if sorted(st.dataset_ids(slug, p.spec.name)) != sorted(p.ids):
        diff.append("stimuli: the readout was planned for a different set of stimuli")
    if diff:
        raise IncompatibleStoreError(f"readout {slug}/{p.spec.name} in {st.location!r} differs: " + "; ".join(diff))
    return True


def _plan_readout(st: Store, slug: str, p: _Prepared, runner: _Runner, plan: device_policy.DevicePlan,
                  layer_list: list[int], hidden: int, storage_dtype: str, batch_tokens: int,
                  chunk_rows: int | None) -> None:
    """Plan the batches, screen the storage dtype on the first batch, create the readout group.

    The screening pass is the plan's first batch (the longest stimuli), kept in ``p.first_batch``
    and written like any other batch, so screening costs no extra forward pass. Chunk rows are
    sized for float32 (<= 8 MiB; 4 MiB when fp16 is chosen) so the plan does not depend on the outcome.
    """
    rows_per_chunk = min(chunk_rows or layout.default_chunk_rows(len(p.ids), hidden, "float32"), len(p.ids))
    order, batches = plan_batches([len(t) for t in p.token_ids], batch_tokens, rows_per_chunk, plan.bucket)
    planned = [p.ids[i] for i in order]
    by_id = p.by_id
    if storage_dtype == "auto":
        start, stop = batches[0]
        t0 = time.monotonic()
        p.first_batch = runner.run([by_id[s] for s in planned[start:stop]], p.spec)
        p.first_batch_seconds = time.monotonic() - t0
        peak = float(np.abs(p.first_batch).max())
        storage = _storage_from_screen(peak, plan.compute_dtype)
        rule = (f"screened: max |x| {peak:.6g} over the first batch ({stop - start} longest stimuli); "
                f"float16 below {FP16_SAFE_MAX:g}")
    else:
        storage, rule = storage_dtype, "given"
    st.add_readout(slug, p.spec.name, stimulus_ids=planned, layers=layer_list, hidden=hidden,
                   storage_dtype=storage, batches=batches, chunk_rows=rows_per_chunk,
                   n_tokens=[len(by_id[s]) for s in planned],
                   token_ids=[by_id[s] for s in planned] if p.spec.kind == "tokens" else None,
                   attrs={**p.attrs, "batch_tokens": batch_tokens, "storage_dtype_rule": rule})


@dataclass
class _Meter:
    """Tokens per second of one readout's writing, the screened first batch counted with its time.

    The screening pass (:func:`_plan_readout`) runs batch 0 before writing starts; its tokens are
    written in no time, so they are counted with the seconds the pass took (``extra_seconds``).
    """

    started: float
    tokens: int = 0
    extra_seconds: float = 0.0

    def add(self, tokens: int, seconds: float = 0.0) -> None:
        self.tokens += tokens
        self.extra_seconds += seconds

    def seconds(self, now: float) -> float:
        return now - self.started + self.extra_seconds

    def rate(self, now: float) -> float:
        elapsed = self.seconds(now)
        return self.tokens / elapsed if elapsed > 0 else 0.0


def _write_readout(st: Store, slug: str, p: _Prepared, runner: _Runner, plan: device_policy.DevicePlan,
                   shard: tuple[int, int] | None, sync_interval: float, progress: bool) -> ReadoutResult:
    """Run and write every pending batch of this process's shard."""
    spec, by_id = p.spec, p.by_id
    planned = st.dataset_ids(slug, spec.name)
    storage = st.readout_attrs(slug, spec.name)["storage_dtype"]
    meter = _Meter(time.monotonic())
    written = 0
    progress_now = st.progress(slug, spec.name)
    if progress_now.complete:  # nothing to do (e.g. the same command run twice)
        return ReadoutResult(spec.name, spec.text, len(planned), progress_now.total, 0, 0, 0.0, 0.0,
                             p.attrs["truncated"], p.attrs["short_texts"], storage)
    with st.writer(slug, spec.name, shard=shard, sync_interval=sync_interval) as writer:
        pending = writer.pending()
        screened = p.first_batch is not None and bool(pending) and pending[0] == 0
        # The screened batch is done before the bar starts: it opens at those rows, so that the
        # bar's rate and ETA come only from batches run while it is shown.
        bar = _progress_bar(sum(writer.rows(b)[1] - writer.rows(b)[0] for b in pending),
                            f"{slug}/{spec.name}", progress,
                            initial=writer.rows(0)[1] - writer.rows(0)[0] if screened else 0)
        try:
            for i, b in enumerate(pending):
                start, stop = writer.rows(b)
                batch = [by_id[s] for s in planned[start:stop]]
                n_tokens = sum(len(t) for t in batch)
                if b == 0 and p.first_batch is not None:
                    writer.write(b, p.first_batch)
                    meter.add(n_tokens, p.first_batch_seconds)
                    p.first_batch = None
                else:
                    writer.write(b, runner.run(batch, spec))
                    meter.add(n_tokens)
                written += 1
                if plan.empty_cache_every and (i + 1) % plan.empty_cache_every == 0:
                    device_policy.empty_cache(plan.device)
                if bar is not None:
                    if not (screened and i == 0):
                        bar.update(stop - start)
                    bar.set_postfix_str(f"{meter.rate(time.monotonic()):,.0f} tok/s")
        finally:
            if bar is not None:
                bar.close()
        n_batches = len(writer.batches)
    seconds = meter.seconds(time.monotonic())
    return ReadoutResult(spec.name, spec.text, len(planned), n_batches, written, meter.tokens, seconds,
                         meter.tokens / seconds if seconds > 0 else 0.0, p.attrs["truncated"],
                         p.attrs["short_texts"], storage)


def _progress_bar(total: int, desc: str, enabled: bool, initial: int = 0) -> Any:
    """A tqdm bar over ``total`` stimuli, opening at ``initial`` (rows done before it starts)."""
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="stim", dynamic_ncols=True)
