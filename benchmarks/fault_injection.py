"""Benchmark (issue 8): SIGKILL `emovec extract` at seeded points, resume, compare with an uninterrupted run.

A tiny random llama (``tests/tiny_models.py``) extracts a slice of the built-in corpus (default 60
stimuli, one per batch, both default readouts, flags synced after every batch) once without a fault:
the reference. Each trial then runs the real CLI into a fresh store, SIGKILLs it, reruns the plain
command until the store is complete, and checks the result: the chunk manifest equals the reference's,
``emovec store verify`` exits 0, and nothing is left over (``.creating`` trees, ``*.partial`` files,
the ``NAME.zarr.locks`` folder).

Trial kinds take turns, so the kill points cover every phase by construction (hooks of ``tests/faults.py``):

- ``create``   dies after the n-th string array of the new store's tables (inside its ``.creating`` tree)
- ``finalize`` dies at the n-th step of finalize (before the manifest, after it, after the consolidated
  metadata, after ``complete``)
- ``write``    dies in the middle of the n-th batch write (torn chunk bytes, no flag)
- ``setup``    dies after the n-th string array of the readouts' tables (the store exists, readouts half
  planned; the same hook, counting on past the store's own tables)
- ``timed``    a SIGKILL from outside, a random delay after the run's store is first seen in the phase
  aimed at (creating, writing, finalize in turn), drawn up to how long the reference run's store was
  seen in that phase (so where it lands depends on the machine; the table says)

The phase each kill hit is read from what the killed store holds, not assumed from the kind.

    python benchmarks/fault_injection.py                    # 20 trials, seed 0
    python benchmarks/fault_injection.py --trials 2 --json out.json

Prints a markdown table and a summary line; exits 1 if any trial's store differs from the reference.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tiny models and fault hooks are the crash tests' own (tests/)

from emovec_store import layout  # noqa: E402
from emovec_store.finalize import manifest  # noqa: E402
from tests.faults import FINALIZE_STEPS  # noqa: E402
from tests.tiny_models import build_model  # noqa: E402

KINDS = ("create", "finalize", "write", "setup", "timed")
#: Phases in the order a store passes through them (what :func:`phase_hit` reads from a store).
PHASES = ("before the store", "creating", "setup", "writing", "finalize", "finalized")
#: The phases a timed kill aims at, in turn.
TIMED_AIMS = ("creating", "writing", "finalize")
MAX_RERUNS = 3
NOT_KILLED = "not killed: the run finished first"
#: A guard against a hung subprocess, not a speed limit.
HANG_GUARD_S = 600
POLL_S = 0.01


@dataclass
class Reference:
    """What the uninterrupted run produced, and the counts the kill points are drawn from."""

    chunks: dict[str, str]
    metadata: dict[str, str]
    readouts: int
    flags: int
    create_strings: int
    setup_strings: int
    windows: dict[str, float]
    wall_s: float


@dataclass
class Trial:
    """One kill and its resume: where the kill landed and how the finished store compares."""

    trial: int
    kind: str
    kill_point: str
    phase_hit: str
    killed_after_s: float
    reruns: int
    chunks_identical: bool
    metadata_identical: bool
    verify_ok: bool
    leftovers: list[str]
    error: str = ""

    @property
    def identical(self) -> bool:
        """Every file hashes as in the reference, verify passes, nothing is left over, nothing failed."""
        return (self.chunks_identical and self.metadata_identical and self.verify_ok and not self.leftovers
                and not self.error)


def extract_args(model: Path, store: Path, stimuli: int) -> list[str]:
    return ["extract", "--model", str(model), "--store", str(store), "--limit", str(stimuli), "--batch-tokens",
            "40", "--sync-interval", "0", "--dtype", "float32", "--threads", "1", "--no-progress"]


def child_env(workdir: Path) -> dict[str, str]:
    return {**os.environ, "EMOVEC_CACHE_DIR": str(workdir / "cache"), "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def readout_dirs(store: Path) -> list[Path]:
    """The readout groups whose batch plan (done-flag array) is written (not those still being made)."""
    found = (p.parents[2] for p in store.glob(f"models/*/*/{layout.PROGRESS}/batch_done/zarr.json"))
    return sorted(r for r in found if not r.name.startswith(".") and not r.parent.name.startswith("."))


def done_flags(store: Path) -> int:
    """How many batches of all readouts have their done flag."""
    count = 0
    for r in readout_dirs(store):
        for flag in (r / layout.PROGRESS / "batch_done" / "c").glob("*"):
            with suppress(OSError):  # a running writer's temp file may go between listing and reading
                count += flag.name.isdigit() and flag.read_bytes() == b"\x01"
    return count


def digests(store: Path) -> tuple[dict[str, str], dict[str, str]]:
    """sha256 of the chunk files and of the metadata documents below the root (what finalize records)."""
    chunks = manifest(store)
    return chunks, {k: v for k, v in manifest(store, with_metadata=True).items() if k not in chunks}


@dataclass(frozen=True)
class Seen:
    """What a store's files say at one moment (read without zarr: the store may be half made)."""

    exists: bool
    creating: bool
    complete: bool = False
    readouts: int = 0
    flags: int = 0
    consolidated: bool = False
    manifest: bool = False
    unreadable_root: bool = False


