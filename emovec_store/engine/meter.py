"""What a running extraction shows: tokens per second and the progress bar."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Meter:
    """Tokens per second of one readout's writing, the screened first batch counted with its time.

    The screening pass runs batch 0 before writing starts; its tokens are written in no time, so
    they are counted with the seconds the pass took (``extra_seconds``).
    """

    started: float
    tokens: int = 0
    extra_seconds: float = 0.0

    def add(self, tokens: int, seconds: float = 0.0) -> None:
        self.tokens += tokens
        self.extra_seconds += seconds

    def seconds(self, now: float) -> float:
        return now - self.started + self.extra_seconds

    def rate(self, now: float) -> float:
        elapsed = self.seconds(now)
        return self.tokens / elapsed if elapsed > 0 else 0.0


def progress_bar(total: int, desc: str, enabled: bool, initial: int = 0) -> Any:
    """A tqdm bar over ``total`` stimuli, opening at ``initial`` (rows done before it starts); None
    when disabled or there is nothing to do."""
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="stim", dynamic_ncols=True)
