"""The analyses' only door to a store: a readout's pooled array with its labels, the emotions table,
and the stimulus texts (for text baselines), selected lazily.

Everything returned is an xarray object; activations stay dask-backed (chunks = zarr chunks) until an
analysis reduces them, so opening a store of any size costs only its metadata.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

import emovec_store
from emovec_store import Store
from emovec_store.errors import InputError
from emovec_store.layout import readout_layout

from ._common import as_labels

#: Readouts tried, in order, for the story analyses when none is named.
PREFERRED_READOUTS = ("mean_from_50", "mean", "last")
#: Stimulus kinds that carry an emotion label and serve as training stories.
STORY_KINDS = ("story", "external")


@dataclass(frozen=True)
class ReadoutData:
    """One readout of one model, ready for the analyses.

    ``pooled`` has dims ``(layer, stimulus, hidden)`` (float32, lazy) and every stimulus label as a
    coordinate; ``emotions`` is the store's emotions table; ``model_attrs``/``readout_attrs`` the
    provenance the results record.
    """

    model: str
    readout: str
    pooled: xr.DataArray
    emotions: xr.Dataset
    model_attrs: dict[str, Any] = field(default_factory=dict)
    readout_attrs: dict[str, Any] = field(default_factory=dict)

    def kinds(self) -> list[str]:
        return sorted(set(as_labels(self.pooled["kind"])))


def open_store(store: str | Path | Store) -> Store:
    """A finalized store (analyses never read half-written activations)."""
    return store if isinstance(store, Store) else emovec_store.open(store)


def pooled_readouts(store: Store, model: str) -> list[str]:
    """The model's pooled (not per-token) readouts."""
    return [r for r in store.readouts(model) if readout_layout(store.readout_attrs(model, r)) == "pooled"]


def story_readout(store: Store, model: str, readout: str | None = None) -> str:
    """The readout the story analyses use: ``readout`` if given, else the first preferred one present."""
    available = pooled_readouts(store, model)
    if readout is not None:
        if readout not in available:
            raise InputError(f"model {model!r} in {store.location!r} has no pooled readout {readout!r}; "
                             f"available: {', '.join(available) or 'none'}")
        return readout
    for name in PREFERRED_READOUTS:
        if name in available:
            return name
    with_stories = [r for r in available if set(STORY_KINDS) & set(_kinds(store, model, r))]
    if not with_stories:
        raise InputError(f"model {model!r} in {store.location!r} has no pooled readout over stories; "
                         f"readouts: {', '.join(available) or 'none'}")
    return with_stories[0]


def _kinds(store: Store, model: str, readout: str) -> list[str]:
    return sorted(set(as_labels(store.dataset(model, readout)["kind"])))


def open_readout(store: Store, model: str, readout: str, *, layers: Sequence[int] | None = None) -> ReadoutData:
    """A readout as :class:`ReadoutData`; ``layers`` (hidden_states indices) selects some layers."""
    ds = store.dataset(model, readout)
    if "pooled" not in ds:
        raise InputError(f"readout {model}/{readout} is per-token; analyses read pooled readouts")
    pooled = ds["pooled"]
    if layers is not None:
        stored = [int(x) for x in pooled["layer"].values]
        missing = [int(x) for x in layers if int(x) not in stored]
        if missing:
            raise InputError(f"layer(s) {', '.join(map(str, missing))} not stored for {model}/{readout}; "
                             f"stored: {stored[0]}..{stored[-1]} ({len(stored)} layers)")
        pooled = pooled.sel(layer=[int(x) for x in layers])
    return ReadoutData(model=model, readout=readout, pooled=pooled, emotions=store.emotions,
                       model_attrs=store.model_attrs(model), readout_attrs=store.readout_attrs(model, readout))


def select(pooled: xr.DataArray, *, kinds: Sequence[str] | None = None, language: str | None = None,
           labelled: bool = False) -> xr.DataArray:
    """Rows of some kinds and/or one language; ``labelled`` keeps only rows with an emotion label."""
    keep = np.ones(pooled.sizes["stimulus"], dtype=bool)
    if kinds is not None:
        keep &= np.isin(as_labels(pooled["kind"]), list(kinds))
    if language is not None and "language" in pooled.coords:
        keep &= as_labels(pooled["language"]) == language
    if labelled:
        keep &= as_labels(pooled["emotion"]) != ""
    return pooled.isel(stimulus=np.flatnonzero(keep))


def main_language(pooled: xr.DataArray) -> str | None:
    """The most common language among the story rows (the analyses' training language)."""
    if "language" not in pooled.coords:
        return None
    stories = select(pooled, kinds=STORY_KINDS, labelled=True)
    langs, counts = np.unique(as_labels(stories["language"]), return_counts=True)
    return str(langs[np.argmax(counts)]) if len(langs) else None


