"""Errors and warnings of the corpus tools, rooted in the one emovec error tree."""
from __future__ import annotations

from emovec.common.errors import InputError


class CorpusError(InputError):
    """A corpus file or an import source is malformed; names the file, line and field (exit code 2).

    Raised by the loader and the importers. The validator never raises it for problems inside the
    records: it reports them as :class:`~emovec.corpus.validate.Violation` rows instead.
    """

    exit_code = 2


class CorpusWarning(UserWarning):
    """Something in an import source was odd but could be imported unambiguously (e.g. a reused index)."""


__all__ = ["CorpusError", "CorpusWarning"]
