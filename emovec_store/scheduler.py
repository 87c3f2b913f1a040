"""Connect to a dask.distributed scheduler, or say in one line (exit 2) why not.

Shared by ``emovec analyze --scheduler`` (the analyses' dask graphs run on the cluster) and
``emovec extract --scheduler`` (the shards of an extraction run as tasks on its workers).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from .errors import InputError

#: Seconds to wait for a scheduler before giving up with one line.
CONNECT_TIMEOUT_S = 10


@contextmanager
def connected(address: str, *, as_default: bool, timeout_s: float | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` of the scheduler at ``address`` for the ``with`` block, closed after it.

    ``as_default``: the client becomes dask's default scheduler for the block (every ``compute()``
    inside runs on the cluster); otherwise it is used only through its own methods (``submit``).
    ``timeout_s`` defaults to :data:`CONNECT_TIMEOUT_S`. An empty or malformed address, a missing
    ``distributed`` package, or a scheduler that does not answer in time is an :class:`InputError`
    naming the address.
    """
    if not address.strip():
        raise InputError("--scheduler needs an address such as tcp://HOST:8786", field="scheduler")
    try:
        from dask.distributed import Client
    except ImportError:
        raise InputError("--scheduler needs dask.distributed: pip install 'emovec[cluster]'") from None
    import dask

    seconds = CONNECT_TIMEOUT_S if timeout_s is None else timeout_s
    _check_address(address)
    try:
        # never distributed's own default (set_as_default): a Client registers itself as the global client
        # before it connects, and one that then fails stays registered until it is garbage-collected, so a
        # later compute() would wait forever on it; dask's config names this client for the block instead
        client = Client(address, timeout=seconds, set_as_default=False)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise InputError(f"cannot reach the dask scheduler at {address!r} within {seconds:g} s ({exc})",
                         field="scheduler") from None
    except (ValueError, TypeError) as exc:  # distributed's parse of a malformed address
        raise InputError(f"--scheduler {address!r} is not a scheduler address such as tcp://HOST:8786 ({exc})",
                         field="scheduler") from None
    with client, (dask.config.set(scheduler=client) if as_default else nullcontext()):
        yield client


def _check_address(address: str) -> None:
    """Parse ``address`` and resolve its host before any ``Client`` exists: a Client whose constructor fails
    on a malformed address is left half-started in a reference cycle, and when it is collected (at exit,
    or in the middle of later work) its ``close()`` waits 20 s and prints a traceback."""
    from distributed.comm.addressing import resolve_address

    try:
        resolve_address(address)
    except ValueError as exc:
        raise InputError(f"--scheduler {address!r} is not a scheduler address such as tcp://HOST:8786 ({exc})",
                         field="scheduler") from None
    except OSError as exc:  # a host name that does not resolve
        raise InputError(f"cannot reach the dask scheduler at {address!r}: its host does not resolve ({exc})",
                         field="scheduler") from None
