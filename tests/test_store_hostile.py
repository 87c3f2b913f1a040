"""Stores under hostile conditions: kills during creation, damaged metadata, bad zips, hostile
servers, filesystem errors. Every one ends in one clear line and the documented exit code."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

import emovec_store

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, fault: tuple[str, int] | None = None) -> subprocess.CompletedProcess[str]:
    """The emovec CLI in a subprocess, optionally under a fault of tests/faults.py."""
    prefix = ["-m", "tests.faults", fault[0], str(fault[1]), "emovec"] if fault else ["-m", "emovec.cli"]
    return subprocess.run([sys.executable, *prefix, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)  # a hang guard, not a speed limit


@pytest.mark.parametrize("kill_at", [1, 4])
def test_a_kill_during_creation_leaves_a_store_a_rerun_completes(tmp_path: Path, kill_at: int) -> None:
    path = tmp_path / "d.zarr"
    killed = run_cli("demo", "--store", str(path), fault=("--create", kill_at))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (path / "zarr.json").exists()  # nothing half-made at the store's path
    rerun = run_cli("demo", "--store", str(path))
    assert rerun.returncode == 0, rerun.stderr
    assert emovec_store.open(path).complete
    assert not list(tmp_path.glob(".*.creating"))  # the killed creation's tree is cleaned up
