"""Benchmark: does `emovec analyze` keep peak memory flat as the store grows?

Builds synthetic stores of 1×, 4× and 16× a base size with the built-in corpus's stimulus table
(English: 960 stories of 24 emotions over 20 topics, 60 neutral texts, 48 implicit scenarios, 36
intensity prompts; texts stored, so the bag-of-words baseline runs) and planted emotion structure
(class means on the human valence and arousal norms plus one direction per emotion, growing with
depth, on a common offset), then runs ``emovec.analyses.pipeline.analyze`` on each store in a fresh
subprocess and records, per analysis step, the wall time (the result's ``timings``) and the peak RSS.

Two ways to grow a store (``--grow``):

- ``layers`` (default): more layers of the same stimuli. This is the axis the out-of-core design
  promises to hold flat: every analysis streams over the store one layer at a time.
- ``stimuli``: every story repeated ``scale`` times (new ids, same topics and labels). A layer larger
  than ``--layer-budget-mb`` is streamed (geometry by stored chunk, probes on a reduced basis that fits
  the budget); what still grows is what a run holds per stimulus (labels, out-of-fold predictions, the
  bag-of-words baseline's term matrices). Set the budget to the 1× story layer (960 × hidden × 8 bytes:
  4.4 MB at hidden 576) to hold every scale to the same budget; with a larger one the 1× store simply
  uses less than the budget allows. Repeated stories share one text object, so a corpus of as many
  distinct stories holds its texts on top (the built-in corpus: 0.6 KB of str object a story).

Peak RSS per step is the kernel's high-water mark (``VmHWM`` in ``/proc/self/status``), reset at the
start of every step by writing ``5`` to ``/proc/self/clear_refs`` (Linux ≥ 4.0), so it is exact, not
sampled. A step's peak covers the time from its start to the next step's start (code the pipeline
runs between steps counts to the earlier one); "+Δ" is that peak minus the RSS when the step began,
what the step itself added on top of what earlier steps left allocated. "setup" is everything before
the first step (imports, opening the store, selecting rows). Activations are stored as float32.

Memory limit: the analyses run on dask's local threaded scheduler (the default of ``emovec analyze``),
which has no memory limit of its own. The limit here (``--memory-limit-mib``) is a peak-RSS budget for
the whole analysis process, interpreter and libraries included; a run passes when its peak RSS stays
within it. The stores' activation bytes (what an in-memory analysis would hold) are printed next to
it, with the largest store's ratio to the budget (the issue asks for at least 2×; the default series
has 1203 MiB of activations at 16×, 2.0× the default 600 MiB budget).

    python benchmarks/analyze_scaling.py                     # layers series, the README's table
    python benchmarks/analyze_scaling.py --grow stimuli --base-layers 32 --memory-limit-mib 500 \
        --layer-budget-mb 4.5                                # the stimuli series (16×: 2.2× the limit)
    python benchmarks/analyze_scaling.py --toy               # seconds: the test suite's smoke run

Results: a markdown table on stdout and JSON in ``benchmarks/out/analyze_scaling[-<grow>].json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
STEPS = ("setup", "vectors", "geometry", "probes", "implicit", "intensity", "layers", "lens", "write")
#: Acceptance of issue 7 §2: peak RSS within ±20 % of the 1× store's as the store grows.
TOLERANCE = 0.20


@dataclass(frozen=True)
class Size:
    """One store of the series: ``copies`` of every story, ``n_layers`` layers of ``hidden`` units."""

    scale: int
    n_layers: int
    copies: int
    hidden: int
    dtype: str

    def n_rows(self, table_rows: int, n_stories: int) -> int:
        return table_rows + (self.copies - 1) * n_stories

    def activation_bytes(self, n_rows: int) -> int:
        return self.n_layers * n_rows * self.hidden * np.dtype(self.dtype).itemsize


# --------------------------------------------------------------------------- stores


def corpus_table(*, toy: bool) -> pd.DataFrame:
    """The built-in corpus's English stimuli (``toy``: 6 emotions × 5 topics, a few of the rest)."""
    from emovec.corpus import load_corpus

    table = load_corpus("emovec", languages=("en",))
    if toy:
        emotions = list(dict.fromkeys(table.loc[table["kind"] == "story", "emotion"]))[:6]
        topics = list(dict.fromkeys(table.loc[table["kind"] == "story", "topic"]))[:5]
        story = (table["kind"] == "story") & table["emotion"].isin(emotions) & table["topic"].isin(topics)
        scenario = table["kind"].isin(["implicit", "intensity"]) & table["emotion"].isin(emotions)
        neutral = (table["kind"] == "neutral") & (table.groupby("kind").cumcount() < 12)
        table = table[story | scenario | neutral].reset_index(drop=True)
    return table


