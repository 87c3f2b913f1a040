"""Filesystem failures (read-only directory, missing parent, a file where a directory belongs, disk
full) as one :class:`StoreError` line naming the path, instead of an ``OSError`` traceback."""
from __future__ import annotations

import errno
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import StoreError


def _free_bytes(path: Path) -> int | None:
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def describe(exc: OSError, what: str, path: Path, *, needed_bytes: int | None = None) -> StoreError:
    """One line for an OSError met while ``what`` (e.g. "writing store 'x.zarr'") at ``path``."""
    where = exc.filename or path
    if exc.errno == errno.ENOSPC:
        free = _free_bytes(Path(where))
        need = f"; about {_mib(needed_bytes)} more is needed" if needed_bytes else ""
        have = f" ({_mib(free)} free)" if free is not None else ""
        return StoreError(f"the disk is full while {what}{have}{need}; free space and run the command again "
                          "(finished work is kept)")
    reason = exc.strerror or type(exc).__name__
    return StoreError(f"{reason} while {what}: {str(where)!r}")


@contextmanager
def reported(what: str, path: Path, *, needed_bytes: int | Callable[[], int] | None = None) -> Iterator[None]:
    """Turn an OSError raised in the block into :func:`describe`'s one-line :class:`StoreError`.

    ``needed_bytes`` may be a callable: it is called only when the disk turned out to be full, so that
    a hot path (the writer, once per batch) pays nothing for the message it will rarely need.
    """
    try:
        yield
    except OSError as exc:
        if isinstance(exc, StoreError):  # StoreNotFoundError is an OSError too: already one line
            raise
        need = needed_bytes() if callable(needed_bytes) and exc.errno == errno.ENOSPC else needed_bytes
        raise describe(exc, what, path, needed_bytes=need if isinstance(need, int) else None) from None
