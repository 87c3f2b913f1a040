"""Views of a token trace: a heatmap PNG (emotion × token) and an HTML page with the tokens coloured.

Both take plain arrays: ``values`` ``(emotion, position)`` of projections at one layer, the emotion
names and the token strings. Colours are diverging (blue below zero, orange above), scaled to the
largest absolute value shown, so the scale is per view and stated on it.
"""
from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from .plots import png


def trace_heatmap_png(values: np.ndarray, emotions: Sequence[str], tokens: Sequence[str], *, title: str = "") -> bytes:
    """Emotion rows × token columns, centred at zero."""
    vmax = float(np.nanmax(np.abs(values))) or 1.0
    fig = Figure(figsize=(max(6.0, 0.28 * len(tokens) + 2), 0.32 * len(emotions) + 1.6), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(values, aspect="auto", cmap="PuOr_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
    ax.set_yticks(range(len(emotions)), list(emotions), fontsize=7)
    ax.set_xticks(range(len(tokens)), [t.strip() or "␣" for t in tokens], rotation=90, fontsize=6)
    fig.colorbar(im, ax=ax, label="projection on unit vector")
    if title:
        ax.set_title(title, fontsize=9)
    return png(fig)


def _colour(x: float, vmax: float) -> str:
    a = min(1.0, abs(x) / vmax) if vmax > 0 else 0.0
    rgb = (230, 159, 0) if x > 0 else (0, 114, 178)
    return f"rgba({rgb[0]},{rgb[1]},{rgb[2]},{a:.2f})"


def trace_html(values: np.ndarray, emotions: Sequence[str], tokens: Sequence[str], *, title: str = "") -> str:
    """One line of coloured tokens per emotion (hover a token for its value); self-contained."""
    vmax = float(np.nanmax(np.abs(values))) or 1.0
    rows = []
    for e, series in zip(emotions, values):
        spans = "".join(f'<span title="{float(v):+.3f}" style="background:{_colour(float(v), vmax)}">'
                        f"{html.escape(t)}</span>" for t, v in zip(tokens, series))
        rows.append(f"<tr><th>{html.escape(e)}</th><td>{spans}</td></tr>")
    return ("<!doctype html><meta charset='utf-8'><title>emovec trace</title>"
            "<style>body{font-family:sans-serif}td{font-family:monospace;white-space:pre-wrap}"
            "th{text-align:right;padding-right:1em;font-weight:normal}</style>"
            f"<h1>{html.escape(title)}</h1><p>orange: positive, blue: negative projection; full colour = "
            f"{vmax:.3f}</p><table>{''.join(rows)}</table>")

