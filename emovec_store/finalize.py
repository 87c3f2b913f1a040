"""Finalize (cleanup → max |x| → manifest → consolidated metadata → complete) and verify.

This module works on a store *directory* and its zarr root; it does not know the
:class:`~emovec_store.store.Store` class, which calls it (``Store.finalize``, ``Store.reopen``). The
public functions that take an open store (:func:`verify`, :func:`check_integrity`,
:func:`derived_groups`, :func:`read_manifest`) need only the few members of :class:`StoreFiles`.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import zarr

from emovec.common.files import atomic_path
from emovec.common.hashing import file_sha256

from . import layout
from .errors import IncompleteStoreError, IntegrityError, StoreError
from .nodes import array_at, group_at, json_list, read_values
from .progress import remove_lock_dir


class StoreFiles(Protocol):
    """What :func:`verify` and its kin read of an open store (an :class:`emovec_store.Store` is one)."""

    @property
    def location(self) -> str: ...

    @property
    def local_path(self) -> Path | None: ...

    @property
    def complete(self) -> bool: ...

    @property
    def zarr_root(self) -> zarr.Group: ...


#: Metadata files of Zarr format 3 (``zarr.json``) and 2 (a ``--zarr-format 2`` export): not chunk files.
METADATA_FILES = frozenset({"zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata"})


def _is_data_file(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return not (name in METADATA_FILES or name.endswith(".partial")
                or rel.startswith(layout.MANIFEST_GROUP + "/") or layout.is_derived(rel))


def _data_files(root: Path) -> Iterator[str]:
    """Relative paths of the chunk files (every file but metadata, the manifest and temp files)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            if _is_data_file(rel):
                yield rel


def manifest(root: Path) -> dict[str, str]:
    """sha256 of every chunk file of a store directory, by relative path."""
    return {rel: file_sha256(root / rel) for rel in _data_files(root)}


def read_manifest(store: StoreFiles) -> dict[str, str]:
    """The manifest recorded at finalize (relative path → sha256)."""
    group = group_at(store.zarr_root, layout.MANIFEST_GROUP)
    return dict(zip(read_values(group, "path").tolist(), read_values(group, "sha256").tolist()))


def seal(path: Path, root: zarr.Group, readouts: Mapping[str, Sequence[str]]) -> None:
    """Make the store directory ``path`` complete, once every batch of every readout is done.

    Removes temp files, half-made readouts and locks; reduces the per-batch max |x| into each readout's
    and model's ``max_abs_per_layer``; writes the manifest and the consolidated metadata; and sets
    ``complete`` last. ``readouts`` lists the readout groups of each model. The caller
    (:meth:`Store.finalize <emovec_store.store.Store.finalize>`) checks the done flags first.
    """
    for stray in path.rglob("*.partial"):
        stray.unlink()
    for leftover in path.rglob(".*.creating"):
        shutil.rmtree(leftover)
    remove_lock_dir(path)  # kept while another process holds a lock there (it removes it when done)
    for model, names in readouts.items():
        per_layer: dict[str, float] = {}
        for readout in names:
            group = group_at(root, layout.readout_group(model, readout))
            peaks = np.nanmax(np.asarray(array_at(group, f"{layout.PROGRESS}/max_abs")[:]), axis=0)
            group.attrs["max_abs_per_layer"] = [float(x) for x in peaks]
            for layer, peak in zip(json_list(group.attrs["layers"], "layers"), peaks):
                per_layer[str(layer)] = max(per_layer.get(str(layer), 0.0), float(peak))
        group_at(root, f"models/{model}").attrs["max_abs_per_layer"] = per_layer
    write_manifest(root, manifest(path))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(zarr.storage.LocalStore(path))
    # One atomic rewrite of the root metadata sets `complete` last, next to the consolidated block.
    rewrite_root_attributes(path, complete=True,
                            finalized=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))


