"""Tokenize every stimulus first, then plan batches: sorted by length, packed by a token budget,
never crossing a store chunk (so concurrent writers never share a chunk file)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from .readouts import ReadoutSpec


def format_and_tokenize(tokenizer: Any, texts: Sequence[str], spec: ReadoutSpec,
                        max_length: int | None) -> tuple[list[list[int]], int]:
    """Token ids per text for a readout, and how many texts were truncated to ``max_length``.

    Raw-text readouts keep the tokenizer's special tokens (e.g. BOS) and truncate on the right.
    ``assistant`` wraps the text as a user turn with the generation prompt and truncates on the
    left, so the read position (the end of the prompt) survives.
    """
    ids: list[list[int]] = []
    truncated = 0
    for text in texts:
        if spec.kind == "assistant":
            prompt = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                   add_generation_prompt=True)
            tokens = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            if max_length and len(tokens) > max_length:
                tokens, truncated = tokens[-max_length:], truncated + 1
        else:
            tokens = tokenizer(text, add_special_tokens=True)["input_ids"]
            if max_length and len(tokens) > max_length:
                tokens, truncated = tokens[:max_length], truncated + 1
        if not tokens:
            raise InputError("a text tokenized to zero tokens", field="text")
        ids.append(list(tokens))
    return ids, truncated


def plan_batches(lengths: Sequence[int], batch_tokens: int, chunk_rows: int,
                 bucket: int = 1) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Row order (longest first, ties in input order) and ``[start, stop)`` batches over that order.

    A batch grows while ``rows × padded_length <= batch_tokens`` (one row at least); padded lengths
    are rounded up to a multiple of ``bucket``. Batches never cross a multiple of ``chunk_rows``.
    """
    if batch_tokens < 1:
        raise InputError("--batch-tokens must be positive", field="batch_tokens")
    lens = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lens, kind="stable")
    sorted_len = lens[order]
    batches: list[tuple[int, int]] = []
    n = len(order)
    start = 0
    while start < n:
        chunk_end = min(n, (start // chunk_rows + 1) * chunk_rows)
        padded = -(-int(sorted_len[start]) // bucket) * bucket  # the longest row sets the padding
        rows = max(1, batch_tokens // max(1, padded))
        stop = min(chunk_end, start + rows)
        batches.append((start, stop))
        start = stop
    return order, batches
