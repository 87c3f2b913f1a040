"""Finalize (cleanup → max |x| → manifest → consolidated metadata → complete) and verify.

This module does not know the :class:`~emovec_store.store.Store` class, which calls it
(``Store.finalize``, ``Store.reopen``): :func:`seal` and :func:`unseal` work on a store *directory* and its
zarr root; the functions that take an open store need only the few members of :class:`StoreFiles`
(:func:`verify`, :func:`check_integrity`, :func:`derived_groups`, :func:`read_manifest`) or
:class:`FinalizableStore` (:func:`finalize_store`).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import zarr

from emovec.common.files import atomic_path
from emovec.common.hashing import file_sha256

from . import layout
from .errors import IncompleteStoreError, IntegrityError, StoreError
from .fserrors import reported
from .nodes import array_at, group_at, json_list, read_values
from .progress import Progress, remove_lock_dir
from .storefiles import DirTree, FileTree, ZipTree, file_tree, is_litter, is_metadata, read_json, structure_problems


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


class FinalizableStore(StoreFiles, Protocol):
    """What :func:`finalize_store` needs of an open store."""

    @property
    def models(self) -> list[str]: ...

    def readouts(self, model: str) -> list[str]: ...

    def progress(self, model: str, readout: str) -> Progress: ...

    def require_writable(self) -> Path: ...


def finalize_store(store: FinalizableStore) -> None:
    """Seal a writable store once every batch of every readout has its done flag; else
    :class:`IncompleteStoreError` naming each unfinished readout and its count of done batches."""
    path = store.require_writable()
    readouts = {model: store.readouts(model) for model in store.models}
    missing = []
    for model, names in readouts.items():
        for readout in names:
            done = store.progress(model, readout)
            if not done.complete:
                missing.append(f"{model}/{readout} ({done.done}/{done.total} batches done)")
    if missing:
        raise IncompleteStoreError("cannot finalize, batches are missing in: " + ", ".join(missing) +
                                   "; resume the extraction first")
    with reported(f"finalizing store {store.location!r}", path):
        seal(path, store.zarr_root, readouts)


#: Manifest group attribute saying it covers the metadata documents too (stores sealed before it
#: existed have manifests of chunk files only, and are verified as such).
COVERS_METADATA = "covers_metadata"


def _in_manifest(rel: str, with_metadata: bool = True) -> bool:
    """Whether a store file is in the manifest: every chunk file and (``with_metadata``) every metadata
    document, except the root's documents (they change at finalize, after the manifest is written), the
    manifest's own files, derived results and writers' temporary files."""
    if rel.startswith(layout.MANIFEST_GROUP + "/") or layout.is_derived(rel) or is_litter(rel):
        return False
    if is_metadata(rel):
        return with_metadata and "/" in rel
    return True


def _data_files(root: Path, with_metadata: bool = False) -> Iterator[str]:
    """Relative paths of the files the manifest covers, in sorted order."""
    return (rel for rel in DirTree(root).files if _in_manifest(rel, with_metadata))


def manifest(root: Path, *, with_metadata: bool = False) -> dict[str, str]:
    """sha256 of every chunk file of a store directory (and, ``with_metadata``, of every metadata
    document below the root), by relative path.

    The chunk files alone are the data: two runs with the same inputs give the same chunk manifest,
    whatever their provenance (threads, shards, times) says. Finalize records the manifest
    ``with_metadata``, so that ``verify`` also catches edited metadata.
    """
    return {rel: file_sha256(root / rel) for rel in _data_files(root, with_metadata)}


def read_manifest(store: StoreFiles) -> dict[str, str]:
    """The manifest recorded at finalize (relative path → sha256)."""
    group = group_at(store.zarr_root, layout.MANIFEST_GROUP)
    return dict(zip(read_values(group, "path").tolist(), read_values(group, "sha256").tolist()))


def seal(path: Path, root: zarr.Group, readouts: Mapping[str, Sequence[str]]) -> None:
    """Make the store directory ``path`` complete, once every batch of every readout is done.

    Removes temp files, half-made readouts and locks; reduces the per-batch max |x| into each readout's
    and model's ``max_abs_per_layer``; writes the manifest and the consolidated metadata; and sets
    ``complete`` last. ``readouts`` lists the readout groups of each model. The caller
    (:func:`finalize_store`) checks the done flags first.
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
    write_manifest(root, manifest(path, with_metadata=True))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(zarr.storage.LocalStore(path))
    # One atomic rewrite of the root metadata sets `complete` last, next to the consolidated block.
    rewrite_root_attributes(path, complete=True,
                            finalized=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))


