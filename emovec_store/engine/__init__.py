"""The extraction engine: resolve and load a causal LM, plan batches, capture every layer with
hooks, pool inside the hooks, and stream the result into a store.

torch and transformers are imported only by the functions that load or run a model, so importing
the engine costs no more than importing the store. :func:`resolve` is the one model resolver;
:func:`.load.load` loads a model with its tokenizer, :func:`load_tokenizer` a tokenizer alone."""
from __future__ import annotations

from ..layout import parse_layers
from .extract import ExtractionResult, ReadoutResult, extract, parse_shard
from .load import load_tokenizer
from .readouts import DEFAULT_READOUTS, ReadoutSpec, parse_readout
from .resolve import ALIASES, ResolvedModel, alias_installed, alias_size, pull, resolve

__all__ = ["ALIASES", "DEFAULT_READOUTS", "ExtractionResult", "ReadoutResult", "ReadoutSpec", "ResolvedModel",
           "alias_installed", "alias_size", "extract", "load_tokenizer", "parse_layers", "parse_readout",
           "parse_shard", "pull", "resolve"]
