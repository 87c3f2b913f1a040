"""Finalize (flags → cleanup → manifest → consolidated metadata → complete) and verify."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import zarr

from . import layout
from .errors import IncompleteStoreError, IntegrityError, StoreError
from .progress import write_atomic

if TYPE_CHECKING:
    from .store import Store


def _is_data_file(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return not (name == "zarr.json" or name.endswith(".partial") or rel.startswith(layout.MANIFEST_GROUP + "/")
                or layout.is_derived(rel))


def _data_files(root: Path) -> Iterator[str]:
    """Relative paths of the chunk files (every file but metadata, the manifest and temp files)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            if _is_data_file(rel):
                yield rel


def _sha256_file(fh: object) -> str:
    h = hashlib.sha256()
    for block in iter(lambda: fh.read(1 << 20), b""):  # type: ignore[attr-defined]
        h.update(block)
    return h.hexdigest()


def manifest(root: Path) -> dict[str, str]:
    """sha256 of every chunk file of a store directory, by relative path."""
    out = {}
    for rel in _data_files(root):
        with open(root / rel, "rb") as fh:
            out[rel] = _sha256_file(fh)
    return out


def read_manifest(store: Store) -> dict[str, str]:
    """The manifest recorded at finalize (relative path → sha256)."""
    group = store._root[layout.MANIFEST_GROUP]
    return dict(zip(group["path"][:].tolist(), group["sha256"][:].tolist()))


def finalize(store: Store) -> None:
    """Make a store complete; refuses while any batch of any readout lacks its done flag."""
    path = store._check_writable()
    missing = []
    for model in store.models:
        for readout in store.readouts(model):
            p = store.progress(model, readout)
            if not p.complete:
                missing.append(f"{model}/{readout} ({p.done}/{p.total} batches done)")
    if missing:
        raise IncompleteStoreError("cannot finalize, batches are missing in: " + ", ".join(missing) +
                                   "; resume the extraction first")
    for stray in path.rglob("*.partial"):
        stray.unlink()
    for leftover in path.rglob(".*.creating"):
        shutil.rmtree(leftover)
    shutil.rmtree(layout.lock_dir(path), ignore_errors=True)
    root = store._root
    for model in store.models:
        per_layer: dict[str, float] = {}
        for readout in store.readouts(model):
            group = root[f"models/{model}/{readout}"]
            peaks = np.nanmax(np.asarray(group[f"{layout.PROGRESS}/max_abs"][:]), axis=0)
            group.attrs["max_abs_per_layer"] = [float(x) for x in peaks]
            for layer, peak in zip(group.attrs["layers"], peaks):
                per_layer[str(layer)] = max(per_layer.get(str(layer), 0.0), float(peak))
        root[f"models/{model}"].attrs["max_abs_per_layer"] = per_layer
    digests = manifest(path)
    group = root.create_group(layout.MANIFEST_GROUP, overwrite=True)
    for name, values in (("path", list(digests)), ("sha256", list(digests.values()))):
        arr = group.create_array(name, shape=(len(values),), chunks=(max(1, len(values)),), dtype=str,
                                 dimension_names=("file",))
        arr[:] = np.asarray(values, dtype=object)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(zarr.storage.LocalStore(path))
    # One atomic rewrite of the root metadata sets `complete` last, next to the consolidated block.
    rewrite_root_attributes(path, complete=True,
                            finalized=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))


def rewrite_root_attributes(path: Path, *, drop_consolidated: bool = False, **updates: object) -> None:
    """Update the root group's attributes in one atomic rewrite of ``zarr.json``."""
    meta = json.loads((path / "zarr.json").read_text())
    if drop_consolidated:
        meta.pop("consolidated_metadata", None)
    meta["attributes"].update(updates)
    write_atomic(path / "zarr.json", json.dumps(meta, indent=2).encode())


def verify(store: Store) -> list[str]:
    """Re-hash every chunk file against the manifest written at finalize.

    Derived results (``models/<slug>/derived/``) are not part of the manifest and not checked here;
    :func:`derived_groups` lists them. Returns one line per problem (``damaged: PATH``, ``missing: PATH``, ``unexpected: PATH``); empty
    when the store is intact. Works on store directories and zip exports.
    """
    if not store.complete:
        raise IncompleteStoreError(f"store {store.location!r} is not finalized, so it has no manifest yet")
    expected = read_manifest(store)
    location = Path(store.location)
    if store.local_path is not None:
        present = set(_data_files(location))

        def digest(rel: str) -> str:
            with open(location / rel, "rb") as fh:
                return _sha256_file(fh)
    elif location.suffix == ".zip":
        zf = zipfile.ZipFile(location)
        present = {n for n in zf.namelist() if not n.endswith("/") and _is_data_file(n)}

        def digest(rel: str) -> str:
            with zf.open(rel) as fh:
                return _sha256_file(fh)
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


def derived_groups(store: Store) -> list[str]:
    """The derived results in a store directory or zip, as ``models/<slug>/derived/<name>`` paths."""
    location = Path(store.location)
    if store.local_path is not None:
        names = [str(p.parent.relative_to(location)).replace(os.sep, "/")
                 for p in location.glob(f"models/*/{layout.DERIVED}/*/zarr.json")]
    elif location.suffix == ".zip":
        with zipfile.ZipFile(location) as zf:
            names = [n.rsplit("/", 1)[0] for n in zf.namelist() if n.endswith("/zarr.json")]
    else:
        return []
    return sorted(n for n in names if layout.is_derived(n) and n.count("/") == 3 and
                  not n.rsplit("/", 1)[-1].startswith("."))


def check_integrity(store: Store) -> None:
    """Raise :class:`IntegrityError` listing every problem :func:`verify` finds."""
    problems = verify(store)
    if problems:
        raise IntegrityError(f"{len(problems)} problem(s) in {store.location!r}: " + "; ".join(problems))
