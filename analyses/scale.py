"""Where the analyses' dask graphs run: local threads by default, or a dask.distributed cluster."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from emovec_store.scheduler import connected


@contextmanager
def scheduler_context(address: str | None) -> Iterator[Any]:
    """Run the enclosed computations on the dask.distributed scheduler at ``address`` (None: local).

    The client becomes dask's default scheduler for the block, so every ``compute()`` of the
    analyses (class means, projections, per-layer loads) runs on the cluster's workers. A scheduler
    that cannot be reached is one :class:`~emovec_store.errors.InputError` line
    (:func:`emovec_store.scheduler.connected`).
    """
    if address is None:
        yield None
        return
    with connected(address, as_default=True) as client:
        yield client
