"""A small synthetic store: exercises create → stream → finalize without a model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .layout import uniform_batches
from .store import Store, create, open


def write_demo_store(path: Path, *, n: int = 240, layers: int = 8, hidden: int = 64, seed: int = 0) -> Store:
    """Write (or resume) a synthetic store whose pooled activations are emotion means plus noise.

    Run again on a complete demo store, it writes nothing and returns the store."""
    emotions = ["joyful", "calm", "furious", "sad"]
    table = pd.DataFrame({
        "stimulus": [f"demo-{i:04d}" for i in range(n)],
        "kind": "story",
        "emotion": [emotions[i % len(emotions)] for i in range(n)],
        "topic": [f"topic-{(i // len(emotions)) % 10}" for i in range(n)],
    })
    table.attrs["corpus"] = {"name": "synthetic-demo", "version": "1", "emotions": emotions}
    store = create(path, table)
    store.add_model("demo", {"model": "synthetic", "layer_convention": "hidden_states index"},
                    identity={"seed": seed})
    chunk_rows = 64
    batches = uniform_batches(n, chunk_rows, 16)
    store.add_readout("demo", "mean_from_50", stimulus_ids=table["stimulus"], layers=range(layers),
                      hidden=hidden, storage_dtype="float16", batches=batches, chunk_rows=chunk_rows,
                      n_tokens=[100] * n, attrs={"spec": "mean_from:50"})
    if store.complete:  # the same demo run again: nothing to write
        return open(path)
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(layers, len(emotions), hidden)).astype(np.float32)
    codes = np.arange(n) % len(emotions)
    data = means[:, codes] + 0.5 * rng.normal(size=(layers, n, hidden)).astype(np.float32)
    with store.writer("demo", "mean_from_50") as writer:
        for b in writer.pending():
            start, stop = writer.rows(b)
            writer.write(b, data[:, start:stop])
    store.finalize()
    return open(path)
