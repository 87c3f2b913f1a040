"""The sha256 digests emovec records: of files, of texts, and of tables written as JSON lines.

Stores and corpora keep these values on disk, so their definitions here are part of the formats:
changing one changes every recorded hash.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from typing import IO

#: Bytes read at a time when hashing a file.
BLOCK_BYTES = 1 << 22


def file_sha256(*sources: str | os.PathLike[str] | IO[bytes], copy_to: IO[bytes] | None = None) -> str:
    """Hex sha256 of the bytes of one file, or of several read one after another.

    Each source is a path or a binary file object opened for reading (read from its current
    position, not closed). ``copy_to`` also receives every block, so a file can be assembled from
    parts and hashed in one pass.
    """
    h = hashlib.sha256()
    for source in sources:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as fh:
                _feed(h, fh, copy_to)
        else:
            _feed(h, source, copy_to)
    return h.hexdigest()


def _feed(h: hashlib._Hash, fh: IO[bytes], copy_to: IO[bytes] | None) -> None:
    while block := fh.read(BLOCK_BYTES):
        h.update(block)
        if copy_to is not None:
            copy_to.write(block)


def text_sha256(text: str) -> str:
    """Hex sha256 of the UTF-8 bytes of ``text``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def json_lines_sha256(rows: Iterable[Sequence[object]], *, compact: bool = True) -> str:
    """Hex sha256 of a table written as one JSON array per row, each followed by ``\\n`` (UTF-8, non-ASCII
    characters kept as they are).

    ``compact=True`` separates values with ``,`` (the corpus hash); ``compact=False`` with ``, `` (the
    stimulus-table hash of a store). Both are recorded on disk, so neither may change.
    """
    separators = (",", ":") if compact else (", ", ": ")
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(list(row), ensure_ascii=False, separators=separators).encode("utf-8") + b"\n")
    return h.hexdigest()


__all__ = ["BLOCK_BYTES", "file_sha256", "json_lines_sha256", "text_sha256"]
