"""The model that wrote a store, loaded for the analyses that run it (steer, trace, the logit lens).

One place resolves the model from the store's provenance (or a path or alias the user gives), loads
it in float32 and checks that it is the same model: every identity hash both sides record
(GGUF file, weights, tokenizer) must agree.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emovec_store.errors import InputError

#: Identity hashes compared between the store's provenance and the loaded model.
IDENTITY_KEYS = ("gguf_sha256", "weights_sha256", "tokenizer_sha256")


def store_model_name(model_attrs: Mapping[str, Any], model: str | None = None) -> str:
    """``model`` if given, else the model the store's provenance names (refused when it names none)."""
    name = model or str(model_attrs.get("model") or "")
    if not name:
        raise InputError("the store's provenance names no model; name one with --load")
    return name


def identity_differences(stored: Mapping[str, Any], loaded: Mapping[str, Any]) -> list[str]:
    """The identity hashes recorded on both sides that differ."""
    return [key for key in IDENTITY_KEYS if stored.get(key) and loaded.get(key) and stored[key] != loaded[key]]


def load_store_model(model_attrs: Mapping[str, Any], model: str | None = None, *, device: str = "cpu") -> Any:
    """The model that wrote the store (``model``: another path or alias), in float32 and eval mode,
    refused in one line when its identity differs from the store's. Returns a ``LoadedModel``."""
    from emovec_store.engine.load import load
    from emovec_store.engine.resolve import resolve

    name = store_model_name(model_attrs, model)
    loaded = load(resolve(name), device=device, compute_dtype="float32")
    differs = identity_differences(dict(model_attrs.get("identity") or {}), loaded.identity)
    if differs:
        raise InputError(f"model {name!r} differs from the one that wrote the store ({', '.join(differs)})")
    loaded.model.eval()
    return loaded
