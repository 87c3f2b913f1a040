"""Stores on S3 (issue 8): `emovec_store.open("s3://bucket/x.zarr")` and `emovec analyze` on it, against a
real S3-compatible server started here (moto in server mode on 127.0.0.1). Reads equal the local store,
analyze writes its results to a local sidecar, and every failure is one line: a missing object of a
complete store names its key (exit 3), so do refused credentials, a missing bucket and a server that
never answers; without s3fs the line says what to install. The store contract
(tests/test_store_contract.py) runs on S3 too."""
from __future__ import annotations

import importlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import emovec_store
from emovec.cli.main import cli

from .analysis_store import make_analysis_store
from .s3_server import S3, s3_server

pytest.importorskip("s3fs")
CHUNK = "models/m/mean_from_50/pooled/c/1/0/0"
ANALYZE = ("--no-lens", "--no-progress", "--permutations", "99", "--bootstrap", "99")


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("s3-local") / "a.zarr"
    make_analysis_store(path, structure=True, n_layers=2)
    return path


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory, local: Path) -> Iterator[S3]:
    with s3_server(tmp_path_factory.mktemp("aws")) as server:
        server.upload(local, "s3://bucket/a.zarr")
        server.upload(local, "s3://bucket/lost.zarr")
        server.fs.rm(f"bucket/lost.zarr/{CHUNK}")
        yield server


def one_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def test_an_s3_store_reads_what_the_directory_holds(s3: S3, local: Path) -> None:
    remote, mine = emovec_store.open("s3://bucket/a.zarr"), emovec_store.open(local)
    assert remote.complete and remote.models == mine.models and remote.readouts("m") == mine.readouts("m")
    for readout in mine.readouts("m"):
        xr.testing.assert_identical(remote.dataset("m", readout).load(), mine.dataset("m", readout).load())


def test_storage_options_reach_the_filesystem(s3: S3, local: Path) -> None:
    store = emovec_store.open("s3://bucket/a.zarr", storage_options={"endpoint_url": s3.endpoint})
    np.testing.assert_array_equal(store.dataset("m", "mean_from_50").pooled.values,
                                  emovec_store.open(local).dataset("m", "mean_from_50").pooled.values)
    with pytest.raises(emovec_store.InputError, match="storage_options are for stores at URLs"):
        emovec_store.open(local, storage_options={"anon": True})


def test_analyze_on_s3_writes_its_results_to_a_local_sidecar(s3: S3, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["analyze", "s3://bucket/a.zarr", *ANALYZE, "--out", str(tmp_path / "report")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "report" / "results.json").is_file() and (tmp_path / "a.derived.zarr" / "zarr.json").is_file()
    vectors = emovec_store.read_derived(emovec_store.open("s3://bucket/a.zarr"), "m", "vectors")
    assert vectors.sizes["layer"] == 2
    assert not s3.fs.exists("bucket/a.zarr/models/m/derived")  # nothing was written to the bucket


def test_a_missing_object_of_a_complete_store_is_an_error_naming_its_key(s3: S3, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # where a URL store's sidecar would go
    store = emovec_store.open("s3://bucket/lost.zarr")
    with pytest.raises(emovec_store.StoreError, match=f"s3://bucket/lost.zarr/{CHUNK} is missing"):
        store.dataset("m", "mean_from_50").pooled.load()
    r = CliRunner().invoke(cli, ["analyze", "s3://bucket/lost.zarr", *ANALYZE, "--out", str(tmp_path / "report")])
    assert r.exit_code == 3 and f"s3://bucket/lost.zarr/{CHUNK} is missing" in one_line(r.output)
    assert not (tmp_path / "lost.derived.zarr").exists()  # the failed run leaves no empty sidecar


def test_refused_credentials_are_one_line_exit_3(s3: S3) -> None:
    with s3.checking_credentials():
        r = CliRunner().invoke(cli, ["store", "info", "s3://bucket/a.zarr"])
    line = one_line(r.output)
    assert r.exit_code == 3 and "s3://bucket/a.zarr/" in line and "check the credentials" in line


def test_a_missing_bucket_or_path_is_one_line_exit_3(s3: S3) -> None:
    for url in ("s3://no-such-bucket/a.zarr", "s3://bucket/no-such.zarr"):
        r = CliRunner().invoke(cli, ["store", "info", url])
        assert r.exit_code == 3 and f"no emovec store at {url!r}" in one_line(r.output)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """An endpoint that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def test_a_server_that_never_answers_times_out_in_one_line(s3: S3, silent_server: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", silent_server)
    monkeypatch.setenv("EMOVEC_HTTP_TIMEOUT", "0.5")
    r = CliRunner().invoke(cli, ["store", "info", "s3://bucket/a.zarr"])
    assert r.exit_code == 3 and "no answer within 0.5 s" in one_line(r.output)


def test_without_s3fs_the_line_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = importlib.import_module("fsspec.registry")  # the module; `fsspec.registry` is its mapping

    monkeypatch.delitem(registry._registry, "s3", raising=False)
    monkeypatch.setitem(registry.known_implementations, "s3",
                        {"class": "emovec_no_such_module.S3FileSystem", "err": "Install s3fs to access S3"})
    with pytest.raises(emovec_store.InputError, match=r"pip install 'emovec\[s3\]'"):
        emovec_store.open("s3://bucket/a.zarr")
