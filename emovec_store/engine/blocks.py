"""Find the decoder blocks (and final norm) of any causal LM, generically.

The blocks are the ``nn.ModuleList`` whose length equals ``config.num_hidden_layers``; among
several candidates the one whose path ends like a layer stack (``layers``, ``h``, ``blocks``) wins.
"""
from __future__ import annotations

from typing import Any

from ..errors import ModelResolutionError

_STACK_NAMES = ("layers", "h", "blocks", "layer", "decoder_layers")
_NORM_NAMES = ("norm", "final_layernorm", "final_layer_norm", "ln_f", "final_norm")


def _config_int(model: Any, keys: tuple[str, ...], what: str) -> int:
    cfg = getattr(model, "config", None)
    cfg = getattr(cfg, "text_config", None) or cfg
    for key in keys:
        value = getattr(cfg, key, None)
        if isinstance(value, int):
            return value
    raise ModelResolutionError(f"cannot tell the {what} from the model config")


def n_layers_of(model: Any) -> int:
    """Number of decoder blocks."""
    return _config_int(model, ("num_hidden_layers", "n_layer", "num_layers"), "number of decoder layers")


def hidden_size_of(model: Any) -> int:
    """Width of the residual stream."""
    return _config_int(model, ("hidden_size", "n_embd", "d_model"), "hidden size")


def find_blocks(model: Any) -> tuple[str, list[Any]]:
    """The dotted path and the list of decoder blocks of ``model``."""
    import torch

    n = n_layers_of(model)
    candidates = [(name, mod) for name, mod in model.named_modules()
                  if isinstance(mod, torch.nn.ModuleList) and len(mod) == n]
    if not candidates:
        raise ModelResolutionError(f"found no list of {n} decoder blocks in {type(model).__name__}")
    candidates.sort(key=lambda c: (c[0].rsplit(".", 1)[-1] not in _STACK_NAMES, c[0].count("."), c[0]))
    name, mod = candidates[0]
    return name, list(mod)


def find_final_norm(model: Any, blocks_path: str) -> Any | None:
    """The norm applied after the last block (HF folds it into the last ``hidden_states`` entry)."""
    parent_path = blocks_path.rsplit(".", 1)[0] if "." in blocks_path else ""
    parent = model.get_submodule(parent_path) if parent_path else model
    for name in _NORM_NAMES:
        if hasattr(parent, name):
            return getattr(parent, name)
    return None
