"""Smaller stimulus tables for quick runs: rows spread evenly over a corpus table."""
from __future__ import annotations

from typing import TYPE_CHECKING

from emovec.common.errors import InputError

if TYPE_CHECKING:
    import pandas as pd


def spread_sample(stimuli: pd.DataFrame, limit: int | None) -> pd.DataFrame:
    """``limit`` rows spread evenly over the table, in table order (so a sample still covers every
    emotion and kind); the table itself when ``limit`` is None or not smaller than it.

    The sample's ``attrs["corpus"]`` records the limit, so a store made from it is not mistaken for
    one made from the whole corpus.
    """
    if limit is None or limit >= len(stimuli):
        return stimuli
    if limit < 1:
        raise InputError(f"the stimulus limit must be at least 1, got {limit}", field="limit")
    import numpy as np

    keep = np.unique(np.linspace(0, len(stimuli) - 1, limit).round().astype(int))
    out = stimuli.iloc[keep].reset_index(drop=True)
    out.attrs = {**stimuli.attrs, "corpus": {**stimuli.attrs.get("corpus", {}), "limit": limit}}
    return out
