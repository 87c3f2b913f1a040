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


def test_the_fault_injection_benchmark_runs_two_trials(tmp_path: Path) -> None:
    script = SCRIPT.with_name("fault_injection.py")
    out = tmp_path / "faults.json"
    done = subprocess.run([sys.executable, str(script), "--trials", "2", "--stimuli", "12", "--json", str(out)],
                          capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    create, finalize = result["trials"]
    # the kills come from hooks at chosen points, so where they land does not depend on machine speed
    assert (create["kind"], create["phase_hit"]) == ("create", "creating")
    assert finalize["kind"] == "finalize" and finalize["phase_hit"].startswith("finalize")
    assert all(t["identical"] and t["reruns"] == 1 for t in result["trials"])
    assert "2/2 identical" in done.stdout and "| 2 | finalize step" in done.stdout


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
