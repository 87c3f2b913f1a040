"""`emovec compare`: RSA of emotion geometries and linear CKA per layer pair across models; per model
the valence/arousal alignment, language transfer of the probe and the norm-confound check."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


def _fmt(e: dict[str, Any]) -> str:
    ci = e.get("ci") or [None, None]
    if e.get("value") is None:
        return "n/a"
    bounds = "" if None in ci else f" [{ci[0]:+.2f}, {ci[1]:+.2f}]"
    p = "" if e.get("p") is None else f" p {e['p']:.3f}"
    return f"{e['value']:+.3f}{bounds}{p}"


@click.command()
@click.argument("stores", nargs=-1, required=True)
@click.option("--permutations", default=999, show_default=True, type=click.IntRange(min=19),
              help="Permutations of the RSA, alignment and probe tests; p = (k+1)/(n+1).")
@click.option("--bootstrap", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Topic-cluster bootstrap resamples of the probe accuracies.")
@click.option("--transfer", "transfer_spec", default="en:zh", show_default=True, metavar="SOURCE:TARGET",
              help="Probe transfer between the stories of two languages (skipped, with the reason, for a model "
                   "whose store lacks either).")
@click.option("--no-transfer", is_flag=True, help="Skip the language-transfer probes.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", "out_dir", default="compare", show_default=True, type=click.Path(file_okay=False))
def compare(stores: tuple[str, ...], permutations: int, bootstrap: int, transfer_spec: str, no_transfer: bool,
            seed: int, out_dir: str) -> None:
    """Compare the models of STORES (each model of each store) on shared stimuli and shared emotions.

    Between every two models: RSA of the emotion cosine matrices, linear CKA of every layer pair
    (needs two models). Per model: cross-validated valence and arousal alignment of the vectors,
    probe transfer between languages, and the norm-confound check (metrics that track the vectors'
    mean norm across layers are flagged). Writes rsa.csv, cka.csv, cka.png, alignment.csv,
    alignment.png, transfer.csv, transfer.png, norm_check.csv and results.json.
    """
    import pandas as pd

    from emovec.analyses import compare as cmp
    from emovec.analyses.source import open_store
    from emovec.analyses.transfer import SERIES, language_transfer, parse_languages
    from emovec.common.files import require_writable_folder
    from emovec.report.compare_plots import alignment_png, cka_heatmap_png, transfer_png
    from emovec_store.errors import InputError

    require_writable_folder(out_dir, "the compare folder")
    languages = None if no_transfer else parse_languages(transfer_spec)
    pairs = [(st, m) for st in (open_store(s) for s in stores) for m in st.models]
    if not pairs:
        raise InputError("the stores hold no model")
    stimuli = cmp.shared_stimuli(pairs) if len(pairs) >= 2 else []
    emotions = cmp.shared_emotions(pairs)
    label = [f"{Path(st.location).name}:{m}" for st, m in pairs]
    skipped: dict[str, str] = {}
    rsa_rows: list[dict[str, Any]] = []
    cka_rows: list[dict[str, Any]] = []
    panels: list[Any] = []
    shared_stimuli = len(stimuli)
    if len(pairs) >= 2:
        geometry = [cmp.emotion_geometry(st, m, emotions) for st, m in pairs]
        pooled = [cmp.pooled_on(st, m, stimuli) for st, m in pairs]
        for i in range(len(pairs)):
            for j in range(i + 1, len(pairs)):
                res = cmp.rsa(geometry[i], geometry[j], n_permutations=permutations, seed=seed)
                rsa_rows.append({"model_a": label[i], "model_b": label[j], "r": res.r, "p": res.p,
                                 "n_emotions": res.n_emotions})
                matrix = cmp.cka_matrix(pooled[i], pooled[j])
                la, lb = pooled[i]["layer"].values, pooled[j]["layer"].values
                cka_rows += [{"model_a": label[i], "model_b": label[j], "layer_a": int(a), "layer_b": int(b),
                              "cka": float(matrix[x, y])} for x, a in enumerate(la) for y, b in enumerate(lb)]
                panels.append((f"{label[i]} (a) vs {label[j]} (b)", matrix, [int(x) for x in la], [int(x) for x in lb]))
                click.echo(f"{label[i]} vs {label[j]}: rsa r {res.r:+.3f} (p {res.p:.3f}, {res.n_emotions} "
                           f"emotions); max CKA {float(matrix.max()):.3f} on {len(stimuli)} shared stimuli")
    else:
        skipped["rsa_cka"] = "one model: RSA and CKA compare two or more"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    alignments: list[dict[str, Any]] = []
    transfers: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    for (st, m), name in zip(pairs, label):
        try:
            alignment = cmp.norm_alignment(st, m, emotions, n_permutations=permutations, seed=seed)
        except InputError as exc:
            skipped[f"alignment {name}"] = str(exc)
            continue
        a = alignment.to_dict()
        alignments.append({"label": name, **a})
        i = alignment.layers.index(alignment.default_layer)
        click.echo(f"{name}: layer {alignment.default_layer}, {len(alignment.emotions)} emotions: CV r valence "
                   f"{_fmt(a['valence'][i])} (null {a['valence'][i].get('null_mean') or float('nan'):+.2f}), "
                   f"arousal {_fmt(a['arousal'][i])} (null {a['arousal'][i].get('null_mean') or float('nan'):+.2f})")
        transfer = None
        if languages is not None:
            try:
                transfer = language_transfer(st, m, source=languages[0], target=languages[1],
                                             n_bootstrap=bootstrap, n_permutations=permutations, seed=seed)
            except InputError as exc:
                skipped[f"transfer {name}"] = str(exc)
        if transfer is not None:
            t = transfer.to_dict()
            transfers.append({"label": name, **t})
            j = transfer.layers.index(transfer.default_layer)
            click.echo(f"  probe accuracy at layer {transfer.default_layer} (chance {transfer.chance:.3f}): "
                       f"{transfer.source}->{transfer.target} {_fmt(t['transfer'][j])} (each language centred "
                       f"{_fmt(t['transfer_centred'][j])}), within {transfer.source} "
                       f"{_fmt(t['within_source'][j])}, within {transfer.target} {_fmt(t['within_target'][j])}")
        for row in cmp.norm_check(alignment, transfer):
            checks.append({"model": name, **row})
            if row["flagged"]:
                click.echo(f"  flagged: {row['metric']} tracks the vectors' mean norm across layers "
                           f"(Spearman rho {row['rho']:+.2f})")
    pd.DataFrame(rsa_rows, columns=["model_a", "model_b", "r", "p", "n_emotions"]).to_csv(out / "rsa.csv", index=False)
    pd.DataFrame(cka_rows, columns=["model_a", "model_b", "layer_a", "layer_b", "cka"]).to_csv(out / "cka.csv",
                                                                                             index=False)
    if cka_rows:
        (out / "cka.png").write_bytes(cka_heatmap_png(panels))
    _estimates_csv(alignments, ("valence", "arousal"), out / "alignment.csv", "norm")
    _estimates_csv(transfers, SERIES, out / "transfer.csv", "accuracy")
    pd.DataFrame(checks, columns=["model", "metric", "rho", "flagged"]).to_csv(out / "norm_check.csv", index=False)
    if alignments:
        (out / "alignment.png").write_bytes(alignment_png(alignments, [a["label"] for a in alignments]))
    if transfers:
        (out / "transfer.png").write_bytes(transfer_png(transfers, [t["label"] for t in transfers]))
    for key, reason in skipped.items():
        click.echo(f"skipped {key}: {reason}")
    (out / "results.json").write_text(json.dumps({
        "models": label, "shared_stimuli": shared_stimuli, "emotions": emotions, "rsa": rsa_rows,
        "alignment": alignments, "transfer": transfers, "norm_check": checks, "skipped": skipped,
        "settings": {"permutations": permutations, "bootstrap": bootstrap, "seed": seed,
                     "transfer": None if languages is None else list(languages)}}, indent=1))
    click.echo(f"wrote {out}/")


def _estimates_csv(records: list[dict[str, Any]], keys: tuple[str, ...], path: Path, what: str) -> None:
    """One row per (model, ``what``, layer) of the per-layer Estimate lists under ``keys``."""
    import pandas as pd

    rows = []
    for rec in records:
        for key in keys:
            for layer, e in zip(rec["layer"], rec[key]):
                ci = e.get("ci") or [None, None]
                rows.append({"model": rec["label"], what: key, "layer": layer, "value": e.get("value"),
                             "ci_low": ci[0], "ci_high": ci[1], "p": e.get("p"), "null_mean": e.get("null_mean"),
                             "n": e.get("n"), "default_layer": layer == rec["default_layer"]})
    pd.DataFrame(rows, columns=["model", what, "layer", "value", "ci_low", "ci_high", "p", "null_mean", "n",
                                "default_layer"]).to_csv(path, index=False)
