"""Simulated readings of the Metal driver's memory, for tests that run MPS recycling on CPU
(:func:`emovec_store.engine.recycle.memory_read_by`).

Each reader is an instance of a module-level class, so that it reaches the child processes by reference.
Every process gets its own copy with the count at zero, as a fresh process's driver memory starts low.

    python -m tests.memory_readings --interrupt-parent-at N emovec ARGS...   # Ctrl-C while a child works
"""
from __future__ import annotations

import os
import signal
import sys
import time

MIB = 2 ** 20


class Growing:
    """``step_mb`` more at each reading: the first (the baseline, once the model is loaded) reads ``step_mb``,
    the k-th check after a batch ``(k + 1) * step_mb``."""

    def __init__(self, step_mb: int) -> None:
        self.step_mb, self.readings = step_mb, 0

    def __call__(self) -> int:
        self.readings += 1
        return self.readings * self.step_mb * MIB


class Failing:
    """A reading that fails, as a driver call can."""

    def __call__(self) -> int:
        raise RuntimeError("simulated driver failure")


class InterruptingParent:
    """Reads 0, but at the ``at``-th reading sends SIGINT to the parent process (Ctrl-C there, while this
    child works) and waits for what the parent does about it."""

    def __init__(self, at: int) -> None:
        self.at, self.readings = at, 0

    def __call__(self) -> int:
        self.readings += 1
        if self.readings == self.at:
            os.kill(os.getppid(), signal.SIGINT)
            for _ in range(3600):  # short sleeps: a SIGTERM handled by another thread is acted on within 1 s
                time.sleep(1)
        return 0


if __name__ == "__main__":
    # python -m tests.memory_readings --interrupt-parent-at N emovec ARGS...: the CLI, readings by InterruptingParent(N)
    from emovec.cli.main import cli
    from emovec_store.engine.recycle import memory_read_by
    from tests.memory_readings import InterruptingParent as Reader  # by its module's name, not __main__'s

    assert sys.argv[1] == "--interrupt-parent-at" and sys.argv[3] == "emovec", sys.argv
    # Python's own SIGINT handler, as in a shell: started with SIGINT ignored (a background job of a
    # non-interactive shell), Python installs none, the parent drops the child's SIGINT, and the child waits
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with memory_read_by(Reader(int(sys.argv[2]))):
        cli(sys.argv[4:], prog_name="emovec")
