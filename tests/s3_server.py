"""A real S3-compatible server for tests: moto in server mode on 127.0.0.1, on a free port.

:func:`s3_server` starts it, points the AWS environment at it (endpoint, test credentials, no
config files of the machine), and yields an :class:`S3` to upload stores and switch credential
checks on. moto keeps its buckets in this process, so one server per test module is enough.
"""
from __future__ import annotations

import logging
import socket
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

KEY, SECRET = "emovec-test-key", "emovec-test-secret"


@dataclass
class S3:
    endpoint: str
    fs: Any  # a synchronous s3fs filesystem with the test credentials

    def upload(self, directory: Path, url: str) -> str:
        """Copy a store directory to ``url`` (``s3://bucket/key``), making the bucket if needed."""
        bucket = url.removeprefix("s3://").split("/", 1)[0]
        if not self.fs.exists(bucket):
            self.fs.mkdir(bucket)
        self.fs.put(str(directory), url.removeprefix("s3://"), recursive=True)
        self.fs.invalidate_cache()
        return url

    @contextmanager
    def checking_credentials(self) -> Iterator[None]:
        """Within the block the server refuses every request not signed by a key it knows (moto
        knows none, so the test credentials too are refused: a wrong key, as far as a reader can tell)."""
        self._set_auth(b"0")
        try:
            yield
        finally:
            self._set_auth(b"inf")

    def _set_auth(self, count: bytes) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=count, method="POST",
                                         headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200


def close_clients(filesystem: Any) -> None:
    """Close the S3 clients of the s3fs instances that zarr opened, on zarr's event loop where they run,
    before fsspec forgets them: collected open, each would warn of an unclosed aiohttp session."""
    from zarr.core.sync import sync

    for fs in list(filesystem._cache.values()):
        client = getattr(fs, "_s3", None)
        if fs.asynchronous and client is not None:
            sync(client.__aexit__(None, None, None))
            fs._s3 = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def s3_server(tmp: Path) -> Iterator[S3]:
    """Start the server; set the AWS environment for the block (``tmp`` holds empty AWS config files)."""
    moto_server = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.ERROR)  # one line per request otherwise
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    (tmp / "aws-config").write_text("")
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": KEY,
                                "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
                                "AWS_CONFIG_FILE": str(tmp / "aws-config"),
                                "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "aws-config")}.items():
                mp.setenv(name, value)
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
                mp.delenv(name, raising=False)
            s3fs.S3FileSystem.clear_instance_cache()
            yield S3(endpoint, s3fs.S3FileSystem(endpoint_url=endpoint, key=KEY, secret=SECRET))
    finally:
        close_clients(s3fs.S3FileSystem)
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()
        werkzeug.setLevel(level)
