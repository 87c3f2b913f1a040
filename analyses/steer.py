"""Steering mechanics: add ``s · mean‖h_L‖ · v̂`` to the residual stream at one layer while a model runs.

Layers follow the store's ``hidden_states`` index convention: layer 0 is the input of decoder
block 0 (the embeddings), layer i >= 1 the output of block i-1. Steering layer i >= 1 therefore adds
the vector to what block i-1 returns (every position, prompt and generated tokens alike, or only
positions from a given one on); steering layer 0 adds it to what block 0 receives.

The strength ``s`` is a fraction of the layer's mean residual norm, measured on the corpus: the mean
L2 norm of the rows of the pooled readout the vectors were computed from, at that layer. It is a
norm of *pooled* (position-averaged) activations, a little smaller than the mean per-token norm,
so ``s = 1`` adds a vector about as long as a typical pooled residual.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from emovec_store import Store
from emovec_store.derived import list_derived, read_derived
from emovec_store.errors import InputError

from ._common import as_labels
from .source import open_store

#: Which of the stored vector sets steering uses when none is named.
VECTOR_SETS = ("denoised", "raw")


@dataclass(frozen=True)
class SteeringSource:
    """Emotion vectors of one model at one layer, with the scale that strengths are fractions of.

    ``vectors`` has dims ``(emotion, hidden)`` (float64, not normalised); ``mean_norm`` is the mean
    row norm of the pooled readout ``readout`` at ``layer``.
    """

    model: str
    layer: int
    vectors: xr.DataArray
    mean_norm: float
    readout: str
    vector_set: str
    model_attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def emotions(self) -> list[str]:
        return [str(e) for e in as_labels(self.vectors["emotion"])]

    def unit(self, emotion: str) -> np.ndarray:
        """The unit vector of ``emotion`` (refused in one line when the store has no such emotion)."""
        if emotion not in self.emotions:
            raise InputError(f"the store's vectors have no emotion {emotion!r}; available: {', '.join(self.emotions)}")
        v = self.vectors.sel(emotion=emotion).to_numpy().astype(np.float64)
        return v / max(float(np.linalg.norm(v)), 1e-12)

    def unit_matrix(self) -> np.ndarray:
        """All unit vectors, ``(emotion, hidden)`` in :attr:`emotions` order."""
        return np.stack([self.unit(e) for e in self.emotions])


def pick_model(store: Store, model: str | None) -> str:
    """The store's model slug: ``model`` if given (refused when absent), else the only one."""
    if model is not None:
        if model not in store.models:
            raise InputError(f"store {store.location!r} has no model {model!r}; available: {', '.join(store.models)}")
        return model
    if len(store.models) != 1:
        raise InputError(f"store {store.location!r} holds models {', '.join(store.models)}; name one with --model")
    return store.models[0]


def read_vectors(store: Store, model: str, *, sidecar: str | None = None) -> xr.Dataset:
    """The ``derived/vectors`` result of ``emovec analyze`` (one line asking for it when absent)."""
    if "vectors" not in list_derived(store, model, sidecar):
        raise InputError(f"store {store.location!r} has no emotion vectors for model {model!r}; "
                         f"run `emovec analyze {store.location}` first")
    return read_derived(store, model, "vectors", sidecar)


def default_layer(layers: Sequence[int]) -> int:
    """The layer nearest two thirds of the depth (where emotion read-outs usually peak)."""
    top = max(layers)
    return min(layers, key=lambda x: (abs(x - 2 * top / 3), x))


def steering_source(store: str | Store, model: str | None = None, *, layer: int | None = None,
                    vector_set: str | None = None, sidecar: str | None = None) -> SteeringSource:
    """Everything steering needs from a store: the vectors at ``layer`` and the layer's mean norm."""
    st = open_store(store)
    slug = pick_model(st, model)
    ds = read_vectors(st, slug, sidecar=sidecar)
    name = vector_set or next(n for n in VECTOR_SETS if n in ds)
    if name not in ds:
        raise InputError(f"the vectors of {slug!r} have no set {name!r}; available: "
                         f"{', '.join(n for n in VECTOR_SETS if n in ds)}")
    layers = [int(x) for x in ds["layer"].values]
    chosen = default_layer(layers) if layer is None else int(layer)
    if chosen not in layers:
        raise InputError(f"the vectors of {slug!r} have no layer {chosen}; layers: {', '.join(map(str, layers))}")
    provenance = ds.attrs.get("emovec_provenance") or {}
    readout = str(provenance.get("readout") or "")
    if readout not in st.readouts(slug):
        raise InputError(f"the vectors of {slug!r} name readout {readout!r}, which the store lacks")
    pooled = st.dataset(slug, readout)["pooled"].sel(layer=chosen).astype(np.float64)
    mean_norm = float(((pooled**2).sum("hidden") ** 0.5).mean().compute())
    vectors = ds[name].sel(layer=chosen).astype(np.float64).transpose("emotion", "hidden")
    return SteeringSource(model=slug, layer=chosen, vectors=vectors.drop_vars("layer").load(), mean_norm=mean_norm,
                          readout=readout, vector_set=name, model_attrs=dict(st.model_attrs(slug)))


