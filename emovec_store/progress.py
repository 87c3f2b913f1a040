"""The batch plan and the per-batch done flags, and the row-chunk locks of concurrent writers.

The flags are the uint8 array ``_progress/batch_done`` (one chunk per batch, so two writers never
share a flag file). A flag file is written (temp file + rename) only after the batch's data has been
flushed, so a set flag always means complete data. ``_progress/max_abs`` keeps max |x| per layer of
every batch, written just before its flag; finalize reduces it into the model's provenance.
"""
from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from emovec.common.files import atomic_path

from .errors import StoreLockedError
from .layout import PROGRESS, chunk_file, lock_dir
from .nodes import array_at


@dataclass(frozen=True)
class Progress:
    """How many batches of one readout are done."""

    done: int
    total: int

    @property
    def complete(self) -> bool:
        return self.done == self.total


def done_flags(group: zarr.Group, local_dir: Path | None) -> np.ndarray:
    """Boolean done flag of every batch of a readout group."""
    flags = array_at(group, f"{PROGRESS}/batch_done")
    n = flags.shape[0]
    if local_dir is None or flags.metadata.zarr_format != 3:  # zip, URL, v2 copy: read through zarr
        return np.asarray(flags[:], dtype=bool)
    out = np.zeros(n, dtype=bool)
    cdir = local_dir / PROGRESS / "batch_done" / "c"
    if cdir.is_dir():
        for name in os.listdir(cdir):
            if name.isdigit() and int(name) < n:
                out[int(name)] = (cdir / name).read_bytes() == b"\x01"
    return out


def mark_done(readout_dir: Path, batch: int, max_abs: np.ndarray) -> None:
    """Record a batch's per-layer max |x|, then set its done flag (in that order).

    Each file is written by temp file + rename, so readers see the old or the new file, never a torn
    one. No fsync: a flag lost to a power cut only means its batch is written again on resume, and
    the batch's data is msynced before the flag is written, so a flag never outlives its data.
    """
    with atomic_path(chunk_file(readout_dir / PROGRESS / "max_abs", (batch, 0))) as tmp:
        tmp.write_bytes(np.asarray(max_abs, dtype="<f4").tobytes())
    with atomic_path(chunk_file(readout_dir / PROGRESS / "batch_done", (batch,))) as tmp:
        tmp.write_bytes(b"\x01")


class RowChunkLocks:
    """Exclusive, non-blocking ``flock`` locks on the row chunks a writer owns.

    Two writers whose row ranges share a chunk cannot both hold it: the second gets
    :class:`StoreLockedError`. Locks vanish with the process (a killed writer never leaves a stale lock).
    """

    def __init__(self, store_dir: Path, model: str, readout: str, chunks: list[int]) -> None:
        self._dir = lock_dir(store_dir) / model / readout
        self._chunks = chunks
        self._handles: list[int] = []

    def acquire(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        try:
            for c in self._chunks:
                fd = os.open(self._dir / f"{c}.lock", os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    raise StoreLockedError(
                        f"another writer is filling row chunk {c} of {self._dir.parent.name}/"
                        f"{self._dir.name}; use disjoint --shard ranges or wait for it to finish") from None
                self._handles.append(fd)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        for fd in self._handles:
            os.close(fd)  # closing the descriptor drops the flock
        self._handles.clear()
