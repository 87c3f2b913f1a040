"""The extraction engine: resolve and load a causal LM, plan batches, capture every layer with
hooks, pool inside the hooks, and stream the result into a store.

torch and transformers are imported only by the functions that load or run a model, so importing
the engine costs no more than importing the store. :func:`resolve` is the one model resolver;
:func:`.load.load` loads a model with its tokenizer, :func:`load_tokenizer` a tokenizer alone."""
from __future__ import annotations

import sys
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Any

# The model table loads now (standard library only: `emovec models list` needs no more); the rest on
# first use (PEP 562).
from .readouts import DEFAULT_READOUTS, ReadoutSpec, parse_readout
from .resolve import ALIASES, ResolvedModel, alias_installed, alias_size, pull, resolve

if TYPE_CHECKING:
    from ..layout import parse_layers
    from .cluster import ClusterExtractionResult, ShardFailedError, ShardResult, extract_on_cluster
    from .extract import ExtractionResult, ReadoutResult, extract
    from .load import load_tokenizer
    from .options import ExtractOptions, parse_shard

_LAZY = {"parse_layers": "..layout",
         **dict.fromkeys(("ClusterExtractionResult", "ShardFailedError", "ShardResult", "extract_on_cluster"),
                         ".cluster"),
         **dict.fromkeys(("ExtractionResult", "ReadoutResult", "extract"), ".extract"),
         "load_tokenizer": ".load", **dict.fromkeys(("ExtractOptions", "parse_shard"), ".options")}


class _Engine(ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        # Importing the submodule `extract` would bind it here, hiding the function `extract` (which
        # __getattr__ gives): the name stays the function, as it was when this package loaded it eagerly.
        if name == "extract" and isinstance(value, ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Engine


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


__all__ = ["ALIASES", "DEFAULT_READOUTS", "ClusterExtractionResult", "ExtractOptions", "ExtractionResult",
           "ReadoutResult", "ReadoutSpec", "ResolvedModel", "ShardFailedError", "ShardResult", "alias_installed",
           "alias_size", "extract", "extract_on_cluster", "load_tokenizer", "parse_layers", "parse_readout",
           "parse_shard", "pull", "resolve"]