def texts_for(store: Store, pooled: xr.DataArray) -> tuple[list[str] | None, str]:
    """The texts of ``pooled``'s stimuli, in its row order, and where they came from.

    From the store when it was extracted with ``--store-text``; else from the corpus the store names
    (the built-in corpus, or a directory relative to the store), matched by ``text_sha256``. Returns
    ``(None, reason)`` when neither has every text.
    """
    wanted = as_labels(pooled["text_sha256"]) if "text_sha256" in pooled.coords else None
    stored = store.stimulus_columns(["text"])  # only the texts: the rest of the table stays on disk
    if "text" in stored:
        rows = pd.Index(as_labels(stored["stimulus"])).get_indexer(as_labels(pooled["stimulus"]))
        if (rows >= 0).all():
            texts = stored["text"].values  # str objects: as_labels would copy them to a fixed-width array
            return [str(texts[i]) for i in rows], "store"
    del stored
    if wanted is None:
        return None, "the store has no texts and no text_sha256 to find them in a corpus"
    corpus = dict(store.stimuli_attrs.get("corpus", {}))
    source = str(corpus.get("source") or "")
    if source in ("", "builtin"):
        name: str | Path = "emovec" if source == "builtin" else str(corpus.get("name") or "")
    else:
        # recorded relative to the store directory; a zip export sits where its directory did
        base = Path(store.location) if "://" not in store.location else Path.cwd()
        name = (base / source).resolve()
    if not name:
        return None, "the store records no corpus source and holds no texts"
    from emovec.corpus import load_corpus  # a corpus import costs ~0.1 s; only text baselines need it

    try:
        table = load_corpus(name, languages=None)
    except InputError as exc:
        return None, f"corpus {str(name)!r} named by the store could not be read ({exc})"
    by_hash = dict(zip(table["text_sha256"], table["text"]))
    missing = [h for h in wanted if h not in by_hash]
    if missing:
        return None, (f"{len(missing)} of {len(wanted)} texts are not in corpus {str(name)!r} "
                      "(extract with --store-text to keep them in the store)")
    return [by_hash[h] for h in wanted], f"corpus {corpus.get('name', name)} {corpus.get('version', '')}".strip()


def read_norms(path: str | Path) -> xr.Dataset:
    """Human norms from a tab-separated file with a header ``word valence arousal dominance``
    (``#`` lines are comments; ``dominance`` optional; values 0..1), e.g. an NRC VAD extract.

    Returns a Dataset with dim ``emotion`` (the words) and float ``valence``, ``arousal``,
    ``dominance`` (NaN where missing). Errors name the file, line and field.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read norms file ({exc})", path=str(path)) from None
    header: list[str] | None = None
    rows: dict[str, dict[str, float]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#"):
            continue
        cells = [c.strip() for c in line.split("\t")]
        if header is None:
            header = cells
            missing = [c for c in ("word", "valence", "arousal") if c not in header]
            if missing:
                raise InputError(f"the header needs columns word, valence, arousal (tab-separated); "
                                 f"missing {', '.join(missing)}", path=str(path), line=number)
            continue
        if len(cells) != len(header):
            raise InputError(f"expected {len(header)} tab-separated fields, got {len(cells)}", path=str(path),
                             line=number)
        record = dict(zip(header, cells))
        values: dict[str, float] = {}
        for key in ("valence", "arousal", "dominance"):
            text = record.get(key, "")
            try:
                value = float(text) if text else float("nan")
            except ValueError:
                raise InputError(f"expected a number, got {text!r}", path=str(path), line=number,
                                 field=key) from None
            if not (np.isnan(value) or 0 <= value <= 1):
                raise InputError(f"norms are on 0..1, got {value}", path=str(path), line=number, field=key)
            values[key] = value
        rows[record["word"]] = values
    if not rows:
        raise InputError("no norms in the file", path=str(path))
    words = list(rows)
    return xr.Dataset({k: ("emotion", np.asarray([rows[w][k] for w in words])) for k in ("valence", "arousal",
                                                                                         "dominance")},
                      coords={"emotion": np.asarray(words, dtype=object)}, attrs={"norms_source": path.name})


def with_norms(emotions: xr.Dataset, norms: xr.Dataset) -> xr.Dataset:
    """The emotions table with its norms replaced by ``norms`` where the file rates an emotion (the
    store's value stays where the file has none); ``norms_source`` says what was used."""
    out = emotions.copy()
    names = as_labels(emotions["emotion"])
    rated = set(as_labels(norms["emotion"]))
    for key in ("valence", "arousal", "dominance"):
        values = np.asarray(out[key].values, dtype=np.float64).copy()
        for i, name in enumerate(names):
            if name in rated:
                new = float(norms[key].sel(emotion=name))
                if np.isfinite(new):
                    values[i] = new
        out[key] = ("emotion", values)
    n = sum(1 for name in names if name in rated)
    source = f"{norms.attrs.get('norms_source', 'norms file')} ({n} of {len(names)} emotions)"
    quadrants = np.asarray(out["quadrant"].values, dtype=object).copy()
    derived = 0
    for i in range(len(names)):  # a corpus without quadrants gets them from the norms' halves
        v, a = float(out["valence"][i]), float(out["arousal"][i])
        if not quadrants[i] and np.isfinite(v) and np.isfinite(a):
            quadrants[i] = ("pleasant" if v >= 0.5 else "unpleasant") + ("-high" if a >= 0.5 else "-low")
            derived += 1
    out["quadrant"] = ("emotion", quadrants)
    if derived:
        source += f"; quadrants of {derived} emotions from valence/arousal split at 0.5"
    out.attrs["norms_source"] = source
    return out
