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
import shutil
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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


def _sidecar_path(store: Store, sidecar: str | Path | None) -> Path:
    return Path(sidecar) if sidecar is not None else default_sidecar(store)


def results_root(store: Store, sidecar: str | Path | None = None, *, create: bool = False) -> Path | None:
    """The directory holding the derived groups: the store itself when it is a writable directory
    (and no sidecar is named), else the sidecar. None when reading and no sidecar exists."""
    if sidecar is None and _writable_dir(store):
        assert store.local_path is not None
        return store.local_path
    side = _sidecar_path(store, sidecar)
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


class DerivedWriter:
    """Appends blocks of one derived result along a dimension (see :func:`derived_writer`)."""

    def __init__(self, root_dir: Path, group: str, name: str, provenance: Mapping[str, Any], append_dim: str) -> None:
        self._root_dir, self._group, self._name = root_dir, group, name
        self._provenance, self._append_dim = provenance, append_dim
        self.blocks = 0

    def append(self, block: xr.Dataset) -> None:
        """Write ``block`` (numpy- or dask-backed; dask blocks are written chunk by chunk, never loaded
        whole). The first block fixes the variables; later ones extend ``append_dim``."""
        ds = block.copy()
        for name_, var in ds.variables.items():  # fixed-width unicode has no zarr v3 spec: store vlen strings
            if var.dtype.kind == "U":
                ds[name_] = var.astype(object)
        ds.attrs = {**ds.attrs, "emovec_provenance": self._provenance}
        first = self.blocks == 0
        if not first and self._append_dim not in ds.dims:
            raise InputError(f"derived result {self._name!r}: a later block has no {self._append_dim!r} dimension")
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
                ds.to_zarr(zarr.storage.LocalStore(self._root_dir), group=self._group, consolidated=False,
                           zarr_format=3, mode="w" if first else "a",
                           append_dim=None if first else self._append_dim)
        except OSError as exc:
            raise StoreError(f"cannot write derived result {self._name!r} under {str(self._root_dir)!r}: "
                             f"{exc.strerror or exc}") from exc
        self.blocks += 1


def _check_name(store: Store, model: str, name: str) -> None:
    if model not in store.models:
        raise InputError(f"store {store.location!r} has no model {model!r}; available: {', '.join(store.models)}")
    if not name.replace("_", "").replace("-", "").isalnum():
        raise InputError(f"derived result name {name!r} must be letters, digits, '-' or '_'")


@contextmanager
def derived_writer(store: Store, model: str, name: str, *, provenance: Mapping[str, Any] | None = None,
                   sidecar: str | Path | None = None, append_dim: str = "layer") -> Iterator[DerivedWriter]:
    """Write ``derived/<name>`` of ``model`` block by block (e.g. a block of layers at a time, so that
    memory does not grow with the number of layers), replacing an older result of that name.

    The blocks go to a temporary group that is renamed into place when the ``with`` block ends without
    an exception; on an exception (or when no block was appended) the old result stays as it was.
    ``provenance`` (JSON-able) goes into the group's attributes under ``emovec_provenance``.
    """
    _check_name(store, model, name)
    made_sidecar = results_root(store, sidecar) is None  # made by this call: undone if the result fails
    empty_dir_before = made_sidecar and _sidecar_path(store, sidecar).is_dir()
    root_dir = results_root(store, sidecar, create=True)
    assert root_dir is not None
    try:
        with _writing(model, name, root_dir, provenance, append_dim) as writer:
            yield writer
    except BaseException:
        if made_sidecar:  # a failed first result leaves no empty sidecar behind (an empty directory stays)
            shutil.rmtree(root_dir, ignore_errors=True)
            if empty_dir_before:
                root_dir.mkdir(exist_ok=True)
        raise


@contextmanager
def _writing(model: str, name: str, root_dir: Path, provenance: Mapping[str, Any] | None,
             append_dim: str) -> Iterator[DerivedWriter]:
    """The body of :func:`derived_writer` once its results directory exists."""
    _ensure_groups(root_dir, model)
    final = root_dir / layout.derived_group(model, name)
    prov = json.loads(json.dumps(dict(provenance or {}), default=str))
    body_done = False
    try:
        with atomic_path(final, tmp=final.with_name(f".{name}.writing")) as tmp:
            writer = DerivedWriter(root_dir, str(tmp.relative_to(root_dir)), name, prov, append_dim)
            yield writer
            body_done = True
            if writer.blocks == 0:
                raise InputError(f"derived result {name!r}: nothing was written")
    except OSError as exc:
        if not body_done:  # the caller's own error, not the closing rename
            raise
        raise StoreError(f"cannot write derived result {name!r} under {str(root_dir)!r}: "
                         f"{exc.strerror or exc}") from exc


def derived_location(store: Store, model: str, name: str, sidecar: str | Path | None = None) -> str:
    """Where :func:`write_derived` puts ``derived/<name>``: ``PATH::models/<slug>/derived/<name>``."""
    root_dir = results_root(store, sidecar, create=True)
    return f"{root_dir}::{layout.derived_group(model, name)}"


def write_derived(store: Store, model: str, name: str, result: xr.Dataset, *,
                  provenance: Mapping[str, Any] | None = None, sidecar: str | Path | None = None) -> str:
    """Write ``result`` as ``derived/<name>`` of ``model``, replacing an older result of that name.

    ``provenance`` (JSON-able: the analysis, its settings, the readout and layers it read) goes into
    the group's attributes under ``emovec_provenance``. Returns where it was written
    (``PATH::models/<slug>/derived/<name>``).
    """
    with derived_writer(store, model, name, provenance=provenance, sidecar=sidecar) as writer:
        writer.append(result)
    return derived_location(store, model, name, sidecar)


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


def read_derived(store: Store, model: str, name: str, sidecar: str | Path | None = None, *,
                 load: bool = True) -> xr.Dataset:
    """A derived result as a Dataset: loaded, or with ``load=False`` lazy (dask, one array chunk per
    dask chunk) for results too large to hold at once, such as the projections of a big store."""
    available = list_derived(store, model, sidecar)
    if name not in available:
        raise InputError(f"store {store.location!r} has no derived result {name!r} for model {model!r}; "
                         f"available: {', '.join(available) or 'none (run `emovec analyze` first)'}")
    root_dir = results_root(store, sidecar)
    assert root_dir is not None
    ds: xr.Dataset = xr.open_zarr(zarr.storage.LocalStore(root_dir, read_only=True),
                                  group=layout.derived_group(model, name), consolidated=False,
                                  chunks={} if not load else None)
    return ds.load() if load else ds
