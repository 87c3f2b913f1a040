"""MPS worker recycling (issue 11 item 6), run on CPU with simulated driver-memory readings: past the
threshold a process flushes its batches and a fresh one resumes from the store's done flags, the store
ends as one process writes it and the results add up; threshold 0 never recycles; a child's error is
one line with its exit code; Ctrl-C stops the child with its batches flushed and exits 130; a script
that calls extract unguarded is one line; a cluster shard never recycles (a dask worker cannot start
processes).

Every recycled run starts fresh Python processes (torch imported in each), so there are few of them."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import emovec_store
from emovec.cli.main import cli
from emovec.corpus import load_corpus
from emovec.corpus.sample import spread_sample
from emovec_store.engine import ExtractOptions, extract
from emovec_store.engine.recycle import memory_read_by
from emovec_store.finalize import manifest

from .memory_readings import Failing, Growing

#: 16 stimuli in chunks of 4: two readouts of 4 batches each.
LIMIT = 16
OPTIONS = ExtractOptions(pooling=["mean_from:50", "last"], chunk_rows=4, sync_interval=0, threads=1, progress=False)
REPO = Path(__file__).resolve().parents[1]
#: Hang guard only: a healthy run takes seconds; the verdict never depends on machine speed.
HANG_GUARD_S = 600
#: With readings of 100 MB more each time (baseline 100 MB) a process passes 450 MB at its fourth check:
#: the first process writes the first readout and one batch of the second, a second process the rest.
STEP_MB, THRESHOLD_MB, CHECKS_PER_PROCESS = 100, 450, 4


@pytest.fixture(scope="module")
def stimuli() -> object:
    return spread_sample(load_corpus("emovec", languages=("en",)), LIMIT)


@pytest.fixture(scope="module")
def single(llama_dir: Path, stimuli: object, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """The same extraction in this process, without recycling: its store and result."""
    path = tmp_path_factory.mktemp("single") / "single.zarr"
    return path, extract(str(llama_dir), stimuli, path, OPTIONS)  # type: ignore[arg-type]


def processes_for(batches: list[int], checks: int) -> int:
    """How many processes write readouts of these batch counts when each stops at its ``checks``-th memory
    check: the memory is checked after every batch but a readout's last, and the next process goes on."""
    return 1 + sum(n - 1 for n in batches) // checks


def test_past_the_threshold_fresh_processes_resume_and_write_the_store_one_process_writes(
        llama_dir: Path, stimuli: object, single: tuple[Path, object], tmp_path: Path) -> None:
    single_store, alone = single
    store = tmp_path / "r.zarr"
    with memory_read_by(Growing(STEP_MB)):
        result = extract(str(llama_dir), stimuli, store, OPTIONS, mps_recycle_mb=THRESHOLD_MB)  # type: ignore[arg-type]
    batches = [r.batches for r in alone.readouts]  # type: ignore[attr-defined]
    assert processes_for(batches, CHECKS_PER_PROCESS) >= 2
    assert result.processes == processes_for(batches, CHECKS_PER_PROCESS)
    assert result.finalized and emovec_store.open(store).complete
    assert manifest(store) == manifest(single_store)
    assert not (tmp_path / "r.zarr.locks").exists()
    # what each process wrote adds up to one run's
    for merged, one in zip(result.readouts, alone.readouts, strict=True):  # type: ignore[attr-defined]
        assert (merged.readout, merged.batches, merged.stimuli) == (one.readout, one.batches, one.stimuli)
        assert merged.batches_written == one.batches_written == one.batches
        assert merged.tokens_written == one.tokens_written
        assert merged.seconds > 0 and merged.tokens_per_s == pytest.approx(merged.tokens_written / merged.seconds)
    assert result.threads == 1 and result.load_seconds > 0 and result.skipped == alone.skipped  # type: ignore[attr-defined]


def test_threshold_zero_never_recycles(llama_dir: Path, stimuli: object, single: tuple[Path, object],
                                       tmp_path: Path) -> None:
    store = tmp_path / "z.zarr"
    with memory_read_by(Failing()):  # read once, and the run fails
        result = extract(str(llama_dir), stimuli, store, OPTIONS, mps_recycle_mb=0)  # type: ignore[arg-type]
    assert result.processes == 1 and result.finalized
    assert manifest(store) == manifest(single[0])


