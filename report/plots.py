"""The report's plots, drawn from sections of a results dict into PNG bytes.

Figures are ``matplotlib.figure.Figure`` objects rendered by the Agg canvas (no pyplot, no global state,
no display). Colours are the Okabe–Ito palette (safe for the common colour-vision deficiencies), and
every series also differs by marker or line style. A function returns None when its section lacks the
numbers it needs; it never computes a statistic, it only draws the ones given.
"""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .fmt import Est, at_layer, ci, fmt_num, get, layers_of, num, per_layer, value

DPI = 110
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
QUADRANT_ORDER = ("pleasant-high", "pleasant-low", "unpleasant-low", "unpleasant-high")
QUADRANT_STYLE = {"pleasant-high": ("#E69F00", "o"), "pleasant-low": ("#009E73", "s"),
                  "unpleasant-low": ("#0072B2", "v"), "unpleasant-high": ("#CC79A7", "^")}
UNKNOWN_STYLE = ("#7f7f7f", "x")


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes at :data:`DPI`."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def quadrant_order(quadrants: Sequence[str]) -> list[str]:
    """The circumplex quadrants first (in :data:`QUADRANT_ORDER`), then other labels sorted, unknown ("") last."""
    present = set(quadrants)
    known = [q for q in QUADRANT_ORDER if q in present]
    other = sorted(q for q in present if q not in QUADRANT_ORDER and q)
    return known + other + ([""] if "" in present else [])


def quadrant_style(quadrant: str, order: Sequence[str]) -> tuple[str, str]:
    """(colour, marker) of a quadrant; labels outside the circumplex cycle through the palette."""
    if quadrant in QUADRANT_STYLE:
        return QUADRANT_STYLE[quadrant]
    if not quadrant:
        return UNKNOWN_STYLE
    extra = [q for q in order if q and q not in QUADRANT_STYLE]
    i = extra.index(quadrant) if quadrant in extra else 0
    return OKABE_ITO[(i + 4) % len(OKABE_ITO)], MARKERS[(i + 4) % len(MARKERS)]


def emotion_order(emotions: Sequence[str], quadrants: Sequence[str], valence: Sequence[Any]) -> list[int]:
    """Indices of ``emotions`` ordered by quadrant (see :func:`quadrant_order`), then by valence (high first)."""
    order = quadrant_order(quadrants)
    rank = {q: i for i, q in enumerate(order)}

    def key(i: int) -> tuple[int, float, str]:
        v = num(valence[i]) if i < len(valence) else None
        return (rank.get(quadrants[i], len(order)), -v if v is not None else float("inf"), emotions[i])

    return sorted(range(len(emotions)), key=key)


