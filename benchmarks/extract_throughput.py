"""Benchmark: emovec extract vs bare forward passes vs a one-text-at-a-time fp16 reproduction.

Interleaved methods, each repeat in its own subprocess (so peak RSS is per method):

(a) ``emovec``    emovec_store.engine.extract end to end in float32 (tokenize, plan, screen, hooks,
                  pool, store writes, finalize) — model loading excluded, as for the others
(e) ``emovec-auto`` the same with ``--dtype auto`` (bf16 on CPUs with native bf16 matmuls)
(b) ``full``      the same batches through the full model (LM head included), float32, nothing saved
(c) ``backbone``  the same batches through the backbone only (no LM head), float32, nothing saved
(f) ``backbone-bf16`` the backbone with bf16 weights, nothing saved
(d) ``fp16-one``  one text at a time in float16 with output_hidden_states and mean pooling from
                  token 50 in Python, the way public reproductions extract

    python benchmarks/extract_throughput.py --model smollm2-135m --stories 200 --repeats 3

tokens/s counts real (unpadded) tokens. Results go to stdout as markdown.
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

import numpy as np

METHODS = ("emovec", "emovec-auto", "full", "backbone", "backbone-bf16", "fp16-one")
#: The compute dtype of each bare method (the emovec ones choose theirs: float32, auto).
BARE_DTYPES = {"full": "float32", "backbone": "float32", "backbone-bf16": "bfloat16", "fp16-one": "float16"}


def stimuli(n: int):
    from emovec.corpus import load_corpus

    table = load_corpus("emovec", kinds=("story",))
    keep = np.linspace(0, len(table) - 1, n).round().astype(int)
    return table.iloc[keep].reset_index(drop=True)


def worker(method: str, model_name: str, n: int, batch_tokens: int, device: str) -> dict:
    import torch

    from emovec_store.engine import extract, resolve
    from emovec_store.engine.device import choose
    from emovec_store.engine.load import load
    from emovec_store.engine.plan import format_and_tokenize, plan_batches
    from emovec_store.engine.readouts import parse_readout

    table = stimuli(n)
    spec = parse_readout("mean_from:50")
    if method.startswith("emovec"):
        dtype = "auto" if method == "emovec-auto" else "float32"
        compute = choose(device, dtype).compute_dtype
        tmp = tempfile.mkdtemp(prefix="emovec-bench-")
        try:
            t0 = time.perf_counter()
            result = extract(model_name, table, os.path.join(tmp, "s.zarr"), pooling=["mean_from:50"],
                             device=device, dtype=dtype, batch_tokens=batch_tokens, progress=False)
            seconds = time.perf_counter() - t0 - result.load_seconds
            tokens = result.readouts[0].tokens_written
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        compute = BARE_DTYPES[method]
        plan = choose(device, compute)
        loaded = load(resolve(model_name), device=plan.device, compute_dtype=compute)
        model, tok = loaded.model, loaded.tokenizer
        ids, _ = format_and_tokenize(tok, table["text"].tolist(), spec, None)
        tokens = sum(len(t) for t in ids)
        order, batches = plan_batches([len(t) for t in ids], batch_tokens, len(ids))
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        backbone = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
        t0 = time.perf_counter()
        with torch.inference_mode():
            if method == "fp16-one":
                for t in ids:  # batch size 1, every layer kept, pooled in Python
                    out = model(input_ids=torch.tensor([t], device=plan.device), output_hidden_states=True)
                    start = min(50, len(t) // 2)
                    _ = [h[0, start:].float().mean(0).cpu().numpy() for h in out.hidden_states]
            else:
                for s, e in batches:
                    rows = [ids[i] for i in order[s:e]]
                    width = max(len(r) for r in rows)
                    x = torch.full((len(rows), width), pad, dtype=torch.long)
                    m = torch.zeros_like(x)
                    for i, r in enumerate(rows):
                        x[i, :len(r)] = torch.tensor(r)
                        m[i, :len(r)] = 1
                    x, m = x.to(plan.device), m.to(plan.device)
                    (model if method == "full" else backbone)(input_ids=x, attention_mask=m, use_cache=False)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    return {"method": method, "compute_dtype": compute, "tokens": tokens, "seconds": seconds,
            "tokens_per_s": tokens / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--stories", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-tokens", type=int, default=2048)
    p.add_argument("--device", default="cpu")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.model, args.stories, args.batch_tokens, args.device)))
        return
    methods = args.methods.split(",")
    rows = []
    for rep in range(args.repeats):
        for method in methods:
            cmd = [sys.executable, __file__, "--worker", method, "--model", args.model, "--stories",
                   str(args.stories), "--batch-tokens", str(args.batch_tokens), "--device", args.device]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            res = json.loads(out.strip().splitlines()[-1])
            res["repeat"] = rep
            rows.append(res)
            print(f"# repeat {rep} {method}: {res['tokens_per_s']:.0f} tok/s", file=sys.stderr)
    print(f"# {args.model}, {args.stories} stories, batch tokens {args.batch_tokens}, device {args.device}, "
          f"{args.repeats} interleaved repeats\n")
    print("| method | compute dtype | tokens | tok/s min | tok/s median | tok/s max | peak RSS MB (max) |")
    print("|---|---|---|---|---|---|---|")
    med = {}
    for method in methods:
        rs = [r for r in rows if r["method"] == method]
        tps = [r["tokens_per_s"] for r in rs]
        med[method] = float(np.median(tps))
        print(f"| {method} | {rs[0]['compute_dtype']} | {rs[0]['tokens']} | {min(tps):.0f} | {med[method]:.0f} | "
              f"{max(tps):.0f} | "
              f"{max(r['peak_rss_mb'] for r in rs):.0f} |")
    print()
    for mine, other, label in (("emovec", "full", "a/b"), ("emovec", "backbone", "a/c"), ("emovec", "fp16-one", "a/d"),
                               ("emovec-auto", "backbone", "e/c"), ("emovec-auto", "backbone-bf16", "e/f")):
        if mine in med and other in med:
            print(f"- {label} ({mine} / {other}, medians): {med[mine] / med[other]:.2f}")


if __name__ == "__main__":
    main()
