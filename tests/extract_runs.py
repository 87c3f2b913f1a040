"""What the extract CLI tests share: the command line, a store's byte digest, and a run of the CLI in a
fresh process killed by a fault hook of tests/faults.py."""
from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Hang guard only: a healthy run takes seconds; the verdict never depends on machine speed.
HANG_GUARD_S = 1800


def extract_cmd(model: Path, store: Path, *extra: str) -> list[str]:
    return ["extract", "--model", str(model), "--store", str(store), "--no-progress", *extra]


def tree_digest(path: Path) -> dict[str, str]:
    """sha256 of every file of a store (metadata included): 'untouched' means byte for byte."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def run_killed_at(batch: int, *args: str) -> None:
    """Run the CLI in a process that SIGKILLs itself in the middle of its ``batch``-th write."""
    done = subprocess.run([sys.executable, "-m", "tests.faults", str(batch), "emovec", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == -signal.SIGKILL, done.stderr
