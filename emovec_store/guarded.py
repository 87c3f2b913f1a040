"""Reads from a store that fail loudly: a zarr store wrapper for stores opened read-only.

zarr reads a missing chunk as its fill value, which hides damage in a finalized store (a 404 from a
web server becomes silent NaN). :class:`GuardedStore` knows the keys the store's manifest lists:
one of them missing is an error naming it; every failure of the underlying store (an HTTP 500, a
timeout, an unreadable file) becomes one :class:`StoreError` naming the store and the key; and for
URL stores each answer is checked against its sha256, so a wrong answer is never read as data.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import WrapperStore

from .errors import EmovecError, InputError, StoreError

#: Environment variable: seconds to wait for a URL store to connect, and for each answer (default 15).
TIMEOUT_ENV = "EMOVEC_HTTP_TIMEOUT"
DEFAULT_TIMEOUT_S = 15.0


def http_timeout() -> float:
    """The connect and read timeout for URL stores, in seconds (``EMOVEC_HTTP_TIMEOUT``)."""
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise InputError(f"{TIMEOUT_ENV}={text!r} must be a positive number of seconds", field=TIMEOUT_ENV)
    return value


def http_storage_options() -> dict[str, Any]:
    """fsspec options for http(s) stores: connect and read timeouts of :func:`http_timeout` seconds."""
    import aiohttp

    seconds = http_timeout()
    return {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=None, connect=seconds, sock_connect=seconds,
                                                               sock_read=seconds)}}


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return f"HTTP {status} {getattr(exc, 'message', '')}".strip()
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return f"no answer within {http_timeout():g} s (set {TIMEOUT_ENV} to wait longer)"
    return f"{type(exc).__name__}: {str(exc)[:120]}"


class GuardedStore(WrapperStore[Store]):
    """A read-only zarr store whose reads never fail silently (see the module docstring).

    ``expected`` (key -> sha256, from the manifest) is empty until the caller has read the manifest;
    with ``check_hashes`` each whole read of a listed key is compared with its sha256.
    """

    def __init__(self, store: Store, location: str, *, check_hashes: bool = False) -> None:
        super().__init__(store)
        self.location = location
        self.check_hashes = check_hashes
        self.expected: dict[str, str] = {}

    def _with_store(self, store: Store) -> GuardedStore:
        twin = type(self)(store, self.location, check_hashes=self.check_hashes)
        twin.expected = self.expected
        return twin

    def _where(self, key: str) -> str:
        return f"{self.location.rstrip('/')}/{key}" if "://" in self.location else f"{key!r} of {self.location!r}"

    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        try:
            value = await self._store.get(key, prototype, byte_range)
        except EmovecError:
            raise
        except Exception as exc:  # whatever the backend raises, the reader gets one line naming the key
            raise StoreError(f"reading {self._where(key)} failed: {_describe(exc)}") from None
        if value is None:
            if key in self.expected:
                raise StoreError(f"{self._where(key)} is missing, but the store is complete and its manifest "
                                 "lists it (the copy or the server lost it)")
            return None
        digest = self.expected.get(key)
        if self.check_hashes and byte_range is None and digest is not None:
            if hashlib.sha256(value.to_bytes()).hexdigest() != digest:
                raise StoreError(f"{self._where(key)} does not match its sha256 in the manifest (a damaged "
                                 "or wrong answer); not read as data")
        return value
