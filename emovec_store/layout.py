"""Names and paths of the store schema (version 1); see docs/store.md for the whole layout.

A store is a Zarr v3 hierarchy::

    /                          attrs: emovec_schema, created, finalized, complete, software
    /stimuli/                  one row per stimulus: stimulus id, labels, text_sha256
    /emotions/                 one row per emotion: name, quadrant, valence, arousal, dominance (NaN unknown)
    /models/<slug>/            attrs: provenance of the model
    /models/<slug>/<readout>/  pooled (layer, stimulus, hidden) or, for per-token readouts,
                               acts (layer, token, hidden) + token index arrays (chunk-aligned offsets)
    /models/<slug>/<readout>/_progress/   the immutable batch plan, per-batch done flags and max |x|
    /models/<slug>/derived/<name>/        analysis results (emotion vectors, …): outside the manifest

Chunk files use zarr's default v3 key encoding (``c/<i>/<j>/<k>``), uncompressed (``bytes`` codec
only), so a chunk file is raw little-endian C-order data that numpy can memmap directly.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .dtypes import StorageDtype, physical_dtype
from .errors import InputError

SCHEMA_VERSION = 1
#: Label columns of the stimulus table (strings) that are copied into every readout as coordinates.
LABEL_COLUMNS: tuple[str, ...] = ("kind", "emotion", "topic", "split", "language", "perspective",
                                  "text_sha256", "template", "value", "task")
#: Integer label columns (0 where a stimulus has none), copied like LABEL_COLUMNS.
INT_LABEL_COLUMNS: tuple[str, ...] = ("level",)
EMOTIONS_GROUP = "emotions"
#: Norm columns of the emotions table (floats, NaN when the corpus gives none).
NORM_COLUMNS: tuple[str, ...] = ("valence", "arousal", "dominance")
DERIVED = "derived"
POOLED = "pooled"
ACTS = "acts"
PROGRESS = "_progress"
#: ``token_layout`` of per-token readouts: the tokens of each row chunk start at a multiple of the
#: token chunk size, so that the writers of two row chunks never share an ``acts`` chunk file.
TOKEN_LAYOUT_ALIGNED = "chunk-aligned"
#: The ``token_layout`` of per-token readouts written before the attribute existed (no ``token_layout``):
#: every stimulus' tokens straight after the previous one's (CSR), row chunks sharing token chunks.
TOKEN_LAYOUT_CONTIGUOUS = "contiguous"
#: Structural attributes of per-token readouts that the store derives when it builds the arrays
#: (not part of a plan: a readout is resumed in the layout it was built with).
TOKEN_LAYOUT_ATTRS: tuple[str, ...] = ("token_layout", "token_chunk_rows")
#: Readout attributes the store sets itself (the structural layout of a readout); the attributes a
#: caller passes (spec, provenance) may not use these names. ``layout`` is ``pooled`` or ``tokens``.
STRUCTURAL_ATTRS: tuple[str, ...] = ("layout", "layers", "hidden", "storage_dtype", "chunk_rows",
                                     "stimuli_sha256", "batches_sha256", *TOKEN_LAYOUT_ATTRS)
#: Readout attributes that finalize adds (not part of the plan: a rerun on a finalized store has none yet).
FINALIZE_ATTRS: tuple[str, ...] = ("max_abs_per_layer",)
#: Group holding the sha256 manifest (arrays ``path`` and ``sha256``), written at finalize.
MANIFEST_GROUP = "_manifest"
#: Target size of one chunk file; store-notes §2.3: 2–16 MB chunks read fast and write aligned.
TARGET_CHUNK_BYTES = 8 * 2**20
MAX_POOLED_CHUNK_ROWS = 4096


def slugify(name: str) -> str:
    """A filesystem- and zarr-safe group name: ``"HuggingFaceTB/SmolLM2-135M"`` → ``"huggingfacetb--smollm2-135m"``.

    Keeps ``.``, ``_`` and ``-``, and turns ``/`` into ``--``. Corpus ids use a narrower rule
    (:func:`emovec.corpus.importers.slug`: letters, digits and single ``-``)."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.strip().lower().replace("/", "--")).strip("-.")
    if not slug:
        raise ValueError(f"cannot make a group name from {name!r}")
    return slug


