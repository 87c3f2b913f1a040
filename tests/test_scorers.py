"""The NRC Emotion Lexicon scorer on fixed texts: words looked up as written, shares of the words."""
from __future__ import annotations

import math
import sys

import pytest

from emovec.analyses.scorers import NRC_AFFECTS, nrc_affect


def test_each_affect_is_the_share_of_words_associated_with_it() -> None:
    # lexicon entries: abandoned -> anger fear negative sadness; child -> anticipation joy positive;
    # fear -> anger fear negative; "the", "wept", "in" are not in it
    scores = nrc_affect("The abandoned child wept in FEAR.")
    assert list(scores) == list(NRC_AFFECTS)
    assert scores["anger"] == pytest.approx(2 / 6) and scores["fear"] == pytest.approx(2 / 6)
    assert scores["negative"] == pytest.approx(2 / 6)
    assert scores["sadness"] == scores["joy"] == scores["positive"] == scores["anticipation"] == pytest.approx(1 / 6)
    assert scores["disgust"] == scores["surprise"] == scores["trust"] == 0.0


def test_positive_and_negative_texts_are_told_apart() -> None:
    happy = nrc_affect("A happy, joyful day!")
    assert happy["joy"] == pytest.approx(2 / 4) and happy["positive"] == pytest.approx(2 / 4)
    assert happy["negative"] == 0.0
    assert nrc_affect("hello there table") == {a: 0.0 for a in NRC_AFFECTS}


@pytest.mark.parametrize("text", ["", "123 ... !!", "。"])
def test_a_text_with_no_word_scores_nan(text: str) -> None:
    assert all(math.isnan(v) for v in nrc_affect(text).values())


def test_scoring_needs_no_textblob_or_nltk_data() -> None:
    nrc_affect("a calm evening")
    assert "textblob" not in sys.modules and "nltk" not in sys.modules
