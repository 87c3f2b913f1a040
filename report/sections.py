"""The report's content: a results dict (the ``results.json`` of ``emovec analyze``) as document blocks.

Order: title, the lead answers per model, a cross-model comparison (several models), one section per
model (geometry, probes, implicit, intensity, layers, logit lens, skipped analyses, timings), and the
provenance. Any section may be missing or None; it is then reported as skipped with its reason.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import plots
from .doc import Block, Bullets, Heading, Image, Table, para
from .fmt import (
    Est,
    at_layer,
    fmt_cell,
    fmt_est,
    fmt_num,
    fmt_p,
    get,
    layer_ranges,
    layers_of,
    n_header,
    num,
    p_value,
    per_layer,
    value,
)
from .lead import answers, skip_reason

TITLE = "emovec analyze: how the model represents emotion"
NOT_IN_RESULTS = "not in the results"


def safe_name(text: str) -> str:
    """A file-name-safe form of a model slug or readout name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-.") or "model"


def _image(blocks: list[Block], data: bytes | None, filename: str, title: str) -> None:
    if data is not None:
        blocks.append(Image(filename=filename, title=title, png=data))


def _skip_para(model: Mapping[str, Any], *keys: str) -> Block:
    return para(f"Skipped: {skip_reason(model, *keys) or NOT_IN_RESULTS}.")


def _label(model: Mapping[str, Any], slug: str) -> str:
    name = get(model, "provenance", "model")
    return f"{slug} ({name})" if name and name != slug else str(slug)


def _p_cell(e: Est | None) -> str:
    return fmt_p(p_value(e))


# --- lead and comparison --------------------------------------------------------------------------------

def lead(models: Mapping[str, Any]) -> list[Block]:
    """The answers section: one bullet list per model."""
    blocks: list[Block] = [Heading(2, "Answers")]
    if not models:
        return blocks + [para("No model was analysed: the results contain no models.")]
    blocks.append(para("Each verdict follows a fixed rule at the model's default layer (2/3 of its depth, fixed in "
                       "advance, never the best of the layers): a CI is a 95 % interval, p a "
                       "permutation p-value, n what was counted."))
    for slug, model in models.items():
        if len(models) > 1:
            blocks.append(Heading(3, _label(model, slug)))
        blocks.append(Bullets(tuple(a.parts() for a in answers(model))))
    return blocks


def comparison(models: Mapping[str, Any]) -> list[Block]:
    """Scale-free headline numbers of every model at its own default layer (only for several models)."""
    if len(models) < 2:
        return []
    rows = []
    for slug, m in models.items():
        default = get(m, "default_layer")
        geo, probes = get(m, "geometry"), get(m, "probes")
        runs = get(m, "implicit") or {}
        readout, implicit = next(iter(runs.items())) if runs else ("", None)
        top1 = at_layer(implicit, default, "top1")
        rows.append((slug, str(default), _est_n(at_layer(geo, default, "cv_valence")),
                     _est_n(at_layer(geo, default, "cv_arousal")),
                     _est_n(at_layer(probes, default, "margin"), signed=True) + (
                         f" vs {get(probes, 'best_baseline')}" if probes else ""),
                     _est_n(top1) + (f" ({readout}; chance {fmt_num(get(implicit, 'chance_top1'))})" if top1 else "")))
    return [Heading(2, "Comparison across models"),
            para("Scale-free numbers only (correlations and accuracies), each at the model's own default layer; "
                 "raw vector norms are not comparable across models and are not compared."),
            Table(("model", "default layer", "CV valence r", "CV arousal r", "probe margin over best baseline",
                   "implicit top-1"), tuple(rows))]


def _est_n(e: Est | None, *, signed: bool = False) -> str:
    if value(e) is None:
        return "–"
    n = get(e, "n")
    return fmt_cell(e, signed=signed) + (f", n = {n}" if n is not None else "") + (
        f", p = {fmt_p(p_value(e))}" if p_value(e) is not None else "")


# --- per-layer tables -----------------------------------------------------------------------------------

Column = tuple[str, Callable[[int], str]]


