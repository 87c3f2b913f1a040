"""Analyses over emovec stores: pure functions on xarray (dask-backed where the data is large).

From a notebook::

    import emovec_store
    from emovec import analyses

    store = emovec_store.open("smollm2.zarr")
    data = analyses.open_readout(store, "smollm2-135m", "mean_from_50")
    stories = analyses.select(data.pooled, kinds=["story"], labelled=True)
    neutral = analyses.select(data.pooled, kinds=["neutral"])
    vec = analyses.emotion_vectors(stories, neutral=neutral)      # vec.vectors: (layer, emotion, hidden)
    pca = analyses.unit_pca(vec.vectors)                          # scores (layer, emotion, component)
    probe = analyses.run_probes(stories.sel(layer=[20]))          # topic-grouped CV, CIs, permutation p

``analyses.analyze(store)`` runs everything ``emovec analyze`` runs and returns the results dict.
"""
from __future__ import annotations

from .geometry import GeometryResult, cosine_matrix, cv_norm_correlation, pc_norm_correlation, run_geometry, unit_pca
from .implicit import ImplicitResult, IntensityResult, centred_cosine, run_implicit, run_intensity
from .layers import LayersResult, cross_layer_rsa, default_layer, run_layers
from .lens import LensResult, logit_lens
from .pipeline import AnalyzeOptions, analyze
from .probes import ProbeResult, run_probes, topic_folds
from .source import ReadoutData, open_readout, read_norms, select, story_readout, texts_for, with_norms
from .stats import Estimate, permutation_p
from .vectors import Vectors, class_means, emotion_vectors, projections, unit

__all__ = [
    "AnalyzeOptions", "Estimate", "GeometryResult", "ImplicitResult", "IntensityResult", "LayersResult",
    "LensResult", "ProbeResult", "ReadoutData", "Vectors", "analyze", "centred_cosine", "class_means",
    "cosine_matrix", "cross_layer_rsa", "cv_norm_correlation", "default_layer", "emotion_vectors", "logit_lens",
    "open_readout", "pc_norm_correlation", "permutation_p", "projections", "read_norms", "run_geometry",
    "run_implicit", "run_intensity", "run_layers", "run_probes", "select", "story_readout", "texts_for",
    "topic_folds", "unit", "unit_pca", "with_norms",
]
