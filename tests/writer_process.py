"""A writer process for the crash test: fills a synthetic store, announcing each batch on stdout.

    python -m tests.writer_process STORE_PATH [KILL_AT]   # KILL_AT: die during that batch write (1-based)
"""
from __future__ import annotations

import sys
from pathlib import Path

import emovec_store

from .faults import kill_during_write
from .synthetic import activations, batch_plan, stimulus_table

N, LAYERS, HIDDEN = 60, 3, 8


def main(path: Path) -> None:
    store = emovec_store.create(path, stimulus_table(N))
    store.add_model("m", {"model": "m"}, identity={"name": "m"})
    store.add_readout("m", "r", stimulus_ids=[f"s{i:04d}" for i in range(N)], layers=list(range(LAYERS)),
                      hidden=HIDDEN, storage_dtype="float16", batches=batch_plan(N, 16, 4), chunk_rows=16)
    data = activations(LAYERS, N, HIDDEN, seed=7)
    with store.writer("m", "r", sync_interval=0.0) as writer:
        for b in writer.pending():
            start, stop = writer.rows(b)
            writer.write(b, data[:, start:stop])
            print(f"batch {b}", flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 2:
        kill_during_write(int(sys.argv[2]))
    main(Path(sys.argv[1]))
