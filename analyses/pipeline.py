"""`analyze`: every analysis family on every model of a store, written back and returned as one dict.

This is what ``emovec analyze`` calls. Per model it reads one story readout (``mean_from_50`` by
default), computes emotion vectors (written to ``derived/vectors`` with the per-stimulus projections),
then geometry, probes, implicit scenarios and intensity (on the ``assistant`` readout and on the
story readout, where present), the layer summary and the logit lens. The result is JSON-ready
(``results.json``); :mod:`emovec.report` renders it.
"""
from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from emovec_store import Store
from emovec_store.derived import write_derived
from emovec_store.errors import InputError
from emovec_store.layout import parse_layers

from . import geometry, implicit, layers, probes
from ._common import as_labels
from .basis import DEFAULT_LAYER_BUDGET_MB, layer_megabytes, top_pc_basis
from .source import (
    STORY_KINDS,
    ReadoutData,
    main_language,
    open_readout,
    open_store,
    pooled_readouts,
    read_norms,
    select,
    story_readout,
    texts_for,
    with_norms,
)
from .stats import DEFAULT_BOOTSTRAP, DEFAULT_PERMUTATIONS
from .vectors import Baseline, Vectors, emotion_vectors, projections

Progress = Callable[[str], None]


@dataclass(frozen=True)
class AnalyzeOptions:
    """Settings of one analysis run (all recorded in ``results.json``).

    models : model slugs (default: every model in the store).
    readout : the story readout (default ``mean_from_50``, else the first pooled readout over stories).
    layers : ``"all"``, ``"every:K"``, ``"a,b,c"`` or indices (default: every stored layer).
    n_permutations, n_bootstrap, seed : resampling; p-values are (k+1)/(n+1).
    denoise : neutral-PCA variance threshold (None: raw vectors).
    baseline : vectors are class means minus the mean of class means (``mean``) or the neutral mean.
    lens : run the logit lens (loads the model named by the store's provenance).
    write : write vectors and projections back into the store (or its sidecar).
    sidecar : where derived results go for stores that cannot be written.
    norms : a TSV of human norms (word, valence, arousal[, dominance]) replacing the store's norms for
        the emotions it rates (for imported corpora that carry none).
    layer_budget_mb : when one layer of the stories (stimulus × hidden, float64) is larger, the probes run
        on the top ``basis_components`` principal components of each layer (:mod:`.basis`), and say so.
    """

    models: tuple[str, ...] | None = None
    readout: str | None = None
    layers: str | tuple[int, ...] | None = None
    n_permutations: int = DEFAULT_PERMUTATIONS
    n_bootstrap: int = DEFAULT_BOOTSTRAP
    seed: int = 0
    denoise: float | None = 0.5
    baseline: Baseline = "mean"
    lens: bool = True
    write: bool = True
    sidecar: str | None = None
    norms: str | None = None
    layer_budget_mb: float = DEFAULT_LAYER_BUDGET_MB
    basis_components: int = 256

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"] = list(self.models) if self.models else None
        d["layers"] = list(self.layers) if isinstance(self.layers, tuple) else self.layers
        return d


class _Clock:
    """Times each step and reports it to the progress callback."""

    def __init__(self, progress: Progress | None) -> None:
        self.timings: dict[str, float] = {}
        self._progress = progress

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        if self._progress is not None:
            self._progress(name)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - t0, 3)


STEPS = ("vectors", "geometry", "probes", "implicit", "intensity", "layers", "lens", "write")


def analyze(store: str | Path | Store, options: AnalyzeOptions | None = None, *, command: str = "",
            progress: Progress | None = None) -> dict[str, Any]:
    """Run every analysis on a finalized store; returns the results as JSON-ready data.

    ``progress`` is called with the name of each step as it starts (``STEPS``, per model).
    Analyses that cannot run (no neutral texts, no norms, no texts for the text baseline, no
    implicit scenarios, model not available for the lens) are listed under ``skipped`` with the
    reason; they never fail the run.
    """
    options = options or AnalyzeOptions()
    st = open_store(store)
    models = list(options.models) if options.models else st.models
    unknown = [m for m in models if m not in st.models]
    if unknown:
        raise InputError(f"store {st.location!r} has no model {unknown[0]!r}; available: {', '.join(st.models)}")
    if not models:
        raise InputError(f"store {st.location!r} has no models; run `emovec extract` first")
    from importlib.metadata import version

    results: dict[str, Any] = {
        "emovec_version": version("emovec"), "command": command,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "store": {"location": st.location, "corpus": st.stimuli.attrs.get("corpus", {}),
                  "stimuli_sha256": st.attrs.get("stimuli_sha256")},
        "settings": options.to_dict(), "models": {},
    }
    for model in models:
        results["models"][model] = analyze_model(st, model, options, progress=progress)
    return results