def grown_table(table: pd.DataFrame, copies: int) -> pd.DataFrame:
    """``table`` with every story repeated ``copies`` times (ids ``<id>.copy<k>``; labels, topic, text kept)."""
    if copies == 1:
        return table
    stories = table[table["kind"] == "story"]
    extra = [stories.assign(stimulus=stories["stimulus"] + f".copy{k}") for k in range(1, copies)]
    out = pd.concat([table, *extra], ignore_index=True)
    out.attrs = dict(table.attrs)
    return out


def planted_signal(table: pd.DataFrame, hidden: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the emotion signal at full depth ``(row, hidden)`` and the scale of intensity rows."""
    rng = np.random.default_rng(seed)
    corpus = table.attrs["corpus"]
    norms = {e["name"]: (e["valence"], e["arousal"]) for e in corpus["emotion_table"]}
    names = list(corpus["emotions"])
    basis = np.linalg.qr(rng.standard_normal((hidden, 2 + len(names))))[0]
    signal = np.zeros((len(table), hidden), dtype=np.float32)
    for i, emotion in enumerate(table["emotion"].tolist()):
        if emotion:
            v, a = norms[emotion]
            own = basis[:, 2 + names.index(emotion)]
            signal[i] = 3 * (v - 0.5) * basis[:, 0] + 3 * (a - 0.5) * basis[:, 1] + 1.5 * own
    level = np.where(table["kind"].to_numpy() == "intensity", table["level"].to_numpy() / 3.0, 1.0)
    return signal, level.astype(np.float32)


def build_store(path: Path, size: Size, table: pd.DataFrame, *, seed: int = 0) -> int:
    """Write a finalized store of ``size`` at ``path``; returns its number of stimulus rows."""
    import emovec_store
    from emovec_store.layout import uniform_batches

    table = grown_table(table, size.copies)
    n = len(table)
    signal, level = planted_signal(table, size.hidden, seed)
    depth = (np.arange(size.n_layers, dtype=np.float32) / max(1, size.n_layers - 1))[:, None, None]
    st = emovec_store.create(path, table, store_text=True)
    st.add_model("bench", {"model": "synthetic", "n_layers": size.n_layers - 1, "d_model": size.hidden,
                           "layer_convention": "hidden_states index"}, identity={"name": "bench", "seed": seed})
    chunk_rows = emovec_store.default_chunk_rows(n, size.hidden, size.dtype)  # type: ignore[arg-type]
    batches = uniform_batches(n, chunk_rows, 64)
    st.add_readout("bench", "mean_from_50", stimulus_ids=list(table["stimulus"]), layers=range(size.n_layers),
                   hidden=size.hidden, storage_dtype=size.dtype, batches=batches, chunk_rows=chunk_rows,
                   n_tokens=[int(60 + len(t) // 5) for t in table["text"]], attrs={"spec": "mean_from:50"})
    with st.writer("bench", "mean_from_50") as writer:
        for b in writer.pending():
            start, stop = writer.rows(b)
            rng = np.random.default_rng([seed, b])
            block = rng.standard_normal((size.n_layers, stop - start, size.hidden), dtype=np.float32) + 3.0
            block += 2 * depth * (signal[start:stop] * level[start:stop, None])[None]
            writer.write(b, block.astype(size.dtype))
    st.finalize()
    return n


# --------------------------------------------------------------------------- the measured subprocess


def _status_mib(field: str) -> float:
    """``VmHWM`` (peak RSS since the last reset) or ``VmRSS`` (now) of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_hwm() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def worker(store: Path, result: Path, n_permutations: int, n_bootstrap: int, layer_budget_mb: float | None) -> None:
    """Run ``analyze`` on ``store``; write per-step peak RSS and timings to ``result`` (JSON)."""
    t0 = time.perf_counter()
    peaks: dict[str, float] = {}
    starts: dict[str, float] = {"setup": _status_mib("VmRSS")}
    current = ["setup"]

    def progress(label: str, done: int, total: int) -> None:  # steps repeat per block of layers: keep the max
        step = label.split(" (")[0]
        peaks[current[0]] = max(peaks.get(current[0], 0.0), _status_mib("VmHWM"))
        _reset_hwm()
        starts.setdefault(step, _status_mib("VmRSS"))
        current[0] = step

    from emovec.analyses.pipeline import AnalyzeOptions, analyze

    budget = {} if layer_budget_mb is None else {"layer_budget_mb": layer_budget_mb}
    options = AnalyzeOptions(n_permutations=n_permutations, n_bootstrap=n_bootstrap, lens=False, **budget)
    out = analyze(store, options, progress=progress)
    peaks[current[0]] = max(peaks.get(current[0], 0.0), _status_mib("VmHWM"))
    res = out["models"]["bench"]
    result.write_text(json.dumps({"peak_rss_mib": peaks, "start_rss_mib": starts, "timings": res["timings"],
                                  "wall_s": time.perf_counter() - t0, "n_stories": res["n"]["stories"],
                                  "layers": len(res["layers"])}))


def measure(store: Path, n_permutations: int, n_bootstrap: int, layer_budget_mb: float | None,
            timeout_s: float) -> dict[str, Any]:
    """One analysis in a fresh interpreter (so no earlier run's memory is counted)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(store), "--result", str(result),
               "--permutations", str(n_permutations), "--bootstrap", str(n_bootstrap)]
        if layer_budget_mb is not None:
            cmd += ["--layer-budget-mb", str(layer_budget_mb)]
        subprocess.run(cmd, check=True, timeout=timeout_s)
        return dict(json.loads(result.read_text()))


# --------------------------------------------------------------------------- the series


def sizes(grow: str, scales: list[int], *, base_layers: int, hidden: int, dtype: str) -> list[Size]:
    if grow == "layers":
        return [Size(s, base_layers * s, 1, hidden, dtype) for s in scales]
    return [Size(s, base_layers, s, hidden, dtype) for s in scales]


def run_series(args: argparse.Namespace) -> dict[str, Any]:
    table = corpus_table(toy=args.toy)
    n_stories = int((table["kind"] == "story").sum())
    plan = sizes(args.grow, args.scales, base_layers=args.base_layers, hidden=args.hidden, dtype=args.dtype)
    largest = plan[-1].activation_bytes(plan[-1].n_rows(len(table), n_stories))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for size in plan:
            path = Path(tmp) / f"x{size.scale}.zarr"
            t0 = time.perf_counter()
            n_rows = build_store(path, size, table)
            build_s = time.perf_counter() - t0
            m = measure(path, args.permutations, args.bootstrap, args.layer_budget_mb, args.timeout)
            shutil.rmtree(path)
            rows.append({**asdict(size), "n_rows": n_rows, "n_stories": m["n_stories"],
                         "activation_mib": size.activation_bytes(n_rows) / 2**20, "build_s": build_s, **m})
            peak = max(m["peak_rss_mib"].values())
            print(f"x{size.scale}: {size.n_layers} layers x {n_rows} rows, peak {peak:.0f} MiB, {m['wall_s']:.0f} s",
                  file=sys.stderr, flush=True)
    peaks = [max(r["peak_rss_mib"].values()) for r in rows]
    return {"grow": args.grow, "command": " ".join(["python", "benchmarks/analyze_scaling.py", *sys.argv[1:]]),
            "memory_limit_mib": args.memory_limit_mib, "n_permutations": args.permutations,
            "n_bootstrap": args.bootstrap, "layer_budget_mb": args.layer_budget_mb, "tolerance": TOLERANCE,
            "runs": rows,
            "peak_ratio_to_1x": [p / peaks[0] for p in peaks],
            "flat": all(abs(p / peaks[0] - 1) <= TOLERANCE for p in peaks),
            "within_limit": all(p <= args.memory_limit_mib for p in peaks),
            "largest_over_limit": largest / (args.memory_limit_mib * 2**20),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}}


def table_markdown(summary: dict[str, Any]) -> str:
    """The README table: one row per store, peak RSS (MiB) and seconds per step."""
    head = ["scale", "layers", "rows", "activations MiB", "wall s", "peak RSS MiB", "vs 1×",
            *[f"{s}: MiB (+Δ) / s" for s in STEPS]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run, ratio in zip(summary["runs"], summary["peak_ratio_to_1x"]):
        peaks, starts, timings = run["peak_rss_mib"], run["start_rss_mib"], run["timings"]
        cells = [f"{run['scale']}×", str(run["n_layers"]), str(run["n_rows"]), f"{run['activation_mib']:.0f}",
                 f"{run['wall_s']:.0f}", f"{max(peaks.values()):.0f}", f"{ratio:.2f}"]
        for step in STEPS:
            t = timings.get(step)
            if step not in peaks:
                cells.append("–")
                continue
            seconds = "" if t is None else f" / {t:.1f}"
            cells.append(f"{peaks[step]:.0f} (+{peaks[step] - starts[step]:.0f}){seconds}")
        lines.append("| " + " | ".join(cells) + " |")
    verdict = "flat" if summary["flat"] else "NOT flat"
    lines.append("")
    limit = summary["memory_limit_mib"]
    lines.append(f"peak RSS {verdict} (±{summary['tolerance']:.0%} of 1×); within the {limit} MiB "
                 f"limit: {'yes' if summary['within_limit'] else 'no'}; the largest store's activations are "
                 f"{summary['largest_over_limit']:.1f}× the limit (the issue asks for ≥ 2×)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grow", choices=("layers", "stimuli"), default="layers")
    p.add_argument("--scales", default="1,4,16", help="comma-separated multiples of the base size")
    p.add_argument("--base-layers", type=int, default=31)
    p.add_argument("--hidden", type=int, default=576)
    p.add_argument("--dtype", choices=("float16", "float32"), default="float32")
    p.add_argument("--permutations", type=int, default=99)
    p.add_argument("--bootstrap", type=int, default=99)
    p.add_argument("--memory-limit-mib", type=int, default=600)
    p.add_argument("--layer-budget-mb", type=float, default=None,
                   help="analyze's per-layer budget, MB of one float64 layer of stories "
                        "(AnalyzeOptions.layer_budget_mb; default: analyze's own, 512)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per analysis before giving up")
    p.add_argument("--workdir", default=None, help="where the stores are built (default: the system temp dir)")
    p.add_argument("--out", default=None, help="JSON output (default: benchmarks/out/analyze_scaling[-GROW].json)")
    p.add_argument("--toy", action="store_true", help="tiny stores (6 emotions, 5 topics, hidden 32): seconds")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.scales = [int(s) for s in args.scales.split(",")]
    if args.toy:
        args.scales, args.base_layers, args.hidden = [1, 2], 3, 32
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(Path(args.worker), Path(args.result), args.permutations, args.bootstrap, args.layer_budget_mb)
        return
    if not Path("/proc/self/clear_refs").exists():
        raise SystemExit("per-step peak RSS needs Linux (/proc/self/clear_refs)")
    summary = run_series(args)
    default = HERE / "out" / ("analyze_scaling" + ("-toy" if args.toy else "") +
                              ("" if args.grow == "layers" else f"-{args.grow}") + ".json")
    out = Path(args.out) if args.out else default
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))
    print(table_markdown(summary))
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()