def _series(ests: Sequence[Est | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(value, lo, hi) float arrays; NaN where a number or its CI is missing."""
    vals = np.array([np.nan if value(e) is None else value(e) for e in ests], dtype=float)
    bounds = [ci(e) for e in ests]
    lo = np.array([np.nan if b is None else b[0] for b in bounds], dtype=float)
    hi = np.array([np.nan if b is None else b[1] for b in bounds], dtype=float)
    return vals, lo, hi


def _band(ax: Axes, x: Sequence[int], ests: Sequence[Est | None], label: str, colour: str, marker: str,
          linestyle: str = "-") -> bool:
    """A line with its CI band; False (nothing drawn) when the series has no value."""
    vals, lo, hi = _series(ests)
    if not np.isfinite(vals).any():
        return False
    ax.plot(x, vals, color=colour, marker=marker, markersize=3.5, linestyle=linestyle, label=label, linewidth=1.6)
    if np.isfinite(lo).any():
        ax.fill_between(x, lo, hi, color=colour, alpha=0.18, linewidth=0)
    return True


def _legend(ax: Axes, **kwargs: Any) -> None:
    """A legend, only when something on the axes has a label."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _mark_layer(ax: Axes, layer: int | None, label: str = "default layer") -> None:
    """A wide translucent grey bar at ``layer`` (unlike any series' line style)."""
    if layer is not None:
        ax.axvline(layer, color="#9a9a9a", alpha=0.35, linewidth=7, label=f"{label} ({layer})", zorder=0)


def _matrix(values: Any) -> np.ndarray | None:
    """A 2-D float array from nested lists (None → NaN), or None when it is not a non-empty matrix."""
    if not isinstance(values, Sequence) or not values:
        return None
    try:
        arr = np.array([[np.nan if num(x) is None else num(x) for x in row] for row in values], dtype=float)
    except TypeError:
        return None
    return arr if arr.ndim == 2 and arr.size else None


def _heatmap(ax: Axes, fig: Figure, mat: np.ndarray, rows: Sequence[str], cols: Sequence[str], *, cmap: str,
             vmin: float, vmax: float, bar_label: str, counts: bool = False) -> None:
    """``mat`` as an image with labelled rows/columns; ``counts``: integer colour-bar ticks, and cell
    numbers when the matrix is at most 14 wide."""
    masked = np.ma.masked_invalid(mat)
    im = ax.imshow(masked, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(cols)), labels=list(cols), rotation=60, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(len(rows)), labels=list(rows), fontsize=8)
    bar = fig.colorbar(im, ax=ax, label=bar_label, shrink=0.85)
    if counts:
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    if counts and max(mat.shape) <= 14:
        mid = (vmin + vmax) / 2
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                if np.isfinite(mat[i, j]) and mat[i, j] != 0:
                    ax.text(j, i, f"{mat[i, j]:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if mat[i, j] > mid else "black")


def cosine_heatmap(geometry: Mapping[str, Any], layer: int, title: str) -> bytes | None:
    """Emotion × emotion cosine matrix at ``layer``, emotions ordered by quadrant then valence.

    Tick labels are coloured by quadrant and lines separate the quadrant blocks.
    """
    mat = _matrix(at_layer(geometry, layer, "cosine"))
    emotions = [str(e) for e in get(geometry, "emotions") or []]
    if mat is None or mat.shape != (len(emotions), len(emotions)):
        return None
    quadrants = _padded(get(geometry, "quadrants"), len(emotions))
    order = emotion_order(emotions, quadrants, get(geometry, "norms", "valence") or [])
    mat = mat[np.ix_(order, order)]
    names, quads = [emotions[i] for i in order], [quadrants[i] for i in order]
    off = mat[~np.eye(len(order), dtype=bool)]
    finite = off[np.isfinite(off)]
    lim = float(np.abs(finite).max()) if finite.size else 0.0
    lim = lim if lim > 0 else 1.0
    side = max(5.0, 0.28 * len(names) + 2.5)
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.add_subplot()
    _heatmap(ax, fig, mat, names, names, cmap="RdBu_r", vmin=-lim, vmax=lim, bar_label="cosine (centred vectors)")
    qorder = quadrant_order(quads)
    for tick_list in (ax.get_xticklabels(), ax.get_yticklabels()):
        for tick, q in zip(tick_list, quads):
            tick.set_color(quadrant_style(q, qorder)[0])
    for k in range(1, len(quads)):
        if quads[k] != quads[k - 1]:
            ax.axhline(k - 0.5, color="black", linewidth=0.8)
            ax.axvline(k - 0.5, color="black", linewidth=0.8)
    ax.set_title(f"{title}: emotion-vector cosines at layer {layer}\n(ordered by quadrant, then valence; "
                 f"diagonal = 1)", fontsize=10)
    ax.set_xlabel("emotion")
    ax.set_ylabel("emotion")
    return png(fig)


def _padded(values: Any, n: int, fill: str = "") -> list[str]:
    vals = [str(v) if v is not None else fill for v in (values or [])]
    return (vals + [fill] * n)[:n]


def _scatter_emotions(ax: Axes, x: Sequence[Any], y: Sequence[Any], names: Sequence[str],
                      quads: Sequence[str]) -> int:
    """Emotions as labelled points by quadrant; returns how many had both coordinates."""
    qorder = quadrant_order(quads)
    shown = 0
    labelled: set[str] = set()
    for xi, yi, name, q in zip(x, y, names, quads):
        xv, yv = num(xi), num(yi)
        if xv is None or yv is None:
            continue
        colour, marker = quadrant_style(q, qorder)
        label = (q or "unknown quadrant") if q not in labelled else None
        labelled.add(q)
        ax.scatter([xv], [yv], color=colour, marker=marker, s=42, label=label, zorder=3)
        ax.annotate(name, (xv, yv), textcoords="offset points", xytext=(4, 3), fontsize=7.5, color="#222222")
        shown += 1
    return shown


def circumplex(geometry: Mapping[str, Any], layer: int, title: str) -> bytes | None:
    """PC1 vs PC2 of the unit emotion vectors at ``layer`` beside the human valence × arousal norms."""
    scores = at_layer(geometry, layer, "pca_scores")
    emotions = [str(e) for e in get(geometry, "emotions") or []]
    if not isinstance(scores, Sequence) or len(scores) != len(emotions) or not emotions:
        return None
    quads = _padded(get(geometry, "quadrants"), len(emotions))
    explained = at_layer(geometry, layer, "pca_explained") or []
    fig = Figure(figsize=(12.5, 5.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    _scatter_emotions(left, [get(s, 0) for s in scores], [get(s, 1) for s in scores], emotions, quads)
    left.axhline(0, color="#bbbbbb", linewidth=0.8, zorder=1)
    left.axvline(0, color="#bbbbbb", linewidth=0.8, zorder=1)
    left.set_xlabel(f"PC1 ({_share(get(explained, 0))} of variance)")
    left.set_ylabel(f"PC2 ({_share(get(explained, 1))} of variance)")
    left.set_title(f"PCA of unit emotion vectors, layer {layer}", fontsize=10)
    _legend(left, fontsize=8, loc="best")
    valence = get(geometry, "norms", "valence") or []
    arousal = get(geometry, "norms", "arousal") or []
    shown = _scatter_emotions(right, _pad_values(valence, len(emotions)), _pad_values(arousal, len(emotions)),
                              emotions, quads)
    right.set_xlabel("human valence (0 = unpleasant, 1 = pleasant)")
    right.set_ylabel("human arousal (0 = calm, 1 = activated)")
    if shown:
        right.axhline(0.5, color="#bbbbbb", linewidth=0.8, zorder=1)
        right.axvline(0.5, color="#bbbbbb", linewidth=0.8, zorder=1)
        right.set_title(f"human norms ({shown} of {len(emotions)} emotions rated)", fontsize=10)
    else:
        right.text(0.5, 0.5, "no human valence/arousal norms for these emotions", ha="center", va="center",
                   transform=right.transAxes, fontsize=10, color="#555555")
        right.set_title("human norms", fontsize=10)
    fig.suptitle(f"{title}: model geometry vs the human circumplex (PC signs are arbitrary)", fontsize=11)
    return png(fig)


def _pad_values(values: Sequence[Any], n: int) -> list[Any]:
    return (list(values) + [None] * n)[:n]


def _share(x: Any) -> str:
    v = num(x)
    return "?" if v is None else f"{100 * v:.1f} %"


def probe_curves(probes: Mapping[str, Any], default_layer: int | None, title: str) -> bytes | None:
    """Probe and centroid-readout accuracy vs layer with CI bands, baselines as bands, chance; margin below."""
    layers = layers_of(probes)
    if not layers:
        return None
    fig = Figure(figsize=(10.5, 7.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2.2, 1))
    drawn = _band(top, layers, per_layer(probes, "probe"), "logistic probe (topic-grouped CV)", OKABE_ITO[0], "o")
    drawn |= _band(top, layers, per_layer(probes, "centroid"), "centroid readout (argmax cosine)", OKABE_ITO[1],
                   "s", "--")
    if not drawn:
        return None
    styles = (("#009E73", "-."), ("#CC79A7", (0, (5, 2))), ("#7f7f7f", ":"), ("#56B4E9", "-"))
    for (name, est), (colour, style) in zip((get(probes, "baselines") or {}).items(), styles):
        v, bounds = value(est), ci(est)
        if v is None:
            continue
        best = " (best)" if name == get(probes, "best_baseline") else ""
        top.axhline(v, color=colour, linestyle=style, linewidth=1.4, label=f"baseline: {name}{best} {fmt_num(v)}")
        if bounds is not None:
            top.axhspan(bounds[0], bounds[1], color=colour, alpha=0.12, linewidth=0)
    chance = num(get(probes, "chance"))
    if chance is not None:
        top.axhline(chance, color="black", linestyle="--", linewidth=1, label=f"chance {fmt_num(chance)}")
    _mark_layer(top, default_layer)
    top.set_ylabel("accuracy (95 % CI band)")
    top.set_ylim(bottom=0)
    _legend(top, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    top.set_title(f"{title}: which emotion is it? accuracy by layer (n = {get(probes, 'n') or '?'} stories)",
                  fontsize=10)
    _band(bottom, layers, per_layer(probes, "margin"), f"probe − best baseline ({get(probes, 'best_baseline')})",
          OKABE_ITO[5], "D")
    bottom.axhline(0, color="black", linewidth=1)
    _mark_layer(bottom, default_layer)
    bottom.set_ylabel("margin")
    bottom.set_xlabel("layer (0 = embedding layer)")
    _legend(bottom, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return png(fig)


def geometry_curves(geometry: Mapping[str, Any], default_layer: int | None, title: str) -> bytes | None:
    """Valence and arousal vs layer: the cross-validated r with its CI band, and |r| of PC1 and PC2 as lines.

    Only the CV r gets a band: it is the out-of-sample number; the PC |r| are descriptive.
    """
    layers = layers_of(geometry)
    if not layers:
        return None
    fig = Figure(figsize=(12.5, 5.2), layout="constrained")
    panels = fig.subplots(1, 2, sharey=True)
    drawn = False
    for ax, norm in zip(panels, ("valence", "arousal")):
        drawn |= _band(ax, layers, per_layer(geometry, f"cv_{norm}"), "CV-fitted direction: r (95 % CI band)",
                       OKABE_ITO[0], "o")
        for pc, colour, marker, style in (("pc1", OKABE_ITO[1], "s", "--"), ("pc2", OKABE_ITO[2], "^", ":")):
            vals = _series(per_layer(geometry, f"pc_{norm}", pc))[0]
            if np.isfinite(vals).any():
                ax.plot(layers, vals, color=colour, marker=marker, markersize=3.5, linestyle=style, linewidth=1.3,
                        label=f"{pc.upper()} |r| (descriptive)")
                drawn = True
        ax.axhline(0, color="black", linewidth=0.9)
        _mark_layer(ax, default_layer)
        ax.set_title(f"{norm} (n = {get(geometry, 'n_norms') or '?'} emotions with norms)", fontsize=10)
        ax.set_xlabel("layer (0 = embedding layer)")
    if not drawn:
        return None
    handles, labels = panels[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=len(handles), fontsize=8.5, frameon=False)
    panels[0].set_ylabel("Pearson r with the human norm")
    fig.suptitle(f"{title}: do the vectors carry valence and arousal?", fontsize=11)
    return png(fig)


def implicit_curves(implicit: Mapping[str, Any], default_layer: int | None, title: str) -> bytes | None:
    """Implicit-scenario top-1 and top-3 accuracy vs layer with CI bands and their chance levels."""
    layers = layers_of(implicit)
    if not layers:
        return None
    fig = Figure(figsize=(10.5, 4.6), layout="constrained")
    ax = fig.add_subplot()
    drawn = _band(ax, layers, per_layer(implicit, "top1"), "top-1", OKABE_ITO[0], "o")
    drawn |= _band(ax, layers, per_layer(implicit, "top3"), "top-3", OKABE_ITO[1], "s", "--")
    if not drawn:
        return None
    for key, colour, name in (("chance_top1", OKABE_ITO[0], "chance top-1"), ("chance_top3", OKABE_ITO[1],
                                                                              "chance top-3")):
        c = num(get(implicit, key))
        if c is not None:
            ax.axhline(c, color=colour, linestyle=":", linewidth=1.2, label=f"{name} {fmt_num(c)}")
    _mark_layer(ax, default_layer)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("layer (0 = embedding layer)")
    ax.set_ylabel("accuracy (95 % CI band)")
    _legend(ax, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title(f"{title}: implicit scenarios, is the target emotion the nearest vector? "
                 f"(n = {get(implicit, 'n') or '?'})", fontsize=10)
    return png(fig)


def hubness_bars(implicit: Mapping[str, Any], layer: int, title: str) -> bytes | None:
    """How often each emotion is the top-1 answer at ``layer``, against the uniform expectation."""
    counts = at_layer(implicit, layer, "hubness")
    emotions = [str(e) for e in get(implicit, "emotions") or []]
    if not isinstance(counts, Sequence) or len(counts) != len(emotions) or not emotions:
        return None
    vals = np.array([num(c) or 0.0 for c in counts])
    fig = Figure(figsize=(max(7.0, 0.36 * len(emotions) + 3), 4.4), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(range(len(emotions)), vals, color=OKABE_ITO[0])
    if vals.sum() > 0:
        ax.axhline(vals.sum() / len(emotions), color="black", linestyle="--", linewidth=1,
                   label=f"uniform ({vals.sum() / len(emotions):.1f} each)")
        _legend(ax, fontsize=8)
    ax.set_xticks(range(len(emotions)), labels=emotions, rotation=60, ha="right", rotation_mode="anchor", fontsize=8)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("emotion given as the top-1 answer")
    ax.set_ylabel("scenarios")
    ax.set_title(f"{title}: hubness at layer {layer}\n(how often each emotion is the top-1 answer; a hub is far "
                 "above uniform)", fontsize=10)
    return png(fig)


def count_heatmap(counts: Any, rows: Sequence[str], cols: Sequence[str], title: str, xlabel: str,
                  ylabel: str) -> bytes | None:
    """A confusion matrix of counts (rows true, columns answered); cells annotated when it is small."""
    mat = _matrix(counts)
    if mat is None or mat.shape != (len(rows), len(cols)):
        return None
    finite = mat[np.isfinite(mat)]
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    fig = Figure(figsize=(max(5.5, 0.3 * len(cols) + 3.2), max(4.5, 0.28 * len(rows) + 2.4)), layout="constrained")
    ax = fig.add_subplot()
    _heatmap(ax, fig, mat, rows, cols, cmap="viridis", vmin=0.0, vmax=vmax, bar_label="count", counts=True)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    return png(fig)


def intensity_curves(intensity: Mapping[str, Any], layer: int, title: str) -> bytes | None:
    """Centred cosine of the target emotion vs intensity level, one line per template, at ``layer``."""
    templates = [str(t) for t in get(intensity, "templates") or []]
    fig = Figure(figsize=(10.5, 5.0), layout="constrained")
    ax = fig.add_subplot()
    drawn, ticks = 0, set[int]()
    for i, tpl in enumerate(templates):
        levels = get(intensity, "levels", tpl)
        curve = at_layer(intensity, layer, "curves", tpl)
        if not isinstance(levels, Sequence) or not isinstance(curve, Sequence) or len(levels) != len(curve):
            continue
        ys = np.array([np.nan if num(v) is None else num(v) for v in curve], dtype=float)
        rho = at_layer(intensity, layer, "rho", tpl)
        target = get(intensity, "target", tpl) or "?"
        ax.plot(list(levels), ys, color=OKABE_ITO[i % len(OKABE_ITO)], marker=MARKERS[i % len(MARKERS)],
                linestyle=("-", "--", "-.", ":")[(i // len(OKABE_ITO)) % 4], linewidth=1.6,
                label=f"{tpl} → {target} (ρ = {fmt_num(value(rho), 2)})")
        drawn += 1
        ticks.update(int(v) for v in levels if num(v) is not None)
    if not drawn:
        return None
    ax.set_xticks(sorted(ticks))
    ax.set_xlabel("intensity level")
    ax.set_ylabel("centred cosine with the target emotion vector")
    _legend(ax, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title(f"{title}: intensity templates at layer {layer}", fontsize=10)
    return png(fig)


def rsa_heatmap(layers_summary: Mapping[str, Any], title: str) -> bytes | None:
    """Cross-layer RSA: Spearman correlation between the layers' cosine matrices."""
    layers = layers_of(layers_summary)
    mat = _matrix(get(layers_summary, "rsa"))
    if mat is None or mat.shape != (len(layers), len(layers)):
        return None
    finite = mat[np.isfinite(mat)]
    vmin = float(min(0.0, finite.min())) if finite.size else 0.0
    fig = Figure(figsize=(7.4, 6.2), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(mat), cmap="viridis", vmin=vmin, vmax=1.0, interpolation="nearest",
                   origin="lower")
    step = max(1, len(layers) // 12)
    ticks = list(range(0, len(layers), step))
    ax.set_xticks(ticks, labels=[str(layers[i]) for i in ticks], fontsize=8)
    ax.set_yticks(ticks, labels=[str(layers[i]) for i in ticks], fontsize=8)
    fig.colorbar(im, ax=ax, label="Spearman ρ of the cosine matrices", shrink=0.85)
    ax.set_xlabel("layer")
    ax.set_ylabel("layer")
    ax.set_title(f"{title}: cross-layer RSA (how similar the emotion geometry is between layers)", fontsize=10)
    return png(fig)
