"""Token-by-token projection of a text onto every unit emotion vector, at one or more layers.

From a model (the text is tokenized as a ``tokens`` readout of ``emovec extract`` would be: raw
text with the tokenizer's special tokens) or straight from a per-token (``tokens``) readout already
in a store. Both give a DataArray ``(layer, position, emotion)`` with the tokens as a coordinate.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from emovec_store import Store
from emovec_store.errors import InputError
from emovec_store.layout import readout_layout

from .steer import VECTOR_SETS, read_vectors


def unit_vectors(store: Store, model: str, layers: Sequence[int], *, vector_set: str | None = None,
                 sidecar: str | None = None) -> xr.DataArray:
    """Unit emotion vectors ``(layer, emotion, hidden)`` of the store at ``layers``."""
    ds = read_vectors(store, model, sidecar=sidecar)
    name = vector_set or next(n for n in VECTOR_SETS if n in ds)
    stored = [int(x) for x in ds["layer"].values]
    missing = [x for x in layers if x not in stored]
    if missing:
        raise InputError(f"the vectors of {model!r} have no layer {missing[0]}; layers: {', '.join(map(str, stored))}")
    vec = ds[name].sel(layer=list(layers)).astype(np.float64).transpose("layer", "emotion", "hidden")
    norm = (vec**2).sum("hidden") ** 0.5
    return (vec / norm.where(norm > 0, 1.0)).load()


def project(acts: np.ndarray, units: xr.DataArray, tokens: Sequence[str]) -> xr.DataArray:
    """``acts`` ``(layer, position, hidden)`` onto ``units`` ``(layer, emotion, hidden)``."""
    values = np.einsum("lph,leh->lpe", np.asarray(acts, dtype=np.float64), units.to_numpy())
    return xr.DataArray(values, dims=("layer", "position", "emotion"),
                        coords={"layer": units["layer"].values, "position": np.arange(values.shape[1]),
                                "emotion": units["emotion"].values, "token": ("position", list(tokens))})


def smooth(trace: xr.DataArray, window: int) -> xr.DataArray:
    """Trailing moving average over ``window`` positions (1: unchanged); the first positions
    average what precedes them."""
    if window <= 1:
        return trace
    return trace.rolling(position=window, min_periods=1).mean()


def trace_from_model(model: Any, tokenizer: Any, text: str, units: xr.DataArray) -> xr.DataArray:
    """Run ``text`` through ``model`` and project the residual at each of ``units``' layers."""
    import torch

    from emovec_store.engine.blocks import find_blocks
    from emovec_store.engine.hooks import StopForward, capture
    from emovec_store.engine.plan import format_and_tokenize
    from emovec_store.engine.readouts import parse_readout

    ids = format_and_tokenize(tokenizer, [text], parse_readout("tokens"), None)[0][0]
    if not ids:
        raise InputError("the text has no tokens")
    layers = [int(x) for x in units["layer"].values]
    blocks = find_blocks(model)[1]
    with capture(blocks, layers, lambda h: h[0].float().cpu()) as records, torch.no_grad():
        try:
            model(torch.tensor([ids], device=next(model.parameters()).device))
        except StopForward:
            pass
    acts = np.stack([records[x].numpy() for x in layers])
    return project(acts, units, [tokenizer.decode([i]) for i in ids])


def trace_from_store(store: Store, model: str, stimulus: str, units: xr.DataArray, *,
                     readout: str = "tokens", decode: Any = None) -> xr.DataArray:
    """The trace of ``stimulus`` from the store's per-token readout (tokens shown as ids unless
    ``decode`` maps an id to text)."""
    if readout not in store.readouts(model) or readout_layout(store.readout_attrs(model, readout)) != "tokens":
        raise InputError(f"model {model!r} in {store.location!r} has no per-token readout {readout!r}")
    ds = store.dataset(model, readout)
    ids = [str(s) for s in ds["stimulus"].values]
    if stimulus not in ids:
        raise InputError(f"the per-token readout {readout!r} has no stimulus {stimulus!r}")
    k = ids.index(stimulus)
    start = int(ds["offsets"][k])  # both token layouts (docs/store.md): offsets[k] + n_tokens[k] ends it
    stop = start + int(ds["n_tokens"][k])
    acts = ds["acts"].sel(layer=units["layer"].values).isel(token=slice(start, stop)).to_numpy()
    token_ids = ds["token_id"].values[start:stop]
    tokens = [decode([int(i)]) if decode else str(int(i)) for i in token_ids]
    return project(acts, units, tokens)


def trace_table(trace: xr.DataArray) -> pd.DataFrame:
    """Long table: layer, position, token, emotion, projection."""
    df = trace.to_dataframe(name="projection").reset_index()
    return df[["layer", "position", "token", "emotion", "projection"]]
