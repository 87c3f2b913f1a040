"""Counts and lengths of a corpus, and the generated tables of the datasheet (``corpus/README.md``).

Token counts need a tokenizer object: the corpus does not load models. Get one from the engine's
resolver, ``emovec_store.engine.load_tokenizer("smollm2-135m")`` (what ``emovec corpus stats
--tokenizer`` does).
"""
from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emovec.common.files import atomic_path

from .errors import CorpusError
from .loader import PERSPECTIVES, iter_records, length_unit, load_corpus, read_meta, resolve_corpus, text_length
from .validate import MEAN_TOLERANCE

if TYPE_CHECKING:
    import pandas as pd

DATASHEET_BEGIN = "<!-- BEGIN GENERATED TABLES (emovec corpus stats --markdown); do not edit by hand -->"
DATASHEET_END = "<!-- END GENERATED TABLES -->"


def token_counts(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Tokens per text, without special tokens (BOS/EOS), for a Hugging Face tokenizer."""
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [len(ids) for ids in encoded]


def _describe(values: Sequence[int], prefix: str) -> dict[str, float]:
    return {f"{prefix}_mean": statistics.fmean(values),
            f"{prefix}_sd": statistics.stdev(values) if len(values) > 1 else float("nan"),
            f"{prefix}_min": min(values), f"{prefix}_max": max(values)}


def corpus_stats(path: str | Path | None = None, tokenizer: Any = None) -> pd.DataFrame:
    """Counts and lengths per kind × language × emotion, in the row order of the stimulus table.

    Parameters
    ----------
    path : a corpus directory in the emovec layout; None for the built-in corpus. Every language
        and kind is included.
    tokenizer : None, or a tokenizer object (anything ``transformers`` tokenizers-like; load one with
        ``emovec_store.engine.load_tokenizer``). A path or model name is refused: the corpus layer
        does not load models.

    Returns
    -------
    DataFrame with columns ``kind``, ``language``, ``emotion`` ("" for texts without one), ``n``,
    ``unit`` (``words``: whitespace-separated words, or ``hanzi`` for Chinese), ``length_mean``,
    ``length_sd`` (sample sd; NaN for one text), ``length_min``, ``length_max``, and with a tokenizer
    ``tokens_mean``, ``tokens_sd``, ``tokens_min``, ``tokens_max`` (tokens without special tokens).
    """
    import pandas as pd

    if isinstance(tokenizer, (str, Path)):
        raise CorpusError(f"corpus_stats takes a tokenizer object, not {str(tokenizer)!r}; load one with "
                          "emovec_store.engine.load_tokenizer", field="tokenizer")
    table = load_corpus("emovec" if path is None else path, languages=None)
    lengths = [text_length(t, lang) for t, lang in zip(table["text"], table["language"])]
    tokens = token_counts(tokenizer, list(table["text"])) if tokenizer is not None else None
    rows = []
    for (kind, language, emotion), idx in table.groupby(["kind", "language", "emotion"], sort=False).indices.items():
        row: dict[str, Any] = {"kind": kind, "language": language, "emotion": emotion, "n": len(idx),
                               "unit": length_unit(language)}
        row.update(_describe([lengths[i] for i in idx], "length"))
        if tokens is not None:
            row.update(_describe([tokens[i] for i in idx], "tokens"))
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["corpus"] = dict(table.attrs["corpus"])
    return out


def balance_table(path: str | Path | None = None, *, language: str = "en") -> pd.DataFrame:
    """Story counts per emotion × topic × perspective for one language, zero cells included.

    Returns
    -------
    DataFrame with columns ``emotion``, ``topic``, ``perspective`` and ``n``, ordered by the emotions
    of ``emotions.json``, the topics of ``topics.json`` (then topics found only in stories) and
    perspective (first, third, then any other).
    """
    import pandas as pd

    table = load_corpus("emovec" if path is None else path, languages=(language,), kinds=("story",))
    root, source = resolve_corpus("emovec" if path is None else path)
    meta = read_meta(root, source)
    topics = list(meta.topic_ids or [])
    topics += [t for t in dict.fromkeys(table["topic"]) if t not in topics]
    perspectives = list(PERSPECTIVES) + sorted(set(table["perspective"]) - set(PERSPECTIVES))
    counts = Counter(zip(table["emotion"], table["topic"], table["perspective"]))
    rows = [{"emotion": e, "topic": t, "perspective": p, "n": counts.get((e, t, p), 0)}
            for e in meta.emotion_names for t in topics for p in perspectives]
    return pd.DataFrame(rows, columns=["emotion", "topic", "perspective", "n"])


# ------------------------------------------------------------------------------------- datasheet

def _md(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    rule = [{"r": "---:", "c": ":---:"}.get(a, ":---") for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _msd(values: Sequence[int]) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.1f} ± {sd:.1f}"


def _range(values: Sequence[int]) -> str:
    if not values:
        return "–"
    return str(min(values)) if min(values) == max(values) else f"{min(values)}–{max(values)}"


def datasheet_tables(path: str | Path | None = None) -> str:
    """The generated part of the datasheet, as Markdown (``emovec corpus stats --markdown``).

    Counts by kind and language, stories and lengths per emotion, the English emotion × topic ×
    perspective grid, the topics of the Chinese stories, the intensity templates and the neutral tasks.
    """
    name = "emovec" if path is None else path
    table = load_corpus(name, languages=None)
    root, source = resolve_corpus(name)
    meta = read_meta(root, source)
    corpus = table.attrs["corpus"]
    table = table.assign(length=[text_length(t, lang) for t, lang in zip(table["text"], table["language"])])
    stories = table[table["kind"] == "story"]
    languages = list(dict.fromkeys(stories["language"]))
    topics = list(meta.topic_ids or dict.fromkeys(stories["topic"]))
    number = {t: i + 1 for i, t in enumerate(topics)}
    parts = [f"Corpus `{corpus['name']}` version {corpus['version']}, sha256 `{corpus['sha256']}` "
             "(the hash that stores record; English and Chinese, all kinds)."]

    # 1. contents
    rows = []
    for (kind, lang), grp in table.groupby(["kind", "language"], sort=False):
        lengths = list(grp["length"])
        rows.append([kind, lang, "/".join(dict.fromkeys(grp["split"])), len(grp), length_unit(lang),
                     _msd(lengths), _range(lengths)])
    parts.append("### Contents\n\n" + _md(["kind", "language", "split", "texts", "unit", "length mean ± sd",
                                           "min–max"], rows, "lllrlrr"))

    # 2. per emotion
    quadrant = {e["name"]: e.get("quadrant") or "" for e in meta.emotions}
    implicit = Counter(table.loc[table["kind"] == "implicit", "emotion"])
    header = ["emotion", "quadrant"]
    for lang in languages:
        unit = length_unit(lang)
        header += [f"{lang} stories", f"{lang} first/third", f"{lang} {unit} mean ± sd", f"{lang} min–max"]
    header.append("implicit")
    rows = []
    for emo in meta.emotion_names:
        row: list[Any] = [emo, quadrant.get(emo, "")]
        for lang in languages:
            grp = stories[(stories["language"] == lang) & (stories["emotion"] == emo)]
            persp = Counter(grp["perspective"])
            row += [len(grp), f"{persp.get('first', 0)}/{persp.get('third', 0)}", _msd(list(grp["length"])),
                    _range(list(grp["length"]))]
        row.append(implicit.get(emo, 0))
        rows.append(row)
    total: list[Any] = ["**all**", ""]
    bands = []
    for lang in languages:
        grp = stories[stories["language"] == lang]
        persp = Counter(grp["perspective"])
        lengths = list(grp["length"])
        total += [len(grp), f"{persp.get('first', 0)}/{persp.get('third', 0)}", _msd(lengths), _range(lengths)]
        mean = statistics.fmean(lengths)
        bands.append(f"{lang} {mean * (1 - MEAN_TOLERANCE):.1f}–{mean * (1 + MEAN_TOLERANCE):.1f} "
                     f"{length_unit(lang)}")
    total.append(sum(implicit.values()))
    rows.append(total)
    parts.append("### Stories per emotion\n\n" + _md(header, rows, "ll" + "rrrr" * len(languages) + "r")
                 + "\n\nEvery emotion's mean story length must lie within ±5 % of its language's mean: "
                 + "; ".join(bands) + ".")

    # 3. English grid and topic legend
    if "en" in languages and topics:
        en = stories[stories["language"] == "en"]
        cells = Counter(zip(en["emotion"], en["topic"], en["perspective"]))
        rows = []
        for emo in meta.emotion_names:
            row = [emo] + [f"{cells.get((emo, t, 'first'), 0)}+{cells.get((emo, t, 'third'), 0)}" for t in topics]
            rows.append(row + [int((en["emotion"] == emo).sum())])
        parts.append("### English stories: emotion × topic (first-person + third-person)\n\n"
                     "Columns are the topic numbers of the legend below.\n\n"
                     + _md(["emotion", *map(str, range(1, len(topics) + 1)), "total"], rows,
                           "l" + "c" * len(topics) + "r"))
    if topics:
        by_topic = Counter(zip(stories["language"], stories["topic"], stories["perspective"]))
        domain = {t["id"]: t.get("domain", "") for t in meta.topics or ()}
        header = ["#", "topic", "domain"] + [f"{lang} first+third" for lang in languages]
        rows = [[number[t], f"`{t}`", domain.get(t, "")]
                + [f"{by_topic.get((lang, t, 'first'), 0)}+{by_topic.get((lang, t, 'third'), 0)}" for lang in languages]
                for t in topics]
        parts.append("### Topics\n\n" + _md(header, rows, "rll" + "r" * len(languages)))

    # 4. Chinese topics per emotion
    if "zh" in languages:
        zh = stories[stories["language"] == "zh"]
        rows = []
        for emo in meta.emotion_names:
            grp = zh[zh["emotion"] == emo]
            row = [emo]
            for p in PERSPECTIVES:
                nums = sorted(number.get(t, 0) for t in grp.loc[grp["perspective"] == p, "topic"])
                row.append(", ".join(map(str, nums)) or "–")
            rows.append(row)
        parts.append("### Chinese stories: topics per emotion and perspective\n\n"
                     "Topic numbers as in the legend above.\n\n"
                     + _md(["emotion", "first-person topics", "third-person topics"], rows, "lll"))

    # 5. intensity templates
    inten = table[table["kind"] == "intensity"]
    if len(inten):
        rows = []
        for template, grp in inten.groupby("template", sort=False):
            grp = grp.sort_values("level")
            rows.append([f"`{template}`", grp["emotion"].iloc[0], len(grp), " → ".join(grp["value"]),
                         _range(list(grp["length"]))])
        parts.append("### Intensity templates\n\n" + _md(["template", "emotion", "levels", "value by level",
                                                          "words"], rows, "llrll"))

    # 6. neutral tasks
    tasks = Counter((rec.data or {}).get("task") or "(none)"
                    for rec in iter_records(root, meta, kinds=("neutral",)) if rec.ok)
    if tasks:
        neutral = table[table["kind"] == "neutral"]
        rows = [[task, n] for task, n in tasks.items()]
        parts.append("### Neutral dialogues by task\n\n" + _md(["task", "dialogues"], rows)
                     + f"\n\nLength: {_msd(list(neutral['length']))} words (range {_range(list(neutral['length']))}).")
    return "\n\n".join(parts) + "\n"


def render_datasheet(readme: str, tables: str) -> str:
    """``readme`` with the text between the generated-table markers replaced by ``tables``.

    Raises :class:`CorpusError` (a ValueError) when the markers are missing."""
    if DATASHEET_BEGIN not in readme or DATASHEET_END not in readme:
        raise CorpusError(f"the datasheet has no generated-table markers ({DATASHEET_BEGIN!r} ... "
                          f"{DATASHEET_END!r})")
    head, rest = readme.split(DATASHEET_BEGIN, 1)
    _, tail = rest.split(DATASHEET_END, 1)
    return f"{head}{DATASHEET_BEGIN}\n\n{tables}\n{DATASHEET_END}{tail}"


def update_datasheet(path: Path, tables: str) -> None:
    """Rewrite the generated tables of the datasheet at ``path`` in place (``emovec corpus stats
    --datasheet``). A file that is not UTF-8, lacks the markers, or cannot be read or written is a
    :class:`CorpusError` naming it, and the file is left as it was."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=str(path)) from None
    except OSError as exc:
        raise CorpusError(f"cannot read: {exc.strerror or type(exc).__name__}", path=str(path)) from None
    try:
        updated = render_datasheet(text, tables)
    except CorpusError as exc:
        raise CorpusError(str(exc), path=str(path), field="datasheet") from None
    try:
        with atomic_path(path.resolve()) as tmp:  # through a symbolic link, as a plain write would
            tmp.write_text(updated, encoding="utf-8")
    except OSError as exc:
        raise CorpusError(f"cannot write: {exc.strerror or type(exc).__name__}", path=str(path)) from None


__all__ = ["DATASHEET_BEGIN", "DATASHEET_END", "balance_table", "corpus_stats", "datasheet_tables",
           "render_datasheet", "token_counts", "update_datasheet"]