def look(store: Path) -> Seen:
    """Read a store's state from its files."""
    if not (store / "zarr.json").is_file():
        return Seen(False, any(store.parent.glob(f".{store.name}.*.creating")))
    try:
        root = json.loads((store / "zarr.json").read_text())
    except ValueError:
        return Seen(True, False, unreadable_root=True)
    return Seen(True, False, root.get("attributes", {}).get("complete") is True, len(readout_dirs(store)),
                done_flags(store), "consolidated_metadata" in root, (store / layout.MANIFEST_GROUP).is_dir())


def phase_hit(seen: Seen, ref_readouts: int, ref_flags: int) -> str:
    """Which phase a store (killed or running) is in, given the reference's readout and batch counts."""
    if not seen.exists:
        return "creating" if seen.creating else "before the store"
    if seen.unreadable_root:
        return "finalize: root document being rewritten"
    if seen.complete:
        return "finalized"
    if seen.readouts < ref_readouts:
        return f"setup: {seen.readouts}/{ref_readouts} readouts planned"
    if seen.flags < ref_flags:
        return f"writing: {seen.flags}/{ref_flags} flags"
    if seen.consolidated:
        return "finalize: consolidated, not complete"
    if seen.manifest:
        return "finalize: manifest written"
    return "finalize: all flags, no manifest"


def coarse(phase: str) -> int:
    """A phase's place in :data:`PHASES`."""
    return PHASES.index(phase.split(":")[0])


def string_arrays(store: Path, prefixes: tuple[str, ...]) -> int:
    """The string arrays below ``prefixes`` (each one ``write_strings`` call, which the create hook counts)."""
    count = 0
    for doc in store.rglob("zarr.json"):
        rel = doc.parent.relative_to(store).as_posix()
        if rel.startswith(prefixes) and json.loads(doc.read_text()).get("data_type") == "string":
            count += 1
    return count


def run_reference(model: Path, store: Path, stimuli: int, workdir: Path) -> Reference:
    """The uninterrupted run, its store polled for the times it passes from phase to phase."""
    seen: list[tuple[float, Seen]] = []
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: a full pipe would stall the run
        proc = subprocess.Popen([sys.executable, "-m", "emovec.cli", *extract_args(model, store, stimuli)],
                                env=child_env(workdir), stdout=subprocess.DEVNULL, stderr=err, text=True)
        while proc.poll() is None and time.monotonic() - start < HANG_GUARD_S:
            seen.append((time.monotonic() - start, look(store)))
            time.sleep(POLL_S)
        proc.wait(timeout=HANG_GUARD_S)
        wall = time.monotonic() - start
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"the reference extraction failed ({proc.returncode}): {err.read().strip()[-500:]}")
    readouts, flags = len(readout_dirs(store)), done_flags(store)
    levels = [(t, coarse(phase_hit(s, readouts, flags))) for t, s in seen]
    windows = {}
    for aim in TIMED_AIMS:  # how long the store was seen in each phase, from the first poll that saw it there
        level = PHASES.index(aim)
        first = min((t for t, c in levels if c >= level), default=wall)
        windows[aim] = max(0.0, min((t for t, c in levels if c > level), default=wall) - first)
    return Reference(*digests(store), readouts, flags,
                     string_arrays(store, ("stimuli", layout.EMOTIONS_GROUP)), string_arrays(store, ("models/",)),
                     windows, wall)


