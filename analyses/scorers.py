"""Scorers of generated text for steering experiments, all run without the steering hook.

- :func:`vader_valence`: VADER's compound valence in [-1, 1] (a lexicon and rules; independent of
  the model).
- :class:`ModelJudge`: the *unsteered* model reads the prompt plus the generation once and gives
  the perplexity of the generated tokens (the fluency guard) and their mean residual at the
  steering layer projected onto each unit emotion vector (the model's own emotion read-out).
- any ``Callable[[str], float]`` the user passes (a name → callable mapping).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

#: A user scorer: text of the generation → one number.
TextScorer = Callable[[str], float]


@lru_cache(maxsize=1)
def _vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_valence(text: str) -> float:
    """VADER compound valence of ``text`` (-1 most negative, +1 most positive, 0 neutral or empty)."""
    return float(_vader().polarity_scores(text)["compound"])


@dataclass(frozen=True)
class Judgement:
    """What the unsteered model makes of one generation."""

    perplexity: float
    readout: dict[str, float]


class ModelJudge:
    """Perplexity and emotion read-out of generations under the unsteered model.

    ``units`` is ``(emotion, hidden)`` of unit vectors; ``layer`` a hidden_states index (read with a
    hook on the block, so the last layer is the raw residual, without the final norm).
    """

    def __init__(self, model: Any, layer: int, units: np.ndarray, emotions: Sequence[str]) -> None:
        from emovec_store.engine.blocks import find_blocks

        self.model = model
        self.layer = layer
        self.units = np.asarray(units, dtype=np.float64)
        self.emotions = list(emotions)
        self._blocks = find_blocks(model)[1]

    def judge(self, prompt_ids: Sequence[int], generated: Sequence[int]) -> Judgement:
        """Score ``generated`` (token ids) as a continuation of ``prompt_ids``."""
        import torch

        if not generated:
            return Judgement(float("nan"), {e: float("nan") for e in self.emotions})
        ids = torch.tensor([[*prompt_ids, *generated]], device=next(self.model.parameters()).device)
        seen: list[Any] = []
        if self.layer == 0:
            handle = self._blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
        else:
            handle = self._blocks[self.layer - 1].register_forward_hook(
                lambda m, args, out: seen.append(out[0] if isinstance(out, tuple) else out))
        try:
            with torch.no_grad():
                logits = self.model(ids).logits[0].float()
        finally:
            handle.remove()
        n_prompt = len(prompt_ids)
        logp = torch.log_softmax(logits[n_prompt - 1:-1], dim=-1)
        target = ids[0, n_prompt:]
        nll = -logp.gather(1, target[:, None]).mean()
        hidden = seen[0][0, n_prompt:].float().mean(0).cpu().numpy().astype(np.float64)
        proj = self.units @ hidden
        return Judgement(float(torch.exp(nll)), {e: float(p) for e, p in zip(self.emotions, proj)})