def random_direction(hidden: int, seed: int) -> np.ndarray:
    """A unit direction drawn uniformly on the sphere (the matched-norm control)."""
    v = np.random.default_rng(seed).standard_normal(hidden)
    return v / np.linalg.norm(v)


def _blocks(model: Any) -> list[Any]:
    from emovec_store.engine.blocks import find_blocks

    return find_blocks(model)[1]


def _add_to_hidden(value: Any, delta: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value + delta.to(value.dtype)
    if isinstance(value, tuple) and value and isinstance(value[0], torch.Tensor):
        return (value[0] + delta.to(value[0].dtype), *value[1:])
    raise TypeError(f"decoder block produced {type(value).__name__}, expected a Tensor or a tuple of Tensors")


def _positions(kwargs: dict[str, Any]) -> Any:
    """The absolute positions ``(batch or 1, seq)`` of the tokens a decoder block is processing, from
    the ``position_ids`` (or ``cache_position``) the model passes it; during cached generation the
    block sees only the new token, at its true position."""
    pos = kwargs.get("position_ids")
    if pos is None:
        pos = kwargs.get("cache_position")
    if pos is None or pos.ndim not in (1, 2):
        raise InputError("steering from a position needs decoder blocks that are given position ids; "
                         "this model's are not")
    return pos if pos.ndim == 2 else pos[None, :]


def _delta_from(delta: Any, kwargs: dict[str, Any], from_position: int | None) -> Any:
    """``delta`` where the vector is added: everywhere, or ``(batch, seq, hidden)`` zero before
    ``from_position``."""
    if from_position is None:
        return delta
    keep = (_positions(kwargs) >= from_position).to(delta.dtype)
    return keep[..., None] * delta


@contextmanager
def steering(model: Any, layer: int, vector: np.ndarray | None, *,
             from_position: int | None = None) -> Iterator[None]:
    """Add ``vector`` (already scaled, shape ``(hidden,)``) to the residual stream at ``layer``.

    ``from_position`` P adds it only at token positions >= P (0-based, prompt and generated tokens
    counted alike; P = the prompt's length steers the generated tokens only); positions before P
    are computed as without steering. The hook is removed when the block exits, also after an
    exception. ``vector=None`` installs nothing (the unsteered model).
    """
    if vector is None:
        yield
        return
    import torch

    if from_position is not None and from_position < 0:
        raise InputError(f"--from-position {from_position} is negative")
    blocks = _blocks(model)
    if not 0 <= layer <= len(blocks):
        raise InputError(f"layer {layer} is outside 0..{len(blocks)} for this model")
    param = next(model.parameters())
    delta = torch.as_tensor(np.asarray(vector, dtype=np.float32), device=param.device)
    if layer == 0:
        def pre_hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            d = _delta_from(delta, kwargs, from_position)
            if args:
                return (_add_to_hidden(args[0], d), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": _add_to_hidden(kwargs["hidden_states"], d)}
        handle = blocks[0].register_forward_pre_hook(pre_hook, with_kwargs=True)
    else:
        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
            return _add_to_hidden(output, _delta_from(delta, kwargs, from_position))
        handle = blocks[layer - 1].register_forward_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def steering_vector(direction: np.ndarray, strength: float, mean_norm: float) -> np.ndarray | None:
    """``strength · mean_norm · direction`` (direction of unit norm); None at strength 0 (no hook)."""
    if strength == 0:
        return None
    return strength * mean_norm * np.asarray(direction, dtype=np.float64)


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The prompt as a chat turn when the tokenizer has a chat template, else as plain text."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return [int(i) for i in ids]
    return [int(i) for i in tokenizer(prompt)["input_ids"]]


def generate(model: Any, tokenizer: Any, ids: Sequence[int], *, seed: int, max_new_tokens: int = 32,
             temperature: float = 1.0, top_p: float = 0.95) -> list[int]:
    """Sample a continuation of ``ids``; the same seed gives the same tokens (torch's global RNG is
    seeded right before sampling)."""
    import torch

    device = next(model.parameters()).device
    inputs = torch.tensor([list(ids)], device=device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(inputs, attention_mask=torch.ones_like(inputs), do_sample=True,
                             temperature=temperature, top_p=top_p, top_k=0, max_new_tokens=max_new_tokens,
                             pad_token_id=pad)
    return [int(t) for t in out[0, len(ids):]]
