"""emovec.corpus: the built-in stimulus corpus, its loader, validator, statistics and importers.

::

    from emovec.corpus import load_corpus, validate_corpus
    table = load_corpus("emovec", languages=("en", "zh"))   # one row per stimulus
    table.attrs["corpus"]                                  # name, version, sha256, emotions, source
    assert validate_corpus() == []                         # the built-in corpus is clean

The data files and their datasheet (``README.md``) live next to this module; the layout is described
in :mod:`emovec.corpus.loader`, the rules in :mod:`emovec.corpus.validate`, the import formats in
:mod:`emovec.corpus.importers`.
"""
from __future__ import annotations

from .errors import CorpusError, CorpusWarning
from .importers import IMPORT_FORMATS, import_corpus
from .loader import KINDS, corpus_sha256, emotion_table, load_corpus, text_length
from .stats import balance_table, corpus_stats, datasheet_tables, render_datasheet
from .validate import Violation, validate_corpus

__all__ = [
    "IMPORT_FORMATS", "KINDS", "CorpusError", "CorpusWarning", "Violation", "balance_table", "corpus_sha256",
    "corpus_stats", "datasheet_tables", "emotion_table", "import_corpus", "load_corpus", "render_datasheet",
    "text_length", "validate_corpus",
]
