"""One readout of one model: tokenize its stimuli, check or plan its group, run and write its batches."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from emovec.common.compare import mismatches

from .. import layout
from ..dtypes import FP16_SAFE_MAX, storage_for_peak
from ..errors import IncompatibleStoreError
from ..store import Store
from . import device as device_policy
from . import meter
from .load import LoadedModel
from .options import ExtractOptions
from .plan import format_and_tokenize, plan_batches
from .readouts import ReadoutSpec
from .recycle import MemoryWatch
from .runner import BatchRunner


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


@dataclass(frozen=True)
class Target:
    """Where readouts go and what computes them: one model in one store, for one run's options."""

    store: Store
    model: str                 # the model's slug in the store
    layers: list[int]
    hidden: int
    runner: BatchRunner
    options: ExtractOptions
    watch: MemoryWatch | None = None  # MPS recycling: stop after the batch that passes its threshold

    @property
    def plan(self) -> device_policy.DevicePlan:
        return self.runner.plan


def select_stimuli(stimuli: pd.DataFrame, spec: ReadoutSpec) -> pd.DataFrame:
    """The rows a spec covers (its kind filter, if any)."""
    if spec.kinds is None:
        return stimuli
    kinds = stimuli["kind"] if "kind" in stimuli.columns else pd.Series([""] * len(stimuli))
    return stimuli[kinds.isin(spec.kinds).to_numpy()]


