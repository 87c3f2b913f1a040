"""Plans: a model group and each readout group are created once; a later run's plan is checked against them.

A run (or a shard, or a resume) names the model it extracts and the readouts it will write. The first run
creates their groups (:func:`plan_model`, :func:`plan_readout`); every later run must plan the same thing,
or it is refused with every differing key listed, so that two processes can never write different
layouts into one array. Building the arrays is :mod:`emovec_store.schema`'s job; this module decides
whether to build and checks what is there. It works on any store with the members of :class:`PlannedStore`
(:class:`emovec_store.Store` is one).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import zarr

from emovec.common.compare import mismatches
from emovec.common.files import atomic_path
from emovec.common.hashing import text_sha256

from . import layout
from .dtypes import StorageDtype, parse_storage_dtype
from .errors import IncompatibleStoreError, InputError
from .fserrors import reported
from .nodes import group_at, read_values
from .schema import build_readout, check_plan, with_layout


class PlannedStore(Protocol):
    """What planning needs of an open store."""

    @property
    def location(self) -> str: ...

    @property
    def zarr_root(self) -> zarr.Group: ...

    def require_writable(self) -> Path: ...

    def model_group(self, model: str) -> zarr.Group: ...


def plan_model(store: PlannedStore, model: str, attrs: Mapping[str, Any],
               identity: Mapping[str, Any] | None = None) -> None:
    """Create the group of a model, or check that an existing one is the same model: ``identity`` (model
    file hash, revision, tokenizer hash…) must match, else :class:`IncompatibleStoreError` lists every
    differing key."""
    identity = dict(identity or {})
    models = group_at(store.zarr_root, "models")
    if model in models:
        theirs = group_at(models, model).attrs.get("identity", {})
        diff = mismatches(dict(theirs) if isinstance(theirs, Mapping) else {}, identity)
        if diff:
            raise IncompatibleStoreError(f"model {model!r} in {store.location!r} differs: " + "; ".join(diff))
        return
    path = store.require_writable()
    with reported(f"adding model {model!r} to store {store.location!r}", path):
        models.create_group(model, attributes={**attrs, "identity": identity})


def plan_readout(store: PlannedStore, model: str, readout: str, *, stimulus_ids: Sequence[str],
                 layers: Sequence[int], hidden: int, storage_dtype: StorageDtype | str,
                 batches: Sequence[tuple[int, int]], chunk_rows: int | None = None,
                 n_tokens: Sequence[int] | None = None, token_ids: Sequence[Sequence[int]] | None = None,
                 token_chunk_rows: int | None = None, attrs: Mapping[str, Any] | None = None) -> None:
    """Create a readout group (arrays, batch plan, labels), or check that an existing one was planned the
    same way (:class:`IncompatibleStoreError` listing every differing key otherwise).

    Parameters are those of :meth:`emovec_store.Store.add_readout`, which documents them.
    """
    storage = parse_storage_dtype(storage_dtype)
    model_group = store.model_group(model)
    ids = [str(s) for s in stimulus_ids]
    n = len(ids)
    chunk_rows = chunk_rows or layout.default_chunk_rows(n, hidden, storage)
    check_plan(batches, n, chunk_rows)
    structure = {"layout": "pooled" if token_ids is None else "tokens", "layers": [int(x) for x in layers],
                 "hidden": int(hidden), "storage_dtype": storage, "chunk_rows": int(chunk_rows),
                 "stimuli_sha256": text_sha256("\n".join(ids)),
                 "batches_sha256": hashlib.sha256(np.asarray(batches, dtype="<i8").tobytes()).hexdigest()}
    clash = sorted(set(attrs or {}) & (set(layout.STRUCTURAL_ATTRS) | {"coordinates", *layout.FINALIZE_ATTRS}))
    if clash:
        raise InputError(f"readout attribute(s) {', '.join(clash)} are the store's own (structural layout); "
                         "give provenance another name", field=clash[0])
    spec = json.loads(json.dumps({**structure, **dict(attrs or {})}))  # as stored: compare like with like
    if readout in model_group:
        theirs = with_layout(dict(group_at(model_group, readout).attrs), group_at(model_group, readout), spec)
        # the token layout is the one the readout was built with (older stores: contiguous), not planned
        planned = (set(theirs) | set(spec)) - {"coordinates", *layout.FINALIZE_ATTRS, *layout.TOKEN_LAYOUT_ATTRS}
        diff = mismatches(theirs, spec, keys=sorted(planned))
        if diff:
            raise IncompatibleStoreError(
                f"readout {model}/{readout} in {store.location!r} was planned differently: " + "; ".join(diff))
        return
    path = store.require_writable()
    row_of = {s: i for i, s in enumerate(read_values(store.zarr_root, "stimuli/stimulus").tolist())}
    missing = [s for s in ids if s not in row_of]
    if missing:
        raise InputError(f"stimulus {missing[0]!r} is not in the store's stimulus table", field="stimulus")
    rows = np.array([row_of[s] for s in ids], dtype=np.int64)
    # Build the group under a temporary name and rename it into place: a crash never leaves a
    # half-made readout that a resume would mistake for a planned one.
    final = path / "models" / model / readout
    with (reported(f"adding readout {model}/{readout} to store {store.location!r}", path),
          atomic_path(final, tmp=final.with_name(f".{readout}.creating")) as tmp):
        group = model_group.create_group(tmp.name)
        build_readout(group, group_at(store.zarr_root, "stimuli"), ids, rows, layers, hidden, storage,
                      chunk_rows, batches, n_tokens, token_ids, token_chunk_rows)
        group.attrs.update(spec)


__all__ = ["PlannedStore", "plan_model", "plan_readout"]
