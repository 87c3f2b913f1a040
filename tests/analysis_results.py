"""Reading analyze results in tests."""
from __future__ import annotations


def at_layer(res: dict, key_path: tuple[str, ...], layer: int) -> dict:
    """The entry for ``layer`` in the per-layer list at ``key_path`` of one model's results."""
    node = res
    for key in key_path:
        node = node[key]
    return node[res["layers"].index(layer)]
