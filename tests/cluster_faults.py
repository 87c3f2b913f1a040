"""Faults injected into the worker processes of a dask cluster (``client.register_plugin``).

Each plugin patches code in every worker process it is set up in and puts it back in ``teardown``
(``client.unregister_worker_plugin(NAME)``). The faults come at a chosen point of the work, not at a
time, so a test's verdict does not depend on how fast the machine is.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
from distributed.diagnostics.plugin import WorkerPlugin


class FailShard(WorkerPlugin):
    """Shard ``shard`` raises ``RuntimeError("injected fault")`` when it starts its ``after``-th batch
    (1-based), after writing the batches before it."""

    name = "emovec-fail-shard"

    def __init__(self, shard: int, after: int) -> None:
        self.shard, self.after = shard, after
        self._undo: list[tuple[Any, str, Any]] = []

    def setup(self, worker: Any) -> None:
        from emovec_store.engine import cluster
        from emovec_store.engine.runner import BatchRunner

        original_task, original_run = cluster._run_shard, BatchRunner.run
        shard, after = self.shard, self.after

        def failing_task(job: str, model: str, stimuli: Any, store: str, options: Any, which: tuple[int, int],
                         allow_pickle: bool) -> Any:
            if which[0] != shard:
                return original_task(job, model, stimuli, store, options, which, allow_pickle)
            calls = 0

            def run(self: BatchRunner, token_ids: Any, spec: Any) -> np.ndarray:
                nonlocal calls
                calls += 1
                if calls >= after:
                    raise RuntimeError("injected fault")
                return original_run(self, token_ids, spec)

            BatchRunner.run = run  # type: ignore[method-assign]
            try:
                return original_task(job, model, stimuli, store, options, which, allow_pickle)
            finally:
                BatchRunner.run = original_run  # type: ignore[method-assign]

        cluster._run_shard = failing_task  # type: ignore[assignment]
        self._undo = [(cluster, "_run_shard", original_task)]

    def teardown(self, worker: Any) -> None:
        for owner, name, value in self._undo:
            setattr(owner, name, value)


class KillOnce(WorkerPlugin):
    """The first worker process to start its ``after``-th batch (1-based) dies of SIGKILL there, after
    writing the batches before it; ``marker`` records that it happened, so that the worker that takes
    the shard over, or the restarted one, is left alone."""

    name = "emovec-kill-once"

    def __init__(self, marker: Path, after: int) -> None:
        self.marker, self.after = marker, after
        self._original: Any = None

    def setup(self, worker: Any) -> None:
        from emovec_store.engine.runner import BatchRunner

        original = self._original = BatchRunner.run
        marker, after = self.marker, self.after
        calls = 0

        def run(self: BatchRunner, token_ids: Any, spec: Any) -> np.ndarray:
            nonlocal calls
            calls += 1
            if calls >= after and not marker.exists():
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, token_ids, spec)

        BatchRunner.run = run  # type: ignore[method-assign]

    def teardown(self, worker: Any) -> None:
        from emovec_store.engine.runner import BatchRunner

        if self._original is not None:
            BatchRunner.run = self._original  # type: ignore[method-assign]
