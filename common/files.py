"""Write-then-rename: a file or directory appears at its final path whole or not at all.

Every writer in emovec that must never leave a torn result (done flags, root metadata, chunk files,
exports, derived results, readout groups, assembled and dequantized model caches, imported corpora)
goes through :func:`atomic_path`.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


def partial_path(path: Path) -> Path:
    """The default temporary name of ``path`` while it is being written: ``NAME.<pid>.partial`` beside it.

    Store directories treat ``*.partial`` files as litter: ``verify`` skips them, ``finalize`` removes them.
    """
    return path.with_name(f"{path.name}.{os.getpid()}.partial")


def _remove(path: Path) -> None:
    """Remove a file or directory tree if it is there (best effort: a failure here is not the error to report)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with suppress(OSError):
            path.unlink(missing_ok=True)


def _commit(tmp: Path, final: Path, exclusive: bool) -> None:
    if exclusive:
        if tmp.is_dir():
            try:
                os.replace(tmp, final)
            except OSError:  # another process put a non-empty directory there first: keep theirs
                _remove(tmp)
            return
        try:
            os.link(tmp, final)  # fails if the file exists: another process created it first, keep theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return
    if final.is_dir() and not final.is_symlink():
        old = final.with_name(f".{final.name}.old")
        _remove(old)
        final.rename(old)
        tmp.rename(final)
        _remove(old)
    else:
        os.replace(tmp, final)


@contextmanager
def atomic_path(final: str | os.PathLike[str], *, tmp: str | os.PathLike[str] | None = None,
                exclusive: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; write a file or a directory there, and when the block
    ends without an exception it is moved to ``final`` by a rename.

    The parent directory is created if needed and a leftover at the temporary path (from a crashed
    run) is removed first. If the block raises, the temporary path is removed and ``final`` is not
    touched: only the closing rename changes it.

    Parameters
    ----------
    tmp : the temporary path (default :func:`partial_path`); it must lie in ``final``'s directory.
    exclusive : create ``final`` only if nothing is there yet. When another process got there first,
        its file or (non-empty) directory is kept and ours discarded (``os.link`` for files). Without
        it the new content replaces the old: ``os.replace`` for files; an existing directory is first
        renamed to ``.NAME.old`` and removed after the swap.
    """
    final = Path(final)
    tmp = partial_path(final) if tmp is None else Path(tmp)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove(tmp)
    try:
        yield tmp
        _commit(tmp, final, exclusive)
    except BaseException:
        _remove(tmp)
        raise


__all__ = ["atomic_path", "partial_path"]


def require_writable_folder(folder: str | os.PathLike[str], what: str) -> None:
    """Refuse, before any work, a folder that cannot be made or written: its nearest existing ancestor
    (itself if it exists) must be a writable directory. ``what`` names it in the one-line
    :class:`~emovec.common.errors.StoreError` (exit 3), e.g. ``"the report folder"``.

    So that a long analysis or steering run does not end in an error at the last step, when it writes.
    """
    from .errors import StoreError

    path = Path(folder).absolute()
    ancestor = next(p for p in (path, *path.parents) if p.exists())
    if not ancestor.is_dir():
        raise StoreError(f"cannot write {what} {str(path)!r}: {str(ancestor)!r} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        reason = "is on a read-only filesystem" if _read_only(ancestor) else "is not writable"
        raise StoreError(f"cannot write {what} {str(path)!r}: {str(ancestor)!r} {reason}")


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