def _layer_list(st: Store, model: str, readout: str, spec: str | tuple[int, ...] | None) -> list[int] | None:
    if spec is None:
        return None
    stored = [int(x) for x in st.readout_attrs(model, readout)["layers"]]
    return parse_layers(spec, max(stored))


def analyze_model(st: Store, model: str, options: AnalyzeOptions, *,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Every analysis on one model (see :func:`analyze`)."""
    clock = _Clock(progress)
    readout = story_readout(st, model, options.readout)
    data = open_readout(st, model, readout, layers=_layer_list(st, model, readout, options.layers))
    lang = main_language(data.pooled)
    stories = select(data.pooled, kinds=STORY_KINDS, language=lang, labelled=True)
    neutral = select(data.pooled, kinds=("neutral",), language=lang)
    skipped: dict[str, str] = {}
    if stories.sizes["stimulus"] == 0:
        raise InputError(f"readout {model}/{readout} of {st.location!r} has no stimuli with emotion labels; "
                         "analyses need labelled stories")
    present = set(as_labels(stories["emotion"]))
    categories = [e for e in as_labels(data.emotions["emotion"]) if e in present]
    categories += sorted(present - set(categories))
    table = data.emotions if options.norms is None else with_norms(data.emotions, read_norms(options.norms))
    emotions = _emotions_for(table, categories)
    layer_ids = [int(x) for x in data.pooled["layer"].values]
    stored_max = max(int(x) for x in data.readout_attrs.get("layers", layer_ids))
    default = layers.default_layer(layer_ids, max_layer=stored_max)
    has_neutral = neutral.sizes["stimulus"] >= 2
    if not has_neutral:
        skipped["denoising"] = f"{neutral.sizes['stimulus']} neutral texts in {readout} (need ≥ 2): raw vectors"
    with clock.step("vectors"):
        vec = emotion_vectors(stories, neutral=neutral if has_neutral else None, categories=categories,
                              baseline=options.baseline if has_neutral else "mean",
                              denoise=options.denoise if has_neutral else None)
    seeds = np.random.SeedSequence(options.seed).spawn(4)
    with clock.step("geometry"):
        geo = geometry.run_geometry(vec.vectors, stories, emotions, components=vec.components,
                                    n_permutations=options.n_permutations, n_bootstrap=options.n_bootstrap,
                                    seed=int(seeds[0].generate_state(1)[0]))
    texts, text_source = texts_for(st, stories)
    if texts is None:
        skipped["bag_of_words"] = text_source
    with clock.step("probes"):
        probe_rows, components, basis_note = stories, vec.components, None
        if layer_megabytes(stories) > options.layer_budget_mb:
            k = min(options.basis_components, stories.sizes["hidden"], stories.sizes["stimulus"])
            probe_rows, components = top_pc_basis(stories, k), None
            basis_note = (f"one layer is {layer_megabytes(stories):.0f} MB (> {options.layer_budget_mb:.0f} MB): "
                          f"probes ran on each layer's top {k} principal components from one streamed pass "
                          "(unsupervised; neutral components not projected out)")
        probe = probes.run_probes(probe_rows, texts, neutral_components=components, categories=categories,
                                  n_permutations=options.n_permutations, n_bootstrap=options.n_bootstrap,
                                  seed=int(seeds[1].generate_state(1)[0]), default_layer=default)
    with clock.step("implicit"):
        implicit_results = _score_scenarios(st, data, layer_ids, lang, vec, "implicit", partial(
            implicit.run_implicit, n_permutations=options.n_permutations, seed=int(seeds[2].generate_state(1)[0])))
        if not implicit_results:
            skipped["implicit"] = "no implicit scenarios with a target among the story emotions"
    with clock.step("intensity"):
        intensity_results = _score_scenarios(st, data, layer_ids, lang, vec, "intensity", partial(
            implicit.run_intensity, n_permutations=options.n_permutations, seed=int(seeds[3].generate_state(1)[0])))
        if not intensity_results:
            skipped["intensity"] = "no intensity prompts with a target among the story emotions"
    geo_d, probe_d = geo.to_dict(), probe.to_dict()
    if basis_note is not None:
        probe_d["reduction"] = "; ".join(x for x in (basis_note, probe_d.get("reduction")) if x)
    with clock.step("layers"):
        summary = layers.run_layers(geo.cosine, _layer_metrics(geo_d, probe_d, implicit_results),
                                    _mean_norm(vec.vectors), layer_ids, max_layer=stored_max).to_dict()
    lens_d: dict[str, Any] | None = None
    with clock.step("lens"):
        if options.lens:
            lens_d, reason = _lens(data, vec)
            if lens_d is None:
                skipped["lens"] = reason
        else:
            skipped["lens"] = "not requested (--no-lens)"
    written: list[str] = []
    with clock.step("write"):
        if options.write:
            written = _write_vectors(st, model, data, vec, options)
    geo_d["norms"] = {k: [None if not np.isfinite(v) else float(v) for v in emotions[k].values]
                      for k in ("valence", "arousal")}
    skipped.update({f"geometry.{k}": v for k, v in geo_d.get("skipped", {}).items()})
    skipped.update({f"probes.{k}": v for k, v in probe_d.get("skipped", {}).items()})
    return {
        "provenance": _provenance(data), "readout": readout, "language": lang, "layers": layer_ids,
        "default_layer": default,
        "n": {"stories": int(stories.sizes["stimulus"]), "emotions": len(categories),
              "topics": len(set(as_labels(stories["topic"]))),
              "neutral": int(neutral.sizes["stimulus"])},
        "texts": text_source if texts is not None else None,
        "norms_source": str(table.attrs.get("norms_source") or "") or None,
        "vectors": {"layer": layer_ids,
                    "denoise_k": None if vec.denoise_k is None else [int(k) for k in vec.denoise_k.values],
                    "mean_norm": _mean_norm(vec.vectors), "recipe": vec.to_dataset().attrs["recipe"]},
        "geometry": geo_d, "probes": probe_d, "implicit": implicit_results, "intensity": intensity_results,
        "layers_summary": summary, "lens": lens_d, "derived": written, "skipped": skipped,
        "timings": clock.timings,
    }


def _emotions_for(table: xr.Dataset, categories: Sequence[str]) -> xr.Dataset:
    """The emotions table in ``categories`` order (emotions the table lacks get NaN norms)."""
    known = set(as_labels(table["emotion"]))
    extra = [c for c in categories if c not in known]
    if extra:
        pad = xr.Dataset({"quadrant": ("emotion", np.asarray([""] * len(extra), dtype=object)),
                          **{k: ("emotion", np.full(len(extra), np.nan)) for k in ("valence", "arousal", "dominance")}},
                         coords={"emotion": np.asarray(extra, dtype=object)})
        table = xr.concat([table[["quadrant", "valence", "arousal", "dominance"]], pad], dim="emotion")
    return table.sel(emotion=list(categories))


def _mean_norm(vectors: xr.DataArray) -> list[float]:
    norms = (vectors**2).sum("hidden") ** 0.5
    return [float(x) for x in norms.mean("emotion").values]


def _scenario_readouts(st: Store, model: str, story_readout_name: str) -> list[str]:
    """Readouts to score implicit/intensity prompts on: ``assistant`` first, then the story readout."""
    names = [r for r in pooled_readouts(st, model) if r == "assistant"]
    return names + [story_readout_name]


def _score_scenarios(st: Store, data: ReadoutData, layer_ids: list[int], lang: str | None, vec: Vectors, kind: str,
                     run: Callable[..., Any]) -> dict[str, Any]:
    """``run`` (implicit or intensity scoring) on the ``kind`` rows of each scenario readout, by readout."""
    out: dict[str, Any] = {}
    for name in _scenario_readouts(st, data.model, data.readout):
        rows = _scenario_rows(st, data.model, name, data, layer_ids, kind, lang, vec)
        if rows is not None:
            pooled, center = rows
            out[name] = run(pooled, vec.vectors, center=center).to_dict()
    return out


def _scenario_rows(st: Store, model: str, readout: str, story: ReadoutData, layer_ids: list[int], kind: str,
                   lang: str | None, vec: Vectors) -> tuple[xr.DataArray, xr.DataArray] | None:
    """The ``kind`` rows of a readout and the centre their cosines use.

    On the story readout the centre is the mean of the story class means (the origin the vectors are
    measured from); on another readout (``assistant``: a different token position, whose activations
    live elsewhere) it is the mean of all that readout's rows, so that centred cosines compare
    directions rather than the position's offset.
    """
    data = story if readout == story.readout else open_readout(st, model, readout, layers=layer_ids)
    rows = select(data.pooled, kinds=(kind,), language=lang, labelled=True)
    if rows.sizes["stimulus"] == 0:
        return None
    if readout == story.readout:  # the class means are already computed: no second pass over the store
        center = vec.means.mean("emotion").drop_vars("n_emotion", errors="ignore")
    else:
        center = implicit.default_center(data.pooled)
    return rows, center


def _layer_metrics(geo: dict[str, Any], probe: dict[str, Any], implicit_results: dict[str, Any]) -> dict[str, Any]:
    """The per-layer headline metrics the layer summary compares with the embedding layer."""
    from .stats import Estimate

    def ests(values: Sequence[dict[str, Any]] | None) -> list[Estimate] | None:
        return None if not values else [Estimate.from_dict(v) for v in values]

    metrics = {"probe accuracy": ests(probe.get("probe")), "centroid readout accuracy": ests(probe.get("centroid")),
               "probe margin over best text baseline": ests(probe.get("margin")),
               "CV valence r": ests(geo.get("cv_valence")), "CV arousal r": ests(geo.get("cv_arousal")),
               "RSA with human valence-arousal": ests(geo.get("rsa_norms")),
               "quadrant cohesion": ests(geo.get("cohesion"))}
    for name, res in implicit_results.items():
        metrics[f"implicit top-1 ({name})"] = ests(res.get("top1"))
    return {k: v for k, v in metrics.items() if v}


def _provenance(data: ReadoutData) -> dict[str, Any]:
    keep = ("model", "source", "alias", "architecture", "model_type", "n_layers", "d_model", "compute_dtype",
            "device", "layer_convention", "gguf_sha256", "weights_sha256", "revision")
    out = {k: data.model_attrs[k] for k in keep if k in data.model_attrs}
    out["readout_spec"] = data.readout_attrs.get("spec")
    out["storage_dtype"] = data.readout_attrs.get("storage_dtype")
    return out


def _write_vectors(st: Store, model: str, data: ReadoutData, vec: Vectors, options: AnalyzeOptions) -> list[str]:
    """``derived/vectors`` (raw, denoised, means, k) and ``derived/projections`` (layer, stimulus, emotion)."""
    prov = {"analysis": "emotion vectors", "readout": data.readout, "settings": options.to_dict(),
            "stimuli": "stories with emotion labels of the readout's main language"}
    vectors_ds = vec.to_dataset().astype(np.float32)
    if vec.components is not None:
        vectors_ds["neutral_components"] = vec.components.astype(np.float32)
    out = [write_derived(st, model, "vectors", vectors_ds, provenance=prov, sidecar=options.sidecar)]
    proj = projections(data.pooled, vec.vectors).astype(np.float32)
    keep = ("stimulus", "kind", "stimulus_emotion", "topic", "language", "level", "template")
    proj = proj.reset_coords([c for c in proj.coords if c not in keep and c not in proj.dims], drop=True)
    proj_ds = xr.Dataset({"projection": proj}).compute()
    out.append(write_derived(st, model, "projections", proj_ds,
                             provenance={**prov, "what": "each stimulus of the readout projected onto each "
                                                         "unit emotion vector"}, sidecar=options.sidecar))
    return out


def _lens(data: ReadoutData, vec: Vectors) -> tuple[dict[str, Any] | None, str]:
    """The logit lens, when the model named by the store's provenance can be loaded here."""
    from .lens_model import lens_from_provenance

    return lens_from_provenance(data.model_attrs, vec.vectors)
