"""Emotion vectors of a store as a file other steering tools load: safetensors or npz.

Tensors (float32 unless said):

- ``<emotion>`` for each emotion, shape ``(n_layers, hidden)``: the stored vector (not normalised)
  at each exported layer, rows in the order of ``layers``;
- ``layers`` (int64, ``(n_layers,)``): the rows' layers as ``hidden_states`` indices (0 = the
  embeddings, i = the output of decoder block i-1; decoder-block index = layer - 1);
- ``mean_norm`` ``(n_layers,)``: the layer's mean residual norm on the corpus (mean row norm of the
  pooled readout), the unit that ``emovec steer`` strengths are fractions of.

safetensors carries string metadata as well (``model``, ``layer_convention``, ``vector_set``,
``readout``, ``emotions``); npz carries the same in a ``metadata`` array holding one JSON string.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from emovec_store import Store
from emovec_store.errors import InputError, StoreError

from .source import open_store
from .steer import VECTOR_SETS, pick_model, read_vectors

FORMATS = ("safetensors", "npz")
LAYER_CONVENTION = ("hidden_states index: 0 = embeddings (input of decoder block 0), i = output of decoder "
                    "block i-1 (raw residual, no final norm); decoder-block index = layer - 1")


def vector_arrays(store: str | Store, model: str | None = None, *, vector_set: str | None = None,
                  sidecar: str | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors and metadata described in the module docstring."""
    st = open_store(store)
    slug = pick_model(st, model)
    ds = read_vectors(st, slug, sidecar=sidecar)
    name = vector_set or next(n for n in VECTOR_SETS if n in ds)
    if name not in ds:
        raise InputError(f"the vectors of {slug!r} have no set {name!r}")
    readout = str((ds.attrs.get("emovec_provenance") or {}).get("readout") or "")
    if readout not in st.readouts(slug):
        raise InputError(f"the vectors of {slug!r} name readout {readout!r}, which the store lacks")
    layers = np.asarray([int(x) for x in ds["layer"].values], dtype=np.int64)
    pooled = st.dataset(slug, readout)["pooled"].sel(layer=list(layers)).astype(np.float64)
    mean_norm = ((pooled**2).sum("hidden") ** 0.5).mean("stimulus").compute().to_numpy().astype(np.float32)
    vec = ds[name].transpose("emotion", "layer", "hidden")
    emotions = [str(e) for e in vec["emotion"].values]
    tensors: dict[str, np.ndarray] = {e: np.ascontiguousarray(vec.sel(emotion=e).to_numpy(), dtype=np.float32)
                                      for e in emotions}
    clash = {"layers", "mean_norm"} & set(emotions)
    if clash:
        raise InputError(f"emotion names {sorted(clash)} clash with the file's own tensor names")
    tensors["layers"] = layers
    tensors["mean_norm"] = mean_norm
    attrs: dict[str, Any] = st.model_attrs(slug)
    meta = {"model": str(attrs.get("model") or slug), "model_slug": slug, "layer_convention": LAYER_CONVENTION,
            "vector_set": name, "readout": readout, "emotions": json.dumps(emotions),
            "format": "emovec emotion vectors 1"}
    return tensors, meta


def export_vectors(store: str | Store, out: str | Path, *, fmt: str, model: str | None = None,
                   vector_set: str | None = None, sidecar: str | None = None) -> Path:
    """Write the vectors to ``out`` in ``fmt`` (see :data:`FORMATS`); returns the path written."""
    if fmt not in FORMATS:
        raise InputError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    tensors, meta = vector_arrays(store, model, vector_set=vector_set, sidecar=sidecar)
    path = Path(out)
    tmp = path.with_name(f".{path.name}.writing")
    try:
        if fmt == "safetensors":
            from safetensors.numpy import save_file

            save_file(tensors, str(tmp), metadata=meta)
        else:
            arrays: dict[str, Any] = {"metadata": np.array(json.dumps(meta)), **tensors}
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from exc
    return path
