"""Summaries of a store for people and scripts (``emovec store info`` / ``ls``)."""
from __future__ import annotations

import os
from typing import Any

import zarr

from . import layout
from .nodes import array_at, group_at
from .store import Store


def _stored_bytes(store: Store, group: str) -> int | None:
    if store.local_path is None:
        return None
    total = 0
    for dirpath, _, filenames in os.walk(store.local_path / group):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in filenames)
    return total


def info(store: Store) -> dict[str, Any]:
    """Models, readouts, shapes, dtypes, sizes, completeness and provenance, as plain JSON-able data."""
    out: dict[str, Any] = {"location": store.location, **store.attrs, "models": {}}
    stim = group_at(store.zarr_root, "stimuli")
    out["n_stimuli"] = int(array_at(stim, "stimulus").shape[0])
    out["corpus"] = dict(stim.attrs).get("corpus", {})
    for model in store.models:
        readouts = {}
        for readout in store.readouts(model):
            group = store.readout_group(model, readout)
            attrs = dict(group.attrs)
            name = layout.ACTS if attrs["kind"] == "tokens" else layout.POOLED
            arr = array_at(group, name)
            p = store.progress(model, readout)
            readouts[readout] = {
                "array": name, "dims": list(layout.dimension_names(arr)), "shape": list(arr.shape),
                "chunks": list(arr.chunks), "storage_dtype": attrs["storage_dtype"],
                "physical_dtype": str(arr.dtype), "batches_done": p.done, "batches": p.total,
                "stored_bytes": _stored_bytes(store, layout.readout_group(model, readout)),
                "attrs": {k: v for k, v in attrs.items() if k not in ("coordinates",)},
            }
        out["models"][model] = {"attrs": store.model_attrs(model), "readouts": readouts,
                                "stored_bytes": _stored_bytes(store, f"models/{model}")}
    out["stored_bytes"] = _stored_bytes(store, ".")
    return out


def ls(store: Store) -> list[str]:
    """One line per group and array: path, dims, shape, dtype, chunks."""
    lines: list[str] = []

    def walk(group: zarr.Group, prefix: str) -> None:
        for name, arr in sorted(group.arrays(), key=lambda x: x[0]):
            dims = ",".join(layout.dimension_names(arr))
            lines.append(f"{prefix}{name}  ({dims}) {list(arr.shape)} {arr.dtype} chunks={list(arr.chunks)}")
        for name, sub in sorted(group.groups(), key=lambda x: x[0]):
            lines.append(f"{prefix}{name}/")
            walk(sub, prefix + "  ")

    walk(store.zarr_root, "")
    return lines