def write_manifest(root: zarr.Group, digests: Mapping[str, str]) -> None:
    """Write (or replace) the manifest group: arrays ``path`` and ``sha256`` along ``file``.

    Works on Zarr format 3 stores and on format 2 copies (dimension names in ``_ARRAY_DIMENSIONS``)."""
    group = root.create_group(layout.MANIFEST_GROUP, overwrite=True)
    v2 = root.metadata.zarr_format == 2
    for name, values in (("path", list(digests)), ("sha256", list(digests.values()))):
        dims = {"attributes": {"_ARRAY_DIMENSIONS": ["file"]}} if v2 else {"dimension_names": ("file",)}
        arr = group.create_array(name, shape=(len(values),), chunks=(max(1, len(values)),), dtype=str,
                                 **dims)
        if values:
            arr[:] = np.asarray(values, dtype=object)


def unseal(path: Path) -> None:
    """Undo :func:`seal` so models or readouts can be added: ``complete`` off, consolidated metadata and
    manifest gone (the chunk files stay as they are)."""
    rewrite_root_attributes(path, drop_consolidated=True, complete=False, finalized=None)
    shutil.rmtree(path / layout.MANIFEST_GROUP, ignore_errors=True)


def rewrite_root_attributes(path: Path, *, drop_consolidated: bool = False, **updates: object) -> None:
    """Update the root group's attributes in one atomic rewrite of ``zarr.json``."""
    meta = json.loads((path / "zarr.json").read_text())
    if drop_consolidated:
        meta.pop("consolidated_metadata", None)
    meta["attributes"].update(updates)
    with atomic_path(path / "zarr.json") as tmp:
        tmp.write_bytes(json.dumps(meta, indent=2).encode())


def verify(store: StoreFiles) -> list[str]:
    """Re-hash every chunk file against the manifest written at finalize.

    Derived results (``models/<slug>/derived/``) are not part of the manifest and not checked here;
    :func:`derived_groups` lists them. Returns one line per problem (``damaged: PATH``,
    ``missing: PATH``, ``unexpected: PATH``); empty when the store is intact. Works on store
    directories and zip exports.
    """
    if not store.complete:
        raise IncompleteStoreError(f"store {store.location!r} is not finalized, so it has no manifest yet")
    expected = read_manifest(store)
    location = Path(store.location)
    digest: Callable[[str], str]
    if store.local_path is not None:
        present = set(_data_files(location))

        def digest(rel: str) -> str:
            return file_sha256(location / rel)
    elif location.suffix == ".zip":
        zf = zipfile.ZipFile(location)
        present = {n for n in zf.namelist() if not n.endswith("/") and _is_data_file(n)}

        def digest(rel: str) -> str:
            with zf.open(rel) as fh:
                return file_sha256(fh)
    else:
        raise StoreError("verify needs a local store directory or zip file (download a URL store first)")
    problems = []
    for rel, hexdigest in expected.items():
        if rel not in present:
            problems.append(f"missing: {rel}")
        elif digest(rel) != hexdigest:
            problems.append(f"damaged: {rel}")
    problems += [f"unexpected: {rel}" for rel in sorted(present - set(expected))]
    return problems


def derived_groups(store: StoreFiles) -> list[str]:
    """The derived results in a store directory or zip, as ``models/<slug>/derived/<name>`` paths."""
    location = Path(store.location)
    if store.local_path is not None:
        names = [str(p.parent.relative_to(location)).replace(os.sep, "/")
                 for meta in ("zarr.json", ".zgroup")  # format 3, or a format 2 copy
                 for p in location.glob(f"models/*/{layout.DERIVED}/*/{meta}")]
    elif location.suffix == ".zip":
        with zipfile.ZipFile(location) as zf:
            names = [n.rsplit("/", 1)[0] for n in zf.namelist() if n.endswith("/zarr.json")]
    else:
        return []
    return sorted(n for n in names if layout.is_derived(n) and n.count("/") == 3 and
                  not n.rsplit("/", 1)[-1].startswith("."))


def check_integrity(store: StoreFiles) -> None:
    """Raise :class:`IntegrityError` listing every problem :func:`verify` finds."""
    problems = verify(store)
    if problems:
        raise IntegrityError(f"{len(problems)} problem(s) in {store.location!r}: " + "; ".join(problems))
