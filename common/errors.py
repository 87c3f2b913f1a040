"""One error tree for emovec. Every error carries the exit code the CLI uses for it.

exit 1: integrity problems found by ``verify``; exit 2: bad input (the same code click uses for usage
errors); exit 3: store problems; exit 5: non-finite activations; exit 130: interrupted (Ctrl-C).
"""
from __future__ import annotations


class EmovecError(Exception):
    """Root of all emovec errors."""

    exit_code = 1
    #: The word the CLI prints before the message.
    label = "Error"


class InputError(EmovecError, ValueError):
    """Bad input: names the file, line and field when they are known."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        where = ":".join(str(x) for x in (path, line) if x is not None)
        prefix = f"{where}: " if where else ""
        suffix = f" (field '{field}')" if field else ""
        super().__init__(f"{prefix}{message}{suffix}")
        self.path, self.line, self.field = path, line, field


class ModelResolutionError(InputError):
    """A model id, path or alias could not be resolved or loaded."""


class StoreError(EmovecError):
    """A problem with a store on disk."""

    exit_code = 3


class StoreNotFoundError(StoreError, FileNotFoundError):
    """No emovec store at the given path."""


class SchemaVersionError(StoreError):
    """The store was written with an unknown schema version."""


class IncompleteStoreError(StoreError):
    """The store is not finalized (or batches are missing) and partial reads were not allowed."""


class IncompatibleStoreError(InputError):
    """An append or resume would mix data that does not belong together; lists the mismatch."""


class StoreLockedError(StoreError):
    """Another writer holds the lock on the rows this writer wants."""


class ReadOnlyStoreError(StoreError):
    """A write was attempted on a store opened read-only (zip, URL, or mode='r')."""


class IntegrityError(EmovecError):
    """``verify`` found damaged, missing or unexpected chunk files."""

    exit_code = 1


class NonFiniteActivationError(EmovecError, ArithmeticError):
    """Activations are non-finite, or overflow the storage dtype (never a silent inf)."""

    exit_code = 5


class Interrupted(EmovecError):
    """Stopped by Ctrl-C (SIGINT); the message says what was saved and how to go on (exit 130, as shells do)."""

    exit_code = 130
    label = "Interrupted"


def one_line(exc: BaseException) -> str:
    """An exception outside emovec's error tree as one line: its type and the first line of its text
    (at most 200 characters), for a message that must not become a traceback."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


__all__ = ["EmovecError", "IncompatibleStoreError", "IncompleteStoreError", "InputError", "IntegrityError",
           "Interrupted", "ModelResolutionError", "NonFiniteActivationError", "ReadOnlyStoreError",
           "SchemaVersionError", "StoreError", "StoreLockedError", "StoreNotFoundError", "one_line"]
