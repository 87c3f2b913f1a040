"""A writer killed at a random batch and resumed yields the same bytes as an uninterrupted run."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

import emovec_store
from emovec_store.finalize import manifest

REPO = Path(__file__).resolve().parents[1]


def run_writer(path: Path, kill_at: int | None = None) -> list[str]:
    """Run the writer process; with ``kill_at`` it SIGKILLs itself in the middle of that batch write."""
    extra = [] if kill_at is None else [str(kill_at)]
    done = subprocess.run([sys.executable, "-m", "tests.writer_process", str(path), *extra], cwd=REPO,
                          capture_output=True, text=True, timeout=600)  # a hang guard, not a speed limit
    assert done.returncode == (-signal.SIGKILL if kill_at is not None else 0), done.stderr
    return done.stdout.split("\n")[:-1]


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    run_writer(tmp_path / "clean.zarr")
    emovec_store.open(tmp_path / "clean.zarr", "r+", allow_partial=True).finalize()

    rng = np.random.default_rng(5)
    written = 0
    for _ in range(2):  # torn twice mid-write at seeded batches, then let it finish
        kill_at = int(rng.integers(1, 6))  # 2 x 5 < 15 batches
        lines = run_writer(tmp_path / "killed.zarr", kill_at=kill_at)
        assert len(lines) == kill_at - 1 and "done" not in lines  # it died inside batch kill_at
        written += kill_at - 1
    partial = emovec_store.open(tmp_path / "killed.zarr", allow_partial=True)
    assert partial.progress("m", "r").done == written
    lines = run_writer(tmp_path / "killed.zarr")
    assert lines[-1] == "done"
    emovec_store.open(tmp_path / "killed.zarr", "r+", allow_partial=True).finalize()

    clean, killed = manifest(tmp_path / "clean.zarr"), manifest(tmp_path / "killed.zarr")
    assert clean == killed and len(clean) > 20
    assert not list((tmp_path / "killed.zarr").rglob("*.partial"))
