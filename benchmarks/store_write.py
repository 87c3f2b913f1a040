"""Benchmark: stream pooled activations into the store vs a bare memmap vs collect-in-RAM + np.savez.

Measures ms per batch (median, p90), total write time, and peak RSS (each method runs in its own
subprocess so peaks do not mix), then read time for one layer and for one stimulus across layers.

    python benchmarks/store_write.py                      # 3000 x 31 x 576, batches of 32, fp16 and fp32
    python benchmarks/store_write.py --n 300 --repeats 1  # quick look

Results go to stdout as a markdown table (copy them into benchmarks/README.md with the command).
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

METHODS = ("emovec", "memmap", "memmap+flush", "savez")


def make_batch(layers: int, rows: int, hidden: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((layers, rows, hidden), dtype=np.float32) * 50.0


def worker(method: str, dtype: str, n: int, layers: int, hidden: int, batch: int, out: Path) -> dict:
    import pandas as pd

    import emovec_store

    np_dtype = {"float16": np.float16, "float32": np.float32}[dtype]
    chunk_rows = emovec_store.default_chunk_rows(n, hidden, dtype)  # type: ignore[arg-type]
    plan = emovec_store.layout.uniform_batches(n, chunk_rows, batch)
    data = [make_batch(layers, stop - start, hidden, i) for i, (start, stop) in enumerate(plan)]
    times = []
    t_total = time.perf_counter()
    if method == "emovec":
        table = pd.DataFrame({"stimulus": [f"s{i}" for i in range(n)]})
        store = emovec_store.create(out / "s.zarr", table)
        store.add_model("m", {})
        store.add_readout("m", "r", stimulus_ids=table["stimulus"], layers=range(layers), hidden=hidden,
                          storage_dtype=dtype, batches=plan, chunk_rows=chunk_rows)
        with store.writer("m", "r") as w:
            for b, x in enumerate(data):
                t = time.perf_counter()
                w.write(b, x)
                times.append(time.perf_counter() - t)
        t_fin = time.perf_counter()
        store.finalize()
        finalize_s = time.perf_counter() - t_fin
    elif method.startswith("memmap"):
        mm = np.lib.format.open_memmap(out / "a.npy", mode="w+", dtype=np_dtype, shape=(layers, n, hidden))
        for (start, stop), x in zip(plan, data):
            t = time.perf_counter()
            mm[:, start:stop] = x.astype(np_dtype)
            if method == "memmap+flush":
                mm.flush()
            times.append(time.perf_counter() - t)
        mm.flush()
        del mm
        finalize_s = 0.0
    else:  # savez: collect in RAM, write once at the end
        collected = []
        for x in data:
            t = time.perf_counter()
            collected.append(x.astype(np_dtype))
            times.append(time.perf_counter() - t)
        t_fin = time.perf_counter()
        np.savez(out / "a.npz", acts=np.concatenate(collected, axis=1))
        finalize_s = time.perf_counter() - t_fin
    total_s = time.perf_counter() - t_total
    ms = np.array(times) * 1e3
    return {"method": method, "dtype": dtype, "batches": len(plan), "ms_median": float(np.median(ms)),
            "ms_p90": float(np.percentile(ms, 90)), "write_total_s": total_s, "finalize_s": finalize_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def read_times(method: str, out: Path, layers: int) -> dict:
    import emovec_store

    if method == "emovec":
        ds = emovec_store.open(out / "s.zarr").dataset("m", "r")
        layer = lambda: ds.pooled.isel(layer=layers // 2).values  # noqa: E731
        stim = lambda: ds.pooled.isel(stimulus=123).values  # noqa: E731
    elif method.startswith("memmap"):
        layer = lambda: np.array(np.load(out / "a.npy", mmap_mode="r")[layers // 2])  # noqa: E731
        stim = lambda: np.array(np.load(out / "a.npy", mmap_mode="r")[:, 123])  # noqa: E731
    else:
        layer = lambda: np.load(out / "a.npz")["acts"][layers // 2]  # noqa: E731
        stim = lambda: np.load(out / "a.npz")["acts"][:, 123]  # noqa: E731
    res = {}
    for name, fn in (("read_layer_ms", layer), ("read_stimulus_ms", stim)):
        fn()  # warm the page cache: we compare formats, not the disk
        t = time.perf_counter()
        for _ in range(5):
            fn()
        res[name] = (time.perf_counter() - t) / 5 * 1e3
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--layers", type=int, default=31)
    p.add_argument("--hidden", type=int, default=576)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dtypes", default="float16,float32")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--dtype", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        res = worker(args.worker, args.dtype, args.n, args.layers, args.hidden, args.batch, Path(args.out))
        res.update(read_times(args.worker, Path(args.out), args.layers))
        print(json.dumps(res))
        return
    rows = []
    for dtype in args.dtypes.split(","):
        for rep in range(args.repeats):
            for method in METHODS:  # interleaved so drift in machine load hits every method alike
                tmp = Path(tempfile.mkdtemp(prefix="emovec-bench-"))
                try:
                    cmd = [sys.executable, __file__, "--worker", method, "--dtype", dtype, "--out", str(tmp),
                           "--n", str(args.n), "--layers", str(args.layers), "--hidden", str(args.hidden),
                           "--batch", str(args.batch)]
                    res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
                    res["repeat"] = rep
                    rows.append(res)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
    print(f"# {args.n} stimuli x {args.layers} layers x {args.hidden} hidden, batches of {args.batch}, "
          f"{args.repeats} repeats (median of repeats shown; min-max of per-repeat medians in brackets)\n")
    print("| dtype | method | ms/batch median | ms/batch p90 | write total s | finalize s | peak RSS MB "
          "| read 1 layer ms | read 1 stimulus ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for dtype in args.dtypes.split(","):
        for method in METHODS:
            rs = [r for r in rows if r["dtype"] == dtype and r["method"] == method]

            def cell(key: str, fmt: str = "{:.2f}", rs: list = rs) -> str:
                vals = [r[key] for r in rs]
                med = float(np.median(vals))
                spread = f" [{fmt.format(min(vals))}–{fmt.format(max(vals))}]" if len(vals) > 1 else ""
                return fmt.format(med) + spread
            print(f"| {dtype} | {method} | {cell('ms_median', '{:.3f}')} | {cell('ms_p90', '{:.3f}')} | "
                  f"{cell('write_total_s')} | {cell('finalize_s')} | {cell('peak_rss_mb', '{:.0f}')} | "
                  f"{cell('read_layer_ms')} | {cell('read_stimulus_ms')} |")
    print(f"\nmachine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
