"""Capture decoder-block activations with forward hooks, reducing them inside the hook.

``hidden_states`` index convention: 0 = the input of block 0 (the embeddings, as the blocks see
them), i >= 1 = the output of block i-1 — the raw residual stream, without the final norm that
Hugging Face applies to its last ``hidden_states`` entry. The forward pass stops right after the
deepest requested layer, so later blocks and the LM head never run.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class StopForward(Exception):
    """Raised by the hook of the deepest requested layer to end the forward pass early."""


def _hidden_of(value: Any) -> torch.Tensor:
    import torch

    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    raise TypeError(f"decoder block produced {type(value).__name__}, expected a Tensor or a tuple of Tensors")


@contextmanager
def capture(blocks: Sequence[torch.nn.Module], layers: Sequence[int],
            reduce: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[dict[int, torch.Tensor]]:
    """Register hooks that store ``reduce(hidden)`` for each requested layer in the yielded dict.

    The hooks are removed when the block exits, also after an exception. Run the model inside
    ``try/except StopForward``.
    """
    records: dict[int, torch.Tensor] = {}
    deepest = max(layers)
    handles = []

    def make_hook(layer: int) -> Callable[..., None]:
        # one closure per layer: `layer` must be bound now, not looked up when the hook runs
        def record(hidden: torch.Tensor) -> None:
            records[layer] = reduce(hidden.detach())
            if layer == deepest:
                raise StopForward

        if layer == 0:
            def pre_hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                record(_hidden_of(args[0] if args else kwargs["hidden_states"]))
            return pre_hook

        def hook(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
            record(_hidden_of(output))
        return hook

    try:
        for layer in sorted(set(layers)):
            if layer == 0:
                handles.append(blocks[0].register_forward_pre_hook(make_hook(0), with_kwargs=True))
            else:
                handles.append(blocks[layer - 1].register_forward_hook(make_hook(layer)))
        yield records
    finally:
        for handle in handles:
            handle.remove()
