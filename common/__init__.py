"""emovec.common: the bottom layer that every stage (corpus, store, engine, analyses, report, CLI) imports.

It holds only what those stages share and imports nothing but the standard library:

- :mod:`~emovec.common.errors`: the one error tree (each error carries its CLI exit code);
- :mod:`~emovec.common.files`: write a file or directory under a temporary name, then rename it
  into place (:func:`~emovec.common.files.atomic_path`);
- :mod:`~emovec.common.hashing`: the sha256 digests that stores and corpora record (files, texts,
  tables as JSON lines);
- :mod:`~emovec.common.compare`: the "store has X, this run has Y" lines of a refused append.
"""
from __future__ import annotations
