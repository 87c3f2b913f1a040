"""The report's lead: the answers a researcher wants, read off one model's numbers.

Each answer is decided by a fixed rule on numbers the analyses already computed (no statistic is
computed here), at the model's default layer, which the pipeline fixes in advance (2/3 depth):

- valence / arousal axis: the cross-validated (leave-one-emotion-out) r. "yes" when its 95 % CI lies
  above 0 and its permutation p < 0.05, else "no evidence".
- emotion-specific directions: the probe's accuracy margin over the best text baseline. "yes" when
  its CI lies above 0; otherwise the probe does not beat the baseline (or the baseline beats it).
- implicit scenarios: top-1 accuracy, "above chance" when its CI lies above chance and p < 0.05.

Every answer also says at which layers the same rule's CI condition holds and how the default layer
compares with the embedding layer (hidden_states 0, the lexical floor).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .doc import Inline, Strong
from .fmt import (
    Est,
    above_zero,
    at_layer,
    ci,
    fmt_est,
    fmt_num,
    get,
    layer_ranges,
    layers_of,
    p_value,
    per_layer,
    value,
)

ALPHA = 0.05
FLOOR_LAYER = 0


@dataclass(frozen=True)
class Answer:
    """One lead question with its verdict and the numbers behind it."""

    question: str
    verdict: str
    positive: bool
    evidence: str
    layers: str

    def parts(self) -> tuple[Inline, ...]:
        """Text runs for a bullet: question, emphasised verdict, the evidence and the layers."""
        tone = "yes" if self.positive else "no"
        tail = f" {self.layers}" if self.layers else ""
        return (f"{self.question}: ", Strong(self.verdict, tone), f". {self.evidence}{tail}")


def skip_reason(model: Mapping[str, Any], *keys: str) -> str | None:
    """The first recorded skip reason among ``keys`` in the model's ``skipped`` table."""
    skipped = get(model, "skipped") or {}
    for key in keys:
        if key in skipped:
            return str(skipped[key])
    return None


def _floor_text(section: Any, key: tuple[str, ...], default: int, unit: str, name: str, signed: bool) -> str:
    """How the default layer compares with the embedding layer for a per-layer metric."""
    if default == FLOOR_LAYER or FLOOR_LAYER not in layers_of(section):
        return "" if default == FLOOR_LAYER else "The embedding layer was not analysed, so there is no lexical floor."
    floor = at_layer(section, FLOOR_LAYER, *key)
    floor_value, here = value(floor), value(at_layer(section, default, *key))
    if floor_value is None:
        return ""
    rise = None if here is None else here - floor_value
    already = " (already above 0 there: part of it is lexical)" if above_zero(floor) else ""
    return (f"At the embedding layer ({FLOOR_LAYER}, the lexical floor) {name} = "
            f"{fmt_est(floor, unit, signed=signed)}{already}; default minus embedding layer = "
            f"{fmt_num(rise, signed=True)}.")


def _where(section: Any, key: tuple[str, ...], what: str) -> str:
    layers = layers_of(section)
    chosen = [layer for layer, e in zip(layers, per_layer(section, *key)) if above_zero(e)]
    where = f"at layers {layer_ranges(chosen, layers)}" if chosen else "at no layer"
    return f"{what} {where} ({len(chosen)} of {len(layers)} analysed)."


