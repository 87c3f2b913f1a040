"""The streaming writer: the Rust-free memmap core.

Batches ``[layer, rows, hidden]`` are cast (and checked) to the storage dtype and written through
``numpy.memmap`` straight into the uncompressed Zarr v3 chunk files: the memmapped files *are* the
store, there is no staging copy. A chunk file is created whole (filled with the NaN pattern) under a
temporary name and linked into place exclusively, so a crash never leaves a torn chunk and two
writers never create the same chunk twice.

Done flags are written only after the batch's bytes are flushed (msync). Flushing costs about 0.1 ms
per chunk file touched, so the writer syncs at most every ``sync_interval`` seconds (and on close):
it flushes every dirty chunk, then writes the max |x| and the done flag of each batch written since.
A crash loses at most the unflagged batches of the last interval; a resumed writer skips flagged
batches, and rewriting a batch writes the same bytes to the same place (idempotent).

Before it writes, the writer checks that every array it writes raw is as it assumes (codecs, chunk-key
encoding, dtype, chunk shape: :mod:`emovec_store.memmapped`) and where a per-token readout's tokens
lie (:mod:`emovec_store.tokenrows`). Shards own disjoint row chunks; in the chunk-aligned token layout
their tokens fall in disjoint ``acts`` chunk files too, so no two shards ever write one file (which
matters on NFS, where two machines' writes to one file can undo each other). Per-token readouts of
older stores (contiguous layout) are written by one writer only.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from emovec.common.files import atomic_path

from . import layout
from .dtypes import StorageDtype, encode_batch, fill_value, parse_storage_dtype, physical_dtype
from .errors import IncompatibleStoreError, InputError, StoreError
from .fserrors import reported
from .memmapped import check_memmappable
from .nodes import array_at, group_at, json_int, json_list
from .progress import RowChunkLocks, done_flags, mark_done
from .tokenrows import TokenRows, token_chunk_rows

Memmap = np.memmap[Any, np.dtype[Any]]


def _fill_chunk_file(path: Path, shape: tuple[int, ...], dtype: np.dtype[Any], fill: float | int) -> None:
    """Write a new chunk file whole, every element the fill value (the bytes of an unwritten row)."""
    np.full(shape, fill, dtype=dtype).tofile(path)


def _open_chunk(path: Path, shape: tuple[int, ...], dtype: np.dtype[Any], fill: float | int) -> Memmap:
    """Memmap one chunk file read-write, creating it whole and atomically if it does not exist yet."""
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if not path.exists():
        with atomic_path(path, exclusive=True) as tmp:  # if another writer created it first, use theirs
            _fill_chunk_file(tmp, shape, dtype, fill)
    size = path.stat().st_size
    if size != nbytes:
        raise StoreError(f"chunk file {str(path)!r} has {size} bytes, expected {nbytes}; the store is "
                         "damaged (run `emovec store verify`)")
    return np.memmap(path, dtype=dtype, mode="r+", shape=shape)


class StreamWriter:
    """Write the batches of one readout (or of one shard of its row chunks). Use as a context manager.

    Example
    -------
    >>> with store.writer("my-model", "mean_from_50") as w:   # doctest: +SKIP
    ...     for b in w.pending():
    ...         w.write(b, activations_for(b))                 # [layer, rows, hidden] float32

    Get one from :meth:`Store.writer <emovec_store.store.Store.writer>`, which checks that the store
    is writable; the writer itself needs only the readout's zarr group and the store directory.
    """

    def __init__(self, group: zarr.Group, store_dir: Path, model: str, readout: str, *,
                 shard: tuple[int, int] | None = None, sync_interval: float = 1.0) -> None:
        readout_dir = store_dir / layout.readout_group(model, readout)
        self.model, self.readout, self._dir, self._group = model, readout, readout_dir, group
        self._store_dir = store_dir
        attrs = group.attrs
        self.per_token = layout.readout_layout(attrs) == "tokens"
        self.storage: StorageDtype = parse_storage_dtype(str(attrs["storage_dtype"]))
        self.layers = np.asarray(json_list(attrs["layers"], "layers"))
        self.hidden = json_int(attrs["hidden"], "hidden")
        self.chunk_rows = json_int(attrs["chunk_rows"], "chunk_rows")
        self._dtype = physical_dtype(self.storage)
        self._fill = fill_value(self.storage)
        prog = group_at(group, layout.PROGRESS)
        self._starts = np.asarray(array_at(prog, "batch_start")[:])
        self._stops = np.asarray(array_at(prog, "batch_stop")[:])
        name = layout.ACTS if self.per_token else layout.POOLED
        array = array_at(group, name)
        self._array_dir = readout_dir / name
        n_rows = int(array_at(group, "stimulus").shape[0])
        self._tokens: TokenRows | None = None
        if self.per_token:
            self._rows_per_chunk = token_chunk_rows(attrs, tuple(array.chunks))
            self._tokens = TokenRows.read(group, readout_dir, attrs, self.chunk_rows, self._rows_per_chunk)
        else:
            self._rows_per_chunk = self.chunk_rows
        self._check_arrays(array, prog, self._tokens.total if self._tokens is not None else n_rows)
        n_chunks = -(-n_rows // self.chunk_rows)
        if shard is None:
            shard = (0, 1)
        k, n = shard
        if not (n >= 1 and 0 <= k < n):
            raise InputError(f"shard {k}/{n} is not valid; use k/n with 0 <= k < n")
        if n > 1 and self._tokens is not None and not self._tokens.shardable:
            raise IncompatibleStoreError(
                f"readout {model}/{readout} in {str(store_dir)!r} has the contiguous per-token layout of older "
                f"stores, whose row chunks share acts chunk files, so shards (here {k}/{n}) could overwrite each "
                "other's tokens; resume it with one writer (no --shard, no --scheduler) or extract into a new store")
        self.shard = (k, n)
        self.chunks = [int(c) for c in np.array_split(np.arange(n_chunks), n)[k]]
        self._owned = (self._tokens.token_chunks(self.chunks, self._rows_per_chunk) if self._tokens is not None
                       else self.chunks)
        mine = set(self.chunks)
        self.batches = [b for b in range(len(self._starts)) if self._starts[b] // self.chunk_rows in mine]
        self._batch_set = set(self.batches)
        self._locks = RowChunkLocks(store_dir, model, readout, self.chunks)
        self._maps: OrderedDict[tuple[int, int], Memmap] = OrderedDict()
        self._max_open = 4 * max(1, len(self.layers))
        self._dirty: set[tuple[int, int]] = set()
        self._unflagged: list[tuple[int, np.ndarray[Any, Any]]] = []
        self.sync_interval = sync_interval
        self._last_sync = time.monotonic()

    def _check_arrays(self, array: zarr.Array[Any], prog: zarr.Group, length: int) -> None:
        """Refuse (:class:`StoreError` naming the file and key) an activation or progress array that
        is not as the raw writes assume (:func:`~emovec_store.memmapped.check_memmappable`)."""
        n_layers, n_batches = len(self.layers), len(self._starts)
        check_memmappable(array, self._array_dir, self._dtype, (1, self._rows_per_chunk, self.hidden),
                          (n_layers, length, self.hidden))
        check_memmappable(array_at(prog, "batch_done"), self._dir / layout.PROGRESS / "batch_done",
                          np.dtype("uint8"), (1,), (n_batches,))
        check_memmappable(array_at(prog, "max_abs"), self._dir / layout.PROGRESS / "max_abs",
                          np.dtype("<f4"), (1, n_layers), (n_batches, n_layers))

    # -- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> StreamWriter:
        self._locks.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Sync (flush data, then flags), unmap every chunk, release the locks."""
        try:
            self.sync()
        finally:
            self._maps.clear()
            self._locks.release()

    def sync(self) -> None:
        """Flush every chunk written since the last sync, then set those batches' done flags."""
        with self._reported():
            self._sync()

    def _sync(self) -> None:
        for key in self._dirty:
            self._maps[key].flush()
        self._dirty.clear()
        for batch, max_abs in self._unflagged:
            mark_done(self._dir, batch, max_abs)
        self._unflagged.clear()
        self._last_sync = time.monotonic()

    # -- progress ---------------------------------------------------------------------------------
    def pending(self) -> list[int]:
        """This writer's batches whose done flag is not set, in plan order."""
        done = done_flags(self._group, self._dir)
        return [b for b in self.batches if not done[b]]

    def rows(self, batch: int) -> tuple[int, int]:
        """The ``[start, stop)`` stimulus rows of a batch."""
        return int(self._starts[batch]), int(self._stops[batch])

    # -- writing ----------------------------------------------------------------------------------
    def write(self, batch: int, data: np.ndarray) -> None:
        """Write one batch (``[layer, rows, hidden]``; per-token readouts: ``[layer, tokens, hidden]``).

        Its done flag follows at the next :meth:`sync` (automatic every ``sync_interval`` seconds and
        on close)."""
        if batch not in self._batch_set:
            raise InputError(f"batch {batch} is not in this writer's shard {self.shard[0]}/{self.shard[1]}")
        start, stop = self.rows(batch)
        if self._tokens is not None:
            start, stop = self._tokens.span(start, stop)
        expected = (len(self.layers), stop - start, self.hidden)
        if tuple(data.shape) != expected:
            raise InputError(f"batch {batch} of {self.model}/{self.readout} must have shape {expected}, "
                             f"got {tuple(data.shape)}")
        encoded, max_abs = encode_batch(data, self.storage, self.layers)
        with self._reported():
            self._write_rows(start, stop, encoded)
        self._unflagged.append((batch, max_abs))
        if time.monotonic() - self._last_sync >= self.sync_interval:
            self.sync()

    def _reported(self) -> AbstractContextManager[None]:
        """OSErrors (disk full, read-only) while writing, as one line naming the store and the space needed."""
        return reported(f"writing store {str(self._store_dir)!r}", self._dir, needed_bytes=self.bytes_still_needed)

    def bytes_still_needed(self) -> int:
        """Bytes of this writer's chunk files not yet on disk (what a full disk must make room for)."""
        chunk_bytes = self._rows_per_chunk * self.hidden * self._dtype.itemsize
        missing = sum(not layout.chunk_file(self._array_dir, (li, c, 0)).exists()
                      for li in range(len(self.layers)) for c in self._owned)
        return missing * chunk_bytes

    def _write_rows(self, start: int, stop: int, encoded: np.ndarray) -> None:
        """Copy rows ``[start, stop)`` of every layer into the chunk files they fall in."""
        per = self._rows_per_chunk
        for c in range(start // per, (stop - 1) // per + 1):
            lo, hi = max(start, c * per), min(stop, (c + 1) * per)
            for li in range(len(self.layers)):
                self._chunk(li, c)[lo - c * per:hi - c * per] = encoded[li, lo - start:hi - start]
                self._dirty.add((li, c))

    def _chunk(self, layer_pos: int, chunk: int) -> np.memmap:
        key = (layer_pos, chunk)
        mm = self._maps.get(key)
        if mm is None:
            path = layout.chunk_file(self._array_dir, (layer_pos, chunk, 0))
            mm = _open_chunk(path, (self._rows_per_chunk, self.hidden), self._dtype, self._fill)
            self._maps[key] = mm
            while len(self._maps) > self._max_open:
                old_key, _ = next(iter(self._maps.items()))
                if old_key in self._dirty:  # data must reach the file before its flag: sync first
                    self.sync()
                self._maps.popitem(last=False)
        else:
            self._maps.move_to_end(key)
        return mm