def kill_plan(kind: str, turn: int, ref: Reference,
              rng: np.random.Generator) -> tuple[list[str], tuple[int, float] | None, str]:
    """The command prefix (a hook of tests/faults.py) or a timed kill (the phase to wait for, the delay
    after it is seen), and how to name it; ``turn`` counts the trials of this kind before (timed kills
    aim at each phase in turn)."""
    faults = [sys.executable, "-m", "tests.faults"]
    if kind == "create":
        n = int(rng.integers(1, ref.create_strings + 1))
        return [*faults, "--create", str(n), "emovec"], None, f"create #{n}/{ref.create_strings}"
    if kind == "setup":
        n = int(rng.integers(1, ref.setup_strings + 1))
        return ([*faults, "--create", str(ref.create_strings + n), "emovec"], None,
                f"readout tables #{n}/{ref.setup_strings}")
    if kind == "write":
        n = int(rng.integers(1, ref.flags + 1))
        return [*faults, str(n), "emovec"], None, f"batch write #{n}/{ref.flags}"
    if kind == "finalize":
        n = int(rng.integers(1, FINALIZE_STEPS + 1))
        return [*faults, "--finalize", str(n), "emovec"], None, f"finalize step {n}/{FINALIZE_STEPS}"
    aim = TIMED_AIMS[turn % len(TIMED_AIMS)]
    delay = float(rng.uniform(0.0, ref.windows[aim]))
    return ([sys.executable, "-m", "emovec.cli"], (PHASES.index(aim), delay),
            f"timed: {delay:.2f} s after {aim} seen (of {ref.windows[aim]:.2f} s)")


