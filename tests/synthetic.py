"""Synthetic stores for tests: deterministic activations, no model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import emovec_store

EMOTIONS = ["joyful", "calm", "furious", "sad"]


def stimulus_table(n: int) -> pd.DataFrame:
    table = pd.DataFrame({
        "stimulus": [f"s{i:04d}" for i in range(n)],
        "kind": ["neutral" if i % 10 == 9 else "story" for i in range(n)],
        "emotion": ["" if i % 10 == 9 else EMOTIONS[i % 4] for i in range(n)],
        "topic": [f"topic-{i % 5}" for i in range(n)],
        "text": [f"text number {i}" for i in range(n)],
    })
    table.attrs["corpus"] = {"name": "synthetic", "version": "1", "sha256": "0" * 64, "emotions": EMOTIONS}
    return table


batch_plan = emovec_store.layout.uniform_batches


def activations(n_layers: int, n: int, hidden: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (scale * rng.standard_normal((n_layers, n, hidden))).astype(np.float32)


def make_store(path: Path, *, n: int = 50, n_layers: int = 3, hidden: int = 8, storage: str = "float32",
               chunk_rows: int = 16, batch_rows: int = 5, model: str = "m", readout: str = "mean_from_50",
               seed: int = 0, write: bool = True, finalize: bool = True,
               store: emovec_store.Store | None = None) -> tuple[emovec_store.Store, np.ndarray]:
    """Create (or extend) a store with one pooled readout, optionally filled and finalized."""
    store = store or emovec_store.create(path, stimulus_table(n))
    store.add_model(model, {"model": model, "n_layers": n_layers, "d_model": hidden}, identity={"name": model})
    store.add_readout(model, readout, stimulus_ids=[f"s{i:04d}" for i in range(n)],
                      layers=list(range(n_layers)), hidden=hidden, storage_dtype=storage,
                      batches=batch_plan(n, chunk_rows, batch_rows), chunk_rows=chunk_rows,
                      n_tokens=list(range(60, 60 + n)), attrs={"spec": "mean_from:50"})
    data = activations(n_layers, n, hidden, seed)
    if write:
        with store.writer(model, readout) as writer:
            for b in writer.pending():
                start, stop = writer.rows(b)
                writer.write(b, data[:, start:stop])
        if finalize:
            store.finalize()
    return store, data