def write_manifest(root: zarr.Group, digests: Mapping[str, str]) -> None:
    """Write (or replace) the manifest group: arrays ``path`` and ``sha256`` along ``file``.

    Works on Zarr format 3 stores and on format 2 copies (dimension names in ``_ARRAY_DIMENSIONS``)."""
    group = root.create_group(layout.MANIFEST_GROUP, overwrite=True, attributes={COVERS_METADATA: True})
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


def verify(store: StoreFiles | str | os.PathLike[str]) -> list[str]:
    """Check a finalized store: its metadata documents, then every file against the manifest.

    Takes an open store or a location (a store too damaged to open can still be verified). Derived
    results (``models/<slug>/derived/``) are not part of the manifest and not checked here;
    :func:`derived_groups` lists them. Returns one line per problem (``bad metadata: PATH (why)``,
    ``damaged: PATH``, ``missing: PATH``, ``unexpected: PATH``, ``symlink: PATH``); empty when the
    store is intact. Works on store directories and zip exports.
    """
    location = store if isinstance(store, str | os.PathLike) else store.location
    tree = file_tree(str(location))
    if tree is None:
        raise StoreError("verify needs a local store directory or zip file (download a URL store first)")
    problems = structure_problems(tree)
    root_doc = ".zattrs" if "zarr.json" not in tree.files and ".zgroup" in tree.files else "zarr.json"
    root, _ = read_json(tree, root_doc)
    if root is None:
        return problems  # structure_problems names the root document
    attrs = root.get("attributes", root) if root_doc == "zarr.json" else root
    if not (isinstance(attrs, dict) and attrs.get("complete") is True):
        if problems:
            return problems
        raise IncompleteStoreError(f"store {str(location)!r} is not finalized, so it has no manifest yet")
    try:
        expected, with_metadata = _manifest_of(tree)
    except StoreError as exc:
        return [*problems, f"damaged: {layout.MANIFEST_GROUP} ({exc})"]
    present = {rel for rel in tree.files if _in_manifest(rel, with_metadata)}
    for rel, hexdigest in expected.items():
        if rel not in present:
            problems.append(f"missing: {rel}")
            continue
        try:
            same = tree.sha256(rel) == hexdigest
        except OSError as exc:
            problems.append(f"damaged: {rel} (unreadable: {exc})")
            continue
        if not same:
            problems.append(f"damaged: {rel}")
    problems += [f"unexpected: {rel}" for rel in sorted(present - set(expected))]
    if isinstance(tree, ZipTree):  # an export holds no writer's temporary files, so none is skipped there
        problems += [f"unexpected: {rel} (no export writes this name)" for rel in sorted(tree.files)
                     if is_litter(rel)]
    return problems


def _manifest_of(tree: FileTree) -> tuple[dict[str, str], bool]:
    """The manifest of a store's files (path -> sha256) and whether it covers metadata documents;
    :class:`StoreError` if it cannot be read."""
    location = tree.location
    zstore = (zarr.storage.ZipStore(location, mode="r", read_only=True) if isinstance(tree, ZipTree)
              else zarr.storage.LocalStore(location, read_only=True))
    try:
        group = zarr.open_group(zstore, path=layout.MANIFEST_GROUP, mode="r", use_consolidated=False)
        paths, digests = read_values(group, "path").tolist(), read_values(group, "sha256").tolist()
        with_metadata = group.attrs.get(COVERS_METADATA) is True
    except Exception as exc:  # any failure to read the manifest is a damaged manifest, named as such
        raise StoreError(f"{type(exc).__name__}: {str(exc)[:120]}") from None
    if len(paths) != len(digests):
        raise StoreError(f"{len(paths)} paths but {len(digests)} hashes")
    return dict(zip(map(str, paths), map(str, digests))), with_metadata


def derived_groups(store: StoreFiles | str | os.PathLike[str]) -> list[str]:
    """The derived results in a store directory or zip, as ``models/<slug>/derived/<name>`` paths."""
    location = store if isinstance(store, str | os.PathLike) else store.location
    tree = file_tree(str(location))
    if tree is None:
        return []
    names = [rel.rsplit("/", 1)[0] for rel in tree.files if rel.endswith(("/zarr.json", "/.zgroup"))]
    return sorted(n for n in names if layout.is_derived(n) and n.count("/") == 3 and
                  not n.rsplit("/", 1)[-1].startswith("."))


def check_integrity(store: StoreFiles | str | os.PathLike[str]) -> None:
    """Raise :class:`IntegrityError` listing every problem :func:`verify` finds."""
    problems = verify(store)
    if problems:
        location = store if isinstance(store, str | os.PathLike) else store.location
        raise IntegrityError(f"{len(problems)} problem(s) in {str(location)!r}: " + "; ".join(problems))