def axis_answer(model: Mapping[str, Any], norm: str) -> Answer:
    """Does the model have a ``norm`` ("valence" or "arousal") axis? From ``geometry.cv_<norm>``."""
    question = f"{norm.capitalize()} axis"
    geometry = get(model, "geometry")
    default = get(model, "default_layer")
    key = (f"cv_{norm}",)
    est: Est | None = at_layer(geometry, default, *key)
    if value(est) is None:
        why = skip_reason(model, f"geometry.cv_{norm}", "geometry") or "no cross-validated r in the results"
        return Answer(question, "not measured", False, f"Skipped: {why}.", "")
    p = p_value(est)
    positive = above_zero(est) and p is not None and p < ALPHA
    evidence = (f"Cross-validated {norm} r (direction fitted leaving each emotion out) at the default layer "
                f"{default} = {fmt_est(est, 'emotions')}.")
    if not positive:
        evidence += (" The CI covers 0 or lies below it." if not above_zero(est)
                     else " The permutation p is not below 0.05." if p is not None else " There is no permutation p.")
    layers = " ".join(t for t in (_where(geometry, key, "The CI lies above 0"),
                                  _floor_text(geometry, key, default, "emotions", "r", False)) if t)
    return Answer(question, "yes" if positive else "no evidence", positive, evidence, layers)


def baseline_answer(model: Mapping[str, Any]) -> Answer:
    """Do emotion-specific directions beat the text baselines? From ``probes.margin`` and ``probes.selected``."""
    question = "Emotion-specific directions that beat text baselines"
    probes = get(model, "probes")
    default = get(model, "default_layer")
    margin = at_layer(probes, default, "margin")
    if value(margin) is None:
        why = skip_reason(model, "probes") or "no probe margin in the results"
        return Answer(question, "not measured", False, f"Skipped: {why}.", "")
    best = get(probes, "best_baseline") or "best baseline"
    bounds = ci(margin)
    positive = above_zero(margin)
    if positive:
        verdict = "yes"
    elif bounds is not None and bounds[1] < 0:
        verdict = f"no: the {best} baseline beats the probe"
    else:
        verdict = f"no: the probe does not beat the {best} baseline"
    evidence = (f"Probe accuracy minus the best text baseline ({best}: "
                f"{fmt_est(get(probes, 'baselines', best), 'stories')}) at the default layer {default} = "
                f"{fmt_est(margin, 'stories', signed=True)}; probe accuracy there "
                f"{fmt_est(at_layer(probes, default, 'probe'), 'stories')}, chance {fmt_num(get(probes, 'chance'))}.")
    selected = get(probes, "selected", "accuracy")
    if value(selected) is not None:
        chosen = ", ".join(str(x) for x in get(probes, "selected", "layers") or []) or "?"
        evidence += (f" With the layer chosen on each training fold only (chosen: {chosen}), held-out accuracy = "
                     f"{fmt_est(selected, 'stories')}.")
    layers = " ".join(t for t in (_where(probes, ("margin",), "The margin's CI lies above 0"),
                                  _floor_text(probes, ("margin",), default, "stories", "the margin", True)) if t)
    return Answer(question, verdict, positive, evidence, layers)


def implicit_answer(model: Mapping[str, Any]) -> Answer | None:
    """Do the vectors name the emotion of implicit scenarios (no emotion word)? None when not run."""
    runs = get(model, "implicit") or {}
    if not runs:
        return None
    readout, implicit = next(iter(runs.items()))
    default = get(model, "default_layer")
    top1 = at_layer(implicit, default, "top1")
    chance = get(implicit, "chance_top1")
    question = f"Implicit scenarios ({readout} readout)"
    if value(top1) is None:
        return Answer(question, "not measured", False, "No top-1 accuracy at the default layer.", "")
    bounds = ci(top1)
    p = p_value(top1)
    positive = (bounds is not None and chance is not None and bounds[0] > chance and p is not None and p < ALPHA)
    evidence = (f"Top-1 accuracy (target emotion = nearest vector) at the default layer {default} = "
                f"{fmt_est(top1, 'scenarios')}; chance {fmt_num(chance)}.")
    return Answer(question, "above chance" if positive else "no evidence above chance", positive, evidence, "")


def answers(model: Mapping[str, Any]) -> list[Answer]:
    """The lead answers for one model (a ``results["models"][slug]`` dict), in report order."""
    out = [axis_answer(model, "valence"), axis_answer(model, "arousal"), baseline_answer(model)]
    implicit = implicit_answer(model)
    return out + ([implicit] if implicit is not None else [])