def _layer_table(layers: Sequence[int], columns: Sequence[Column], caption: str, default: int | None) -> Table:
    """A table with one row per layer; the default layer's row says so."""
    rows = tuple((f"{layer} (default)" if layer == default else str(layer), *(fn(i) for _, fn in columns))
                 for i, layer in enumerate(layers))
    return Table(("layer", *(h for h, _ in columns)), rows, caption,
                 highlight=tuple(i for i, layer in enumerate(layers) if layer == default))


def _est_column(section: Any, keys: tuple[str, ...], label: str, unit: str = "", *, signed: bool = False,
                with_p: bool = False) -> list[Column]:
    ests = per_layer(section, *keys)
    cols: list[Column] = [(n_header(label, ests, unit), lambda i: fmt_cell(ests[i], signed=signed))]
    if with_p:
        cols.append((f"p ({label})", lambda i: _p_cell(ests[i])))
    return cols


# --- geometry -------------------------------------------------------------------------------------------

def geometry_section(model: Mapping[str, Any], prefix: str, title: str) -> list[Block]:
    """Cosines, circumplex, valence/arousal correlations by layer, structure by layer."""
    blocks: list[Block] = [Heading(3, "Geometry")]
    geo = get(model, "geometry")
    if not geo:
        return blocks + [_skip_para(model, "geometry")]
    default = get(model, "default_layer")
    layers = layers_of(geo)
    blocks.append(para(f"{get(geo, 'n_emotions') or len(get(geo, 'emotions') or [])} emotion vectors, "
                       f"{get(geo, 'n_norms') if get(geo, 'n_norms') is not None else '?'} with human valence/arousal "
                       "norms. Cosines are between centred vectors; PCA is on unit-normalised vectors, so it is "
                       "scale-free. The CV r fits a direction on all emotions but one and scores the held-out one "
                       "(out-of-sample); the PC |r| picks a component's sign after seeing the norms and is not."))
    if default in layers:
        _image(blocks, plots.cosine_heatmap(geo, default, title), f"{prefix}_cosine.png",
               f"Cosine matrix at layer {default}")
        _image(blocks, plots.circumplex(geo, default, title), f"{prefix}_circumplex.png",
               f"PCA of the vectors vs human valence and arousal, layer {default}")
    _image(blocks, plots.geometry_curves(geo, default, title), f"{prefix}_geometry_r.png",
           "Valence and arousal correlations by layer")
    for key in ("cv_valence", "cv_arousal", "rsa_norms", "pc_valence", "pc_arousal"):
        if get(geo, key) is None:
            blocks.append(para(f"{key}: skipped: {skip_reason(model, f'geometry.{key}') or NOT_IN_RESULTS}."))
    norms_cols = (_est_column(geo, ("cv_valence",), "CV valence r", "emotions", with_p=True)
                  + _est_column(geo, ("cv_arousal",), "CV arousal r", "emotions", with_p=True)
                  + _est_column(geo, ("rsa_norms",), "RSA with human V–A distances", "emotions", with_p=True))
    blocks.append(_layer_table(layers, norms_cols, "Out-of-sample correlation with the human norms by layer",
                               default))
    blocks.append(_layer_table(layers, _pc_columns(geo, "valence") + _pc_columns(geo, "arousal"),
                               "Which principal component carries valence and arousal, by layer (|r|; the best PC "
                               "is chosen on the same data, so it is descriptive, not a test)", default))
    explained = per_layer(geo, "pca_explained")
    norms = per_layer(geo, "mean_vector_norm")
    denoise_k = _aligned(get(model, "vectors", "denoise_k"), layers_of(get(model, "vectors")), layers)
    structure = (_est_column(geo, ("cohesion",), "quadrant cohesion", with_p=True)
                 + _est_column(geo, ("kmeans_ari",), "k-means vs quadrants (ARI)", with_p=True)
                 + [("PC1, PC2 variance share", lambda i: _shares(explained[i])),
                    ("mean vector norm (diagnostic)", lambda i: fmt_num(norms[i])),
                    ("neutral PCs removed", lambda i: "–" if denoise_k[i] is None else str(denoise_k[i]))])
    blocks.append(_layer_table(layers, structure, "Structure by layer (raw norms are not comparable across models)",
                               default))
    return blocks


