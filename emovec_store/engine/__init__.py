"""The extraction engine: resolve and load a causal LM, plan batches, capture every layer with
hooks, pool inside the hooks, and stream the result into a store. torch is imported lazily."""
from __future__ import annotations

from ..layout import parse_layers
from .extract import ExtractionResult, ReadoutResult, extract, parse_shard
from .readouts import DEFAULT_READOUTS, ReadoutSpec, parse_readout
from .resolve import ALIASES, ResolvedModel, alias_installed, alias_size, pull, resolve

__all__ = ["ALIASES", "DEFAULT_READOUTS", "ExtractionResult", "ReadoutResult", "ReadoutSpec", "ResolvedModel",
           "alias_installed", "alias_size", "extract", "parse_layers", "parse_readout", "parse_shard", "pull",
           "resolve"]
