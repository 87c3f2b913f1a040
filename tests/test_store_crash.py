"""A writer killed at a random batch and resumed yields the same bytes as an uninterrupted run."""
from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path

import emovec_store
from emovec_store.finalize import manifest

REPO = Path(__file__).resolve().parents[1]


def run_writer(path: Path, kill_after: int | None = None) -> list[str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.writer_process", str(path)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    assert proc.stdout is not None
    with proc.stdout:
        for line in proc.stdout:
            lines.append(line.strip())
            if kill_after is not None and len(lines) == kill_after:
                proc.send_signal(signal.SIGKILL)
                break
    rc = proc.wait(timeout=60)
    assert rc == (-signal.SIGKILL if kill_after is not None else 0)
    return lines


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    run_writer(tmp_path / "clean.zarr")
    emovec_store.open(tmp_path / "clean.zarr", "r+", allow_partial=True).finalize()

    rng = random.Random()
    for _ in range(2):  # kill twice at random batches, then let it finish
        lines = run_writer(tmp_path / "killed.zarr", kill_after=rng.randint(1, 5))  # 2 x 5 < 15 batches
        assert lines[-1] != "done"
    partial = emovec_store.open(tmp_path / "killed.zarr", allow_partial=True)
    assert not partial.progress("m", "r").complete
    lines = run_writer(tmp_path / "killed.zarr")
    assert lines[-1] == "done"
    emovec_store.open(tmp_path / "killed.zarr", "r+", allow_partial=True).finalize()

    clean, killed = manifest(tmp_path / "clean.zarr"), manifest(tmp_path / "killed.zarr")
    assert clean == killed and len(clean) > 20
    assert not list((tmp_path / "killed.zarr").rglob("*.partial"))
