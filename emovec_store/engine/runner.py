"""`BatchRunner`: run one batch of token ids through the model and pool inside the hooks."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .blocks import find_blocks
from .device import DevicePlan
from .hooks import StopForward, capture
from .load import LoadedModel
from .readouts import ReadoutSpec


class BatchRunner:
    """Runs batches through the model and pools inside the hooks.

    Pooling accumulates in float32 whatever the compute dtype: each layer's activations are upcast
    (``h.float()``) before the weighted sum over positions.
    """

    def __init__(self, loaded: LoadedModel, layers: list[int], plan: DevicePlan) -> None:
        import torch

        self.torch = torch
        self.model = loaded.model
        _, self.blocks = find_blocks(self.model)
        self.layers = layers
        self.plan = plan
        tok = loaded.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)

    def run(self, token_ids: Sequence[Sequence[int]], spec: ReadoutSpec) -> np.ndarray:
        """``[layer, rows, hidden]`` pooled activations (``[layer, tokens, hidden]`` for ``tokens``)."""
        torch = self.torch
        lengths = [len(t) for t in token_ids]
        width = -(-max(lengths) // self.plan.bucket) * self.plan.bucket
        ids = torch.full((len(token_ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(token_ids), width), dtype=torch.long)
        weights = torch.zeros((len(token_ids), width), dtype=torch.float32)
        for i, toks in enumerate(token_ids):  # right padding: real tokens keep positions 0..n-1
            ids[i, :len(toks)] = torch.as_tensor(toks)
            mask[i, :len(toks)] = 1
            lo, hi = spec.window(len(toks))
            weights[i, lo:hi] = 1.0 / (hi - lo)
        dev = self.plan.device
        ids, mask, weights = ids.to(dev), mask.to(dev), weights.to(dev)
        keep = mask.bool()

        if spec.kind == "tokens":
            def reduce(h: Any) -> Any:
                return h[keep].float()
        else:
            def reduce(h: Any) -> Any:
                return torch.einsum("bt,bth->bh", weights, h.float())

        with torch.inference_mode(), capture(self.blocks, self.layers, reduce) as records:
            try:
                self.model(input_ids=ids, attention_mask=mask, use_cache=False)
            except StopForward:
                pass
        out: np.ndarray = torch.stack([records[layer] for layer in self.layers]).cpu().numpy()
        return out
