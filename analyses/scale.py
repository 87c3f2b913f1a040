"""Where the analyses' dask graphs run: local threads by default, or a dask.distributed cluster."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from emovec_store.errors import InputError

#: Seconds to wait for a scheduler before giving up with one line.
CONNECT_TIMEOUT_S = 10


@contextmanager
def scheduler_context(address: str | None) -> Iterator[Any]:
    """Run the enclosed computations on the dask.distributed scheduler at ``address`` (None: local).

    The client becomes dask's default scheduler for the block, so every ``compute()`` of the
    analyses (class means, projections, per-layer loads) runs on the cluster's workers.
    """
    if address is None:
        yield None
        return
    if not address.strip():
        raise InputError("--scheduler needs an address such as tcp://HOST:8786", field="scheduler")
    try:
        from dask.distributed import Client
    except ImportError:
        raise InputError("--scheduler needs dask.distributed: pip install 'emovec[cluster]'") from None
    import dask

    before = dask.config.get("scheduler", None)
    try:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT_S)  # type: ignore[no-untyped-call]
        except BaseException:
            # a Client that failed to start may already have made itself dask's default scheduler:
            # put back what was there, so later computations do not look for a client that is not there
            if before is None:
                dask.config.config.pop("scheduler", None)
            else:
                dask.config.set(scheduler=before)
            raise
    except (OSError, TimeoutError) as exc:
        raise InputError(f"cannot reach the dask scheduler at {address!r} within {CONNECT_TIMEOUT_S} s ({exc})",
                         field="scheduler") from None
    except (ValueError, TypeError) as exc:  # distributed's parse of a malformed address
        raise InputError(f"--scheduler {address!r} is not a scheduler address such as tcp://HOST:8786 ({exc})",
                         field="scheduler") from None
    with client:
        yield client