def _pc_columns(geo: Any, norm: str) -> list[Column]:
    pc1, pc2 = per_layer(geo, f"pc_{norm}", "pc1"), per_layer(geo, f"pc_{norm}", "pc2")
    best_pc, best = per_layer(geo, f"pc_{norm}", "best_pc"), per_layer(geo, f"pc_{norm}", "best")

    def best_cell(i: int) -> str:
        k = best_pc[i]
        return "–" if not k or value(best[i]) is None else f"PC{k}: {fmt_cell(best[i])}"

    return [(n_header(f"{norm}: PC1 |r|", pc1, "emotions"), lambda i: fmt_cell(pc1[i])),
            (f"{norm}: PC2 |r|", lambda i: fmt_cell(pc2[i])),
            (f"{norm}: best PC", best_cell)]


def _aligned(values: Any, source_layers: Sequence[int], layers: Sequence[int]) -> list[Any]:
    """``values`` (aligned with ``source_layers``) re-aligned with ``layers``; None where absent."""
    if not isinstance(values, Sequence):
        return [None] * len(layers)
    lookup = dict(zip(source_layers, values))
    return [lookup.get(layer) for layer in layers]


def _shares(row: Any) -> str:
    first, second = num(get(row, 0)), num(get(row, 1))
    return "–" if first is None else f"{100 * first:.1f} %, " + ("–" if second is None else f"{100 * second:.1f} %")


# --- probes ---------------------------------------------------------------------------------------------

def probes_section(model: Mapping[str, Any], prefix: str, title: str) -> list[Block]:
    """Probe and centroid accuracy by layer, baselines, margin, nested layer selection, confusion."""
    blocks: list[Block] = [Heading(3, "Probes: which emotion is this story?")]
    probes = get(model, "probes")
    if not probes:
        return blocks + [_skip_para(model, "probes")]
    default = get(model, "default_layer")
    reduction = get(probes, "reduction")
    blocks.append(para(f"{get(probes, 'n')} stories, {get(probes, 'n_classes')} emotions, {get(probes, 'n_topics')} "
                       f"topics; multinomial logistic regression with {get(probes, 'n_splits')}-fold cross-validation "
                       "grouped by topic (no topic is in both train and test), scaler fitted inside the folds"
                       + (f", on a reduced basis: {reduction}" if reduction else "") + "; the centroid readout is the "
                       "argmax cosine to vectors fitted on the training folds. Chance = "
                       f"{fmt_num(get(probes, 'chance'))}."))
    _image(blocks, plots.probe_curves(probes, default, title), f"{prefix}_probes.png", "Probe accuracy by layer")
    baselines = get(probes, "baselines") or {}
    rows = tuple((name, fmt_cell(e), str(get(e, "n") if get(e, "n") is not None else "–"), _p_cell(e),
                  "yes" if name == get(probes, "best_baseline") else "")
                 for name, e in baselines.items() if e is not None)
    if rows:
        blocks.append(Table(("baseline", "accuracy [95 % CI]", "n", "p", "best"), rows,
                            "Text baselines on the same folds (length only; tf-idf bag of words; shuffled labels)"))
    for name, e in baselines.items():
        if e is None:
            why = skip_reason(model, name, f"probes.{name}") or NOT_IN_RESULTS
            blocks.append(para(f"Baseline {name}: skipped: {why}."))
    refit = get(probes, "centroid_refit_default")
    if value(refit) is not None:
        blocks.append(para(f"Centroid readout at layer {get(probes, 'default_layer')}, with a full-refit permutation "
                           "test (labels shuffled within topic, the readout refitted on every training fold per "
                           f"shuffle): accuracy {fmt_est(refit, 'stories')}. The per-layer p-values below hold the "
                           "out-of-fold predictions fixed and can be slightly liberal; this one cannot."))
    selected = get(probes, "selected", "accuracy")
    if value(selected) is not None:
        chosen = get(probes, "selected", "layers") or []
        blocks.append(para("Nested layer selection (layer chosen on each outer training fold only, scored on its "
                           f"held-out fold; chosen layers {', '.join(str(x) for x in chosen) or '?'}): accuracy "
                           f"{fmt_est(selected, 'stories')}."))
    columns = (_est_column(probes, ("probe",), "probe accuracy", "stories", with_p=True)
               + _est_column(probes, ("centroid",), "centroid readout", "stories")
               + _est_column(probes, ("margin",), f"margin over {get(probes, 'best_baseline') or 'best baseline'}",
                             "stories", signed=True, with_p=True))
    blocks.append(_layer_table(layers_of(probes), columns, "Accuracy by layer", default))
    classes = [str(c) for c in get(probes, "classes") or []]
    probe_default = get(probes, "default_layer") if get(probes, "default_layer") is not None else default
    _image(blocks, plots.count_heatmap(get(probes, "confusion_default"), classes, classes,
                                       f"{title}: probe confusion at layer {probe_default} (rows: true emotion)",
                                       "predicted emotion", "true emotion"),
           f"{prefix}_probe_confusion.png", f"Probe confusion matrix at layer {probe_default}")
    return blocks


