"""The analyze scaling benchmark still runs (at toy size), so it cannot rot between real measurements."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "analyze_scaling.py"
#: A guard against a hung subprocess, not a speed limit (the toy run takes seconds).
HANG_GUARD_S = 600


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="per-step peak RSS needs Linux /proc")
def test_the_scaling_benchmark_runs_at_toy_size(tmp_path: Path) -> None:
    out = tmp_path / "scaling.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--toy", "--workdir", str(tmp_path), "--out", str(out)],
                          capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr
    summary = json.loads(out.read_text())
    assert [run["scale"] for run in summary["runs"]] == [1, 2]
    assert [run["n_layers"] for run in summary["runs"]] == [3, 6]
    for run in summary["runs"]:
        assert set(run["timings"]) <= set(run["peak_rss_mib"]) and "setup" in run["peak_rss_mib"]
        assert all(peak > 0 for peak in run["peak_rss_mib"].values())
    assert len(summary["peak_ratio_to_1x"]) == 2 and isinstance(summary["flat"], bool)
    assert "| 2× | 6 |" in done.stdout and "peak RSS" in done.stdout
    assert not any(p.suffix == ".zarr" for p in tmp_path.rglob("*"))  # the stores are removed


def test_the_probe_calibration_benchmark_runs_at_toy_size() -> None:
    script = SCRIPT.with_name("probe_calibration.py")
    done = subprocess.run([sys.executable, str(script), "--datasets", "3", "--permutations", "19"],
                          capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr
    assert "full refit" in done.stdout and "covers chance" in done.stdout


def test_the_fault_injection_benchmark_runs_a_trial(tmp_path: Path) -> None:
    """One trial end to end (reference run, a hooked kill in store creation, the resume, verify, the
    comparison); every subprocess imports torch, so the other kinds' verdict logic is checked below, in
    this process."""
    script = SCRIPT.with_name("fault_injection.py")
    out = tmp_path / "faults.json"
    done = subprocess.run([sys.executable, str(script), "--trials", "1", "--stimuli", "4", "--json", str(out)],
                          capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    (create,) = result["trials"]
    # the kill comes from a hook at a chosen point, so where it lands does not depend on machine speed
    assert (create["kind"], create["phase_hit"]) == ("create", "creating")
    assert create["identical"] and create["reruns"] == 1
    assert "1/1 identical" in done.stdout and "| 1 | create #" in done.stdout


def test_the_fault_injection_verdicts_read_the_phase_from_the_store_and_plan_each_kind() -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    import numpy as np
    from fault_injection import KINDS, Reference, Seen, Trial, kill_plan, phase_hit

    assert phase_hit(Seen(False, False), 2, 8) == "before the store"
    assert phase_hit(Seen(False, True), 2, 8) == "creating"
    assert phase_hit(Seen(True, False, readouts=1), 2, 8) == "setup: 1/2 readouts planned"
    assert phase_hit(Seen(True, False, readouts=2, flags=3), 2, 8) == "writing: 3/8 flags"
    assert phase_hit(Seen(True, False, readouts=2, flags=8), 2, 8) == "finalize: all flags, no manifest"
    assert phase_hit(Seen(True, False, readouts=2, flags=8, manifest=True), 2, 8) == "finalize: manifest written"
    assert phase_hit(Seen(True, False, readouts=2, flags=8, manifest=True, consolidated=True), 2, 8) == (
        "finalize: consolidated, not complete")
    assert phase_hit(Seen(True, False, unreadable_root=True), 2, 8) == "finalize: root document being rewritten"
    assert phase_hit(Seen(True, False, complete=True, readouts=2, flags=8), 2, 8) == "finalized"
    ref = Reference({}, {}, 2, 8, 5, 4, {"creating": 0.5, "writing": 1.0, "finalize": 0.2}, 3.0)
    rng = np.random.default_rng(0)
    hooks = {kind: kill_plan(kind, 0, ref, rng) for kind in KINDS}
    assert hooks["finalize"][0][-3] == "--finalize" and 1 <= int(hooks["finalize"][0][-2]) <= 4
    assert hooks["setup"][0][-3] == "--create" and 5 < int(hooks["setup"][0][-2]) <= 5 + 4
    assert hooks["write"][0][-3] == "tests.faults" and 1 <= int(hooks["write"][0][-2]) <= 8
    assert all(hooks[k][1] is None for k in KINDS if k != "timed")
    assert hooks["timed"][1] is not None and 0 <= hooks["timed"][1][1] <= 0.5  # aimed at creating first
    ok = Trial(1, "finalize", "p", "finalize: manifest written", 1.0, 1, True, True, True, [])
    assert ok.identical
    assert not Trial(1, "finalize", "p", "x", 1.0, 1, True, False, True, []).identical
    assert not Trial(1, "finalize", "p", "x", 1.0, 1, True, True, True, ["s.zarr.locks"]).identical
    assert not Trial(1, "finalize", "p", "x", 1.0, 1, True, True, False, []).identical


def test_the_hostile_inputs_harness_runs_three_cheap_cases(tmp_path: Path) -> None:
    script = SCRIPT.with_name("hostile_inputs.py")
    out = tmp_path / "hostile.json"
    only = ["zip/not a zip*", "damaged metadata/root zarr.json empty*", "filesystem errors/info on a regular file"]
    done = subprocess.run([sys.executable, str(script), "--emovec", str(Path(sys.executable).parent / "emovec"),
                           "--json", str(out), "--hang-s", str(HANG_GUARD_S / 4),  # a loaded machine is no hang
                           *(a for p in only for a in ("--only", p))],
                          capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())["results"]
    assert [(r["cls"], r["verdict"], r["code"]) for r in results] == [
        ("damaged metadata", "handled", 3), ("zip", "handled", 3), ("filesystem errors", "handled", 3)]
    assert "| **total** | **3** | **0** |" in done.stdout


def test_the_hostile_inputs_verdicts_catch_tracebacks_long_errors_and_hangs() -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    from hostile_inputs import Case, Run, judge

    case = Case("c", "n", lambda ctx: (Run(3, "", ""), None))
    assert judge(case, Run(3, "", "Error: one line\n"), None) == ("handled", "")
    assert judge(case, Run(1, "", 'Traceback (most recent call last):\n  File "x"\n'), None)[1] == "traceback"
    assert judge(case, Run(0, "ok\n", ""), None)[1] == "exit 0 (want 1/2/3): accepted"
    assert judge(case, Run(3, "", "a\nb\nc\n"), None)[1] == "3-line error"
    assert judge(case, Run(None, "", ""), None)[0] == "hang"
    assert judge(case, Run(2, "", "Error: x\n"), "source store damaged") == ("not handled", "source store damaged")
