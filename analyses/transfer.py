"""Probe transfer between languages within one model: fit on one language's stories, test on another's.

The built-in corpus has 960 English stories and 192 Chinese ones on the same 24 emotions (different
stories, never translations). Three accuracies per layer, all with the probe of :mod:`.probes`
(``StandardScaler`` → multinomial logistic regression, hyperparameters fixed in advance) and its
statistics (topic-cluster bootstrap CI, within-topic permutation p of the fixed predictions):

- ``transfer``: fitted on every source story, scored on every target story (no story in both);
- ``transfer_centred``: the same after subtracting each language's own mean activation (over its
  stories, labels unused) from its stories: a language offset in the residual stream, which the
  probe's standardisation (fitted on the source) cannot remove, no longer counts against transfer;
- ``within_source`` / ``within_target``: topic-grouped cross-validation inside one language, the
  reference that transfer is read against. The Chinese subset is small (8 stories per emotion) and
  its topics are confounded with perspective and emotion groups (corpus/README.md), so its
  within-language CV is a rough reference; the English one is the probe accuracy of ``analyze``.

Only emotions with stories in both languages are used, in both.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from emovec_store import Store
from emovec_store.errors import InputError

from ._common import as_labels
from .probes import accuracy_estimates, probe_predictions, topic_folds, transfer_predictions
from .source import STORY_KINDS, open_readout, open_store, select, story_readout
from .stats import DEFAULT_BOOTSTRAP, DEFAULT_PERMUTATIONS, Estimate
from .steer import default_layer

#: The per-layer accuracies of a :class:`TransferResult`.
SERIES = ("transfer", "transfer_centred", "within_source", "within_target")


@dataclass(frozen=True)
class TransferResult:
    """Per-layer accuracies (aligned with ``layers``) of one model; see the module docstring."""

    model: str
    readout: str
    source: str
    target: str
    layers: tuple[int, ...]
    classes: tuple[str, ...]
    n_source: int
    n_target: int
    transfer: tuple[Estimate, ...]
    transfer_centred: tuple[Estimate, ...]
    within_source: tuple[Estimate, ...]
    within_target: tuple[Estimate, ...]
    default_layer: int

    @property
    def chance(self) -> float:
        return 1.0 / len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "readout": self.readout, "source": self.source, "target": self.target,
                "layer": list(self.layers), "classes": list(self.classes), "chance": self.chance,
                "n_source": self.n_source, "n_target": self.n_target, "default_layer": self.default_layer,
                **{name: [e.to_dict() for e in getattr(self, name)]
                   for name in SERIES}}


def parse_languages(spec: str) -> tuple[str, str]:
    """``"en:zh"`` → ``("en", "zh")`` (two different language codes)."""
    source, sep, target = spec.partition(":")
    if not sep or not source or not target or source == target or ":" in target:
        raise InputError(f"--transfer {spec!r}: expected SOURCE:TARGET, two different language codes (e.g. en:zh)")
    return source, target


def language_transfer(store: str | Store, model: str, *, source: str = "en", target: str = "zh",
                      readout: str | None = None, layers: Sequence[int] | None = None, n_splits: int = 5,
                      n_bootstrap: int = DEFAULT_BOOTSTRAP, n_permutations: int = DEFAULT_PERMUTATIONS,
                      seed: int = 0) -> TransferResult:
    """Transfer and within-language probe accuracies of ``model`` (see the module docstring).

    Refused in one line when the readout holds no labelled stories of ``source`` or ``target``
    (a store extracted with the default ``--language en`` has no Chinese stories).
    """
    st = open_store(store)
    name = story_readout(st, model, readout)
    pooled = open_readout(st, model, name, layers=layers).pooled
    stories = {lang: select(pooled, kinds=STORY_KINDS, language=lang, labelled=True) for lang in (source, target)}
    for lang, rows in stories.items():
        if rows.sizes["stimulus"] == 0:
            raise InputError(f"readout {model}/{name} of {st.location!r} has no labelled {lang!r} stories; "
                             f"extract with --language {source} --language {target}")
    present = [set(as_labels(rows["emotion"])) for rows in stories.values()]
    classes = sorted(present[0] & present[1])
    if len(classes) < 2:
        raise InputError(f"the {source!r} and {target!r} stories share {len(classes)} emotions (need 2 or more)")
    src, tgt = (rows.isel(stimulus=np.isin(as_labels(rows["emotion"]), classes)) for rows in stories.values())
    resampling = {"n_bootstrap": n_bootstrap, "n_permutations": n_permutations, "seed": seed}
    within = []
    for rows in (src, tgt):
        n_topics = len(set(as_labels(rows["topic"])))
        fold = topic_folds(rows["topic"], min(n_splits, n_topics))
        within.append(tuple(accuracy_estimates(probe_predictions(rows, fold), **resampling)))
    transfer = tuple(accuracy_estimates(transfer_predictions(src, tgt), **resampling))
    src64, tgt64 = src.astype(np.float64), tgt.astype(np.float64)  # float16 stores overflow a float16 mean
    centred = tuple(accuracy_estimates(transfer_predictions(src64 - src64.mean("stimulus"),
                                                            tgt64 - tgt64.mean("stimulus")), **resampling))
    layer_ids = tuple(int(x) for x in pooled["layer"].values)
    return TransferResult(model=model, readout=name, source=source, target=target, layers=layer_ids,
                          classes=tuple(classes), n_source=int(src.sizes["stimulus"]),
                          n_target=int(tgt.sizes["stimulus"]), transfer=transfer, transfer_centred=centred,
                          within_source=within[0],
                          within_target=within[1], default_layer=default_layer(layer_ids))
