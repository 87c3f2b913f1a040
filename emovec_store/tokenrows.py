"""Where the tokens of a per-token readout's stimuli lie in its ``acts`` array, read and checked for the writer.

Two layouts (readout attribute ``token_layout``; docs/store.md):

- ``chunk-aligned`` (every new readout): the tokens of each row chunk start at a multiple of the token
  chunk size (:func:`layout.aligned_offsets <emovec_store.layout.aligned_offsets>`), so the writers of
  two row chunks (two shards) never write the same chunk file;
- ``contiguous`` (readouts written before the attribute existed): CSR, ``offsets`` has n + 1 entries
  and row chunks share the token chunks at their borders, so only one writer may fill it.

In both, stimulus i's tokens are rows ``offsets[i]:offsets[i] + n_tokens[i]``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from . import layout
from .errors import StoreError
from .nodes import json_int, read_values


@dataclass(frozen=True)
class TokenRows:
    """The token rows of a per-token readout. Build with :meth:`read`."""

    token_layout: str
    offsets: np.ndarray[Any, Any]   # first token row of each stimulus (n entries)
    n_tokens: np.ndarray[Any, Any]  # tokens of each stimulus
    chunk_rows: int                 # stimulus rows per row chunk
    total: int                      # token rows of ``acts``

    @classmethod
    def read(cls, group: zarr.Group, readout_dir: Path, attrs: Mapping[str, object],
             chunk_rows: int, token_chunk_rows: int) -> TokenRows:
        """Read ``offsets`` and ``n_tokens`` of the readout ``group`` and check that they are the
        layout its attributes name (``token_chunk_rows``: the ``acts`` chunk length); a
        :class:`StoreError` naming the file otherwise."""
        kind = layout.token_layout(attrs)
        n_tokens = read_values(group, "n_tokens").astype(np.int64)
        stored = read_values(group, "offsets").astype(np.int64)
        if kind == layout.TOKEN_LAYOUT_ALIGNED:
            expected, total = layout.aligned_offsets(n_tokens, chunk_rows, token_chunk_rows)
            offsets = stored
        elif kind == layout.TOKEN_LAYOUT_CONTIGUOUS:
            expected = np.concatenate([[0], np.cumsum(n_tokens)])
            offsets, total = stored[:-1], int(expected[-1])
        else:
            raise StoreError(f"{str(readout_dir / 'zarr.json')!r}: token_layout is {kind!r}; this emovec "
                             f"writes {layout.TOKEN_LAYOUT_ALIGNED!r} and {layout.TOKEN_LAYOUT_CONTIGUOUS!r} "
                             "per-token readouts")
        if not np.array_equal(stored, expected):
            raise StoreError(f"{str(readout_dir / 'offsets')!r} does not match n_tokens in the {kind} token "
                             "layout; the store is damaged")
        return cls(kind, offsets, n_tokens, chunk_rows, total)

    @property
    def shardable(self) -> bool:
        """Whether different row chunks write disjoint ``acts`` chunk files (several writers may fill it)."""
        return self.token_layout == layout.TOKEN_LAYOUT_ALIGNED

    def span(self, start: int, stop: int) -> tuple[int, int]:
        """The ``[start, stop)`` token rows of stimulus rows ``[start, stop)`` (inside one row chunk)."""
        return int(self.offsets[start]), int(self.offsets[stop - 1] + self.n_tokens[stop - 1])

    def token_chunks(self, row_chunks: Iterable[int], token_chunk_rows: int) -> list[int]:
        """The ``acts`` chunk indices (along ``token``) that the stimuli of ``row_chunks`` write."""
        out: set[int] = set()
        n = len(self.offsets)
        for c in row_chunks:
            lo, hi = self.span(c * self.chunk_rows, min(n, (c + 1) * self.chunk_rows))
            if hi > lo:
                out.update(range(lo // token_chunk_rows, (hi - 1) // token_chunk_rows + 1))
        return sorted(out)


def token_chunk_rows(attrs: Mapping[str, object], acts_chunks: tuple[int, ...]) -> int:
    """The token rows per ``acts`` chunk that a readout's attributes say (readouts of the contiguous
    layout do not record it: their array's chunks are taken as they are)."""
    if layout.token_layout(attrs) == layout.TOKEN_LAYOUT_CONTIGUOUS:
        return int(acts_chunks[1])
    return json_int(attrs.get("token_chunk_rows"), "token_chunk_rows")


__all__ = ["TokenRows", "token_chunk_rows"]
