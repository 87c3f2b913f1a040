"""Create and open emovec stores; the read API returns labelled, lazy xarray objects.

The schema itself (which groups and arrays a store and a readout have) is built by
:mod:`emovec_store.schema`; whether a model or readout is built or checked against what is there is
:mod:`emovec_store.planning`; sealing and verifying are :mod:`emovec_store.finalize`. This module creates
and opens stores, and reads them; :class:`Store`'s writing methods are the doors to those modules.
"""
from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
import zarr

from emovec.common.files import atomic_path

from . import layout
from .dtypes import StorageDtype, bf16_bits_to_float32
from .errors import (
    EmovecError,
    IncompatibleStoreError,
    IncompleteStoreError,
    InputError,
    ReadOnlyStoreError,
    SchemaVersionError,
    StoreError,
    StoreNotFoundError,
)
from .finalize import finalize_store, unseal
from .finalize import verify as verify_files
from .fserrors import reported
from .guarded import GuardedStore, url_storage_options
from .nodes import group_at, read_values
from .planning import plan_model, plan_readout
from .progress import Progress, done_flags
from .schema import (
    build_store,
    normalise_stimuli,
    stimuli_sha256,
)
from .storefiles import check_structure
from .writer import StreamWriter

Mode = Literal["r", "r+"]


def create(path: str | Path, stimuli: pd.DataFrame, *, store_text: bool = False,
           exist_ok: bool = True) -> Store:
    """Create a store for a stimulus table, or open the existing one made for the same table.

    Parameters
    ----------
    path : directory to create (``NAME.zarr``).
    stimuli : DataFrame with a unique ``stimulus`` id column and optional label columns
        (``kind``, ``emotion``, ``topic``, ``split``, ``language``, ``perspective``), ``text`` and
        ``text_sha256``. ``stimuli.attrs["corpus"]`` (name, version, sha256) is recorded.
    store_text : also store the texts (off by default: stores are shared, corpora may be private).
    exist_ok : reopen an existing store made for the same table; a different table is refused.
    """
    path = Path(path)
    table = normalise_stimuli(stimuli)
    digest = stimuli_sha256(table)
    if (path / "zarr.json").exists():
        if not exist_ok:
            raise IncompatibleStoreError(f"store {str(path)!r} already exists")
        store = open(path, mode="r+", allow_partial=True)
        theirs = store.attrs.get("stimuli_sha256")
        if theirs != digest:
            raise IncompatibleStoreError(
                f"store {str(path)!r} was made for a different stimulus table (sha256 {str(theirs)[:12]}…, "
                f"this one {digest[:12]}…); use a new --store path")
        return store
    if path.is_symlink() and not path.exists():
        raise InputError(f"{str(path)!r} is a link to nothing (or to itself); choose another path")
    if path.exists() and not path.is_dir():
        raise InputError(f"{str(path)!r} is a file, not a store directory; choose another path")
    if path.exists() and any(path.iterdir()):
        raise InputError(f"{str(path)!r} exists and is not an emovec store; choose another path")
    _remove_stale_creations(path)
    # Built whole under a temporary name beside the store and renamed into place: a kill at any moment
    # leaves either no store or a complete empty one, never a root without its schema attributes.
    with (reported(f"creating store {str(path)!r}", path),
          atomic_path(path, tmp=_creating_path(path, os.getpid()), exclusive=True) as tmp):
        build_store(tmp, table, stimuli.attrs.get("corpus", {}), digest, store_text=store_text, final=path)
    if not (path / "zarr.json").is_file():  # the rename was refused, e.g. the path is a dangling or looping link
        raise StoreError(f"cannot create store {str(path)!r}: something that is not a directory is in the way")
    # exclusive: if another process created the same store first, its store was kept; check it is ours
    return create(path, stimuli, store_text=store_text, exist_ok=True)


def _creating_path(path: Path, pid: int) -> Path:
    return path.with_name(f".{path.name}.{pid}.creating")


def _remove_stale_creations(path: Path) -> None:
    """Remove the temporary trees of creations whose process is gone (killed mid-creation)."""
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.creating"):
        pid = leftover.name[len(path.name) + 2:-len(".creating")]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


#: URL schemes whose fsspec backend is an optional extra of emovec.
_URL_EXTRAS = {"s3": "s3"}


