"""emovec_store: the Zarr v3 activation store and the streaming memmap writer.

Open a store in a notebook::

    import emovec_store
    store = emovec_store.open("runs/smollm2.zarr")
    ds = store.dataset("smollm2-135m", "mean_from_50")   # dims (layer, stimulus, hidden), lazy
    ds.pooled.sel(layer=20).groupby("emotion").mean()
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# The error tree and the summaries (whose heavy imports are inside their functions) load now; the
# rest loads on first use (PEP 562), so that `emovec models list` and other light users of the
# engine's model table do not pay for zarr, xarray and pandas.
from .errors import (
                     EmovecError,
                     IncompatibleStoreError,
                     IncompleteStoreError,
                     InputError,
                     IntegrityError,
                     Interrupted,
                     ModelResolutionError,
                     NonFiniteActivationError,
                     ReadOnlyStoreError,
                     SchemaVersionError,
                     StoreError,
                     StoreLockedError,
                     StoreNotFoundError,
)
from .info import info, ls

if TYPE_CHECKING:
    from .derived import derived_writer, list_derived, read_derived, write_derived
    from .dtypes import STORAGE_DTYPES, bf16_bits_to_float32, float32_to_bf16_bits
    from .export import export_zarr2, export_zip
    from .finalize import check_integrity, verify
    from .layout import default_chunk_rows, default_token_chunk_rows, slugify
    from .progress import Progress
    from .store import Store, create, open, stimuli_sha256
    from .writer import StreamWriter

#: name -> the submodule that defines it, imported on first access
_LAZY = {
    **dict.fromkeys(("derived_writer", "list_derived", "read_derived", "write_derived"), "derived"),
    **dict.fromkeys(("STORAGE_DTYPES", "bf16_bits_to_float32", "float32_to_bf16_bits"), "dtypes"),
    **dict.fromkeys(("export_zarr2", "export_zip"), "export"),
    **dict.fromkeys(("check_integrity", "verify"), "finalize"),
    **dict.fromkeys(("default_chunk_rows", "default_token_chunk_rows", "slugify"), "layout"),
    "Progress": "progress",
    **dict.fromkeys(("Store", "create", "open", "stimuli_sha256"), "store"),
    "StreamWriter": "writer",
}
_SUBMODULES = ("demo", "derived", "dtypes", "engine", "export", "finalize", "layout", "nodes", "progress",
               "store", "writer")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
    elif name in _SUBMODULES:  # `emovec_store.layout.X` without importing the submodule first
        value = import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = [
    "STORAGE_DTYPES", "EmovecError", "IncompatibleStoreError", "IncompleteStoreError", "InputError",
    "IntegrityError", "Interrupted", "ModelResolutionError", "NonFiniteActivationError", "Progress",
    "ReadOnlyStoreError", "SchemaVersionError", "Store", "StoreError", "StoreLockedError",
    "StoreNotFoundError", "StreamWriter", "bf16_bits_to_float32", "check_integrity", "create",
    "derived_writer", "list_derived", "read_derived", "write_derived",
    "default_chunk_rows", "default_token_chunk_rows", "export_zarr2", "export_zip",
    "float32_to_bf16_bits", "info", "ls", "open", "slugify", "stimuli_sha256", "verify",
]
