"""Readout (pooling) specs: how one stimulus's token activations become what the store keeps.

Specs are written as strings and recorded verbatim in the store:

``mean_from:K[:short=half|all]``
    Anthropic's recipe: the mean over positions ``t >= K``. For texts with ``n <= K`` tokens the
    window would be empty; the explicit, recorded short-text rule decides: ``half`` (default) = the
    mean over the second half (``t >= n // 2``), ``all`` = the mean over every token.
``mean[:skip=N]``
    The mean over all tokens, optionally skipping the first N (attention-sink tokens).
``last``
    The last token of the text.
``assistant``
    The text as a user turn in the model's chat template (with the generation prompt); read at the
    last position before the assistant's reply.
``tokens``
    Every token (a per-token CSR store).

A request may carry a kind filter, ``SPEC@kind,kind`` (e.g. ``assistant@implicit,intensity``), so
that a readout covers only some stimuli.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..errors import InputError

ReadoutKind = Literal["mean_from", "mean", "last", "assistant", "tokens"]
ShortRule = Literal["half", "all"]

#: What the built-in corpus gets when no --pooling is given (design §4).
DEFAULT_READOUTS: tuple[str, ...] = ("mean_from:50", "assistant@implicit,intensity")


@dataclass(frozen=True)
class ReadoutSpec:
    """A parsed pooling spec. Build with :func:`parse_readout`."""

    kind: ReadoutKind
    start: int = 0
    short: ShortRule = "half"
    kinds: tuple[str, ...] | None = None
    text: str = ""

    @property
    def name(self) -> str:
        """The store group name: ``mean_from:50`` → ``mean_from_50``, ``mean:skip=1`` → ``mean_skip_1``."""
        if self.kind == "mean_from":
            return f"mean_from_{self.start}" + ("" if self.short == "half" else f"_short_{self.short}")
        if self.kind == "mean" and self.start:
            return f"mean_skip_{self.start}"
        return self.kind

    @property
    def spec(self) -> str:
        """The spec without its kind filter."""
        return self.text.split("@", 1)[0]

    @property
    def short_text_rule(self) -> str:
        """The rule for texts too short for the window, in words (recorded in the store)."""
        if self.kind == "mean_from":
            if self.short == "half":
                return (f"texts with n <= {self.start} tokens are averaged over positions n//2 .. n-1 "
                        f"(the second half); longer texts over positions {self.start} .. n-1")
            return f"texts with n <= {self.start} tokens are averaged over all positions 0 .. n-1"
        if self.kind == "mean" and self.start:
            return f"texts with n <= {self.start} tokens keep their last token only"
        return "none (no window)"

    def window(self, n: int) -> tuple[int, int]:
        """``[start, stop)`` token positions pooled for a text of ``n`` tokens (pooled kinds)."""
        if self.kind == "mean_from":
            if n > self.start:
                return self.start, n
            return (n // 2, n) if self.short == "half" else (0, n)
        if self.kind == "mean":
            return min(self.start, n - 1), n
        if self.kind in ("last", "assistant"):
            return n - 1, n
        return 0, n

    def is_short(self, n: int) -> bool:
        """Whether the short-text rule applies to a text of ``n`` tokens."""
        return self.kind in ("mean_from", "mean") and self.start > 0 and n <= self.start

    def to_dict(self) -> dict[str, object]:
        return {"spec": self.spec, "kind": self.kind, "start": self.start, "short": self.short,
                "kinds": list(self.kinds) if self.kinds else None, "short_text_rule": self.short_text_rule}


_INT = re.compile(r"^\d+$")


def parse_readout(text: str) -> ReadoutSpec:
    """Parse ``SPEC[@kind,kind]``; raises :class:`InputError` with the accepted forms."""
    raw = text.strip()
    spec, _, kind_filter = raw.partition("@")
    kinds = tuple(k.strip() for k in kind_filter.split(",") if k.strip()) or None
    parts = spec.split(":")
    head, args = parts[0], parts[1:]
    usage = ("expected one of mean_from:K[:short=half|all], mean[:skip=N], last, assistant, tokens "
             "(optionally @kind,kind)")
    try:
        if head == "mean_from":
            if not args or not _INT.match(args[0]):
                raise ValueError
            short = "half"
            for extra in args[1:]:
                key, _, value = extra.partition("=")
                if key != "short" or value not in ("half", "all"):
                    raise ValueError
                short = value
            return ReadoutSpec("mean_from", int(args[0]), short, kinds, raw)  # type: ignore[arg-type]
        if head == "mean":
            skip = 0
            for extra in args:
                key, _, value = extra.partition("=")
                if key != "skip" or not _INT.match(value):
                    raise ValueError
                skip = int(value)
            return ReadoutSpec("mean", skip, "half", kinds, raw)
        if head in ("last", "assistant", "tokens") and not args:
            return ReadoutSpec(head, 0, "half", kinds, raw)  # type: ignore[arg-type]
    except ValueError:
        pass
    raise InputError(f"unknown pooling spec {text!r}; {usage}", field="pooling")