def default_chunk_rows(n_rows: int, hidden: int, storage: StorageDtype, *,
                       max_rows: int = MAX_POOLED_CHUNK_ROWS) -> int:
    """Rows per chunk so that one chunk file (one layer) is about 8 MiB, never more than ``max_rows``."""
    row_bytes = hidden * physical_dtype(storage).itemsize
    rows = max(1, TARGET_CHUNK_BYTES // row_bytes)
    return int(max(1, min(n_rows, rows, max_rows)))


def default_token_chunk_rows(hidden: int, storage: StorageDtype) -> int:
    """Tokens per chunk of a per-token ``acts`` array: the largest power of two (256..8192) whose chunk
    of one layer is at most 8 MiB (4096 for d=576 in fp16)."""
    row_bytes = hidden * physical_dtype(storage).itemsize
    return int(max(256, min(8192, 2 ** int(math.log2(max(1, TARGET_CHUNK_BYTES // row_bytes))))))


def is_derived(rel: str) -> bool:
    """Whether a store-relative path lies in a ``models/<slug>/derived/`` group (outside the manifest)."""
    parts = rel.split("/")
    return len(parts) >= 3 and parts[0] == "models" and parts[2] == DERIVED


def derived_group(model: str, name: str | None = None) -> str:
    """The zarr path of a model's derived group, or of one result in it."""
    return f"models/{model}/{DERIVED}" + ("" if name is None else f"/{name}")


def token_layout(attrs: Mapping[str, object]) -> str:
    """How a per-token readout places its stimuli's tokens: :data:`TOKEN_LAYOUT_ALIGNED`, or
    :data:`TOKEN_LAYOUT_CONTIGUOUS` for readouts written before ``token_layout`` existed."""
    return str(attrs.get("token_layout", TOKEN_LAYOUT_CONTIGUOUS))


def aligned_offsets(n_tokens: Sequence[int] | np.ndarray[Any, Any], chunk_rows: int,
                    token_chunk_rows: int) -> tuple[np.ndarray[Any, Any], int]:
    """The first token row of every stimulus in the chunk-aligned layout, and the number of token rows.

    Within a row chunk (``chunk_rows`` stimuli) the tokens follow each other; each row chunk starts
    at the first multiple of ``token_chunk_rows`` after the previous one's last token. Stimulus i's
    tokens are rows ``offsets[i]:offsets[i] + n_tokens[i]``; the rows between row chunks are padding.
    """
    lengths = np.asarray(n_tokens, dtype=np.int64)
    offsets = np.zeros(len(lengths), dtype=np.int64)
    start = end = 0
    for c0 in range(0, len(lengths), chunk_rows):
        block = lengths[c0:c0 + chunk_rows]
        offsets[c0:c0 + len(block)] = start + np.cumsum(block) - block
        end = start + int(block.sum())
        start = -(-end // token_chunk_rows) * token_chunk_rows
    return offsets, end


def chunk_file(array_dir: Path, chunk_index: tuple[int, ...]) -> Path:
    """Path of one chunk file of an uncompressed v3 array under the default key encoding."""
    return array_dir.joinpath("c", *(str(i) for i in chunk_index))


def lock_dir(store_dir: Path) -> Path:
    """Where writers keep their lock files: next to the store, so zarr never lists them."""
    if not store_dir.name:  # "." or "": name the folder after the directory itself
        store_dir = store_dir.resolve()
    return store_dir.with_name(store_dir.name + ".locks")


def readout_group(model: str, readout: str) -> str:
    """The zarr path of a readout group."""
    return f"models/{model}/{readout}"


def readout_layout(attrs: Mapping[str, object]) -> str:
    """``pooled`` or ``tokens``: how a readout's activations are laid out (``layout``; stores written
    before that key existed said it in ``kind``)."""
    value = attrs.get("layout", attrs.get("kind"))
    return "tokens" if value == "tokens" else "pooled"


def dimension_names(array: object) -> tuple[str, ...]:
    """Dimension names of a zarr array, format 3 (metadata) or format 2 (``_ARRAY_DIMENSIONS``)."""
    names = getattr(getattr(array, "metadata", None), "dimension_names", None)
    if names is None:
        names = getattr(array, "attrs", {}).get("_ARRAY_DIMENSIONS", ())
    return tuple(names or ())


def uniform_batches(n_rows: int, chunk_rows: int, batch_rows: int) -> list[tuple[int, int]]:
    """Batches of up to ``batch_rows`` rows that never cross a multiple of ``chunk_rows``."""
    plan = []
    for c0 in range(0, n_rows, chunk_rows):
        c1 = min(c0 + chunk_rows, n_rows)
        plan += [(s, min(s + batch_rows, c1)) for s in range(c0, c1, batch_rows)]
    return plan


def parse_layers(text: str | Sequence[int], n_layers: int) -> list[int]:
    """``all`` | ``a,b,c`` | ``every:k`` → sorted hidden_states indices in ``0..n_layers``."""
    if not isinstance(text, str):
        layers = [int(x) for x in text]
    elif text == "all":
        layers = list(range(n_layers + 1))
    elif text.startswith("every:"):
        step = text.split(":", 1)[1]
        if not step.isdigit() or int(step) < 1:
            raise InputError(f"--layers every:K needs a positive K, got {text!r}", field="layers")
        layers = list(range(0, n_layers + 1, int(step)))
    else:
        try:
            layers = [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise InputError(f"--layers takes all, every:K or a,b,c; got {text!r}", field="layers") from None
    bad = [x for x in layers if not 0 <= x <= n_layers]
    if not layers or bad:
        raise InputError(f"layer {bad[0] if bad else '(none)'} is out of range: this model has hidden_states "
                         f"0..{n_layers}", field="layers")
    return sorted(set(layers))
