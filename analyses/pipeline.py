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
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from emovec_store import Store
from emovec_store.derived import DerivedWriter, derived_location, derived_writer, read_derived
from emovec_store.errors import InputError
from emovec_store.layout import parse_layers

from . import geometry, implicit, layers, probes
from ._common import as_labels
from .basis import top_pc_basis
from .budget import DEFAULT_LAYER_BUDGET_MB, basis_size, layer_megabytes, return_freed_memory, trim_heap
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

#: ``progress(label, done, total)``: a step starts (``label`` names it and its block of layers);
#: ``done`` steps of ``total`` are finished for the current model.
Progress = Callable[[str, int, int], None]
#: Layers per block of the per-layer analyses (see ``AnalyzeOptions.layer_block``).
DEFAULT_LAYER_BLOCK = 8


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
    layer_budget_mb : when one layer of the stories (stimulus × hidden, float64) is larger, geometry streams
        it by stored chunk (:mod:`.budget`) and the probes run on the top ``basis_components`` principal
        components of each layer (:mod:`.basis`), fewer if ``stories × k × 8`` bytes would exceed the
        budget, and say so.
    layer_block : layers analysed together by the per-layer families (vectors, geometry, implicit,
        intensity; their outputs are written block by block), so that memory does not grow with the
        number of layers. The results do not depend on it (every statistic is per layer and its
        resampling draws are over stories and labels); a larger block only saves a little overhead.
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
    layer_block: int = DEFAULT_LAYER_BLOCK

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"] = list(self.models) if self.models else None
        d["layers"] = list(self.layers) if isinstance(self.layers, tuple) else self.layers
        return d


