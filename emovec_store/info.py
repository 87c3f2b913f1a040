"""Summaries of a store for people and scripts (``emovec store info`` / ``ls``)."""
from __future__ import annotations

import os
import zipfile
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # zarr and the store load with the first call: `import emovec_store` stays light
    import zarr

    from .store import Store


def _zip_sizes(location: str) -> dict[str, int]:
    with zipfile.ZipFile(location) as zf:
        return {i.filename: i.file_size for i in zf.infolist() if not i.is_dir()}


def _metadata_bytes(group: zarr.Group) -> int:
    """Bytes of the chunks an array's metadata implies (stores are uncompressed): every chunk of
    every fixed-size array below ``group``, counted whole; the small string arrays are left out."""
    import math

    import numpy as np
    import zarr

    total = 0
    for _, node in group.members(max_depth=None):
        if isinstance(node, zarr.Array) and np.dtype(node.dtype).kind not in "OTU":
            n_chunks = math.prod(-(-s // c) for s, c in zip(node.shape, node.chunks))
            total += n_chunks * math.prod(node.chunks) * np.dtype(node.dtype).itemsize
    return total


def _stored_bytes(store: Store, group: str, zip_sizes: dict[str, int] | None) -> int | None:
    """Bytes under ``group``: the files of a directory, the members of a zip, else (a URL) what
    the metadata implies."""
    if store.local_path is not None:
        total = 0
        for dirpath, _, filenames in os.walk(store.local_path / group):
            total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in filenames)
        return total
    if zip_sizes is not None:
        prefix = "" if group == "." else group.rstrip("/") + "/"
        return sum(n for name, n in zip_sizes.items() if name.startswith(prefix))
    try:
        node = store.zarr_root if group == "." else store.zarr_root[group]
        import zarr

        return _metadata_bytes(node) if isinstance(node, zarr.Group) else None
    except Exception:  # a size is a courtesy: never fail `store info` over it
        return None


def size_basis(store: Store) -> str:
    """How :func:`info` measures ``stored_bytes``: ``files``, ``zip`` (member sizes) or ``metadata``
    (a URL store: the chunks its arrays' metadata implies, an estimate)."""
    if store.local_path is not None:
        return "files"
    return "zip" if _is_zip(store) else "metadata"


def _is_zip(store: Store) -> bool:
    return "://" not in store.location and store.location.endswith(".zip")


def info(store: Store) -> dict[str, Any]:
    """Models, readouts, shapes, dtypes, sizes, completeness and provenance, as plain JSON-able data."""
    from . import layout
    from .nodes import array_at, group_at, read_values

    zip_sizes = _zip_sizes(store.location) if store.local_path is None and _is_zip(store) else None
    out: dict[str, Any] = {"location": store.location, **store.attrs, "models": {}, "size_basis": size_basis(store)}
    stim = group_at(store.zarr_root, "stimuli")
    out["n_stimuli"] = int(array_at(stim, "stimulus").shape[0])
    out["corpus"] = dict(stim.attrs).get("corpus", {})
    out["languages"] = (sorted({str(x) for x in read_values(stim, "language").tolist()})
                        if "language" in stim else [])
    for model in store.models:
        readouts = {}
        for readout in store.readouts(model):
            group = store.readout_group(model, readout)
            attrs = dict(group.attrs)
            name = layout.ACTS if layout.readout_layout(attrs) == "tokens" else layout.POOLED
            arr = array_at(group, name)
            p = store.progress(model, readout)
            readouts[readout] = {
                "array": name, "dims": list(layout.dimension_names(arr)), "shape": list(arr.shape),
                "chunks": list(arr.chunks), "storage_dtype": attrs["storage_dtype"],
                "physical_dtype": str(arr.dtype), "batches_done": p.done, "batches": p.total,
                "stored_bytes": _stored_bytes(store, layout.readout_group(model, readout), zip_sizes),
                "attrs": {k: v for k, v in attrs.items() if k not in ("coordinates",)},
            }
        out["models"][model] = {"attrs": store.model_attrs(model), "readouts": readouts,
                                "stored_bytes": _stored_bytes(store, f"models/{model}", zip_sizes)}
    out["stored_bytes"] = _stored_bytes(store, ".", zip_sizes)
    return out


def ls(store: Store) -> list[str]:
    """One line per group and array: path, dims, shape, dtype, chunks."""
    from . import layout

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
