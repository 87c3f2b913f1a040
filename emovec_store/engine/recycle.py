"""Apple MPS worker recycling: watch the Metal driver's memory, and continue in a fresh process past a threshold.

Long MPS runs slow down as the driver's memory grows (shape-dependent leaks; docs/hardware.md), and only
the end of the process gives all of it back. So with recycling on, :func:`~emovec_store.engine.extract`
runs the extraction in a child process (``multiprocessing`` "spawn" context); after each batch the child
reads ``torch.mps.driver_allocated_memory()`` (:class:`MemoryWatch`), and past the threshold it stops: its
writers close, which flushes the data and sets the done flags. A fresh child then opens the store and
resumes from those flags, as a rerun of the same command would, and so on until the store is done.

A child sends back plain JSON over a pipe (never a pickle): its result, or its error as plain fields
(label, message, exit code), rebuilt here as a :class:`RecycledProcessError` that keeps them.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from emovec.common.errors import EmovecError, InputError, Interrupted, one_line

from .load import models_are_kept

log = logging.getLogger("emovec")

#: A reading of the driver's memory, in bytes.
MemoryReader = Callable[[], int]
#: The default threshold: this fraction of the GPU's recommended working set, the low watermark emovec
#: sets (``PYTORCH_MPS_LOW_WATERMARK_RATIO=0.8``), past which the allocator collects on every allocation.
DEFAULT_FRACTION = 0.8
MIB = 2 ** 20
#: Seconds a child gets to flush and exit after Ctrl-C before it is killed (a second Ctrl-C kills at once).
STOP_GRACE_S = 30.0
#: The parent waits for its child's answer in slices this long: Ctrl-C is acted on between them even when
#: the kernel hands the SIGINT to another thread, which cannot interrupt the main thread's blocking read.
WAIT_SLICE_S = 0.5
#: Names of the child processes (how one of them knows, while it starts, that it is ours).
CHILD_NAME = "emovec-extract"
#: The exit code of a child whose start re-ran a script that calls extract unguarded (:func:`refuse_unguarded_main`).
UNGUARDED_MAIN_EXIT = 86

_READER: ContextVar[MemoryReader | None] = ContextVar("emovec_memory_reader", default=None)


@contextmanager
def memory_read_by(reader: MemoryReader) -> Iterator[None]:
    """Within the block, extraction reads the driver's memory with ``reader`` instead of
    ``torch.mps.driver_allocated_memory()``, on any device, so that recycling runs off MPS too (tests
    simulate readings with it). ``reader`` goes to each child process by reference: it must be a
    module-level function or an instance of a module-level class."""
    token = _READER.set(reader)
    try:
        yield
    finally:
        _READER.reset(token)


def mps_driver_memory() -> int:
    """Bytes the Metal driver has allocated for this process (tensors, caches and the allocator's heaps)."""
    import torch

    return int(torch.mps.driver_allocated_memory())


def _mps_available() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def threshold_mb(option: float | None, device: str) -> float:
    """The recycling threshold in MB for ``--mps-recycle-mb`` (None: the default) on ``device``; 0 = off.

    The default is :data:`DEFAULT_FRACTION` of ``torch.mps.recommended_max_memory()`` on MPS, off elsewhere."""
    if option is not None:
        return float(option)
    if device.split(":")[0] != "mps":
        return 0.0
    import torch

    return DEFAULT_FRACTION * torch.mps.recommended_max_memory() / MIB


def recycling(option: float | None, device: str) -> bool:
    """Whether an extraction on ``device`` runs in recycled child processes.

    Only on MPS (or wherever :func:`memory_read_by` gives the readings) with a threshold above 0, and not
    when models are kept in this process (:func:`~emovec_store.engine.load.models_kept`: the caller wants
    the model to stay here) or this process is daemonic (a dask worker, a pool worker: it may not start
    processes). Not either where MPS is asked for but missing: the extraction refuses that in its own words."""
    if _READER.get() is None and not (device.split(":")[0] == "mps" and _mps_available()):
        return False
    if models_are_kept() or multiprocessing.current_process().daemon:
        return False
    return threshold_mb(option, device) > 0


@dataclass
class MemoryWatch:
    """The driver's memory, read after each batch against the threshold; build with :meth:`start`."""

    threshold_mb: float
    read: MemoryReader
    tripped_mb: float | None = None  # the reading that passed the threshold

    @classmethod
    def start(cls, option: float | None, device: str) -> MemoryWatch | None:
        """The watch for this process, its baseline read now (after the model loaded); None when recycling
        cannot help because the baseline is already past the threshold (each process would write one batch)."""
        watch = cls(threshold_mb(option, device), _READER.get() or mps_driver_memory)
        baseline = watch.read() / MIB
        if baseline >= watch.threshold_mb:
            log.warning(f"driver memory is {baseline:.0f} MB with the model loaded, already past --mps-recycle-mb "
                        f"{watch.threshold_mb:.0f}: no recycling in this run (raise it, or 0 to silence this)")
            return None
        return watch

    def over(self) -> bool:
        """After a batch: True (and said on the log) when the driver's memory passed the threshold."""
        reading = self.read() / MIB
        if reading <= self.threshold_mb:
            return False
        self.tripped_mb = reading
        log.info(f"driver memory {reading:.0f} MB passed --mps-recycle-mb {self.threshold_mb:.0f}: this process's "
                 "batches are flushed, and a fresh process goes on")
        return True


class RecycledProcessError(EmovecError):
    """An error raised in a child process, rebuilt from its label, message and exit code."""

    def __init__(self, message: str, exit_code: int = 1, label: str = EmovecError.label) -> None:
        super().__init__(message)
        self.exit_code, self.label = exit_code, label


def refuse_unguarded_main() -> None:
    """In one of our child processes while it starts: exit with :data:`UNGUARDED_MAIN_EXIT`.

    A spawned child imports the parent's main script again; a script that calls ``extract`` outside
    ``if __name__ == "__main__":`` would call it again there. The parent turns that exit code into one
    line saying so."""
    current = multiprocessing.current_process()
    # multiprocessing's own flag for "still starting" (spawn._main), as its _check_not_importing_main reads it
    if current.name == CHILD_NAME and getattr(current, "_inheriting", False):
        raise SystemExit(UNGUARDED_MAIN_EXIT)


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM in a child (the parent's Ctrl-C): stop like Ctrl-C does, once."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _child(send: Connection, target: Callable[..., dict[str, Any]], args: tuple[Any, ...],
           reader: MemoryReader | None, notes: int | None) -> None:
    """A child process: ``target(*args)``, its dict result or its error sent back as JSON."""
    signal.signal(signal.SIGTERM, _interrupt)
    if notes is not None:  # the parent shows the emovec logger's notes: so does the child, on stderr
        log.addHandler(logging.StreamHandler(sys.stderr))
        log.setLevel(notes)
    if reader is not None:
        _READER.set(reader)  # this process's own context: nothing to put back
    payload: dict[str, Any]
    try:
        payload = {"result": target(*args)}
    except KeyboardInterrupt:  # SIGTERM: from the parent (which says what was saved itself), or from elsewhere
        payload = {"error": {"message": "the extraction process was stopped (SIGTERM); the finished batches are "
                                        "kept: run the same command again to resume",
                             "exit_code": Interrupted.exit_code, "label": Interrupted.label}}
    except EmovecError as exc:
        payload = {"error": {"message": str(exc), "exit_code": exc.exit_code, "label": exc.label}}
    except Exception as exc:
        payload = {"error": {"message": one_line(exc), "exit_code": 1, "label": EmovecError.label}}
    with suppress(OSError):  # a parent that is gone has no use for it
        send.send_bytes(json.dumps(payload).encode())


def _stop(proc: BaseProcess) -> None:
    """Ctrl-C in the parent: SIGTERM the child, which stops as Ctrl-C does (writers flushed), then wait;
    kill it after :data:`STOP_GRACE_S` or at a second Ctrl-C (unflagged batches are then lost)."""
    try:
        if proc.is_alive():
            proc.terminate()
            proc.join(STOP_GRACE_S)
    except KeyboardInterrupt:
        pass
    if proc.is_alive():
        proc.kill()
        proc.join()


def _started(proc: BaseProcess) -> None:
    """Start ``proc`` with SIGINT ignored, which it inherits: Ctrl-C at a terminal reaches the whole
    process group, and the parent alone decides what a child does then (:func:`_stop`)."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        proc.start()
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc.start()
    finally:
        signal.signal(signal.SIGINT, before)


def in_fresh_process(target: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``target(*args)`` in a fresh "spawn" process; its dict result (JSON-safe) comes back as JSON.

    ``target`` and ``args`` go to the child pickled, as multiprocessing sends them (our own code, to a
    child of ours); only JSON comes back. The child's error is raised here as a
    :class:`RecycledProcessError` with its label, one-line message and exit code (1 for an exception
    outside emovec's error tree); a child that dies without a word is one line with its exit code."""
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    notes = log.getEffectiveLevel() if log.handlers and log.isEnabledFor(logging.INFO) else None
    proc = ctx.Process(target=_child, args=(send, target, args, _READER.get(), notes), name=CHILD_NAME,
                       daemon=True)
    try:
        try:
            _started(proc)
        finally:
            send.close()  # the child holds the other copy: its exit ends recv_bytes with EOFError
        try:
            data = _answer(recv)
        except KeyboardInterrupt:
            _stop(proc)
            raise
        proc.join()
    finally:
        recv.close()
        if proc.is_alive():  # an unexpected exception here: the child must not outlive it
            _stop(proc)
    if not data:
        raise _silent_exit(proc.exitcode)
    payload: dict[str, Any] = json.loads(data)
    if "error" in payload:
        error = payload["error"]
        raise RecycledProcessError(str(error["message"]), int(error["exit_code"]), str(error["label"]))
    result: dict[str, Any] = payload["result"]
    return result


def _answer(recv: Connection) -> bytes:
    """The child's message, or ``b""`` when it ended without one. Waits in :data:`WAIT_SLICE_S` slices, so
    that the main thread runs Python between them and a pending Ctrl-C raises here."""
    while not recv.poll(WAIT_SLICE_S):
        pass
    try:
        return recv.recv_bytes()
    except EOFError:
        return b""


def _silent_exit(code: int | None) -> EmovecError:
    """The error for a child that ended without sending anything."""
    if code == UNGUARDED_MAIN_EXIT:
        script = getattr(sys.modules.get("__main__"), "__file__", None) or "the main script"
        return InputError(f"{script} calls emovec's extract outside `if __name__ == \"__main__\":`; with MPS "
                          "recycling each fresh process imports the script again: put the call under that guard, "
                          "or pass mps_recycle_mb=0", field="mps_recycle_mb")
    how = f"was killed by signal {-code}" if code is not None and code < 0 else f"ended with exit code {code}"
    return RecycledProcessError(f"the extraction process {how} before it reported (out of memory?); "
                                "the finished batches are kept: run the same command again to resume")