def _url_store(location: str, storage_options: Mapping[str, Any] | None) -> Any:
    """A read-only fsspec zarr store for a URL: emovec's timeouts (:func:`url_storage_options`) under
    the caller's ``storage_options``. A scheme without its fsspec backend is one line naming the package."""
    options = {**(url_storage_options(location) or {}), **(storage_options or {})}
    scheme = location.split("://", 1)[0]
    try:
        return zarr.storage.FsspecStore.from_url(location, read_only=True, storage_options=options or None)
    except ImportError as exc:
        extra = _URL_EXTRAS.get(scheme)
        how = f"pip install 'emovec[{extra}]'" if extra else f"install fsspec's backend for {scheme}://"
        raise InputError(f"reading {scheme}:// stores needs a package that is not installed ({exc}); {how}",
                         field="store") from None
    except ValueError as exc:  # fsspec: "Protocol not known", or options the backend refuses
        raise InputError(f"cannot open {location!r}: {exc}", field="store") from None
    except TypeError as exc:  # a storage option the backend does not take
        raise InputError(f"cannot open {location!r} with storage options {sorted(options)}: {exc}",
                         field="storage_options") from None


def _zarr_store(location: str, mode: Mode, storage_options: Mapping[str, Any] | None = None
                ) -> tuple[Any, Path | None]:
    if "://" in location:
        if mode != "r":
            raise ReadOnlyStoreError(f"stores at URLs open read-only: {location}")
        return _url_store(location, storage_options), None
    path = Path(location)
    if path.suffix == ".zip":
        if not path.is_file():
            raise StoreNotFoundError(f"no such file: {location!r}")
        if mode != "r":
            raise ReadOnlyStoreError(f"zip stores open read-only: {location}")
        check_structure(location)  # before zarr parses anything: one line naming a damaged entry
        return zarr.storage.ZipStore(path, mode="r", read_only=True), None
    if not ((path / "zarr.json").is_file() or (path / ".zgroup").is_file()):
        raise StoreNotFoundError(f"no emovec store at {location!r} (no zarr.json there)")
    check_structure(location)  # before zarr parses anything: one line naming a damaged document
    return zarr.storage.LocalStore(path, read_only=(mode == "r")), path


def open(path_or_url: str | Path, mode: Mode = "r", *, allow_partial: bool = False,
         storage_options: Mapping[str, Any] | None = None) -> Store:
    """Open a store directory, a ``.zip`` export, or a read-only URL (``https://``, ``s3://`` with
    ``emovec[s3]``, any other fsspec scheme whose backend is installed).

    An incomplete (not finalized) store raises :class:`IncompleteStoreError` unless
    ``allow_partial=True``; rows never written then read as NaN. ``storage_options`` go to the URL's
    fsspec filesystem over emovec's own timeouts (:func:`~emovec_store.guarded.url_storage_options`),
    e.g. ``{"anon": True}`` for a public S3 bucket or ``{"endpoint_url": ...}`` for another S3 server.
    """
    location = str(path_or_url)
    if storage_options is not None and "://" not in location:
        raise InputError(f"storage_options are for stores at URLs, not {location!r}", field="storage_options")
    zstore, local = _zarr_store(location, mode, storage_options)
    guarded = GuardedStore(zstore, location, check_hashes="://" in location) if mode == "r" else None
    try:
        root = zarr.open_group(guarded or zstore, mode="r" if mode == "r" else "r+",
                               use_consolidated=None if mode == "r" else False)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise StoreNotFoundError(f"no emovec store at {location!r}") from exc
    except EmovecError:
        raise
    except Exception as exc:  # a URL store's metadata cannot be checked beforehand: name what failed
        raise StoreError(f"cannot read the metadata of store {location!r} ({type(exc).__name__}: "
                         f"{str(exc)[:120]})") from None
    attrs = dict(root.attrs)
    if attrs.get("emovec_schema") != layout.SCHEMA_VERSION:
        raise SchemaVersionError(f"{location!r} has emovec_schema={attrs.get('emovec_schema')!r}; this "
                                 f"emovec reads schema {layout.SCHEMA_VERSION}")
    if not attrs.get("complete") and not allow_partial:
        raise IncompleteStoreError(
            f"store {location!r} is not finalized (extraction unfinished or `emovec store finalize` not run); "
            "pass allow_partial=True to read it anyway (unwritten rows are NaN)")
    if guarded is not None and attrs.get("complete"):
        guarded.expected = _manifest_keys(root, location)
    return Store(root, guarded or zstore, location, local, mode)