@dataclass
class ReadoutJob:
    """A readout request with its stimuli tokenized. Build with :meth:`prepare`."""

    spec: ReadoutSpec
    ids: list[str]
    token_ids: list[list[int]]
    attrs: dict[str, Any]
    first_batch: np.ndarray | None = None  # batch 0's activations, computed by the screening pass
    first_batch_seconds: float = 0.0        # ...and the time that took (counted when it is written)

    @classmethod
    def prepare(cls, spec: ReadoutSpec, rows: pd.DataFrame, loaded: LoadedModel,
                max_length: int | None) -> ReadoutJob:
        ids = rows["stimulus"].astype(str).tolist()
        token_ids, n_truncated = format_and_tokenize(loaded.tokenizer, rows["text"].tolist(), spec, max_length)
        attrs = {**spec.to_dict(), "max_length": max_length, "truncated": n_truncated,
                 "short_texts": sum(spec.is_short(len(t)) for t in token_ids),
                 "add_special_tokens": spec.kind != "assistant"}
        return cls(spec, ids, token_ids, attrs)

    @property
    def by_id(self) -> dict[str, list[int]]:
        return dict(zip(self.ids, self.token_ids))

    def matches_existing(self, target: Target) -> bool:
        """True when the readout exists and was planned for the same request; raises when it differs."""
        st, slug = target.store, target.model
        if self.spec.name not in st.readouts(slug):
            return False
        stored = st.readout_attrs(slug, self.spec.name)
        run = {**self.attrs, "layers": target.layers, "hidden": target.hidden}
        diff = mismatches(stored, run, keys=run)
        storage_dtype = target.options.storage_dtype
        if storage_dtype != "auto":
            diff += mismatches(stored, {"storage_dtype": storage_dtype}, keys=["storage_dtype"])
        if sorted(st.dataset_ids(slug, self.spec.name)) != sorted(self.ids):
            diff.append("stimuli: the readout was planned for a different set of stimuli")
        if diff:
            raise IncompatibleStoreError(f"readout {slug}/{self.spec.name} in {st.location!r} differs: "
                                         + "; ".join(diff))
        return True

    def plan_group(self, target: Target) -> None:
        """Plan the batches, screen the storage dtype on the first batch, create the readout group.

        The screening pass is the plan's first batch (the longest stimuli), kept in ``first_batch``
        and written like any other batch, so screening costs no extra forward pass. Chunk rows are
        sized for float32 (<= 8 MiB; 4 MiB when fp16 is chosen) so the plan does not depend on the
        outcome.
        """
        options = target.options
        rows_per_chunk = min(options.chunk_rows or layout.default_chunk_rows(len(self.ids), target.hidden, "float32"),
                             len(self.ids))
        order, batches = plan_batches([len(t) for t in self.token_ids], options.batch_tokens, rows_per_chunk,
                                      target.plan.bucket)
        planned = [self.ids[i] for i in order]
        by_id = self.by_id
        if options.storage_dtype == "auto":
            start, stop = batches[0]
            t0 = time.monotonic()
            self.first_batch = target.runner.run([by_id[s] for s in planned[start:stop]], self.spec)
            self.first_batch_seconds = time.monotonic() - t0
            peak = float(np.abs(self.first_batch).max())
            storage: str = storage_for_peak(peak, target.plan.compute_dtype)
            rule = (f"screened: max |x| {peak:.6g} over the first batch ({stop - start} longest stimuli); "
                    f"float16 below {FP16_SAFE_MAX:g}")
        else:
            storage, rule = options.storage_dtype, "given"
        target.store.add_readout(
            target.model, self.spec.name, stimulus_ids=planned, layers=target.layers, hidden=target.hidden,
            storage_dtype=storage, batches=batches, chunk_rows=rows_per_chunk,
            n_tokens=[len(by_id[s]) for s in planned],
            token_ids=[by_id[s] for s in planned] if self.spec.kind == "tokens" else None,
            attrs={**self.attrs, "batch_tokens": options.batch_tokens, "storage_dtype_rule": rule})

    def write(self, target: Target) -> ReadoutResult:
        """Run and write every pending batch of this process's shard, or stop after the batch when the
        target's memory watch passes its threshold (not after the readout's last batch: the next readout
        reads it again after its first)."""
        st, slug, spec, by_id = target.store, target.model, self.spec, self.by_id
        options, plan = target.options, target.plan
        planned = st.dataset_ids(slug, spec.name)
        storage = st.readout_attrs(slug, spec.name)["storage_dtype"]
        rate = meter.Meter(time.monotonic())
        written = 0
        progress_now = st.progress(slug, spec.name)
        if progress_now.complete:  # nothing to do (e.g. the same command run twice)
            return ReadoutResult(spec.name, spec.text, len(planned), progress_now.total, 0, 0, 0.0, 0.0,
                                 self.attrs["truncated"], self.attrs["short_texts"], storage)
        with st.writer(slug, spec.name, shard=options.shard_range, sync_interval=options.sync_interval) as writer:
            pending = writer.pending()
            screened = self.first_batch is not None and bool(pending) and pending[0] == 0
            # The screened batch is done before the bar starts: it opens at those rows, so that the
            # bar's rate and ETA come only from batches run while it is shown.
            bar = meter.progress_bar(sum(writer.rows(b)[1] - writer.rows(b)[0] for b in pending),
                                     f"{slug}/{spec.name}", options.progress,
                                     initial=writer.rows(0)[1] - writer.rows(0)[0] if screened else 0)
            try:
                for i, b in enumerate(pending):
                    start, stop = writer.rows(b)
                    batch = [by_id[s] for s in planned[start:stop]]
                    n_tokens = sum(len(t) for t in batch)
                    if b == 0 and self.first_batch is not None:
                        writer.write(b, self.first_batch)
                        rate.add(n_tokens, self.first_batch_seconds)
                        self.first_batch = None
                    else:
                        writer.write(b, target.runner.run(batch, spec))
                        rate.add(n_tokens)
                    written += 1
                    if plan.empty_cache_every and (i + 1) % plan.empty_cache_every == 0:
                        device_policy.empty_cache(plan.device)
                    if bar is not None:
                        if not (screened and i == 0):
                            bar.update(stop - start)
                        bar.set_postfix_str(f"{rate.rate(time.monotonic()):,.0f} tok/s")
                    if target.watch is not None and i + 1 < len(pending) and target.watch.over():
                        break
            finally:
                if bar is not None:
                    bar.close()
            n_batches = len(writer.batches)
        seconds = rate.seconds(time.monotonic())
        return ReadoutResult(spec.name, spec.text, len(planned), n_batches, written, rate.tokens, seconds,
                             rate.tokens / seconds if seconds > 0 else 0.0, self.attrs["truncated"],
                             self.attrs["short_texts"], storage)
