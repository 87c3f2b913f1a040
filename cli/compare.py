"""`emovec compare`: RSA of emotion geometries and linear CKA per layer pair, across stores."""
from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.argument("stores", nargs=-1, required=True)
@click.option("--permutations", default=999, show_default=True, type=click.IntRange(min=19),
              help="Permutations of the RSA test; p = (k+1)/(n+1).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", "out_dir", default="compare", show_default=True, type=click.Path(file_okay=False))
def compare(stores: tuple[str, ...], permutations: int, seed: int, out_dir: str) -> None:
    """Compare the models of STORES (each model of each store) on shared stimuli and shared emotions.

    Writes rsa.csv, cka.csv (every layer pair of every model pair), cka.png and results.json.
    """
    import pandas as pd

    from emovec.analyses import compare as cmp
    from emovec.analyses.source import open_store
    from emovec.report.compare_plots import cka_heatmap_png
    from emovec_store.errors import InputError

    pairs = [(st, m) for st in (open_store(s) for s in stores) for m in st.models]
    if len(pairs) < 2:
        raise InputError("compare needs at least two models (several stores, or a store with several models)")
    stimuli = cmp.shared_stimuli(pairs)
    emotions = cmp.shared_emotions(pairs)
    label = [f"{Path(st.location).name}:{m}" for st, m in pairs]
    geometry = [cmp.emotion_geometry(st, m, emotions) for st, m in pairs]
    pooled = [cmp.pooled_on(st, m, stimuli) for st, m in pairs]
    rsa_rows, cka_rows, panels = [], [], []
    for i in range(len(pairs)):
        for j in range(i + 1, len(pairs)):
            res = cmp.rsa(geometry[i], geometry[j], n_permutations=permutations, seed=seed)
            rsa_rows.append({"model_a": label[i], "model_b": label[j], "r": res.r, "p": res.p,
                             "n_emotions": res.n_emotions})
            matrix = cmp.cka_matrix(pooled[i], pooled[j])
            la, lb = pooled[i]["layer"].values, pooled[j]["layer"].values
            cka_rows += [{"model_a": label[i], "model_b": label[j], "layer_a": int(a), "layer_b": int(b),
                          "cka": float(matrix[x, y])} for x, a in enumerate(la) for y, b in enumerate(lb)]
            panels.append((f"{label[i]} vs {label[j]}", matrix, [int(x) for x in la], [int(x) for x in lb]))
            click.echo(f"{label[i]} vs {label[j]}: rsa r {res.r:+.3f} (p {res.p:.3f}, {res.n_emotions} emotions); "
                       f"max CKA {float(matrix.max()):.3f} on {len(stimuli)} shared stimuli")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rsa_rows).to_csv(out / "rsa.csv", index=False)
    pd.DataFrame(cka_rows).to_csv(out / "cka.csv", index=False)
    (out / "cka.png").write_bytes(cka_heatmap_png(panels))
    (out / "results.json").write_text(json.dumps({"models": label, "shared_stimuli": len(stimuli),
                                                  "emotions": emotions, "rsa": rsa_rows}, indent=1))
    click.echo(f"wrote {out}/")
