"""The plots of `emovec compare`, drawn from given results into PNG bytes: CKA heatmaps, the
valence/arousal alignment across layers, and language-transfer accuracies across layers."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .plots import MARKERS, OKABE_ITO, _band, _legend, _mark_layer, png


def cka_heatmap_png(panels: Sequence[tuple[str, np.ndarray, Sequence[int], Sequence[int]]]) -> bytes:
    """One layer × layer CKA heatmap per model pair: (title, matrix, layers of a, layers of b)."""
    fig = Figure(figsize=(4.4 * len(panels), 4.0), layout="constrained")
    for k, (title, matrix, la, lb) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        im = ax.imshow(matrix, origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto",
                       extent=(min(lb) - 0.5, max(lb) + 0.5, min(la) - 0.5, max(la) + 0.5))
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("layer (b)")
        ax.set_ylabel("layer (a)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are whole numbers
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        fig.colorbar(im, ax=ax, label="linear CKA")
    return png(fig)


def alignment_png(alignments: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> bytes:
    """One panel per model: cross-validated valence and arousal r per layer with 95% CIs, and each
    null's mean (dotted), from ``Alignment.to_dict()`` records."""
    fig = Figure(figsize=(4.6 * len(alignments), 3.4), layout="constrained")
    for k, (a, label) in enumerate(zip(alignments, labels)):
        ax = fig.add_subplot(1, len(alignments), k + 1)
        layers = [int(x) for x in a["layer"]]
        for j, var in enumerate(("valence", "arousal")):
            _band(ax, layers, a[var], f"{var} (CV r)", OKABE_ITO[j], MARKERS[j])
            null = [np.nan if e.get("null_mean") is None else e["null_mean"] for e in a[var]]
            ax.plot(layers, null, color=OKABE_ITO[j], linestyle=":", linewidth=1, label=f"{var}: null mean")
        _mark_layer(ax, a.get("default_layer"))
        ax.axhline(0, color="#000000", linewidth=0.5)
        _finish_panel(ax, (-1, 1), f"{label}: {len(a['emotions'])} emotions", "r with human norm")
    return png(fig)


def _finish_panel(ax: Any, ylim: tuple[float, float], title: str, ylabel: str) -> None:
    """Limits, title, axis labels (x: layer), grid and legend of one per-layer panel."""
    ax.set_ylim(*ylim)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    _legend(ax, fontsize=7)


TRANSFER_SERIES = (("transfer", "{source} → {target}"), ("transfer_centred", "{source} → {target}, each centred"),
                   ("within_source", "within {source} (topic CV)"), ("within_target", "within {target} (topic CV)"))


def transfer_png(transfers: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> bytes:
    """One panel per model: probe accuracy per layer for transfer and within each language, with
    95% CIs and chance, from ``TransferResult.to_dict()`` records."""
    fig = Figure(figsize=(4.6 * len(transfers), 3.4), layout="constrained")
    for k, (t, label) in enumerate(zip(transfers, labels)):
        ax = fig.add_subplot(1, len(transfers), k + 1)
        layers = [int(x) for x in t["layer"]]
        for j, (key, name) in enumerate(TRANSFER_SERIES):
            _band(ax, layers, t[key], name.format(**t), OKABE_ITO[j], MARKERS[j], "-" if j < 2 else "--")
        ax.axhline(float(t["chance"]), color="#000000", linewidth=0.8, linestyle=":", label="chance")
        _mark_layer(ax, t.get("default_layer"))
        _finish_panel(ax, (0, 1), f"{label}: {t['n_source']} {t['source']} / {t['n_target']} {t['target']} stories",
                      "probe accuracy")
    return png(fig)
