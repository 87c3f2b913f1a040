"""Emotion vectors of a store as a file other steering tools load: safetensors, npz or GGUF.

Tensors (float32 unless said):

- ``<emotion>`` for each emotion, shape ``(n_layers, hidden)``: the stored vector (not normalised)
  at each exported layer, rows in the order of ``layers``;
- ``layers`` (int64, ``(n_layers,)``): the rows' layers as ``hidden_states`` indices (0 = the
  embeddings, i = the output of decoder block i-1; decoder-block index = layer - 1);
- ``mean_norm`` ``(n_layers,)``: the layer's mean residual norm on the corpus (mean row norm of the
  pooled readout), the unit that ``emovec steer`` strengths are fractions of.

safetensors carries string metadata as well (``model``, ``layer_convention``, ``vector_set``,
``readout``, ``emotions``); npz carries the same in a ``metadata`` array holding one JSON string.

GGUF is llama.cpp's control-vector layout (``--control-vector``, ``--control-vector-scaled``; also
repeng's ``ControlVector.import_gguf``): architecture ``controlvector``, keys
``controlvector.model_hint`` (the model type, e.g. ``llama``; the model's name where the store
does not record one) and ``controlvector.layer_count``, and one float32
tensor ``direction.N`` of shape ``(hidden,)`` per steered layer, which llama.cpp adds to the output
of decoder block N (N >= 1; block 0 cannot be steered). So one file holds **one emotion**, and emovec
layer L is written as ``direction.{L-1}`` (L >= 2). Every tensor in such a file must be a direction
of the same size, so layers and norms travel as ``emovec.*`` keys instead. The direction is
``mean_norm · v̂`` (unit vector times the layer's mean residual norm): a llama.cpp scale of s adds
what ``emovec steer`` strength s adds, at every position.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emovec_store import Store
from emovec_store.errors import InputError, StoreError

from .source import open_store
from .steer import VECTOR_SETS, default_layer, pick_model, read_vectors

FORMATS = ("safetensors", "npz", "gguf")
GGUF_ARCH = "controlvector"
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


def control_vector(tensors: dict[str, np.ndarray], meta: dict[str, str], emotion: str | None,
                   layers: Sequence[int] | None = None) -> dict[int, np.ndarray]:
    """The llama.cpp control vector of one emotion: decoder-block index → ``mean_norm · v̂`` at
    emovec layer block + 1, for ``layers`` (default: the stored layer nearest 2/3 of depth)."""
    emotions = json.loads(meta["emotions"])
    if emotion is None:
        raise InputError("a GGUF control vector holds one emotion: name it with --emotion "
                         f"(one of {', '.join(emotions)})")
    if emotion not in emotions:
        raise InputError(f"the store's vectors have no emotion {emotion!r}; available: {', '.join(emotions)}")
    stored = [int(x) for x in tensors["layers"]]
    chosen = sorted(set(int(x) for x in layers)) if layers else [default_layer(stored)]
    for layer in chosen:
        if layer not in stored:
            raise InputError(f"the vectors have no layer {layer}; layers: {', '.join(map(str, stored))}")
        if layer < 2:
            raise InputError(f"layer {layer} cannot go into a GGUF control vector: llama.cpp steers the outputs "
                             "of decoder blocks 1 and up (emovec layers 2 and up)")
    out = {}
    for layer in chosen:
        i = stored.index(layer)
        v = tensors[emotion][i].astype(np.float64)
        out[layer - 1] = (float(tensors["mean_norm"][i]) * v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)
    return out


def _write_gguf(path: Path, directions: dict[int, np.ndarray], meta: dict[str, str], emotion: str,
                model_hint: str) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), arch=GGUF_ARCH)
    writer.add_string(f"{GGUF_ARCH}.model_hint", model_hint)
    writer.add_uint32(f"{GGUF_ARCH}.layer_count", len(directions))
    writer.add_string("emovec.emotion", emotion)
    writer.add_array("emovec.layers", [block + 1 for block in sorted(directions)])
    writer.add_string("emovec.scale", "direction = mean residual norm x unit vector; scale s = emovec steer "
                                      "strength s")
    for key in ("model", "model_slug", "layer_convention", "vector_set", "readout", "format"):
        writer.add_string(f"emovec.{key}", meta[key])
    for block in sorted(directions):
        writer.add_tensor(f"direction.{block}", directions[block])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def export_vectors(store: str | Store, out: str | Path, *, fmt: str, model: str | None = None,
                   vector_set: str | None = None, sidecar: str | None = None, emotion: str | None = None,
                   layers: Sequence[int] | None = None) -> Path:
    """Write the vectors to ``out`` in ``fmt`` (see :data:`FORMATS`); returns the path written.

    ``emotion`` and ``layers`` are for GGUF (see the module docstring): the one emotion, and the
    emovec layers to steer (default: the stored layer nearest 2/3 of depth).
    """
    if fmt not in FORMATS:
        raise InputError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt != "gguf" and (emotion is not None or layers):
        raise InputError("--emotion and --layer choose what goes into a GGUF control vector; "
                         f"{fmt} holds every emotion at every layer")
    st = open_store(store)
    tensors, meta = vector_arrays(st, model, vector_set=vector_set, sidecar=sidecar)
    directions = control_vector(tensors, meta, emotion, layers) if fmt == "gguf" else {}
    path = Path(out)
    tmp = path.with_name(f".{path.name}.writing")
    try:
        if fmt == "gguf":
            hint = str(st.model_attrs(meta["model_slug"]).get("model_type") or meta["model"])
            _write_gguf(tmp, directions, meta, str(emotion), hint)
        elif fmt == "safetensors":
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