# --- implicit and intensity -----------------------------------------------------------------------------

def implicit_section(model: Mapping[str, Any], prefix: str, title: str) -> list[Block]:
    """Per readout: top-1/top-3 by layer, hubness and confusion at the default layer."""
    blocks: list[Block] = [Heading(3, "Implicit scenarios: the emotion without the emotion word")]
    runs = get(model, "implicit") or {}
    if not runs:
        return blocks + [_skip_para(model, "implicit")]
    default = get(model, "default_layer")
    for readout, imp in runs.items():
        name = safe_name(readout)
        blocks.append(Heading(4, f"Readout: {readout}"))
        blocks.append(para(f"{get(imp, 'n')} scenarios ({get(imp, 'n_dropped') or 0} dropped: target not among the "
                           "vectors); score = centred cosine with each emotion vector. Chance: top-1 "
                           f"{fmt_num(get(imp, 'chance_top1'))}, top-3 {fmt_num(get(imp, 'chance_top3'))}."))
        _image(blocks, plots.implicit_curves(imp, default, f"{title} [{readout}]"), f"{prefix}_implicit_{name}.png",
               f"Implicit top-1/top-3 by layer ({readout})")
        if default is not None:
            _image(blocks, plots.hubness_bars(imp, default, f"{title} [{readout}]"),
                   f"{prefix}_hubness_{name}.png", f"Hubness at layer {default} ({readout})")
            _image(blocks, plots.count_heatmap(at_layer(imp, default, "confusion"),
                                               [str(t) for t in get(imp, "targets") or []],
                                               [str(e) for e in get(imp, "emotions") or []],
                                               f"{title} [{readout}]: implicit confusion at layer {default}",
                                               "top-1 answer", "target emotion"),
                   f"{prefix}_implicit_confusion_{name}.png", f"Implicit confusion at layer {default} ({readout})")
        columns = (_est_column(imp, ("top1",), "top-1", "scenarios", with_p=True)
                   + _est_column(imp, ("top3",), "top-3", "scenarios", with_p=True))
        blocks.append(_layer_table(layers_of(imp), columns, f"Implicit scenarios by layer ({readout})", default))
    return blocks


def intensity_section(model: Mapping[str, Any], prefix: str, title: str) -> list[Block]:
    """Per readout: the intensity curves at the default layer and Spearman ρ per template by layer."""
    blocks: list[Block] = [Heading(3, "Intensity: does the projection grow with the stated intensity?")]
    runs = get(model, "intensity") or {}
    if not runs:
        return blocks + [_skip_para(model, "intensity")]
    default = get(model, "default_layer")
    for readout, inten in runs.items():
        templates = [str(t) for t in get(inten, "templates") or []]
        blocks.append(Heading(4, f"Readout: {readout}"))
        targets = ", ".join(f"{t} → {get(inten, 'target', t) or '?'}" for t in templates)
        blocks.append(para(f"{len(templates)} templates ({targets}); ρ = Spearman correlation of the target "
                           "emotion's centred cosine with the level, p from a permutation of the levels."))
        if default is not None:
            _image(blocks, plots.intensity_curves(inten, default, f"{title} [{readout}]"),
                   f"{prefix}_intensity_{safe_name(readout)}.png", f"Intensity curves at layer {default} ({readout})")
        columns = _est_column(inten, ("mean_rho",), "mean ρ", "templates", with_p=True)
        for tpl in templates:
            columns += _est_column(inten, ("rho", tpl), f"ρ {tpl}", "prompts")
        blocks.append(_layer_table(layers_of(inten), columns, f"Intensity ρ by layer ({readout})", default))
    return blocks


