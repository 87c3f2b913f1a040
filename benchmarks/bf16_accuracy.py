"""Benchmark: how far a bf16 extraction is from a float32 one, per layer.

Extracts the same stories twice (``dtype="float32"`` and ``dtype="bfloat16"``, both stored as
float32 so that only the compute dtype differs) and reports per layer:

- the min over stimuli of the cosine between the two pooled ``mean_from:50`` readouts;
- the min over emotions of the cosine between the two emotion vectors (class mean minus the mean
  of the class means);
- max |x| of each extraction (bf16 keeps float32's range: no overflow to inf).

    python benchmarks/bf16_accuracy.py --model smollm2-135m --stories 120

Results go to stdout as markdown.
"""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np


def stories(n: int):
    from emovec.corpus import load_corpus

    table = load_corpus("emovec", kinds=("story",))
    keep = np.linspace(0, len(table) - 1, n).round().astype(int)
    return table.iloc[keep].reset_index(drop=True)


def pooled(model: str, table, dtype: str, workdir: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """([layer, stimulus, hidden] in table order, emotion per stimulus, layers) of one extraction."""
    import emovec_store
    from emovec_store.engine import extract

    path = os.path.join(workdir, f"{dtype}.zarr")
    result = extract(model, table, path, pooling=["mean_from:50"], dtype=dtype, storage_dtype="float32",
                     device="cpu", progress=False)
    ds = emovec_store.open(path).dataset(result.model, "mean_from_50")
    order = {str(s): i for i, s in enumerate(ds.stimulus.values)}
    rows = [order[str(s)] for s in table["stimulus"]]
    return np.asarray(ds.pooled.values)[:, rows, :], table["emotion"].astype(str).to_numpy(), result.layers


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def emotion_vectors(x: np.ndarray, emotion: np.ndarray) -> np.ndarray:
    """[layer, emotion, hidden]: class mean minus the mean of the class means."""
    classes = sorted(set(emotion))
    means = np.stack([x[:, emotion == c].mean(axis=1) for c in classes], axis=1)
    return means - means.mean(axis=1, keepdims=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--stories", type=int, default=120)
    args = p.parse_args()
    table = stories(args.stories)
    with tempfile.TemporaryDirectory(prefix="emovec-bf16-") as tmp:
        fp32, emotion, layers = pooled(args.model, table, "float32", tmp)
        bf16, _, _ = pooled(args.model, table, "bfloat16", tmp)
    pooled_cos = cosine(fp32, bf16).min(axis=1)
    vec_cos = cosine(emotion_vectors(fp32, emotion), emotion_vectors(bf16, emotion)).min(axis=1)
    print(f"# {args.model}, {len(table)} stories ({len(set(emotion))} emotions), mean_from:50, "
          "bf16 vs float32 compute, both stored as float32\n")
    print("| layer | pooled cosine (min over stimuli) | emotion-vector cosine (min over emotions) | "
          "max abs fp32 | max abs bf16 |")
    print("|---|---|---|---|---|")
    for i, layer in enumerate(layers):
        print(f"| {layer} | {pooled_cos[i]:.6f} | {vec_cos[i]:.6f} | {np.abs(fp32[i]).max():.6g} | "
              f"{np.abs(bf16[i]).max():.6g} |")
    print(f"\nall layers: pooled min {pooled_cos.min():.6f}, emotion vectors min {vec_cos.min():.6f}; "
          f"non-finite values: fp32 {int((~np.isfinite(fp32)).sum())}, bf16 {int((~np.isfinite(bf16)).sum())}")


if __name__ == "__main__":
    main()