@pytest.mark.parametrize("case", ["emovec error", "other error"])
def test_an_error_in_a_child_process_is_one_line_with_its_exit_code(llama_dir: Path, tmp_path: Path,
                                                                     case: str) -> None:
    if case == "emovec error":  # a model that does not load: ModelResolutionError, exit 2, naming the path
        model = tmp_path / "broken"
        model.mkdir()
        (model / "config.json").write_text("{ not json")
        reader, code, words = Growing(STEP_MB), 2, f"model {str(model)!r}: cannot load it from"
    else:  # an exception outside emovec's errors: exit 1, its type and first line
        model, reader, code, words = llama_dir, Failing(), 1, "RuntimeError: simulated driver failure"
    with memory_read_by(reader):
        r = CliRunner().invoke(cli, ["extract", "--model", str(model), "--store", str(tmp_path / "e.zarr"),
                                     "--limit", "4", "--threads", "1", "--no-progress",
                                     "--mps-recycle-mb", str(THRESHOLD_MB)])
    assert r.exit_code == code, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    assert lines[0].startswith("Error: ") and words in lines[0], lines[0]


def test_a_cluster_shard_never_recycles(llama_dir: Path, stimuli: object, single: tuple[Path, object],
                                        tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from emovec_store.engine.cluster import _run_shard

    store = tmp_path / "c.zarr"
    with memory_read_by(Growing(STEP_MB)):
        out = _run_shard("job", str(llama_dir), stimuli, str(store),  # type: ignore[arg-type]
                         dataclasses.replace(OPTIONS, mps_recycle_mb=THRESHOLD_MB), (0, 1), False)
    assert out.error == "" and out.result is not None
    assert out.result.processes == 1 and out.result.finalized
    assert manifest(store) == manifest(single[0])


def test_ctrl_c_stops_the_child_with_its_batches_flushed_and_exits_130(llama_dir: Path, stimuli: object,
                                                                      single: tuple[Path, object],
                                                                      tmp_path: Path) -> None:
    store = tmp_path / "i.zarr"
    # done flags only when a writer closes; the child's third reading (after its second batch) is the Ctrl-C
    args = ["extract", "--model", str(llama_dir), "--store", str(store), "--limit", str(LIMIT), "--pooling",
            "mean_from:50", "--pooling", "last", "--chunk-rows", "4", "--sync-interval", "1000000", "--threads", "1",
            "--no-progress", "--mps-recycle-mb", "1000000"]
    done = subprocess.run([sys.executable, "-m", "tests.memory_readings", "--interrupt-parent-at", "3", "emovec",
                           *args], cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 130, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Interrupted: saved "), done.stderr
    progress = emovec_store.open(store, allow_partial=True).progress(llama_dir.name, "mean_from_50")
    assert progress.done == 2  # the child closed its writer: both batches flagged
    assert f"{llama_dir.name}/mean_from_50 2/{progress.total}" in lines[0]
    assert not (tmp_path / "i.zarr.locks").exists()
    result = extract(str(llama_dir), stimuli, store, OPTIONS)  # type: ignore[arg-type]
    assert result.readouts[0].batches_written == progress.total - 2
    assert manifest(store) == manifest(single[0])


UNGUARDED = """
import sys
from emovec.corpus import load_corpus
from emovec_store.engine import extract
from emovec_store.engine.recycle import memory_read_by
from tests.memory_readings import Growing

with memory_read_by(Growing(100)):
    extract(sys.argv[1], load_corpus("emovec", languages=("en",)).head(4), sys.argv[2], threads=1, progress=False,
            mps_recycle_mb=350)
"""


def test_a_script_that_calls_extract_unguarded_is_told_so_in_one_line(llama_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED)
    done = subprocess.run([sys.executable, str(script), str(llama_dir), str(tmp_path / "u.zarr")], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=HANG_GUARD_S)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"emovec.common.errors.InputError: {script} calls emovec's extract outside "
                           "`if __name__ == \"__main__\":`"), done.stderr
    assert not (tmp_path / "u.zarr").exists()  # the child stopped before it did anything
