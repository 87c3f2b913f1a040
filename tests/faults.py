"""Deterministic fault injection for crash tests: SIGKILL a process in the middle of a batch write.

A kill timed from outside (poll for flags, then signal) races the process: on a fast machine it has
finished, on a loaded one the test waits. Here the process kills itself at a chosen batch, after the
batch's chunk files hold torn bytes (its layers written in the wrong order, flushed to disk) and
before its done flag, so every run dies at the same point — mid-write — however fast the machine is.

    python -m tests.faults N emovec ARGS...           # run the emovec CLI, die during the N-th batch write
    python -m tests.faults --sigint N emovec ARGS...  # Ctrl-C (SIGINT) just before the N-th batch write
    python -m tests.faults --create N emovec ARGS...  # die after the N-th array of a new store is written
    python -m tests.faults --finalize N emovec ARGS...  # die at the N-th step of finalize (1..FINALIZE_STEPS)
"""
from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import numpy as np

from emovec_store.writer import StreamWriter


def kill_during_write(n: int) -> None:
    """Patch the writer so that the ``n``-th batch write (1-based) is torn by a SIGKILL."""
    original = StreamWriter._write_rows
    calls = 0

    def torn(self: StreamWriter, start: int, stop: int, encoded: np.ndarray) -> Any:
        nonlocal calls
        calls += 1
        if calls < n:
            return original(self, start, stop, encoded)
        original(self, start, stop, np.ascontiguousarray(encoded[::-1]))  # wrong bytes in place
        for mm in self._maps.values():
            mm.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    StreamWriter._write_rows = torn  # type: ignore[method-assign]


#: How long the SIGINT hook waits for its KeyboardInterrupt before it says the signal was lost.
SIGINT_GUARD_S = 600
#: The exit code of a process whose SIGINT never raised KeyboardInterrupt (distinct from 0, 1, 2, 3, 130).
SIGINT_LOST_EXIT = 97


def interrupt_before_write(n: int) -> None:
    """Patch the writer so that a SIGINT (what Ctrl-C sends) arrives just before the ``n``-th batch
    write (1-based): batches 1..n-1 are written, the n-th never is.

    SIGINT gets Python's own handler first, as in a shell: a process started with SIGINT ignored (a
    parent that ignored it while it forked, such as MPS recycling's ``_started``) inherits that, and
    Python then installs no handler, so the signal would be dropped and the run finish with exit 0.
    After the signal the hook waits for its KeyboardInterrupt in short sleeps, so no further batch is
    written however late the handler runs; if it never comes the process exits
    :data:`SIGINT_LOST_EXIT`, never 0."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    original = StreamWriter.write
    calls = 0

    def write(self: StreamWriter, batch: int, data: np.ndarray) -> None:
        nonlocal calls
        calls += 1
        if calls == n:
            os.kill(os.getpid(), signal.SIGINT)  # Python raises KeyboardInterrupt in the main thread
            for _ in range(SIGINT_GUARD_S * 10):
                time.sleep(0.1)
            os._exit(SIGINT_LOST_EXIT)
        original(self, batch, data)

    StreamWriter.write = write  # type: ignore[method-assign]


def kill_during_create(n: int) -> None:
    """Patch store creation so that the process SIGKILLs itself once the ``n``-th string array of a new
    store's stimulus and emotion tables is written (1-based): the store is half made. Counting goes on
    into the string arrays of each readout's table as the readouts are planned."""
    import emovec_store.schema as schema

    original = schema.write_strings
    calls = 0

    def write(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        original(*args, **kwargs)
        calls += 1
        if calls == n:
            os.kill(os.getpid(), signal.SIGKILL)

    schema.write_strings = write


#: The step boundaries of finalize that :func:`kill_during_finalize` can stop at.
FINALIZE_STEPS = 4


def kill_during_finalize(n: int) -> None:
    """Patch finalize so that the process SIGKILLs itself at the ``n``-th step boundary (1-based) of
    sealing a store: 1 every flag checked and the per-layer max |x| recorded, but no manifest; 2 the
    manifest written; 3 the consolidated metadata written, ``complete`` not yet set; 4 ``complete`` set
    (the lock folder not yet removed)."""
    import zarr

    import emovec_store.finalize as finalize

    seal, write_manifest, consolidate = finalize.seal, finalize.write_manifest, zarr.consolidate_metadata
    reached = 0

    def boundary() -> None:
        nonlocal reached
        reached += 1
        if reached == n:
            os.kill(os.getpid(), signal.SIGKILL)

    def manifest_step(*args: Any, **kwargs: Any) -> None:
        boundary()
        write_manifest(*args, **kwargs)
        boundary()

    def consolidate_step(*args: Any, **kwargs: Any) -> Any:
        out = consolidate(*args, **kwargs)
        boundary()
        return out

    def sealing(*args: Any, **kwargs: Any) -> None:
        finalize.write_manifest = manifest_step  # patched when sealing starts: no earlier call is a step
        zarr.consolidate_metadata = consolidate_step
        seal(*args, **kwargs)
        boundary()

    finalize.seal = sealing


FAULTS = {"--sigint": interrupt_before_write, "--create": kill_during_create, "--finalize": kill_during_finalize}

if __name__ == "__main__":
    args = sys.argv[1:]
    if args[0] in FAULTS:
        FAULTS[args[0]](int(args[1]))
        args = args[1:]
    else:
        kill_during_write(int(args[0]))
    if args[1] != "emovec":
        raise SystemExit("usage: python -m tests.faults [--sigint | --create | --finalize] N emovec ARGS...")
    from emovec.cli.main import cli

    cli(args[2:])