# --- layers and lens ------------------------------------------------------------------------------------

def layers_section(model: Mapping[str, Any], prefix: str, title: str) -> list[Block]:
    """Cross-layer RSA, the per-metric layer summary against the embedding layer, the norm check."""
    blocks: list[Block] = [Heading(3, "Layers")]
    summary = get(model, "layers_summary")
    if not summary:
        return blocks + [_skip_para(model, "layers", "layers_summary")]
    _image(blocks, plots.rsa_heatmap(summary, title), f"{prefix}_layer_rsa.png", "Cross-layer RSA")
    rows = tuple((str(get(s, "metric")), str(get(s, "best_layer") if get(s, "best_layer") is not None else "–"),
                  _est_n(get(s, "best")), _est_n(get(s, "default")), _est_n(get(s, "floor")),
                  fmt_num(get(s, "rise_above_floor"), signed=True))
                 for s in get(summary, "summary") or [])
    if rows:
        blocks.append(Table(("metric", "best layer", "at best layer (descriptive)",
                             f"at default layer {get(summary, 'default_layer')}", "at embedding layer 0",
                             "default − embedding"), rows,
                            "Each metric against the lexical floor; the best layer is the maximum over layers of the "
                            "same numbers, so it is shown for orientation, never as a headline"))
    checks = get(summary, "norm_check") or []
    if checks:
        flagged = [str(get(c, "metric")) for c in checks if get(c, "flagged")]
        blocks.append(Table(("metric", "Spearman ρ with mean vector norm across layers", "flagged"),
                            tuple((str(get(c, "metric")), fmt_num(get(c, "rho"), 2), "yes" if get(c, "flagged")
                                   else "") for c in checks),
                            "Norm check: a metric that tracks the raw vector norm may be a scale artefact"))
        blocks.append(para("Flagged as tracking the vector norm: " + ", ".join(flagged) + "." if flagged
                           else "No metric is flagged as tracking the vector norm."))
    return blocks


def lens_section(model: Mapping[str, Any]) -> list[Block]:
    """Top and bottom tokens of each vector through the unembedding, at the default layer."""
    blocks: list[Block] = [Heading(3, "Logit lens")]
    lens = get(model, "lens")
    if not lens:
        return blocks + [_skip_para(model, "lens")]
    default = get(model, "default_layer")
    lens_layers = layers_of(lens)
    layer = default if default in lens_layers or not lens_layers else lens_layers[-1]
    rows = tuple((str(e), _tokens(at_layer(lens, layer, "top", e)), _tokens(at_layer(lens, layer, "bottom", e)))
                 for e in get(lens, "emotions") or [])
    blocks.append(para(f"Tokens whose logits the vector raises most and least (k = {get(lens, 'k')}), at layer "
                       f"{layer}; every layer is in results.json."))
    blocks.append(Table(("emotion", "top tokens", "bottom tokens"), rows, f"Logit lens at layer {layer}"))
    return blocks


def _tokens(tokens: Any) -> str:
    if not isinstance(tokens, Sequence):
        return "–"
    return " ".join(json.dumps(str(t), ensure_ascii=False) for t in tokens)


# --- model, skipped, provenance -------------------------------------------------------------------------

def model_section(slug: str, model: Mapping[str, Any]) -> list[Block]:
    """Everything about one model."""
    prefix = safe_name(slug)
    title = str(slug)
    layers = [int(x) for x in get(model, "layers") or []]
    n = get(model, "n") or {}
    blocks: list[Block] = [Heading(2, f"Model {_label(model, slug)}")]
    blocks.append(para(f"Readout {get(model, 'readout') or '?'}; {len(layers)} layers analysed "
                       f"({layer_ranges(layers, layers)}); default layer {get(model, 'default_layer')}; "
                       f"{n.get('stories', '?')} stories, {n.get('emotions', '?')} emotions, "
                       f"{n.get('topics', '?')} topics, {n.get('neutral', '?')} neutral texts"
                       + (f"; texts for the bag-of-words baseline: {get(model, 'texts')}" if get(model, "texts")
                          else "") + "."))
    for build in (geometry_section, probes_section, implicit_section, intensity_section, layers_section):
        blocks += build(model, prefix, title)
    blocks += lens_section(model)
    blocks += skipped_section(model)
    timings = get(model, "timings") or {}
    if timings:
        blocks += [Heading(3, "Timings"),
                   Table(("step", "seconds"), tuple((str(k), fmt_num(v, 1)) for k, v in timings.items()))]
    return blocks