def killed_run(prefix: list[str], timed: tuple[int, float] | None, args: list[str], env: dict[str, str],
               store: Path, ref: Reference) -> tuple[float, str]:
    """Run the CLI until it is SIGKILLed, by a hook or (``timed``) once the store has been seen in that
    phase for that long: the seconds it ran, and '' if it was killed, else what it did."""
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: a full pipe would stall the run
        proc = subprocess.Popen([*prefix, *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                text=True)
        anchor = None
        while proc.poll() is None and time.monotonic() - start < HANG_GUARD_S:
            now = time.monotonic()
            if timed is not None and anchor is None and coarse(phase_hit(look(store), ref.readouts,
                                                                         ref.flags)) >= timed[0]:
                anchor = now
            if anchor is not None and timed is not None and now - anchor >= timed[1]:
                proc.kill()  # only the process this script started, by its own handle
                break
            time.sleep(POLL_S)
        else:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                return time.monotonic() - start, f"hung: still running after {HANG_GUARD_S} s"
        proc.wait(timeout=HANG_GUARD_S)
        elapsed = time.monotonic() - start
        err.seek(0)
        message = last_line(err.read())
    if proc.returncode == -signal.SIGKILL:
        return elapsed, ""
    if proc.returncode == 0:
        return elapsed, NOT_KILLED
    return elapsed, f"the run to be killed failed first (exit {proc.returncode}): {message}"


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def leftovers(store: Path) -> list[str]:
    """What a finished run should not leave: creation trees, temp files, the lock folder."""
    found = [p.name for p in store.parent.glob(f".{store.name}.*.creating")]
    found += [str(p.relative_to(store)) for pattern in ("*.partial", ".*.creating") for p in store.rglob(pattern)]
    if layout.lock_dir(store).exists():
        found.append(layout.lock_dir(store).name)
    return found


def is_complete(store: Path) -> bool:
    try:
        return json.loads((store / "zarr.json").read_text())["attributes"].get("complete") is True
    except (OSError, ValueError, KeyError):
        return False


def resume(args: list[str], env: dict[str, str], store: Path) -> tuple[int, str]:
    """Rerun the plain command until the store is complete: the reruns it took, and '' or what failed."""
    for reruns in range(1, MAX_RERUNS + 1):
        done = subprocess.run([sys.executable, "-m", "emovec.cli", *args], env=env, capture_output=True, text=True,
                              timeout=HANG_GUARD_S)
        if done.returncode != 0:
            return reruns, f"rerun {reruns} exited {done.returncode}: {last_line(done.stderr)}"
        if is_complete(store):
            return reruns, ""
    return MAX_RERUNS, f"not complete after {MAX_RERUNS} reruns"


def run_trial(index: int, kind: str, model: Path, ref: Reference, stimuli: int, workdir: Path,
              rng: np.random.Generator) -> Trial:
    store = workdir / f"trial-{index:02d}.zarr"
    env, args = child_env(workdir), extract_args(model, store, stimuli)
    prefix, timed, point = kill_plan(kind, (index - 1) // len(KINDS), ref, rng)
    elapsed, error = killed_run(prefix, timed, args, env, store, ref)
    phase = phase_hit(look(store), ref.readouts, ref.flags)
    reruns = 0
    if error == NOT_KILLED:
        phase, error = NOT_KILLED, ""
    elif not error:
        reruns, error = resume(args, env, store)
    verify = subprocess.run([sys.executable, "-m", "emovec.cli", "store", "verify", str(store)], env=env,
                            capture_output=True, text=True, timeout=HANG_GUARD_S)
    if not error and verify.returncode != 0:
        error = f"store verify exited {verify.returncode}: {last_line(verify.stderr)}"
    chunks, metadata = digests(store) if store.is_dir() else ({}, {})
    return Trial(index, kind, point, phase, round(elapsed, 2), reruns, chunks == ref.chunks,
                 metadata == ref.metadata, verify.returncode == 0, leftovers(store), error)


def print_table(trials: list[Trial]) -> None:
    print("\n| trial | kill point | phase hit | killed after s | reruns | chunks identical | metadata identical "
          "| verify | leftovers |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t in trials:
        print(f"| {t.trial} | {t.kill_point} | {t.phase_hit} | {t.killed_after_s:.2f} | {t.reruns} | "
              f"{yes(t.chunks_identical)} | {yes(t.metadata_identical)} | {yes(t.verify_ok)} | "
              f"{', '.join(t.leftovers) or 'none'} |")


def yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stimuli", type=int, default=60, help="corpus slice (--limit); one stimulus per batch")
    ap.add_argument("--json", type=Path, default=None, help="also write the reference counts and trials here")
    args = ap.parse_args()
    if args.trials < 1 or args.stimuli < 2:
        ap.error("--trials must be at least 1 and --stimuli at least 2")
    rng = np.random.default_rng(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="emovec-faults-"))
    trials: list[Trial] = []
    try:
        model = build_model("llama", workdir / "tiny-llama")
        ref = run_reference(model, workdir / "reference.zarr", args.stimuli, workdir)
        windows = ", ".join(f"{k} {length:.2f}" for k, length in ref.windows.items())
        print(f"# reference: {args.stimuli} stimuli, {ref.readouts} readouts, {ref.flags} batches, {len(ref.chunks)} "
              f"chunk files, {len(ref.metadata)} metadata documents, {ref.wall_s:.1f} s; seen in phase (s): {windows}",
              flush=True)
        for i in range(args.trials):
            trial = run_trial(i + 1, KINDS[i % len(KINDS)], model, ref, args.stimuli, workdir, rng)
            trials.append(trial)
            print(f"# trial {trial.trial}: {trial.kill_point} -> {trial.phase_hit}; identical: {trial.identical} "
                  f"{trial.error}", file=sys.stderr, flush=True)
            if trial.identical:
                shutil.rmtree(workdir / f"trial-{trial.trial:02d}.zarr", ignore_errors=True)
    finally:
        failed = [t for t in trials if not t.identical]
        if not failed:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(trials)
    ok, missed = len(trials) - len(failed), sum(t.phase_hit == NOT_KILLED for t in trials)
    note = f"; {missed} not killed (the run ended first)" if missed else ""
    print(f"\n{ok}/{len(trials)} identical (every chunk file and metadata document hashes as in the uninterrupted "
          f"run, store verify exit 0, nothing left over){note}")
    for t in failed:
        print(f"trial {t.trial} ({t.kill_point}; {t.phase_hit}): {t.error or 'differs'}; its store is kept in "
              f"{workdir / f'trial-{t.trial:02d}.zarr'}")
    if args.json:
        counts = {k: v for k, v in asdict(ref).items() if k not in ("chunks", "metadata")}
        args.json.write_text(json.dumps({"reference": counts, "seed": args.seed, "stimuli": args.stimuli,
                                         "identical": ok, "not_killed": missed,
                                         "trials": [{**asdict(t), "identical": t.identical} for t in trials]},
                                        indent=2))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
