"""A synthetic store with planted emotion structure, for the analysis pipeline's tests.

Eight emotions with human norms on the valence × arousal circumplex, stories over several topics,
neutral texts, implicit scenarios and intensity prompts, and two readouts (``mean_from_50`` over
everything, ``assistant`` over the scenarios). With ``structure=True`` the class means lie on a
valence axis and an arousal axis (plus an emotion-specific direction each) and scenarios point at
their target; with ``structure=False`` every row is noise.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import emovec_store

EMOTIONS = {  # name: (quadrant, valence, arousal)
    "joyful": ("pleasant-high", 0.95, 0.75), "excited": ("pleasant-high", 0.85, 0.95),
    "calm": ("pleasant-low", 0.80, 0.10), "content": ("pleasant-low", 0.85, 0.30),
    "furious": ("unpleasant-high", 0.10, 0.95), "terrified": ("unpleasant-high", 0.05, 0.85),
    "sad": ("unpleasant-low", 0.10, 0.25), "weary": ("unpleasant-low", 0.25, 0.10),
}
WORDS = {e: f"{e}ish" for e in EMOTIONS}


def stimulus_table(*, n_per_cell: int = 1, n_topics: int = 6, languages: tuple[str, ...] = ("en",)) -> pd.DataFrame:
    rows = []
    for lang in languages:
        prefix, word = ("story", "story") if lang == "en" else (f"{lang}.story", f"{lang} story")
        for e in EMOTIONS:
            for t in range(n_topics):
                for k in range(n_per_cell):
                    rows.append({"stimulus": f"{prefix}.{e}.t{t}.{k}", "kind": "story", "emotion": e,
                                 "topic": f"t{t}", "language": lang, "split": "train",
                                 "text": f"a {word} {k} on topic {t} {WORDS[e]}"})
    for i in range(12):
        rows.append({"stimulus": f"neutral.{i}", "kind": "neutral", "emotion": "", "topic": "", "language": "en",
                     "split": "train", "text": f"how do I convert {i} miles to km", "task": "unit"})
    for e in EMOTIONS:
        for i in range(2):
            rows.append({"stimulus": f"implicit.{e}.{i}", "kind": "implicit", "emotion": e, "topic": "",
                         "language": "en", "split": "test", "text": f"scenario {i} of {e}"})
    for tpl, e in (("drop", "terrified"), ("win", "joyful")):
        for level in range(1, 6):
            rows.append({"stimulus": f"intensity.{tpl}.{level}", "kind": "intensity", "emotion": e, "topic": "",
                         "language": "en", "split": "test", "text": f"{tpl} at level {level}",
                         "template": tpl, "level": level, "value": str(level)})
    table = pd.DataFrame(rows).fillna({"task": "", "template": "", "value": ""})
    table["level"] = table.get("level", pd.Series(0, index=table.index)).fillna(0).astype(int)
    table.attrs["corpus"] = {
        "name": "planted", "version": "1", "sha256": "0" * 64, "emotions": list(EMOTIONS), "source": "",
        "emotion_table": [{"name": e, "quadrant": q, "valence": v, "arousal": a, "dominance": None,
                           "norms_source": "made up for tests"} for e, (q, v, a) in EMOTIONS.items()]}
    return table


def activations(table: pd.DataFrame, *, n_layers: int, hidden: int, structure: bool, seed: int) -> np.ndarray:
    """``(layer, stimulus, hidden)``: structure grows with depth (layer 0 carries none)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((hidden, hidden)))[0]
    val_axis, aro_axis, own = basis[:, 0], basis[:, 1], basis[:, 2:2 + len(EMOTIONS)]
    out = rng.standard_normal((n_layers, len(table), hidden)).astype(np.float32) + 3.0  # an offset, as real LMs have
    if not structure:
        return out
    names = list(EMOTIONS)
    for i, row in enumerate(table.itertuples()):
        if not row.emotion:
            continue
        q, v, a = EMOTIONS[row.emotion]
        signal = 3 * (v - 0.5) * val_axis + 3 * (a - 0.5) * aro_axis + 1.5 * own[:, names.index(row.emotion)]
        if row.kind == "intensity":
            signal = signal * row.level / 3
        for layer in range(1, n_layers):
            out[layer, i] += (layer / (n_layers - 1)) * signal * 2
    return out


def make_analysis_store(path: Path, *, structure: bool = True, n_layers: int = 4, hidden: int = 24,
                        seed: int = 0, n_per_cell: int = 1, finalize: bool = True,
                        languages: tuple[str, ...] = ("en",), language_offset: float = 0.0) -> emovec_store.Store:
    """``languages``: stories in each (the same planted structure); English ids are ``story.*``, others
    ``<lang>.story.*``, shifted by ``language_offset`` along one random unit direction."""
    table = stimulus_table(n_per_cell=n_per_cell, languages=languages)
    data = activations(table, n_layers=n_layers, hidden=hidden, structure=structure, seed=seed)
    if language_offset:
        direction = np.random.default_rng(seed + 1).standard_normal(hidden)
        data[:, (table["language"] != "en").to_numpy()] += language_offset * direction / np.linalg.norm(direction)
    st = emovec_store.create(path, table, store_text=True)
    st.add_model("m", {"model": "m", "n_layers": n_layers - 1, "d_model": hidden}, identity={"name": "m"})
    layers = list(range(n_layers))
    readouts = {"mean_from_50": np.arange(len(table)),
                "assistant": np.flatnonzero(table["kind"].isin(["implicit", "intensity"]).to_numpy())}
    for name, rows in readouts.items():
        n = len(rows)
        st.add_readout("m", name, stimulus_ids=list(table["stimulus"].iloc[rows]), layers=layers, hidden=hidden,
                       storage_dtype="float32", batches=[(s, min(s + 16, n)) for s in range(0, n, 16)],
                       chunk_rows=16, n_tokens=list(60 + rows % 7), attrs={"spec": name})
        block = data[:, rows] + (5.0 if name == "assistant" else 0.0)  # another position, another offset
        with st.writer("m", name) as writer:
            for b in writer.pending():
                start, stop = writer.rows(b)
                writer.write(b, block[:, start:stop])
    if finalize:
        st.finalize()
    return emovec_store.open(path) if finalize else st
