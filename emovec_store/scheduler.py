"""Connect to a dask.distributed scheduler, or say in one line (exit 2) why not.

Shared by ``emovec analyze --scheduler`` (the analyses' dask graphs run on the cluster) and
``emovec extract --scheduler`` (the shards of an extraction run as tasks on its workers).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import InputError

#: Seconds to wait for a scheduler before giving up with one line.
CONNECT_TIMEOUT_S = 10


def _restore_default_scheduler(before: Any) -> None:
    import dask

    if before is None:
        dask.config.config.pop("scheduler", None)
    else:
        dask.config.set(scheduler=before)


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
    before = dask.config.get("scheduler", None)
    try:
        try:
            client = Client(address, timeout=seconds, set_as_default=as_default)  # type: ignore[no-untyped-call]
        except BaseException:
            # a Client that failed to start may already have made itself dask's default scheduler:
            # put back what was there, so later computations do not look for a client that is not there
            _restore_default_scheduler(before)
            raise
    except (OSError, TimeoutError) as exc:
        raise InputError(f"cannot reach the dask scheduler at {address!r} within {seconds:g} s ({exc})",
                         field="scheduler") from None
    except (ValueError, TypeError) as exc:  # distributed's parse of a malformed address
        raise InputError(f"--scheduler {address!r} is not a scheduler address such as tcp://HOST:8786 ({exc})",
                         field="scheduler") from None
    with client:
        yield client
