"""`emovec extract` interrupted and split: resume after SIGKILL, two shard processes, Ctrl-C (the rest of
the CLI's extract tests are in test_extract_cli.py; apart so that the two test processes share the work)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import emovec_store
from emovec.cli.main import cli
from emovec_store.finalize import manifest

from .extract_runs import HANG_GUARD_S, REPO, extract_cmd, run_killed_at


def test_sigkill_mid_extraction_then_resume_equals_uninterrupted(llama_dir: Path, tmp_path: Path) -> None:
    # 24 stimuli, one per batch (texts are longer than the 40-token budget); flags synced per batch. Both
    # kills land before the last batch: at most 10 + 10 batches are written before the second.
    args = ("--limit", "24", "--batch-tokens", "40", "--pooling", "mean_from:50", "--sync-interval", "0")
    clean, killed = tmp_path / "clean.zarr", tmp_path / "killed.zarr"
    r = CliRunner().invoke(cli, extract_cmd(llama_dir, clean, *args))  # in process: no torch import to wait for
    assert r.exit_code == 0, r.output
    rng = np.random.default_rng(12)
    first, second = sorted(rng.choice(np.arange(2, 12), size=2, replace=False))
    done_after = []
    for kill_at in (first, second):  # the second run resumes, then is torn again
        run_killed_at(int(kill_at), *extract_cmd(llama_dir, killed, *args))
        progress = emovec_store.open(killed, allow_partial=True).progress(llama_dir.name, "mean_from_50")
        done_after.append(progress.done)
        assert 0 < progress.done < progress.total
    assert done_after[1] > done_after[0]  # the resumed run kept the first run's batches and added more
    r = CliRunner().invoke(cli, extract_cmd(llama_dir, killed, *args))  # the same command resumes, in process
    assert r.exit_code == 0, r.output
    assert emovec_store.open(killed).complete
    assert manifest(killed) == manifest(clean)


def test_two_shards_equal_one_process(llama_dir: Path, tmp_path: Path) -> None:
    # 36 stimuli in 5 chunks of 8 (the last one short): the shards take 2 and 3 chunks
    args = ("--limit", "36", "--chunk-rows", "8", "--pooling", "mean_from:50", "--pooling", "tokens")
    single, sharded = tmp_path / "single.zarr", tmp_path / "sharded.zarr"
    # shard 1 in another process; shard 0 and the single run in this one meanwhile (one torch import to wait for)
    other = subprocess.Popen([sys.executable, "-m", "emovec.cli", *extract_cmd(llama_dir, sharded, *args,
                                                                                "--shard", "1/2")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runner = CliRunner()
    r = runner.invoke(cli, extract_cmd(llama_dir, sharded, *args, "--shard", "0/2"))
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, extract_cmd(llama_dir, single, *args))
    assert r.exit_code == 0, r.output
    assert other.wait(timeout=HANG_GUARD_S) == 0
    st = emovec_store.open(sharded)  # the last shard finalized it
    assert st.complete
    assert not (tmp_path / "sharded.zarr.locks").exists()  # the last one out removed the lock folder
    assert manifest(sharded) == manifest(single)
    np.testing.assert_array_equal(st.dataset(llama_dir.name, "tokens").acts.values,
                                  emovec_store.open(single).dataset(llama_dir.name, "tokens").acts.values)


def test_ctrl_c_keeps_the_finished_batches_says_so_in_one_line_and_exits_130(llama_dir: Path,
                                                                             tmp_path: Path) -> None:
    # one stimulus per batch (40-token budget), flags synced per batch; SIGINT before the 5th write, and the
    # hook waits for its KeyboardInterrupt there (tests/faults.py), so no later batch can be written first
    args = ("--limit", "12", "--batch-tokens", "40", "--pooling", "mean_from:50", "--sync-interval", "0")
    store = tmp_path / "s.zarr"
    done = subprocess.run([sys.executable, "-m", "tests.faults", "--sigint", "5", "emovec",
                           *extract_cmd(llama_dir, store, *args)], cwd=REPO, capture_output=True, text=True,
                          timeout=HANG_GUARD_S)
    assert done.returncode == 130, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert "Aborted" not in done.stderr and "Traceback" not in done.stderr
    progress = emovec_store.open(store, allow_partial=True).progress(llama_dir.name, "mean_from_50")
    assert progress.done == 4 and progress.total > 5
    assert lines == [f"Interrupted: saved {llama_dir.name}/mean_from_50 4/{progress.total} batches in "
                     f"{str(store)!r} (every finished batch is kept); run the same command again to resume"]
    assert not (tmp_path / "s.zarr.locks").exists()
    r = CliRunner().invoke(cli, extract_cmd(llama_dir, store, *args, "--json"))  # the same command resumes
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["readouts"][0]["batches_written"] == progress.total - 4
    assert emovec_store.open(store).complete


def test_ctrl_c_in_any_command_exits_130_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import emovec_store.demo

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(emovec_store.demo, "write_demo_store", interrupted)
    r = CliRunner().invoke(cli, ["demo", "--store", str(tmp_path / "d.zarr")])
    assert r.exit_code == 130 and "Aborted" not in r.output
    assert [ln for ln in r.output.splitlines() if ln.strip()] == [
        "Interrupted: stopped before the command finished; run it again to redo it"]
