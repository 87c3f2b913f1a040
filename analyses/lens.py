"""Logit lens: which tokens each emotion vector promotes and suppresses through the unembedding.

For every layer and emotion, the vector goes through the model's final norm (when given) and the
unembedding matrix; the ``k`` tokens with the highest logits are the ones the direction promotes,
the ``k`` lowest the ones it suppresses (Anthropic 2026, Table 1; field-notes §3.3). Pure numpy:
the caller loads the model and supplies the matrix, the norm and the decoder, e.g. for a
Hugging Face causal LM with an RMSNorm-style final norm::

    import torch
    w = model.get_output_embeddings().weight.detach().float().numpy()        # (vocab, hidden)
    norm = model.model.norm.float()
    def final_norm(v):
        with torch.no_grad():
            return norm(torch.tensor(v)).numpy()                             # (n, hidden) -> (n, hidden)
    logit_lens(vectors, w, final_norm=final_norm, decode=lambda i: tokenizer.decode([i]))

(``lambda v: model.norm(torch.tensor(v)).numpy()`` under ``torch.no_grad()`` is the short form.)
For an RMSNorm the overall scale of a vector does not change the ranking, so what the norm
contributes is its learned per-dimension gain; a LayerNorm also centres and adds its bias, which
shifts every emotion's logits alike. ``final_norm=None`` skips the norm (the plain unembedding).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from emovec_store.errors import InputError

from .vectors import Vectors


@dataclass(frozen=True)
class LensResult:
    """Top and bottom tokens per layer and emotion.

    ``top``/``bottom`` (layer, emotion, rank): decoded tokens, rank 0 = the highest (for ``top``)
    or lowest (for ``bottom``) logit; ``top_ids``/``bottom_ids`` the same as token ids.
    """

    top: xr.DataArray
    bottom: xr.DataArray
    top_ids: xr.DataArray
    bottom_ids: xr.DataArray

    @property
    def k(self) -> int:
        return int(self.top.sizes["rank"])

    @property
    def emotions(self) -> list[str]:
        return [str(e) for e in self.top["emotion"].values]

    @property
    def layers(self) -> list[int]:
        return [int(x) for x in self.top["layer"].values]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"layer", "k", "emotions", "top", "bottom"}``, tokens per emotion per layer."""
        def tokens(arr: xr.DataArray) -> dict[str, list[list[str]]]:
            return {e: [[str(t) for t in row] for row in arr.sel(emotion=e).transpose("layer", "rank").values]
                    for e in self.emotions}
        return {"layer": self.layers, "k": self.k, "emotions": self.emotions, "top": tokens(self.top),
                "bottom": tokens(self.bottom)}


def logit_lens(vectors: xr.DataArray | Vectors, unembedding: np.ndarray, *,
               final_norm: Callable[[np.ndarray], np.ndarray] | None, decode: Callable[[int], str],
               k: int = 10) -> LensResult:
    """Top-``k`` and bottom-``k`` tokens of every emotion vector, per layer (see the module docstring).

    Parameters
    ----------
    vectors : DataArray, dims (layer, emotion, hidden), or :class:`Vectors` (its ``.vectors``).
    unembedding : array (vocab, hidden): the output embedding (logits = W @ h).
    final_norm : maps an array (n, hidden) of vectors to their normed form (n, hidden); None skips it.
    decode : token id → its text.
    k : tokens kept at each end.
    """
    vec = vectors.vectors if isinstance(vectors, Vectors) else vectors
    if set(vec.dims) != {"layer", "emotion", "hidden"}:
        raise InputError(f"expected emotion vectors with dims (layer, emotion, hidden), got {vec.dims}")
    w = np.asarray(unembedding, dtype=np.float32)
    if w.ndim != 2 or w.shape[1] != vec.sizes["hidden"]:
        raise InputError(f"the unembedding must be (vocab, {vec.sizes['hidden']}), got {w.shape}")
    if not 1 <= k <= w.shape[0]:
        raise InputError(f"k must be between 1 and the vocabulary size {w.shape[0]}, got {k}")
    vec = vec.transpose("layer", "emotion", "hidden")
    top_ids, bottom_ids = [], []
    for layer in vec["layer"].values:
        x = np.asarray(vec.sel(layer=layer).values, dtype=np.float32)
        if final_norm is not None:
            x = np.asarray(final_norm(x), dtype=np.float32)
            if x.shape != (vec.sizes["emotion"], vec.sizes["hidden"]):
                raise InputError(f"final_norm returned shape {x.shape}, expected {(vec.sizes['emotion'], w.shape[1])}")
        logits = x @ w.T  # (emotion, vocab)
        top_ids.append(_extreme(logits, k, highest=True))
        bottom_ids.append(_extreme(logits, k, highest=False))
    coords = {"layer": vec["layer"].values, "emotion": vec["emotion"].values, "rank": np.arange(k)}
    dims = ("layer", "emotion", "rank")
    top = xr.DataArray(np.stack(top_ids), dims=dims, coords=coords)
    bottom = xr.DataArray(np.stack(bottom_ids), dims=dims, coords=coords)

    def decoded(ids: xr.DataArray) -> xr.DataArray:
        text = np.array([decode(int(i)) for i in ids.values.ravel()], dtype=object).reshape(ids.shape)
        return ids.copy(data=text)

    return LensResult(top=decoded(top), bottom=decoded(bottom), top_ids=top, bottom_ids=bottom)


def _extreme(logits: np.ndarray, k: int, *, highest: bool) -> np.ndarray:
    """Indices of the ``k`` largest (or smallest) entries of each row, most extreme first."""
    scores = -logits if highest else logits
    part = np.argpartition(scores, k - 1, axis=-1)[:, :k]
    order = np.argsort(np.take_along_axis(scores, part, axis=-1), axis=-1, kind="stable")
    return np.take_along_axis(part, order, axis=-1)