def _manifest_keys(root: zarr.Group, location: str) -> dict[str, str]:
    """The manifest of a finalized store (key -> sha256); :class:`StoreError` if it cannot be read."""
    try:
        group = group_at(root, layout.MANIFEST_GROUP)
        keys = [str(k) for k in read_values(group, "path").tolist()]
        digests = [str(d) for d in read_values(group, "sha256").tolist()]
    except EmovecError:
        raise
    except Exception as exc:  # a deleted or truncated manifest: the store is damaged, say so in one line
        raise StoreError(f"store {location!r} is damaged: its manifest cannot be read ({type(exc).__name__}: "
                         f"{str(exc)[:100]}); `emovec store verify` lists every problem") from None
    if len(keys) != len(digests):
        raise StoreError(f"store {location!r} is damaged: its manifest has {len(keys)} paths but "
                         f"{len(digests)} hashes")
    return dict(zip(keys, digests))


class Store:
    """An open emovec store. Obtain one with :func:`create` or :func:`open`.

    Reading returns labelled, lazy xarray objects (:meth:`dataset`, :meth:`tree`); :meth:`add_model`,
    :meth:`add_readout` and :meth:`writer` fill a store; :meth:`finalize` seals it. The accessors
    :attr:`zarr_root`, :meth:`model_group`, :meth:`readout_group` and :meth:`readout_dir` expose the
    zarr hierarchy and its directory to the modules built on a store (writer, info, export, derived).
    """

    def __init__(self, root: zarr.Group, zstore: Any, location: str, local_path: Path | None,
                 mode: Mode) -> None:
        self._root, self._zstore = root, zstore
        self.location, self.local_path, self.mode = location, local_path, mode

    def __repr__(self) -> str:
        state = "complete" if self.complete else "incomplete"
        return f"<emovec Store {self.location!r} ({state}; models: {', '.join(self.models) or 'none'})>"

    # -- metadata -------------------------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes (schema version, timestamps, completeness, software versions)."""
        return dict(self._root.attrs)

    @property
    def complete(self) -> bool:
        return bool(self._root.attrs.get("complete"))

    @property
    def models(self) -> list[str]:
        """Model slugs in the store."""
        return sorted(name for name, _ in group_at(self._root, "models").groups())

    def model_attrs(self, model: str) -> dict[str, Any]:
        """Provenance attributes of one model."""
        return dict(self.model_group(model).attrs)

    def readouts(self, model: str) -> list[str]:
        """Readout (pooling spec) groups of one model."""
        return sorted(name for name, _ in self.model_group(model).groups()
                      if name != layout.DERIVED and not name.startswith("."))

    def readout_attrs(self, model: str, readout: str) -> dict[str, Any]:
        return dict(self.readout_group(model, readout).attrs)

    def dataset_ids(self, model: str, readout: str) -> list[str]:
        """The stimulus ids of a readout, in row (plan) order."""
        return [str(s) for s in read_values(self.readout_group(model, readout), "stimulus").tolist()]

    def progress(self, model: str, readout: str) -> Progress:
        """Done and total batches of one readout."""
        flags = done_flags(self.readout_group(model, readout), self.readout_dir(model, readout))
        return Progress(int(flags.sum()), int(flags.size))

    # -- the zarr hierarchy ---------------------------------------------------------------------
    @property
    def zarr_root(self) -> zarr.Group:
        """The root zarr group (read-only unless the store was opened ``mode="r+"``)."""
        return self._root

    def model_group(self, model: str) -> zarr.Group:
        """The zarr group of one model; :class:`InputError` naming the available models if absent."""
        models = group_at(self._root, "models")
        if model not in models:
            raise InputError(f"store {self.location!r} has no model {model!r}; available: "
                             f"{', '.join(self.models) or 'none'}")
        return group_at(models, model)

    def readout_group(self, model: str, readout: str) -> zarr.Group:
        """The zarr group of one readout; :class:`InputError` naming the available readouts if absent."""
        group = self.model_group(model)
        if readout not in group:
            raise InputError(f"store {self.location!r} has no readout {readout!r} for model {model!r}; "
                             f"available: {', '.join(self.readouts(model)) or 'none'}")
        return group_at(group, readout)

    def readout_dir(self, model: str, readout: str) -> Path | None:
        """The directory of a readout group; None for stores that are not a local directory (zip, URL)."""
        return None if self.local_path is None else self.local_path / layout.readout_group(model, readout)

    # -- reading --------------------------------------------------------------------------------
    def _open_xr(self, group: str) -> xr.Dataset:
        ds: xr.Dataset = xr.open_zarr(self._zstore, group=group, chunks={}, consolidated=self.complete,
                                      mask_and_scale=False)
        for var in ds.variables.values():  # fill values are not masked here (bf16 bits must stay raw)
            var.attrs.pop("_FillValue", None)
        return ds

    @property
    def stimuli(self) -> xr.Dataset:
        """The stimulus table: one row per stimulus, labels as variables along ``stimulus``."""
        return _plain_strings(self._open_xr("stimuli").load())

    @property
    def stimuli_attrs(self) -> dict[str, Any]:
        """The stimulus table's attributes (corpus source, emotion categories …), read without the table."""
        return dict(group_at(self._root, "stimuli").attrs)

    def stimulus_columns(self, names: Sequence[str]) -> xr.Dataset:
        """Only the named columns of the stimulus table (those it has), read from the store; a large
        table's other columns (texts, hashes) are never loaded."""
        table = self._open_xr("stimuli")
        return _plain_strings(table[[n for n in names if n in table.data_vars]].load())

    @property
    def emotions(self) -> xr.Dataset:
        """The emotions table: dim ``emotion`` (corpus order), ``quadrant`` ("" unknown) and the human
        norms ``valence``, ``arousal``, ``dominance`` (0..1, NaN where the corpus gives none).

        Stores written before the table existed give the stimulus table's emotion categories with
        NaN norms."""
        if layout.EMOTIONS_GROUP in self._root:
            ds = _plain_strings(self._open_xr(layout.EMOTIONS_GROUP).load())
            ds = ds.set_coords("emotion")
        else:
            categories = group_at(self._root, "stimuli").attrs.get("emotion_categories", [])
            cats = [str(c) for c in categories] if isinstance(categories, list) else []
            nan = np.full(len(cats), np.nan)
            ds = xr.Dataset({"quadrant": ("emotion", np.asarray([""] * len(cats), dtype=object)),
                             **{k: ("emotion", nan.copy()) for k in layout.NORM_COLUMNS}},
                            coords={"emotion": np.asarray(cats, dtype=object)})
            ds.attrs["norms_source"] = ""
        return ds

    def dataset(self, model: str, readout: str | None = None) -> xr.Dataset:
        """One readout as a lazy Dataset with dims ``(layer, stimulus, hidden)`` (per-token readouts:
        ``(layer, token, hidden)``); labels are coordinates and bf16 bits are decoded to float32."""
        readouts = self.readouts(model)
        if readout is None:
            if len(readouts) != 1:
                raise InputError(f"model {model!r} has readouts {', '.join(readouts)}; name one")
            readout = readouts[0]
        self.readout_group(model, readout)
        ds = self._open_xr(layout.readout_group(model, readout))
        labels = [v for v in ds.data_vars if ds[v].dims == ("stimulus",)]
        ds = ds.set_coords(labels)
        # labels are tiny and groupby needs them in memory
        ds = ds.assign_coords({c: ds[c].load() for c in ds.coords if "stimulus" in ds[c].dims})
        for name in (layout.POOLED, layout.ACTS):
            if name in ds and ds[name].attrs.get("emovec_logical_dtype") == "bfloat16":
                raw = ds[name]
                decoded = raw.data.map_blocks(bf16_bits_to_float32, dtype=np.float32)
                ds[name] = raw.copy(data=decoded)
        return _plain_strings(ds)

    def tree(self) -> xr.DataTree:
        """All models and readouts as one DataTree (models may differ in layer count and width)."""
        nodes: dict[str, xr.Dataset] = {"/stimuli": self.stimuli}
        for model in self.models:
            for readout in self.readouts(model):
                nodes[f"/models/{model}/{readout}"] = self.dataset(model, readout)
        tree = xr.DataTree.from_dict(nodes)
        tree.attrs = self.attrs
        for model in self.models:
            tree[f"models/{model}"].attrs = self.model_attrs(model)
        return tree

    # -- writing --------------------------------------------------------------------------------
    def require_writable(self) -> Path:
        """The store directory, if models and readouts may be added now; else raises
        :class:`ReadOnlyStoreError` (opened read-only) or :class:`IncompatibleStoreError` (finalized)."""
        if self.mode != "r+" or self.local_path is None:
            raise ReadOnlyStoreError(f"store {self.location!r} was opened read-only")
        if self.complete:
            raise IncompatibleStoreError(f"store {self.location!r} is finalized; call reopen() before adding "
                                         "models or readouts")
        return self.local_path

    def reopen(self) -> None:
        """Make a finalized store writable again to add models or readouts (existing chunks stay as
        they are); it must be finalized again afterwards. No-op on an incomplete store."""
        if self.mode != "r+" or self.local_path is None:
            raise ReadOnlyStoreError(f"store {self.location!r} was opened read-only")
        if not self.complete:
            return
        path = self.local_path
        unseal(path)
        self._root = zarr.open_group(zarr.storage.LocalStore(path), mode="r+", use_consolidated=False)

    def add_model(self, model: str, attrs: Mapping[str, Any], *,
                  identity: Mapping[str, Any] | None = None) -> None:
        """Create the group of a model, or check that an existing one is the same model.

        ``identity`` (model file hash, revision, tokenizer hash…) must match on append; a mismatch
        raises :class:`IncompatibleStoreError` listing every differing key (:func:`planning.plan_model
        <emovec_store.planning.plan_model>`).
        """
        plan_model(self, model, attrs, identity)

    def add_readout(self, model: str, readout: str, *, stimulus_ids: Sequence[str],
                    layers: Sequence[int], hidden: int, storage_dtype: StorageDtype | str,
                    batches: Sequence[tuple[int, int]], chunk_rows: int | None = None,
                    n_tokens: Sequence[int] | None = None,
                    token_ids: Sequence[Sequence[int]] | None = None,
                    token_chunk_rows: int | None = None,
                    attrs: Mapping[str, Any] | None = None) -> None:
        """Create a readout group (arrays, batch plan, labels), or check an existing one matches
        (:func:`planning.plan_readout <emovec_store.planning.plan_readout>`).

        Parameters
        ----------
        stimulus_ids : the readout's stimuli, in row order (the order batches are written in).
        layers : hidden_states indices stored (0 = embeddings, i = output of decoder block i-1).
        batches : the immutable batch plan: ``[start, stop)`` row ranges covering every row once, in
            order; no batch may cross a chunk boundary (so writers never share a chunk).
        n_tokens : tokens seen per stimulus (recorded; required for per-token readouts).
        token_ids : per-token readouts only: the token ids of each stimulus; ``acts`` then holds one
            row per token in CSR layout (``offsets``), instead of ``pooled``.
        attrs : the readout's attributes, e.g. its spec verbatim and the short-text rule.
        """
        plan_readout(self, model, readout, stimulus_ids=stimulus_ids, layers=layers, hidden=hidden,
                     storage_dtype=storage_dtype, batches=batches, chunk_rows=chunk_rows, n_tokens=n_tokens,
                     token_ids=token_ids, token_chunk_rows=token_chunk_rows, attrs=attrs)

    def writer(self, model: str, readout: str, *, shard: tuple[int, int] | None = None,
               sync_interval: float = 1.0) -> StreamWriter:
        """A :class:`~emovec_store.writer.StreamWriter` for one readout (optionally one shard k/n of
        its chunks); done flags are synced at most every ``sync_interval`` seconds."""
        path = self.require_writable()
        return StreamWriter(self.readout_group(model, readout), path, model, readout, shard=shard,
                            sync_interval=sync_interval)

    def finalize(self) -> None:
        """Check every flag, clean up, write the manifest and consolidated metadata, mark complete.

        Refuses (:class:`IncompleteStoreError`) while any batch of any readout lacks its done flag
        (:func:`finalize.finalize_store <emovec_store.finalize.finalize_store>`)."""
        finalize_store(self)

    def verify(self) -> list[str]:
        """Re-hash every chunk file against the manifest; returns the damaged/missing/unexpected files."""
        return verify_files(self)


def _shared_strs(values: np.ndarray) -> np.ndarray:
    """An object array of str in which equal values are one str object: a label column of n rows then
    costs 8 bytes a row instead of a str object each (≈ 60 bytes for "joy")."""
    plain = np.asarray(values, dtype=object)
    codes, uniques = pd.factorize(plain.ravel())
    if (codes < 0).any():  # a missing value: keep the column as it is
        return plain
    shared: np.ndarray = np.asarray(uniques, dtype=object)[codes].reshape(plain.shape)
    return shared


def _plain_strings(ds: xr.Dataset) -> xr.Dataset:
    """numpy StringDType variables as object arrays of str (what pandas and most code expect), equal
    values sharing one str object."""
    conv = {v: (ds[v].dims, _shared_strs(ds[v].values), ds[v].attrs)
            for v in ds.variables if ds[v].dtype.kind == "T"}
    coords = {k: v for k, v in conv.items() if k in ds.coords}
    return ds.assign_coords(coords).assign({k: v for k, v in conv.items() if k not in coords})


__all__ = ["Mode", "Store", "create", "open", "stimuli_sha256"]
