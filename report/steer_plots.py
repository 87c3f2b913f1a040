"""The dose–response plot of a steering run, drawn from its cell table (records with ``condition``,
``strength``, ``scorer``, ``mean``, ``ci_low``, ``ci_high``) into PNG bytes.

One panel per scorer; each target emotion and its control emotion are lines with 95% CI bands, the
random directions thin grey lines. Nothing is computed here but the layout.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from .plots import MARKERS, OKABE_ITO, png

RANDOM_PREFIX = "random:"


def dose_response_png(cells: Sequence[Mapping[str, Any]], scorers: Sequence[str], *, title: str = "") -> bytes:
    """Panels of mean score against strength for each of ``scorers`` (perplexity on a log axis)."""
    conditions = sorted({str(c["condition"]) for c in cells})
    emotions = [c for c in conditions if not c.startswith(RANDOM_PREFIX)]
    cols = min(3, len(scorers))
    rows = -(-len(scorers) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.3 * rows), layout="constrained")
    for i, scorer in enumerate(scorers):
        ax = fig.add_subplot(rows, cols, i + 1)
        for cond in conditions:
            series = sorted((c for c in cells if c["scorer"] == scorer and c["condition"] == cond),
                            key=lambda c: float(c["strength"]))
            x = [float(c["strength"]) for c in series]
            y = [float(c["mean"]) for c in series]
            if cond.startswith(RANDOM_PREFIX):
                ax.plot(x, y, color="#9a9a9a", lw=0.9, ls="--",
                        label="random (matched norm)" if cond == f"{RANDOM_PREFIX}0" else None)
                continue
            k = emotions.index(cond)
            colour = OKABE_ITO[k % len(OKABE_ITO)]
            ax.plot(x, y, color=colour, marker=MARKERS[k % len(MARKERS)], ms=4, label=cond)
            ax.fill_between(x, [float(c["ci_low"]) for c in series], [float(c["ci_high"]) for c in series],
                            color=colour, alpha=0.15, lw=0)
        if scorer == "perplexity":
            ax.set_yscale("log")
        ax.axvline(0, color="#000000", lw=0.5)
        ax.set_title(scorer, fontsize=10)
        ax.set_xlabel("strength (× mean residual norm)")
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    return png(fig)
