"""Scorers of generated text for steering experiments, all run without the steering hook.

- :func:`vader_valence`: VADER's compound valence in [-1, 1] (a lexicon and rules; independent of
  the model).
- :func:`nrc_affect`: for each of the NRC Emotion Lexicon's ten affects (Mohammad & Turney 2013, the
  copy packaged in ``nrclex``), the share of the text's words associated with it (independent of
  the model too).
- :class:`ModelJudge`: the *unsteered* model reads the prompt plus the generation once and gives
  the perplexity of the generated tokens (the fluency guard) and their mean residual at the
  steering layer projected onto each unit emotion vector (the model's own emotion read-out).
- any ``Callable[[str], float]`` the user passes (a name → callable mapping).
"""
from __future__ import annotations

import re
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


#: The NRC Emotion Lexicon's affects: Plutchik's eight emotions and two sentiments.
NRC_AFFECTS = ("anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise", "trust", "negative",
               "positive")

_WORD = re.compile(r"[a-z]+")


@lru_cache(maxsize=1)
def _nrc() -> Any:
    from nrclex import NRCLex

    return NRCLex(None)  # None: the lexicon file packaged with nrclex, never a download


def nrc_affect(text: str) -> dict[str, float]:
    """Share of the words of ``text`` associated with each affect in :data:`NRC_AFFECTS` (a word can
    carry several affects; NaN for every affect when the text has no word).

    Words are runs of ASCII letters of the lower-cased text, looked up as they are: nrclex's own
    TextBlob tokenizer and lemmatizer are not used, as they need NLTK data downloaded at run time.
    """
    words = _WORD.findall(text.lower())
    if not words:
        return {a: float("nan") for a in NRC_AFFECTS}
    lexicon = _nrc()
    lexicon.load_token_list(words)
    counts = lexicon.raw_emotion_scores
    return {a: counts.get(a, 0) / len(words) for a in NRC_AFFECTS}


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
