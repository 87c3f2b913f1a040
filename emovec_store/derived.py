"""Derived results (emotion vectors and other analysis outputs) written back next to the activations.

A result is an xarray Dataset stored at ``/models/<slug>/derived/<name>`` of the store directory. It
lies outside the activation manifest: writing it never marks a finalized store incomplete, never
re-hashes the activations, and ``verify`` lists derived groups separately. Stores that cannot be
written (a zip export, a URL, a read-only directory) get a *sidecar* store instead, by default
``NAME.derived.zarr`` next to a zip or in the working directory for a URL, with the same layout.

Each result is written under a temporary name and renamed into place, so a crash leaves either the
old result or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import xarray as xr
import zarr

from emovec.common.files import atomic_path

from . import layout
from .errors import InputError, StoreError
from .nodes import group_at
from .store import Store

SIDECAR_SUFFIX = ".derived.zarr"


def default_sidecar(store: Store) -> Path:
    """Where results go for a store that cannot be written: ``x.zip`` → ``x.derived.zarr`` beside it;
    a URL → ``<last path part>.derived.zarr`` in the working directory."""
    location = store.location.rstrip("/")
    if "://" in location:
        stem = location.rsplit("/", 1)[-1] or "store"
        return Path.cwd() / (stem.removesuffix(".zarr").removesuffix(".zip") + SIDECAR_SUFFIX)
    path = Path(location)
    return path.with_name(path.name.removesuffix(".zip").removesuffix(".zarr") + SIDECAR_SUFFIX)


def _writable_dir(store: Store) -> bool:
    return store.local_path is not None and os.access(store.local_path, os.W_OK)


def results_root(store: Store, sidecar: str | Path | None = None, *, create: bool = False) -> Path | None:
    """The directory holding the derived groups: the store itself when it is a writable directory
    (and no sidecar is named), else the sidecar. None when reading and no sidecar exists."""
    if sidecar is None and _writable_dir(store):
        assert store.local_path is not None
        return store.local_path
    side = Path(sidecar) if sidecar is not None else default_sidecar(store)
    if not (side / "zarr.json").is_file():
        if not create:
            return None
        if side.exists() and any(side.iterdir()):
            raise InputError(f"{str(side)!r} exists and is not a derived-results store; name another sidecar")
        root = zarr.open_group(zarr.storage.LocalStore(side), mode="w", zarr_format=3)
        root.attrs.update({"emovec_derived_for": store.location,
                           "stimuli_sha256": store.attrs.get("stimuli_sha256")})
        return side
    attrs = json.loads((side / "zarr.json").read_text()).get("attributes", {})
    if attrs.get("stimuli_sha256") != store.attrs.get("stimuli_sha256"):
        raise InputError(f"sidecar {str(side)!r} holds results for another store "
                         f"({attrs.get('emovec_derived_for')!r}); name another sidecar")
    return side


def _ensure_groups(root_dir: Path, model: str) -> None:
    root = zarr.open_group(zarr.storage.LocalStore(root_dir), mode="r+", use_consolidated=False)
    node: zarr.Group = root
    for part in layout.derived_group(model).split("/"):
        node = group_at(node, part) if part in node else node.create_group(part)


def write_derived(store: Store, model: str, name: str, result: xr.Dataset, *,
                  provenance: Mapping[str, Any] | None = None, sidecar: str | Path | None = None) -> str:
    """Write ``result`` as ``derived/<name>`` of ``model``, replacing an older result of that name.

    ``provenance`` (JSON-able: the analysis, its settings, the readout and layers it read) goes into
    the group's attributes under ``emovec_provenance``. Returns where it was written
    (``PATH::models/<slug>/derived/<name>``).
    """
    if model not in store.models:
        raise InputError(f"store {store.location!r} has no model {model!r}; available: {', '.join(store.models)}")
    if not name.replace("_", "").replace("-", "").isalnum():
        raise InputError(f"derived result name {name!r} must be letters, digits, '-' or '_'")
    root_dir = results_root(store, sidecar, create=True)
    assert root_dir is not None
    _ensure_groups(root_dir, model)
    final = root_dir / layout.derived_group(model, name)
    ds = result.copy()
    for name_, var in ds.variables.items():  # fixed-width unicode has no zarr v3 spec: store vlen strings
        if var.dtype.kind == "U":
            ds[name_] = var.astype(object)
    ds.attrs = {**ds.attrs, "emovec_provenance": json.loads(json.dumps(dict(provenance or {}), default=str))}
    try:
        with (atomic_path(final, tmp=final.with_name(f".{name}.writing")) as tmp, warnings.catch_warnings()):
            warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
            ds.to_zarr(zarr.storage.LocalStore(root_dir), group=str(tmp.relative_to(root_dir)), mode="w",
                       consolidated=False, zarr_format=3)
    except OSError as exc:
        raise StoreError(f"cannot write derived result {name!r} under {str(root_dir)!r}: "
                         f"{exc.strerror or exc}") from exc
    return f"{root_dir}::{layout.derived_group(model, name)}"


def list_derived(store: Store, model: str, sidecar: str | Path | None = None) -> list[str]:
    """Names of the derived results of ``model`` (in the store, or in its sidecar)."""
    root_dir = results_root(store, sidecar)
    if root_dir is None:
        return []
    group_dir = root_dir / layout.derived_group(model)
    if not group_dir.is_dir():
        return []
    return sorted(p.name for p in group_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and (p / "zarr.json").is_file())


def read_derived(store: Store, model: str, name: str, sidecar: str | Path | None = None) -> xr.Dataset:
    """A derived result as a Dataset (loaded; derived results are small)."""
    available = list_derived(store, model, sidecar)
    if name not in available:
        raise InputError(f"store {store.location!r} has no derived result {name!r} for model {model!r}; "
                         f"available: {', '.join(available) or 'none (run `emovec analyze` first)'}")
    root_dir = results_root(store, sidecar)
    assert root_dir is not None
    ds: xr.Dataset = xr.open_zarr(zarr.storage.LocalStore(root_dir, read_only=True),
                                  group=layout.derived_group(model, name), consolidated=False, chunks=None)
    return ds.load()
