"""The batch plan and the per-batch done flags, and the row-chunk locks of concurrent writers.

The flags are the uint8 array ``_progress/batch_done`` (one chunk per batch, so two writers never
share a flag file). A flag file is written (temp file + rename) only after the batch's data has been
flushed, so a set flag always means complete data. ``_progress/max_abs`` keeps max |x| per layer of
every batch, written just before its flag; finalize reduces it into the model's provenance.

Lock files live in ``NAME.zarr.locks/`` next to the store; :func:`remove_lock_dir` removes the
folder when no writer holds a lock in it (every ``extract`` run does on its way out, and finalize).
"""
from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from emovec.common.files import atomic_path

from .errors import StoreLockedError
from .fserrors import describe
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


#: A non-blocking lock that is busy is tried again this often, this far apart, before it counts as
#: held: :func:`remove_lock_dir` holds every lock file for a moment while it removes the folder.
LOCK_RETRIES, LOCK_RETRY_S = 5, 0.02


def lock_file(path: Path, *, blocking: bool = True) -> int | None:
    """Open ``path`` (creating it and its folder) and take an exclusive ``flock``; returns the descriptor.

    Non-blocking: None when another process holds it. The lock counts only if ``path`` is still the
    file that was locked (:func:`remove_lock_dir` may have removed it meanwhile); otherwise the
    file is opened and locked again. Close the descriptor to release the lock.
    """
    busy = 0
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the folder was removed between mkdir and open
            continue
        except OSError as exc:  # a read-only or full filesystem, no permission: one line, not a traceback
            raise describe(exc, "taking a lock in the store's lock folder", path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            busy += 1
            if busy > LOCK_RETRIES:
                return None
            time.sleep(LOCK_RETRY_S)
            continue
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.path.samestat(os.stat(path), os.fstat(fd))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextmanager
def held_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (waiting for it) for the ``with`` block.

    Serialises steps across processes, e.g. store setup and finalize among shards of one store.
    """
    fd = lock_file(path)
    assert fd is not None  # a blocking lock always comes back
    try:
        yield
    finally:
        os.close(fd)  # drops the flock


def remove_lock_dir(store_dir: Path) -> bool:
    """Remove the store's ``NAME.zarr.locks/`` folder unless a writer holds a lock in it.

    Takes every lock file (non-blocking) and deletes them while holding them all, then the folders;
    a writer that opened a file meanwhile finds it gone (:func:`lock_file`) and makes a new one.
    Returns True when the folder is gone. Locks die with their process, so after a crash the next
    run that ends removes the folder.
    """
    root = lock_dir(store_dir)
    if not root.is_dir():
        return True
    held: list[tuple[Path, int]] = []
    try:
        for path in sorted(root.rglob("*.lock")):
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False  # in use: the writer that holds it removes the folder when it ends
            held.append((path, fd))
        for path, _ in held:
            path.unlink(missing_ok=True)
        for folder in sorted((d for d in root.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True):
            with suppress(OSError):  # not empty: another writer has just made a lock in it
                folder.rmdir()
        with suppress(OSError):
            root.rmdir()
    finally:
        for _, fd in held:
            os.close(fd)
    return not root.exists()


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
        try:
            for c in self._chunks:
                fd = lock_file(self._dir / f"{c}.lock", blocking=False)
                if fd is None:
                    raise StoreLockedError(
                        f"another writer is filling row chunk {c} of {self._dir.parent.name}/"
                        f"{self._dir.name}; use disjoint --shard ranges or wait for it to finish")
                self._handles.append(fd)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        for fd in self._handles:
            os.close(fd)  # closing the descriptor drops the flock
        self._handles.clear()
