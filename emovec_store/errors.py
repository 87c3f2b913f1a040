"""The error tree, re-exported: it lives in :mod:`emovec.common.errors`, the layer every stage imports.

Kept so that ``emovec_store.errors.X`` and ``emovec_store.X`` go on naming the same classes.
"""
from __future__ import annotations

from emovec.common.errors import (
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

__all__ = ["EmovecError", "IncompatibleStoreError", "IncompleteStoreError", "InputError", "IntegrityError",
           "Interrupted", "ModelResolutionError", "NonFiniteActivationError", "ReadOnlyStoreError",
           "SchemaVersionError", "StoreError", "StoreLockedError", "StoreNotFoundError"]
