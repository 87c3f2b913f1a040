"""`emovec analyze` on a dask.distributed cluster (issue 7 §2): a LocalCluster of two worker processes
gives the same results as the local scheduler, through the API and the CLI's ``--scheduler``; an
unreachable scheduler is one line and exit code 2."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from emovec.analyses import scale
from emovec.analyses.pipeline import AnalyzeOptions, analyze
from emovec.cli.main import cli
from emovec_store import scheduler

from .analysis_store import make_analysis_store

distributed = pytest.importorskip("dask.distributed")

OPTIONS = AnalyzeOptions(n_permutations=99, n_bootstrap=99, lens=False)
#: A cluster that hangs (starting, computing or closing) fails its test after this many seconds instead of
#: holding CI until its limit; pytest-timeout counts fixture setup and teardown too. A hang guard, not a speed check.
pytestmark = pytest.mark.timeout(300)
#: Seconds the unreachable-scheduler test waits for a connection (the CLI's own is 10 s).
SHORT_CONNECT_S = 2


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cluster") / "c.zarr"
    make_analysis_store(path, structure=True)
    return path


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    """One LocalCluster of 2 worker processes for the module; its HTTP server on a free port (":0"), not the
    8787 that None still binds."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:
        yield str(cluster.scheduler_address)


def comparable(results: dict[str, Any]) -> dict[str, Any]:
    """The results without what differs from run to run by design: the creation time and the step timings."""
    out = {k: v for k, v in results.items() if k != "created"}
    out["models"] = {m: {k: v for k, v in res.items() if k != "timings"} for m, res in results["models"].items()}
    return out


def test_a_local_cluster_gives_the_local_results(store: Path, address: str) -> None:
    local = analyze(store, OPTIONS)
    with scale.scheduler_context(address) as client:
        assert client is not None
        workers = set(client.scheduler_info()["workers"])
        with distributed.get_task_stream(client) as stream:
            on_cluster = analyze(store, OPTIONS)
    assert len(workers) == 2 and {task["worker"] for task in stream.data} == workers  # both workers computed
    assert json.dumps(comparable(on_cluster), sort_keys=True) == json.dumps(comparable(local), sort_keys=True)


def test_the_cli_runs_on_a_scheduler(store: Path, address: str, tmp_path: Path) -> None:
    args = ["analyze", str(store), "--scheduler", address, "--layers", "0,3", "--out", str(tmp_path / "report"),
            "--permutations", "99", "--bootstrap", "99", "--no-lens", "--no-write", "--no-progress"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert "--scheduler" in results["command"] and results["models"]["m"]["layers"] == [0, 3]



def test_an_unreachable_scheduler_is_one_line_and_exit_2(store: Path, tmp_path: Path,
                                                         unreachable_scheduler: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduler, "CONNECT_TIMEOUT_S", SHORT_CONNECT_S)  # the error, not the 10 s wait, is tested
    address = unreachable_scheduler
    r = CliRunner().invoke(cli, ["analyze", str(store), "--scheduler", address, "--out", str(tmp_path / "report"),
                                 "--no-lens", "--no-progress"])
    assert r.exit_code == 2, r.output
    assert len(r.output.strip().splitlines()) == 1 and "cannot reach the dask scheduler" in r.output
    assert address in r.output and not (tmp_path / "report").exists()


@pytest.mark.parametrize("address", ["nonsense", "tcp://127.0.0.1:1"])
def test_a_failed_scheduler_leaves_the_local_scheduler_in_place(address: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A Client that cannot start must not stay dask's default scheduler: a later compute() would wait on it
    for ever (CI hung so). The garbage collector is off for the test, as when it has not yet run: a failed
    Client sits in a reference cycle, and a registration that only its collection undoes counts as kept."""
    import gc

    import dask
    import dask.array as da

    from emovec_store.errors import InputError

    monkeypatch.setattr(scheduler, "CONNECT_TIMEOUT_S", SHORT_CONNECT_S)
    gc.collect()
    gc.disable()
    try:
        with pytest.raises(InputError), scale.scheduler_context(address):
            pass
        assert dask.base.get_scheduler() is None  # nothing left as the default: the local threaded scheduler
    finally:
        gc.enable()
    assert int(da.ones(4, chunks=2).sum().compute()) == 4


@pytest.mark.parametrize("address", ["nonsense", "-1", "foo://host:1", "tcp://no-such-host.invalid:8786"])
def test_a_bad_address_is_refused_before_any_client_exists(address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Client whose constructor fails on a malformed address stays half-started until it is collected;
    its ``close()`` then waited 20 s and printed a traceback after the CLI's one line (or raised inside
    later work). The address is parsed, and its host resolved, before a Client is built."""
    from emovec_store.errors import InputError

    def no_client(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a Client was built for {address!r}")

    monkeypatch.setattr(distributed, "Client", no_client)
    with pytest.raises(InputError, match="scheduler") as caught:
        with scheduler.connected(address, as_default=False):
            pass
    assert address in str(caught.value)
