"""Reads from a store that fail loudly: a zarr store wrapper for stores opened read-only, and the
fsspec options (timeouts, retries, endpoint) of stores at URLs.

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


#: Environment variables naming the S3 endpoint (an S3-compatible server: MinIO, Ceph, a cloud's own), first found wins.
S3_ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
#: Tries of each S3 request that times out or loses its connection, or is throttled: s3fs's retries
#: (with a backoff of 0.1 to 0.8 s); botocore's own are off, so that the tries do not multiply.
S3_TRIES = 5


def s3_storage_options() -> dict[str, Any]:
    """fsspec (s3fs) options for ``s3://`` stores: connect and read timeouts of :func:`http_timeout`
    seconds per try, one botocore attempt per try (s3fs tries :data:`S3_TRIES` times, so a server that
    never answers fails after at most that many timeouts), and the endpoint of ``$AWS_ENDPOINT_URL_S3``
    or ``$AWS_ENDPOINT_URL`` when set. Credentials, region and profile come from the usual AWS
    variables and files."""
    seconds = http_timeout()
    options: dict[str, Any] = {"config_kwargs": {"connect_timeout": seconds, "read_timeout": seconds,
                                                 "retries": {"max_attempts": 1, "mode": "standard"}}}
    endpoint = next((os.environ[name] for name in S3_ENDPOINT_ENV if os.environ.get(name)), None)
    if endpoint:  # also part of fsspec's instance cache key, so another endpoint gets another client
        options["endpoint_url"] = endpoint
    return options


def url_storage_options(location: str) -> dict[str, Any] | None:
    """The fsspec options of a store URL: :func:`http_storage_options` for http(s), :func:`s3_storage_options`
    for s3, none for other schemes."""
    if location.startswith(("http://", "https://")):
        return http_storage_options()
    if location.startswith("s3://"):
        return s3_storage_options()
    return None


#: What an S3 store that refuses the request should check.
S3_ACCESS_HINT = ("; check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE) and that "
                  "they may read the bucket; a public bucket reads without them with FSSPEC_S3='{\"anon\": true}'")
_S3_ACCESS_ERRORS = ("NoCredentialsError", "PartialCredentialsError", "InvalidAccessKeyId",
                     "SignatureDoesNotMatch", "AccessDenied")


def _describe(exc: BaseException, location: str = "") -> str:
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return f"HTTP {status} {getattr(exc, 'message', '')}".strip()
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return f"no answer within {http_timeout():g} s (set {TIMEOUT_ENV} to wait longer)"
    if type(exc).__name__ in ("ReadTimeoutError", "ConnectTimeoutError"):  # botocore's, for s3://
        return f"no answer within {http_timeout():g} s, {S3_TRIES} tries (set {TIMEOUT_ENV} to wait longer)"
    text = f"{type(exc).__name__}: {str(exc)[:120]}"
    if location.startswith("s3://") and (isinstance(exc, PermissionError)
                                         or any(name in text for name in _S3_ACCESS_ERRORS)):
        text += S3_ACCESS_HINT
    return text


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
            raise StoreError(f"reading {self._where(key)} failed: {_describe(exc, self.location)}") from None
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