def skipped_analyses(model: Mapping[str, Any]) -> dict[str, str]:
    """Every skipped analysis of a model with its reason, including sections absent from the results."""
    out = {str(k): str(v) for k, v in (get(model, "skipped") or {}).items()}
    for section in ("geometry", "probes"):
        for k, v in (get(model, section, "skipped") or {}).items():
            out.setdefault(f"{section}.{k}", str(v))
    for section in ("geometry", "probes", "implicit", "intensity", "layers_summary", "lens"):
        if not get(model, section) and not any(k == section or k.startswith(f"{section}.") for k in out):
            out[section] = NOT_IN_RESULTS
    return out


def skipped_section(model: Mapping[str, Any]) -> list[Block]:
    """The skipped analyses of a model, as a table."""
    skipped = skipped_analyses(model)
    if not skipped:
        return [Heading(3, "Skipped analyses"), para("None: every analysis ran.")]
    return [Heading(3, "Skipped analyses"),
            Table(("analysis", "reason"), tuple((k, v) for k, v in skipped.items()))]


def _flat(d: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as ``(dotted.key, value)`` rows; lists and scalars as compact JSON."""
    if not isinstance(d, Mapping):
        return [(prefix or "value", _scalar(d))]
    rows: list[tuple[str, str]] = []
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        rows += _flat(v, key) if isinstance(v, Mapping) and v else [(key, _scalar(v))]
    return rows


def _scalar(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)


def provenance(results: Mapping[str, Any]) -> list[Block]:
    """What made these numbers: emovec version, command, store, corpus, settings, each model's provenance."""
    blocks: list[Block] = [Heading(2, "Provenance")]
    top = [("emovec version", _scalar(get(results, "emovec_version"))), ("command", _scalar(get(results, "command"))),
           ("created", _scalar(get(results, "created")))]
    blocks.append(Table(("field", "value"), tuple(top + _flat(get(results, "store"), "store"))))
    blocks.append(Table(("setting", "value"), tuple(_flat(get(results, "settings") or {})), "Settings"))
    for slug, model in (get(results, "models") or {}).items():
        rows = _flat(get(model, "provenance") or {}) + [("readout", _scalar(get(model, "readout"))),
                                                        ("layers", _scalar(get(model, "layers"))),
                                                        ("default layer", _scalar(get(model, "default_layer")))]
        recipe = get(model, "vectors", "recipe")
        if recipe is not None:
            rows.append(("vector recipe", _scalar(recipe)))
        derived = get(model, "derived")
        if derived:
            rows.append(("derived groups written", _scalar(derived)))
        blocks.append(Table(("field", "value"), tuple(rows), f"Model {slug}"))
    return blocks


def document(results: Mapping[str, Any]) -> list[Block]:
    """The whole report as blocks (images rendered to PNG bytes)."""
    models = get(results, "models") or {}
    store = get(results, "store", "location")
    blocks: list[Block] = [Heading(1, TITLE),
                           para(f"Store {store or '?'}; emovec {get(results, 'emovec_version') or '?'}; created "
                                f"{get(results, 'created') or '?'}. Every number is printed as value [95 % CI] with "
                                "its n; CIs are 95 % intervals (percentile bootstrap with "
                                f"{get(results, 'settings', 'n_bootstrap') or '?'} resamples, or binomial intervals "
                                "for the implicit-scenario accuracies), p-values from "
                                f"{get(results, 'settings', 'n_permutations') or '?'} permutations as (k+1)/(n+1). "
                                "All numbers, with their provenance, are in results.json.")]
    blocks += lead(models)
    blocks += comparison(models)
    for slug, model in models.items():
        blocks += model_section(str(slug), model)
    return blocks + provenance(results)
