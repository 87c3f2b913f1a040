"""Feed the logit lens from the model a store names (resolved and checked to be the same model by
:mod:`.store_model`) and hand its final norm and unembedding to :func:`lens.logit_lens`.

The lens is optional: when torch or the model is not available here, or the model found differs
from the one that wrote the store, it is skipped with one line saying why.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from emovec_store.errors import EmovecError, InputError

from .lens import logit_lens
from .store_model import load_store_model, store_model_name

#: Attribute names of the final norm on a decoder stack, across architectures.
FINAL_NORM_NAMES = ("norm", "final_layernorm", "ln_f", "final_layer_norm")


def _final_norm(model: Any) -> Any | None:
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else getattr(model, "model", model)
    for holder in (decoder, getattr(decoder, "language_model", None)):
        for name in FINAL_NORM_NAMES:
            module = getattr(holder, name, None) if holder is not None else None
            if module is not None:
                return module
    return None


def _installed_alias(name: str) -> bool:
    from emovec_store.engine.resolve import ALIASES, alias_installed

    return name not in ALIASES or alias_installed(ALIASES[name])


def lens_from_provenance(model_attrs: Mapping[str, Any], vectors: xr.DataArray, *, k: int = 10,
                         model: str | None = None) -> tuple[dict[str, Any] | None, str]:
    """Run the logit lens with the store's model (or ``model``, a path or alias given by the user).

    Returns ``(LensResult.to_dict(), "")``, or ``(None, reason)`` when it cannot run here.
    """
    try:
        import torch
    except ImportError as exc:
        return None, f"the logit lens needs torch and transformers ({exc})"
    try:
        name = store_model_name(model_attrs, model)
    except InputError:
        return None, "the store's provenance names no model"
    if not _installed_alias(name):
        return None, f"model {name!r} is not installed here (emovec models pull {name})"
    try:
        loaded = load_store_model(model_attrs, name)
    except InputError as exc:  # it resolves to another model, or to none
        return None, str(exc)
    except (EmovecError, ImportError) as exc:
        return None, f"model {name!r} named by the store is not available here ({exc})"
    unembedding = loaded.model.get_output_embeddings().weight.detach().float().numpy()
    norm = _final_norm(loaded.model)

    def final_norm(v: np.ndarray) -> np.ndarray:
        assert norm is not None
        with torch.no_grad():
            normed: np.ndarray = norm.float()(torch.tensor(v, dtype=torch.float32)).numpy()
            return normed

    decode = loaded.tokenizer.decode
    result = logit_lens(vectors, unembedding, final_norm=final_norm if norm is not None else None,
                        decode=lambda i: decode([int(i)]), k=k)
    out = result.to_dict()
    out["final_norm"] = type(norm).__name__ if norm is not None else None
    return out, ""
