"""The CKA heatmaps of `emovec compare`, drawn from given matrices into PNG bytes."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from .plots import png


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
        fig.colorbar(im, ax=ax, label="linear CKA")
    return png(fig)
