"""Reading and printing numbers of a results dict: estimates, CIs, layer lists. Nothing here computes a statistic.

An estimate is a dict ``{"value", "ci": [lo, hi] | None, "n", "p"?, ...}`` (``Estimate.to_dict()`` of the
analyses); any of it may be missing or None, and every function here accepts that.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

Est = Mapping[str, Any]
DASH = "–"


def get(d: Any, *keys: str | int) -> Any:
    """``d[k1][k2]...``, or None as soon as a level is missing, None or not a container."""
    for key in keys:
        if isinstance(d, Mapping):
            d = d.get(key)
        elif isinstance(d, Sequence) and not isinstance(d, str) and isinstance(key, int) and -len(d) <= key < len(d):
            d = d[key]
        else:
            return None
        if d is None:
            return None
    return d


def num(x: Any) -> float | None:
    """A finite float, or None (for None, NaN, inf and anything that is not a number)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def value(e: Est | None) -> float | None:
    """The point value of an estimate."""
    return num(get(e, "value"))


def ci(e: Est | None) -> tuple[float, float] | None:
    """The (lo, hi) CI of an estimate when both ends are finite."""
    lo, hi = num(get(e, "ci", 0)), num(get(e, "ci", 1))
    return None if lo is None or hi is None else (lo, hi)


def p_value(e: Est | None) -> float | None:
    """The permutation p of an estimate."""
    return num(get(e, "p"))


def n_of(e: Est | None) -> int | None:
    """The ``n`` of an estimate."""
    n = get(e, "n")
    return int(n) if isinstance(n, int) and not isinstance(n, bool) else None


def above_zero(e: Est | None) -> bool:
    """Whether the CI lies entirely above 0."""
    bounds = ci(e)
    return bounds is not None and bounds[0] > 0


def fmt_num(x: Any, digits: int = 3, *, signed: bool = False) -> str:
    """``x`` with ``digits`` decimals (``+`` for positive numbers when ``signed``); a dash for no number."""
    v = num(x)
    if v is None:
        return DASH
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def fmt_p(p: Any) -> str:
    """A p-value with two significant digits (``p = 0.001``); a dash when there is none."""
    v = num(p)
    return DASH if v is None else f"{v:.2g}"


def fmt_ci(e: Est | None, digits: int = 3, *, signed: bool = False) -> str:
    """``[lo, hi]``, or ``(no CI)``."""
    bounds = ci(e)
    if bounds is None:
        return "(no CI)"
    return f"[{fmt_num(bounds[0], digits, signed=signed)}, {fmt_num(bounds[1], digits, signed=signed)}]"


def fmt_cell(e: Est | None, digits: int = 3, *, signed: bool = False) -> str:
    """``value [lo, hi]`` for a table cell (its n goes in the column header or :func:`fmt_est`)."""
    if value(e) is None:
        return DASH
    return f"{fmt_num(value(e), digits, signed=signed)} {fmt_ci(e, digits, signed=signed)}"


def fmt_est(e: Est | None, unit: str = "", digits: int = 3, *, signed: bool = False) -> str:
    """``value [lo, hi] (95 % CI), n = N unit, p = P``: a number as the report prints it in prose."""
    if value(e) is None:
        return "not available"
    out = f"{fmt_num(value(e), digits, signed=signed)} {fmt_ci(e, digits, signed=signed)}"
    n = n_of(e)
    out += f", n = {n}{' ' + unit if unit else ''}" if n is not None else ", n unknown"
    if p_value(e) is not None:
        out += f", p = {fmt_p(p_value(e))}"
    return out


def n_header(label: str, ests: Sequence[Est | None], unit: str = "") -> str:
    """A column header carrying the column's n: ``label (n = 24 emotions)`` or ``label (n = 10–12)``."""
    ns = sorted({n for n in (n_of(e) for e in ests) if n is not None})
    if not ns:
        return label
    span = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    return f"{label} (n = {span}{' ' + unit if unit else ''})"


def layers_of(section: Any) -> list[int]:
    """The ``layer`` list of a section (empty when missing)."""
    layers = get(section, "layer")
    return [int(x) for x in layers] if isinstance(layers, Sequence) and not isinstance(layers, str) else []


def per_layer(section: Any, *keys: str) -> list[Any]:
    """``section[keys...]`` as a list aligned with the section's layers (None-padded when missing or short)."""
    n = len(layers_of(section))
    values = get(section, *keys)
    if not isinstance(values, Sequence) or isinstance(values, str):
        return [None] * n
    return [values[i] if i < len(values) else None for i in range(n)]


def at_layer(section: Any, layer: int | None, *keys: str) -> Any:
    """The entry of the per-layer list ``section[keys...]`` at ``layer`` (None when absent)."""
    layers = layers_of(section)
    if layer is None or layer not in layers:
        return None
    return per_layer(section, *keys)[layers.index(layer)]


def layer_ranges(chosen: Sequence[int], analysed: Sequence[int]) -> str:
    """``chosen`` layers as runs of consecutive *analysed* layers: ``2–5, 9, 12–30`` (empty string for none)."""
    order = [int(x) for x in analysed]
    picked = set(int(x) for x in chosen)
    runs: list[list[int]] = []
    previous_taken = False
    for layer in order:
        if layer in picked:
            if previous_taken:
                runs[-1].append(layer)
            else:
                runs.append([layer])
        previous_taken = layer in picked
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs)
