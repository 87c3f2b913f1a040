"""`emovec extract --scheduler ADDRESS --shards N` (issue 8): the shards of one extraction as tasks on a
LocalCluster of two worker processes give the store a single process writes, chunk for chunk; each
worker loads the model once; a failed shard is one line naming it, and the same command resumes; a
worker that dies mid-shard has its shard taken over; an unreachable scheduler is one line, exit 2."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import emovec_store
from emovec.cli.main import cli
from emovec.corpus import load_corpus
from emovec.corpus.sample import spread_sample
from emovec_store import scheduler
from emovec_store.engine import ExtractOptions, extract, extract_on_cluster
from emovec_store.finalize import manifest

from .cluster_faults import FailShard, KillOnce

distributed = pytest.importorskip("dask.distributed")

#: A cluster that hangs (starting, computing or closing) fails its test after this many seconds; a hang
#: guard, not a speed check (pytest-timeout counts fixture setup and teardown too).
pytestmark = pytest.mark.timeout(300)
LIMIT = 40
#: 4 stimuli per chunk file: 10 chunks, so that 2 or 4 shards each hold several; one torch thread per process.
OPTIONS = ExtractOptions(pooling=["mean_from:50", "last"], chunk_rows=4, sync_interval=0, threads=1, progress=False)
CLI_ARGS = ("--limit", str(LIMIT), "--pooling", "mean_from:50", "--pooling", "last", "--chunk-rows", "4",
            "--sync-interval", "0", "--threads", "1", "--no-progress")


@pytest.fixture(scope="module")
def stimuli() -> object:
    return spread_sample(load_corpus("emovec", languages=("en",)), LIMIT)


@pytest.fixture(scope="module")
def single(llama_dir: Path, stimuli: object, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The chunk manifest of the same extraction in one process."""
    path = tmp_path_factory.mktemp("single") / "single.zarr"
    extract(str(llama_dir), stimuli, path, OPTIONS)  # type: ignore[arg-type]
    return manifest(path)


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    """One LocalCluster of 2 worker processes (one thread each) for the module. Its HTTP server takes a free
    port (":0"): with None the dashboard is off but the server still binds 8787, which the other test process
    or anything else on the machine may hold."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}) as local:
        yield local


@pytest.fixture
def client(cluster: object) -> Iterator[object]:
    with distributed.Client(cluster) as c:
        yield c


def test_two_workers_write_the_store_one_process_writes(llama_dir: Path, stimuli: object, single: dict[str, str],
                                                        cluster: object, tmp_path: Path) -> None:
    store = tmp_path / "c.zarr"
    address = cluster.scheduler_address  # type: ignore[attr-defined]
    result = extract_on_cluster(str(llama_dir), stimuli, store, address, 2, OPTIONS)  # type: ignore[arg-type]
    assert result.finalized and emovec_store.open(store).complete
    assert [s.shard for s in result.shards] == [0, 1] and all(s.result is not None for s in result.shards)
    assert len({s.worker for s in result.shards}) == 2  # two idle one-thread workers took one shard each
    assert [s.loaded_model for s in result.shards] == [True, True]
    assert manifest(store) == single
    assert not (tmp_path / "c.zarr.locks").exists()


def test_the_cli_runs_more_shards_than_workers_loading_the_model_once_per_worker(
        llama_dir: Path, single: dict[str, str], cluster: object, tmp_path: Path) -> None:
    store = tmp_path / "c.zarr"
    address = cluster.scheduler_address  # type: ignore[attr-defined]
    r = CliRunner().invoke(cli, ["extract", "--model", str(llama_dir), "--store", str(store), *CLI_ARGS,
                                 "--scheduler", address, "--shards", "4", "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.output)
    assert result["finalized"] and [s["shard"] for s in result["shards"]] == [0, 1, 2, 3]
    workers = {s["worker"] for s in result["shards"]}
    assert sum(s["loaded_model"] for s in result["shards"]) == len(workers)  # once per worker, not per shard
    assert manifest(store) == single


def test_a_failed_shard_is_one_line_naming_it_and_the_same_command_resumes(
        llama_dir: Path, single: dict[str, str], cluster: object, client: object, tmp_path: Path) -> None:
    store = tmp_path / "c.zarr"
    address = cluster.scheduler_address  # type: ignore[attr-defined]
    args = ["extract", "--model", str(llama_dir), "--store", str(store), *CLI_ARGS, "--scheduler", address,
            "--shards", "2"]
    client.register_plugin(FailShard(shard=1, after=2))  # type: ignore[attr-defined]
    try:
        r = CliRunner().invoke(cli, args)
    finally:
        client.unregister_worker_plugin(FailShard.name)  # type: ignore[attr-defined]
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.output
    assert "shard 1/2 failed on worker tcp://" in lines[0] and "RuntimeError: injected fault" in lines[0]
    assert "run the same command again to resume" in lines[0]
    st = emovec_store.open(store, allow_partial=True)
    progress = [st.progress(m, ro) for m in st.models for ro in st.readouts(m)]
    assert not st.complete and 0 < sum(p.done for p in progress) < sum(p.total for p in progress)
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert manifest(store) == single


def test_a_worker_killed_mid_shard_has_its_shard_taken_over(llama_dir: Path, stimuli: object,
                                                            single: dict[str, str], cluster: object,
                                                            client: object, tmp_path: Path) -> None:
    store, marker = tmp_path / "c.zarr", tmp_path / "killed"
    client.register_plugin(KillOnce(marker, after=3))  # type: ignore[attr-defined]
    try:
        result = extract_on_cluster(str(llama_dir), stimuli, store, client, 2, OPTIONS)  # type: ignore[arg-type]
    finally:
        client.unregister_worker_plugin(KillOnce.name)  # type: ignore[attr-defined]
    assert marker.exists()  # a worker died of SIGKILL in the middle of its shard
    assert result.finalized and manifest(store) == single



def test_an_unreachable_scheduler_is_one_line_and_exit_2(llama_dir: Path, tmp_path: Path,
                                                         unreachable_scheduler: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduler, "CONNECT_TIMEOUT_S", 2)  # the error, not the 10 s wait, is tested
    address = unreachable_scheduler
    r = CliRunner().invoke(cli, ["extract", "--model", str(llama_dir), "--store", str(tmp_path / "c.zarr"),
                                 *CLI_ARGS, "--scheduler", address, "--shards", "2"])
    assert r.exit_code == 2, r.output
    assert len(r.output.strip().splitlines()) == 1 and "cannot reach the dask scheduler" in r.output
    assert address in r.output and not (tmp_path / "c.zarr").exists()


@pytest.mark.parametrize("extra, message", [
    (("--shards", "2"), "--scheduler and --shards go together"),
    (("--scheduler", "tcp://127.0.0.1:1"), "--scheduler and --shards go together"),
    (("--scheduler", "tcp://127.0.0.1:1", "--shards", "2", "--shard", "0/2"), "--shard k/n is for one local"),
])
def test_scheduler_shards_and_shard_are_checked_first(extra: tuple[str, ...], message: str, llama_dir: Path,
                                                      tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["extract", "--model", str(llama_dir), "--store", str(tmp_path / "c.zarr"),
                                 *CLI_ARGS, *extra])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and message in r.output, r.output
