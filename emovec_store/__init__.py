"""emovec_store: the Zarr v3 activation store and the streaming memmap writer.

Open a store in a notebook::

    import emovec_store
    store = emovec_store.open("runs/smollm2.zarr")
    ds = store.dataset("smollm2-135m", "mean_from_50")   # dims (layer, stimulus, hidden), lazy
    ds.pooled.sel(layer=20).groupby("emotion").mean()
"""
from __future__ import annotations

from .derived import list_derived, read_derived, write_derived
from .dtypes import STORAGE_DTYPES, bf16_bits_to_float32, float32_to_bf16_bits
from .errors import (
                     EmovecError,
                     IncompatibleStoreError,
                     IncompleteStoreError,
                     InputError,
                     IntegrityError,
                     ModelResolutionError,
                     NonFiniteActivationError,
                     ReadOnlyStoreError,
                     SchemaVersionError,
                     StoreError,
                     StoreLockedError,
                     StoreNotFoundError,
)
from .export import export_zarr2, export_zip
from .finalize import check_integrity, verify
from .info import info, ls
from .layout import default_chunk_rows, default_token_chunk_rows, slugify
from .progress import Progress
from .store import Store, create, open, stimuli_sha256
from .writer import StreamWriter

__all__ = [
    "STORAGE_DTYPES", "EmovecError", "IncompatibleStoreError", "IncompleteStoreError", "InputError",
    "IntegrityError", "ModelResolutionError", "NonFiniteActivationError", "Progress",
    "ReadOnlyStoreError", "SchemaVersionError", "Store", "StoreError", "StoreLockedError",
    "StoreNotFoundError", "StreamWriter", "bf16_bits_to_float32", "check_integrity", "create",
    "list_derived", "read_derived", "write_derived",
    "default_chunk_rows", "default_token_chunk_rows", "export_zarr2", "export_zip",
    "float32_to_bf16_bits", "info", "ls", "open", "slugify", "stimuli_sha256", "verify",
]
