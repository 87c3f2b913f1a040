"""Share a finalized store: one uncompressed zip file, or a Zarr format 2 copy for older stacks."""
from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import zarr

from emovec.common.files import atomic_path

from .errors import IncompleteStoreError, InputError, IntegrityError
from .finalize import manifest, verify, write_manifest
from .fserrors import reported
from .layout import MANIFEST_GROUP, dimension_names
from .store import Store
from .storefiles import DirTree, is_litter


def _require_finalized(store: Store) -> Path:
    if not store.complete or store.local_path is None:
        raise IncompleteStoreError(f"only a finalized local store can be exported; {store.location!r} is "
                                   "not (run `emovec store finalize` first)")
    return store.local_path


def _files_to_export(store: Store) -> list[str]:
    """The files of a finalized store, once it verifies clean: no damaged, missing or unexpected file,
    no link (a link planted in a store would carry whatever it points at into the copy)."""
    src = _require_finalized(store)
    problems = verify(store)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise IntegrityError(f"refusing to export {store.location!r}, it does not verify: "
                             + "; ".join(problems[:5]) + more)
    return [rel for rel in DirTree(src).files if not is_litter(rel)]


def _refuse_existing(out: Path) -> None:
    if out.exists():
        raise InputError(f"{str(out)!r} already exists; choose a new output path")


def _size(store: Store, files: list[str]) -> int:
    assert store.local_path is not None
    return sum((store.local_path / rel).stat().st_size for rel in files)


def export_zip(store: Store, out: str | Path) -> Path:
    """Zip a finalized store without compression (``ZIP_STORED``), so readers can seek into chunks.

    The store is verified first; ``emovec_store.open("x.zip")`` reads the result.
    """
    files, out = _files_to_export(store), Path(out)
    src = _require_finalized(store)
    _refuse_existing(out)
    with (reported(f"exporting {store.location!r} to {str(out)!r}", out, needed_bytes=_size(store, files)),
          atomic_path(out, tmp=out.with_name(out.name + ".partial")) as tmp,
          zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf):
        for rel in files:
            zf.write(src / rel, rel)
    return out


def export_zarr2(store: Store, out: str | Path) -> Path:
    """Copy a finalized store to Zarr format 2 (same arrays, attributes and raw bytes).

    The store is verified first. Dimension names go into ``_ARRAY_DIMENSIONS`` so xarray on older
    stacks labels the arrays; bf16-bits arrays stay uint16 with their ``emovec_logical_dtype``
    attribute. The copy carries a manifest of its own files (format 2 names chunk files differently),
    so ``emovec store verify`` checks it like the original; derived results are copied but, as in the
    original, not in it.
    """
    files = _files_to_export(store)
    out = Path(out)
    _refuse_existing(out)
    with (reported(f"exporting {store.location!r} to {str(out)!r}", out, needed_bytes=_size(store, files)),
          atomic_path(out, tmp=out.with_name(out.name + ".partial")) as tmp):
        dst = zarr.open_group(zarr.storage.LocalStore(tmp), mode="w", zarr_format=2)
        _copy_group(store.zarr_root, dst, skip=(MANIFEST_GROUP,))
        write_manifest(dst, manifest(tmp, with_metadata=True))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
            zarr.consolidate_metadata(zarr.storage.LocalStore(tmp))
    return out


def _copy_group(src: zarr.Group, dst: zarr.Group, skip: tuple[str, ...] = ()) -> None:
    dst.attrs.update(dict(src.attrs))
    for name, arr in src.arrays():
        attrs = {**dict(arr.attrs), "_ARRAY_DIMENSIONS": list(dimension_names(arr))}
        dtype = str if arr.dtype.kind in "TUO" else arr.dtype
        new = dst.create_array(name, shape=arr.shape, chunks=arr.chunks, dtype=dtype,
                               fill_value=arr.fill_value, compressors=None, attributes=attrs)
        if arr.ndim == 3:  # one layer at a time keeps memory at one layer
            for i in range(arr.shape[0]):
                new[i] = arr[i]
        elif arr.size:
            new[...] = arr[...]
    for name, group in src.groups():
        if name not in skip:
            _copy_group(group, dst.create_group(name))
