"""Benchmark: `emovec extract` tok/s with the default thread count vs fewer threads, idle and under load.

For each load level (extra busy processes: ``python -c "while True: pass"``, started before and
killed after that level's runs), every thread setting runs ``--repeats`` times, interleaved
(default, 1, default, 1, ...), each run its own ``emovec extract`` process on a fresh store:

    python benchmarks/extract_threads.py --model smollm2-135m --limit 40 --loads 0,8 --threads default,1 --repeats 3

``default`` passes no ``--threads`` (and clears ``$EMOVEC_THREADS``/``$OMP_NUM_THREADS``), so torch
takes one thread per core; a number passes ``--threads N``. tok/s is the ``mean_from_50`` readout's
rate as ``emovec extract --json`` reports it (real tokens, model loading excluded); "CPU share" is the
extract process's user+system CPU time over its wall time (loading included), in cores. Results go
to stdout as markdown.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

EMOVEC = [sys.executable, "-m", "emovec.cli"]


def start_load(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_load(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:  # only the processes this script started, by their own handle
        p.kill()
    for p in procs:
        p.wait()


def run_once(model: str, limit: int, threads: str, workdir: Path) -> dict:
    store = workdir / f"s-{time.monotonic_ns()}.zarr"
    env = {k: v for k, v in os.environ.items() if k not in ("EMOVEC_THREADS", "OMP_NUM_THREADS")}
    cmd = [*EMOVEC, "extract", "--model", model, "--store", str(store), "--limit", str(limit),
           "--pooling", "mean_from:50", "--json", "--no-progress"]
    if threads != "default":
        cmd += ["--threads", threads]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout)
    shutil.rmtree(store, ignore_errors=True)
    readout = result["readouts"][0]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"threads": threads, "torch_threads": result["threads"], "tokens": readout["tokens_written"],
            "tokens_per_s": readout["tokens_per_s"], "wall_s": wall, "cpu_share": cpu / wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--loads", default="0,8", help="extra busy processes per level, comma-separated")
    p.add_argument("--threads", default="default,1", help="thread settings, comma-separated")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    settings = args.threads.split(",")
    load_before = os.getloadavg()[0]
    rows = []
    workdir = Path(tempfile.mkdtemp(prefix="emovec-threads-"))
    try:
        run_once(args.model, 2, "default", workdir)  # warm the model caches (assembly, dequantization)
        for load in (int(x) for x in args.loads.split(",")):
            procs = start_load(load)
            try:
                time.sleep(2 if load else 0)
                for rep in range(args.repeats):
                    for threads in settings:
                        res = {**run_once(args.model, args.limit, threads, workdir), "load": load, "repeat": rep}
                        rows.append(res)
                        print(f"# load {load} repeat {rep} threads {threads}: {res['tokens_per_s']:.0f} tok/s, "
                              f"CPU share {res['cpu_share']:.2f}", file=sys.stderr)
            finally:
                stop_load(procs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"# {args.model}, --limit {args.limit} (mean_from:50 only), {args.repeats} interleaved repeats per "
          f"setting; machine: {os.cpu_count()} CPUs, load average at start {load_before:.1f}\n")
    print("| extra busy processes | threads | torch threads | tokens | tok/s min | tok/s median | tok/s max "
          "| CPU share (cores, median) |")
    print("|---|---|---|---|---|---|---|---|")
    for load in dict.fromkeys(r["load"] for r in rows):
        for threads in settings:
            rs = [r for r in rows if r["load"] == load and r["threads"] == threads]
            tps = [r["tokens_per_s"] for r in rs]
            print(f"| {load} | {threads} | {rs[0]['torch_threads']} | {rs[0]['tokens']} | {min(tps):.0f} | "
                  f"{np.median(tps):.0f} | {max(tps):.0f} | {np.median([r['cpu_share'] for r in rs]):.2f} |")


if __name__ == "__main__":
    main()
