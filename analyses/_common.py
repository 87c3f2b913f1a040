"""Small helpers every analysis family shares: labels as plain strings, and one BLAS thread."""
from __future__ import annotations

from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits


def as_labels(values: Any) -> np.ndarray:
    """Labels (a coordinate, an array, a list; numpy ``StringDType`` from a store included) as a
    fixed-width ``str`` array of the same shape (``astype(str)`` alone cannot cast StringDType)."""
    return np.asarray(getattr(values, "values", values), dtype=object).astype(str)


def one_thread() -> threadpool_limits:
    """BLAS and OpenMP held to one thread for the enclosed block.

    The analyses' kernels are many small matrices (24 × 24 eigenproblems, probe fits on hundreds
    of rows, k-means on 24 points), where thread start-up and spinning cost far more than they give:
    on a loaded 2-core machine one thread ran them 5–50× faster (measured in geometry and probes).
    """
    return threadpool_limits(limits=1)
