"""Headline numbers of one or more `emovec analyze` results.json files as a markdown table.

    python benchmarks/summarize_analysis.py runs/smollm2.analysis/results.json runs/gemma.analysis/results.json

Per model: the embedding layer (0, the lexical floor), the fixed default layer (2/3 of depth) and the
last layer; each cell is value [95 % CI]; n and p as recorded. Used for the real-run tables in
benchmarks/README.md, so that those tables are regenerated from results, never typed.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def fmt(est: dict[str, Any] | None, digits: int = 2) -> str:
    if not est or est.get("value") is None:
        return "—"
    ci = est.get("ci") or [None, None]
    p = est.get("p")
    ci_text = f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if None not in ci else ""
    p_text = f", p={p:.3g}" if p is not None else ""
    return f"{est['value']:.{digits}f}{ci_text}{p_text}"


def rows(model: str, res: dict[str, Any]) -> list[str]:
    layers = res["layers"]
    picks = sorted({layers[0], res["default_layer"], layers[-1]})
    geo, probes = res.get("geometry") or {}, res.get("probes") or {}
    imp = res.get("implicit") or {}
    inten = res.get("intensity") or {}
    out = []
    for layer in picks:
        i = layers.index(layer)

        def at(d: dict[str, Any] | None, *keys: str, i: int = i) -> dict[str, Any] | None:
            node: Any = d or {}
            for k in keys:
                node = (node or {}).get(k)
            return node[i] if isinstance(node, list) and len(node) == len(layers) else None

        tag = " (default)" if layer == res["default_layer"] else " (embedding)" if layer == 0 else ""
        cells = [model, f"{layer}{tag}", fmt(at(probes, "probe")), fmt(at(probes, "margin")),
                 fmt(at(probes, "centroid")), fmt(at(geo, "cv_valence")), fmt(at(geo, "cv_arousal")),
                 fmt(at(geo, "pc_valence", "pc1")), fmt(at(geo, "pc_arousal", "pc2")), fmt(at(geo, "rsa_norms"))]
        for name in ("assistant", res["readout"]):
            cells.append(fmt(at(imp.get(name), "top1")) + " / " + fmt(at(imp.get(name), "top3")) if name in imp
                         else "—")
            cells.append(fmt(at(inten.get(name), "mean_rho")) if name in inten else "—")
        out.append("| " + " | ".join(cells) + " |")
    return out


def main(paths: list[str]) -> None:
    head = ["model", "layer", "probe acc", "probe − best text baseline", "centroid acc", "CV valence r",
            "CV arousal r", "PC1 |r| valence", "PC2 |r| arousal", "RSA vs V–A", "implicit top-1 / top-3 (assistant)",
            "intensity mean ρ (assistant)", "implicit top-1 / top-3 (story readout)",
            "intensity mean ρ (story readout)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    extra = []
    for path in paths:
        results = json.loads(Path(path).read_text())
        for model, res in results["models"].items():
            print("\n".join(rows(model, res)))
            p = res.get("probes") or {}
            b = p.get("baselines") or {}
            sel = p.get("selected") or {}
            extra.append(f"- {model} ({res['readout']}, n = {res['n']}): baselines length {fmt(b.get('length'))}, "
                         f"bag-of-words {fmt(b.get('bag_of_words'))}, shuffled {fmt(b.get('shuffled'))}; "
                         f"layer chosen inside training folds {sel.get('layers')} → {fmt(sel.get('accuracy'))}; "
                         f"timings {res.get('timings')}; skipped {res.get('skipped') or 'nothing'}")
    print()
    print("\n".join(extra))


if __name__ == "__main__":
    main(sys.argv[1:])