class _Clock:
    """Times each step (summed over blocks of layers) and reports it to the progress callback."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.timings: dict[str, float] = {}
        self._progress = progress
        self._done = 0
        self._total = total

    @contextmanager
    def step(self, name: str, label: str | None = None) -> Iterator[None]:
        if self._progress is not None:
            self._progress(label or name, self._done, self._total)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            trim_heap()
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - t0, 3)
            self._done += 1


#: Steps run once per block of layers, then once per model.
BLOCK_STEPS = ("vectors", "geometry", "implicit", "intensity", "write")
MODEL_STEPS = ("probes", "layers", "lens")
STEPS = BLOCK_STEPS + MODEL_STEPS


def layer_blocks(layer_ids: Sequence[int], size: int) -> list[list[int]]:
    """``layer_ids`` in consecutive blocks of at most ``size`` layers."""
    if size < 1:
        raise InputError(f"layer_block must be at least 1, got {size}")
    return [list(layer_ids[i:i + size]) for i in range(0, len(layer_ids), size)]


def step_count(n_layers: int, layer_block: int = DEFAULT_LAYER_BLOCK) -> int:
    """How many steps :func:`analyze_model` reports for ``n_layers`` layers."""
    return len(BLOCK_STEPS) * -(-n_layers // max(1, layer_block)) + len(MODEL_STEPS)


def analyze(store: str | Path | Store, options: AnalyzeOptions | None = None, *, command: str = "",
            progress: Progress | None = None) -> dict[str, Any]:
    """Run every analysis on a finalized store; returns the results as JSON-ready data.

    ``progress`` is called with the name of each step as it starts (``STEPS``, per model).
    Analyses that cannot run (no neutral texts, no norms, no texts for the text baseline, no
    implicit scenarios, model not available for the lens) are listed under ``skipped`` with the
    reason; they never fail the run. On glibc it sets the process's malloc trim threshold
    (:func:`.budget.return_freed_memory`) so that freed chunk buffers leave the resident set.
    """
    options = options or AnalyzeOptions()
    return_freed_memory()
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
        "store": {"location": st.location, "corpus": st.stimuli_attrs.get("corpus", {}),
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
    """Every analysis on one model (see :func:`analyze`).

    The per-layer families run on blocks of ``options.layer_block`` layers, each block's vectors and
    projections appended to ``derived/`` as it is done; the probes, the layer summary and the lens then
    read the vectors back lazily, one layer at a time. Memory is that of one block, whatever the number
    of layers.
    """
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
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(options.seed).spawn(4)]
    blocks = layer_blocks(layer_ids, options.layer_block)
    clock = _Clock(progress, step_count(len(layer_ids), options.layer_block))
    per_layer = _PerLayer()
    written: list[str] = []
    with ExitStack() as stack:
        writers = _derived_writers(stack, st, model, data, options) if options.write else None
        for block in blocks:
            where = f"layers {block[0]}–{block[-1]}" if len(blocks) > 1 else None
            b_stories, b_neutral = stories.sel(layer=block), neutral.sel(layer=block)
            with clock.step("vectors", where and f"vectors ({where})"):
                vec = emotion_vectors(b_stories, neutral=b_neutral if has_neutral else None, categories=categories,
                                      baseline=options.baseline if has_neutral else "mean",
                                      denoise=options.denoise if has_neutral else None)
            with clock.step("geometry", where and f"geometry ({where})"):
                per_layer.geometry.append(geometry.run_geometry(
                    vec.vectors, b_stories, emotions, components=vec.components,
                    n_permutations=options.n_permutations, n_bootstrap=options.n_bootstrap, seed=seeds[0],
                    budget_mb=options.layer_budget_mb))
            with clock.step("implicit", where and f"implicit ({where})"):
                per_layer.add_scenarios("implicit", _score_scenarios(st, data, block, lang, vec, "implicit", partial(
                    implicit.run_implicit, n_permutations=options.n_permutations, seed=seeds[2]), skipped))
            with clock.step("intensity", where and f"intensity ({where})"):
                per_layer.add_scenarios("intensity", _score_scenarios(st, data, block, lang, vec, "intensity", partial(
                    implicit.run_intensity, n_permutations=options.n_permutations, seed=seeds[3]), skipped))
            with clock.step("write", where and f"write ({where})"):
                per_layer.add_vectors(vec, keep=writers is None)
                if writers is not None:
                    writers[0].append(_vectors_dataset(vec))
                    writers[1].append(_projections_dataset(data.pooled.sel(layer=block), vec))
    if options.write:
        written = [derived_location(st, model, name, options.sidecar) for name in ("vectors", "projections")]
        saved = read_derived(st, model, "vectors", options.sidecar, load=False)
        vectors = saved["denoised"] if "denoised" in saved else saved["raw"]
        components = saved.get("neutral_components")
    else:
        vectors, components = per_layer.kept_vectors()
    geo = geometry.GeometryResult.concat(per_layer.geometry)
    implicit_results = {name: implicit.ImplicitResult.concat(parts).to_dict()
                        for name, parts in per_layer.scenarios["implicit"].items()}
    intensity_results = {name: implicit.IntensityResult.concat(parts).to_dict()
                         for name, parts in per_layer.scenarios["intensity"].items()}
    if not implicit_results:
        skipped["implicit"] = "no implicit scenarios with a target among the story emotions"
    if not intensity_results:
        skipped["intensity"] = "no intensity prompts with a target among the story emotions"
    texts, text_source = texts_for(st, stories)
    trim_heap()  # the decoded text column is gone; its holes in the heap need not stay resident
    if texts is None:
        skipped["bag_of_words"] = text_source
    with clock.step("probes"):
        probe_rows, basis_note = stories, None
        if layer_megabytes(stories) > options.layer_budget_mb:
            n_rows = stories.sizes["stimulus"]
            wanted = min(options.basis_components, stories.sizes["hidden"], n_rows)
            k = basis_size(n_rows, options.layer_budget_mb, wanted)
            probe_rows, components = top_pc_basis(stories, k), None
            limited = (f"; {wanted} asked for, {k} fit the budget ({n_rows} stories × {k} × 8 bytes)"
                       if k < wanted else "")
            basis_note = (f"one layer is {layer_megabytes(stories):.0f} MB (> {options.layer_budget_mb:g} MB): "
                          f"probes ran on each layer's top {k} principal components from one streamed pass "
                          f"(unsupervised; neutral components not projected out){limited}")
        probe = probes.run_probes(probe_rows, texts, neutral_components=components, categories=categories,
                                  n_permutations=options.n_permutations, n_bootstrap=options.n_bootstrap,
                                  seed=seeds[1], default_layer=default)
    geo_d, probe_d = geo.to_dict(), probe.to_dict()
    if basis_note is not None:
        probe_d["reduction"] = "; ".join(x for x in (basis_note, probe_d.get("reduction")) if x)
    with clock.step("layers"):
        summary = layers.run_layers(geo.cosine, _layer_metrics(geo_d, probe_d, implicit_results),
                                    per_layer.mean_norm, layer_ids, max_layer=stored_max).to_dict()
    lens_d: dict[str, Any] | None = None
    with clock.step("lens"):
        if options.lens:
            lens_d, reason = _lens(data, vectors)
            if lens_d is None:
                skipped["lens"] = reason
        else:
            skipped["lens"] = "not requested (--no-lens)"
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
        "vectors": {"layer": layer_ids, "denoise_k": per_layer.denoise_k, "mean_norm": per_layer.mean_norm,
                    "recipe": per_layer.recipe},
        "geometry": geo_d, "probes": probe_d, "implicit": implicit_results, "intensity": intensity_results,
        "layers_summary": summary, "lens": lens_d, "derived": written, "skipped": skipped,
        "timings": clock.timings,
    }


@dataclass
class _PerLayer:
    """What the blocks of layers leave for the whole-model steps (small: no activations)."""

    geometry: list[geometry.GeometryResult] = field(default_factory=list)
    scenarios: dict[str, dict[str, list[Any]]] = field(
        default_factory=lambda: {"implicit": {}, "intensity": {}})
    denoise_k: list[int] | None = None
    mean_norm: list[float] = field(default_factory=list)
    recipe: str = ""
    vectors: list[xr.DataArray] = field(default_factory=list)
    components: list[xr.DataArray] = field(default_factory=list)

    def add_scenarios(self, kind: str, results: dict[str, Any]) -> None:
        for name, result in results.items():
            self.scenarios[kind].setdefault(name, []).append(result)

    def add_vectors(self, vec: Vectors, *, keep: bool) -> None:
        self.mean_norm += _mean_norm(vec.vectors)
        if vec.denoise_k is not None:
            self.denoise_k = (self.denoise_k or []) + [int(k) for k in vec.denoise_k.values]
        self.recipe = str(vec.to_dataset().attrs["recipe"])
        if keep:  # nothing written back: the probes and the lens need them from memory
            self.vectors.append(vec.vectors.astype(np.float32))
            if vec.components is not None:
                self.components.append(vec.components.astype(np.float32))

    def kept_vectors(self) -> tuple[xr.DataArray, xr.DataArray | None]:
        comps = xr.concat(self.components, dim="layer") if self.components else None
        return xr.concat(self.vectors, dim="layer"), comps


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
                     run: Callable[..., Any], skipped: dict[str, str]) -> dict[str, Any]:
    """``run`` (implicit or intensity scoring) on the ``kind`` rows of each scenario readout, by readout
    (the result objects, for joining blocks of layers)."""
    out: dict[str, Any] = {}
    for name in _scenario_readouts(st, data.model, data.readout):
        rows = _scenario_rows(st, data.model, name, data, layer_ids, kind, lang, vec)
        if rows is not None:
            pooled, center = rows
            try:
                out[name] = run(pooled, vec.vectors, center=center)
            except InputError as err:  # e.g. a --limit sample left no template with 3 levels: skip, say why
                skipped[f"{kind}.{name}"] = str(err)
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
    rows = select(data.pooled.sel(layer=layer_ids), kinds=(kind,), language=lang, labelled=True)
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


def _derived_writers(stack: ExitStack, st: Store, model: str, data: ReadoutData,
                     options: AnalyzeOptions) -> tuple[DerivedWriter, DerivedWriter]:
    """Block writers of ``derived/vectors`` (raw, denoised, means, k, neutral components) and
    ``derived/projections`` (layer, stimulus, emotion); both are renamed into place when the run ends."""
    prov = {"analysis": "emotion vectors", "readout": data.readout, "settings": options.to_dict(),
            "stimuli": "stories with emotion labels of the readout's main language"}
    proj_prov = {**prov, "what": "each stimulus of the readout projected onto each unit emotion vector"}
    return (stack.enter_context(derived_writer(st, model, "vectors", provenance=prov, sidecar=options.sidecar)),
            stack.enter_context(derived_writer(st, model, "projections", provenance=proj_prov,
                                               sidecar=options.sidecar)))


def _vectors_dataset(vec: Vectors) -> xr.Dataset:
    ds = vec.to_dataset().astype(np.float32)
    if vec.components is not None:
        ds["neutral_components"] = vec.components.astype(np.float32)
    return ds


def _projections_dataset(pooled: xr.DataArray, vec: Vectors) -> xr.Dataset:
    """The block's projections, lazy: written chunk by chunk (one layer per chunk)."""
    proj = projections(pooled, vec.vectors).astype(np.float32)
    keep = ("stimulus", "kind", "stimulus_emotion", "topic", "language", "level", "template")
    proj = proj.reset_coords([c for c in proj.coords if c not in keep and c not in proj.dims], drop=True)
    proj = proj.assign_coords({c: proj[c].compute() for c in proj.coords if c not in proj.dims})
    if proj.chunks is not None:  # only the data is lazy; one chunk per layer (uniform, as zarr needs)
        proj = proj.copy(data=proj.data.rechunk((1, -1, -1)))
    return xr.Dataset({"projection": proj})


def _lens(data: ReadoutData, vectors: xr.DataArray) -> tuple[dict[str, Any] | None, str]:
    """The logit lens, when the model named by the store's provenance can be loaded here."""
    from .lens_model import lens_from_provenance

    return lens_from_provenance(data.model_attrs, vectors)
