"""Check a corpus in the emovec layout against the rules of the emovec corpus (issue #4, item 9).

Rules (the ``rule`` of a :class:`Violation`):

``json``
    a line is not a JSON object.
``schema``
    ``emotions.json``/``topics.json`` malformed; a record lacks a field, has a wrong type or value
    (unknown emotion or topic, language other than its directory, perspective not first/third/"",
    intensity ``level`` not an integer >= 1, ``value`` not in the text); a story file named after no
    emotion.
``duplicate-id``
    two records (of any kind) share an ``id``.
``banned-stem``
    an English text contains a banned stem: for a text with an emotion, that emotion's
    ``word_forms`` and ``synonyms`` plus every other emotion's ``word_forms``; for a text without one
    (neutral dialogues), every emotion's ``word_forms`` and ``synonyms``. Entries match whole words,
    case-insensitively, ``*`` matches any ending, a space any whitespace, ``'`` also ``’``. A
    Chinese text contains a ``zh_banned`` substring: its own emotion's list plus the first two of
    every other emotion's (the first two of every emotion without an emotion).
``length``
    a text is outside :data:`LENGTH_BOUNDS` (whitespace words; hanzi for Chinese).
``length-balance``
    an emotion's mean story length differs from the mean over all stories of that language by more
    than :data:`MEAN_TOLERANCE` (5 %).
``near-duplicate``
    two texts of the same language have a 5-gram Jaccard similarity above :data:`MAX_JACCARD` (0.35),
    over lower-cased word 5-grams (``\\w+`` tokens), or character 5-grams of hanzi for Chinese. Texts
    of one intensity template (identical but for the number, by design) are not compared.
``balance``
    English stories: not exactly one first-person and one third-person story per topic of
    ``topics.json`` and emotion; Chinese stories: not 8 per emotion, 4 first- and 4 third-person.
``missing``
    a ``stories/<lang>/`` directory has no file for an emotion of ``emotions.json``.
``intensity``
    an intensity template whose levels are not 1..n (n >= 2), whose emotion or language changes
    across levels, or whose texts differ in more than the number.

The checks are exact (no sampling, no MinHash); the near-duplicate search uses an inverted index of
shingles so that only pairs sharing a shingle are scored, and takes well under a second on the
built-in corpus.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import CorpusError
from .loader import (
    KIND_FILES,
    PERSPECTIVES,
    CorpusMeta,
    RawRecord,
    find_value,
    hanzi,
    iter_records,
    read_meta,
    resolve_corpus,
    story_files,
    text_length,
    uses_hanzi,
)

LENGTH_BOUNDS: dict[tuple[str, str], tuple[int, int]] = {
    ("story", "en"): (80, 130),
    ("story", "zh"): (140, 230),
    ("neutral", "en"): (60, 150),
    ("implicit", "en"): (40, 80),
    ("intensity", "en"): (25, 60),
}
"""Inclusive length bounds per (kind, language), in whitespace words (hanzi for ``zh``)."""

MEAN_TOLERANCE = 0.05
MAX_JACCARD = 0.35
SHINGLE = 5
EN_STORIES_PER_TOPIC = {"first": 1, "third": 1}
ZH_STORIES_PER_EMOTION = {"first": 4, "third": 4}
_WORD_RE = re.compile(r"\w+")


@dataclass(frozen=True)
class Violation:
    """One broken rule: where (file relative to the corpus root, line from 1 or None), which field."""

    file: str
    line: int | None
    field: str | None
    rule: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        fld = f" ({self.field})" if self.field else ""
        return f"{where}: [{self.rule}]{fld} {self.message}"


def validate_corpus(path: str | Path | None = None) -> list[Violation]:
    """Every violation of the corpus rules (see the module docstring) in a corpus; empty when clean.

    Parameters
    ----------
    path : a directory in the emovec layout; None (or ``"emovec"``) checks the built-in corpus.

    Returns
    -------
    list of Violation, ordered by file (``emotions.json``, ``topics.json``, stories by language and
    emotion, neutral, implicit, intensity, external) and line.
    """
    root, source = resolve_corpus("emovec" if path is None else path)
    try:
        meta = read_meta(root, source)
    except CorpusError as exc:
        name = "topics.json" if str(exc.path or "").endswith("topics.json") else "emotions.json"
        return [Violation(name, exc.line, exc.field, "schema", _strip_location(str(exc), exc))]
    records = list(iter_records(root, meta, languages=None, kinds=None))
    out: list[Violation] = []
    for rec in records:
        for fld, message in rec.problems:
            rule = "json" if rec.data is None and fld is None else "schema"
            out.append(Violation(rec.file, rec.line or None, fld, rule, message))
    good = [r for r in records if r.ok]
    out += _unknown_topics(good, meta)
    out += _duplicate_ids(records)
    out += _banned_stems(good, meta)
    out += _lengths(good)
    out += _length_balance(good)
    out += _near_duplicates(good)
    out += _balance(good, meta, story_files(root, meta))
    out += _intensity_templates(good)
    files = ["emotions.json", "topics.json", *(rel for _, _, rel in story_files(root, meta)),
             *KIND_FILES.values()]
    rank = {f: i for i, f in enumerate(files)}
    return sorted(out, key=lambda v: (rank.get(v.file, len(rank)), v.file, v.line or 0))


def _strip_location(message: str, exc: CorpusError) -> str:
    text = message
    if exc.path:
        where = ":".join(str(x) for x in (exc.path, exc.line) if x is not None)
        text = text.removeprefix(f"{where}: ")
    if exc.field:
        text = text.removesuffix(f" (field '{exc.field}')")
    return text


def _unknown_topics(records: Iterable[RawRecord], meta: CorpusMeta) -> list[Violation]:
    out = []
    known = set(meta.topic_ids or ())
    for rec in records:
        topic = (rec.data or {}).get("topic") or ""
        if rec.kind in ("story", "external") and topic and topic not in known:
            hint = "there is no topics.json" if meta.topics is None else "it is not in topics.json"
            out.append(Violation(rec.file, rec.line, "topic", "schema", f"unknown topic {topic!r}: {hint}"))
    return out


def _duplicate_ids(records: Iterable[RawRecord]) -> list[Violation]:
    first: dict[str, RawRecord] = {}
    out = []
    for rec in records:
        rid = (rec.data or {}).get("id")
        if not isinstance(rid, str) or not rid:
            continue
        if rid in first:
            f = first[rid]
            out.append(Violation(rec.file, rec.line, "id", "duplicate-id",
                                 f"id {rid!r} is already used on {f.file}:{f.line}"))
        else:
            first[rid] = rec
    return out


# ------------------------------------------------------------------------------------ banned stems

def stem_pattern(entry: str) -> str:
    """The regex of one banned-stem entry (whole word, ``*`` = any ending, space = any whitespace)."""
    core = re.escape(entry.rstrip("*")).replace(r"\ ", r"\s+").replace("'", "['’]")
    return r"\b" + core + (r"\w*" if entry.endswith("*") else r"\b")


@dataclass(frozen=True)
class _Stem:
    entry: str
    owner: str
    role: str  # "word form" or "synonym"
    regex: re.Pattern[str]


class BannedStems:
    """The banned-stem lists of a corpus, compiled once; :meth:`find` lists the hits in a text."""

    def __init__(self, emotions: Sequence[dict[str, Any]]) -> None:
        self._stems: dict[str, list[_Stem]] = {}
        self._zh: dict[str, list[str]] = {}
        for emo in emotions:
            name = emo["name"]
            self._stems[name] = [_Stem(e, name, role, re.compile(stem_pattern(e), re.IGNORECASE))
                                 for role, key in (("word form", "word_forms"), ("synonym", "synonyms"))
                                 for e in emo.get(key, [])]
            self._zh[name] = list(emo.get("zh_banned", []))
        self._combined: dict[str | None, tuple[re.Pattern[str] | None, list[_Stem]]] = {}

    def _english(self, emotion: str | None) -> tuple[re.Pattern[str] | None, list[_Stem]]:
        if emotion not in self._combined:
            stems = [s for name, lst in self._stems.items() for s in lst
                     if emotion is None or name == emotion or s.role == "word form"]
            regex = re.compile("|".join(f"(?:{s.regex.pattern})" for s in stems), re.IGNORECASE) if stems else None
            self._combined[emotion] = (regex, stems)
        return self._combined[emotion]

    def find(self, text: str, language: str, emotion: str | None) -> list[tuple[str, str]]:
        """``(entry, description)`` of every banned entry found in ``text`` (each entry once)."""
        hits: dict[str, str] = {}
        if language == "en":
            regex, stems = self._english(emotion or None)
            if regex is None:
                return []
            for m in regex.finditer(text):
                stem = next(s for s in stems if s.regex.fullmatch(m.group(0)))
                hits.setdefault(stem.entry, f"'{stem.entry}' ({stem.role} of {stem.owner}) matched "
                                            f"{m.group(0)!r}")
        elif uses_hanzi(language):
            for name, banned in self._zh.items():
                entries = banned if (emotion and name == emotion) else banned[:2]
                for entry in entries:
                    if entry in text:
                        own = "own list" if name == emotion else f"first two of {name}"
                        hits.setdefault(entry, f"'{entry}' (zh_banned, {own})")
        return list(hits.items())


def _banned_stems(records: Iterable[RawRecord], meta: CorpusMeta) -> list[Violation]:
    banned = BannedStems(meta.emotions)
    out = []
    for rec in records:
        d = rec.data or {}
        for _, description in banned.find(d["text"], d["language"], d.get("emotion") or None):
            out.append(Violation(rec.file, rec.line, "text", "banned-stem", f"banned stem {description}"))
    return out


# ------------------------------------------------------------------------------------------ lengths

def _lengths(records: Iterable[RawRecord]) -> list[Violation]:
    out = []
    for rec in records:
        d = rec.data or {}
        bounds = LENGTH_BOUNDS.get((rec.kind, d["language"]))
        if bounds is None:
            continue
        n = text_length(d["text"], d["language"])
        unit = "hanzi" if uses_hanzi(d["language"]) else "words"
        if not bounds[0] <= n <= bounds[1]:
            out.append(Violation(rec.file, rec.line, "text", "length",
                                 f"{n} {unit}; {rec.kind} texts in {d['language']} need {bounds[0]}-{bounds[1]}"))
    return out


def _length_balance(records: Iterable[RawRecord]) -> list[Violation]:
    lengths: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    files: dict[tuple[str, str], str] = {}
    for rec in records:
        if rec.kind != "story":
            continue
        d = rec.data or {}
        lengths[d["language"]][d["emotion"]].append(text_length(d["text"], d["language"]))
        files.setdefault((d["language"], d["emotion"]), rec.file)
    out = []
    for lang, by_emotion in lengths.items():
        if len(by_emotion) < 2:
            continue
        everything = [n for lst in by_emotion.values() for n in lst]
        mean = sum(everything) / len(everything)
        lo, hi = mean * (1 - MEAN_TOLERANCE), mean * (1 + MEAN_TOLERANCE)
        for emotion, lst in by_emotion.items():
            m = sum(lst) / len(lst)
            if not lo <= m <= hi:
                out.append(Violation(files[(lang, emotion)], None, "text", "length-balance",
                                     f"mean length of {emotion!r} is {m:.1f}; the {lang} corpus mean is "
                                     f"{mean:.1f}, so it must be within {lo:.1f}-{hi:.1f} (±5 %)"))
    return out


# ---------------------------------------------------------------------------------- near-duplicates

def shingles(text: str, language: str, n: int = SHINGLE) -> frozenset[tuple[str, ...]]:
    """The set of ``n``-grams of lower-cased ``\\w+`` words, or of hanzi for Chinese."""
    tokens = hanzi(text) if uses_hanzi(language) else _WORD_RE.findall(text.lower())
    return frozenset(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def near_duplicate_pairs(sets: Sequence[frozenset[Any]], threshold: float = MAX_JACCARD,
                         groups: Sequence[object | None] | None = None) -> list[tuple[int, int, float]]:
    """All pairs ``(i, j, jaccard)`` with ``i < j`` and Jaccard similarity above ``threshold``.

    Exact: an inverted index from shingle to the earlier sets holding it counts the shared shingles of
    every pair that shares at least one. Pairs whose ``groups`` entries are equal and not None are
    skipped.
    """
    index: dict[Any, list[int]] = defaultdict(list)
    out = []
    for j, s in enumerate(sets):
        shared: Counter[int] = Counter()
        for sh in s:
            earlier = index[sh]
            if earlier:
                shared.update(earlier)
            earlier.append(j)
        for i, c in shared.items():
            if groups is not None and groups[i] is not None and groups[i] == groups[j]:
                continue
            jac = c / (len(sets[i]) + len(s) - c)
            if jac > threshold:
                out.append((i, j, jac))
    return sorted(out)


def _near_duplicates(records: Sequence[RawRecord]) -> list[Violation]:
    by_language: dict[str, list[RawRecord]] = defaultdict(list)
    for rec in records:
        by_language[(rec.data or {})["language"]].append(rec)
    out = []
    for lang, recs in by_language.items():
        sets = [shingles(r.data["text"], lang) for r in recs]  # type: ignore[index]
        groups = [("intensity", r.data["template"]) if r.kind == "intensity" else None  # type: ignore[index]
                  for r in recs]
        for i, j, jac in near_duplicate_pairs(sets, MAX_JACCARD, groups):
            a, b = recs[i], recs[j]
            unit = "character" if uses_hanzi(lang) else "word"
            out.append(Violation(b.file, b.line, "text", "near-duplicate",
                                 f"{unit} {SHINGLE}-gram Jaccard {jac:.2f} with {a.file}:{a.line} "
                                 f"({a.data['id']}); max {MAX_JACCARD}"))  # type: ignore[index]
    return out


# ------------------------------------------------------------------------------------------ balance

def _balance(records: Iterable[RawRecord], meta: CorpusMeta, files: list[tuple[str, str, str]]) -> list[Violation]:
    out = []
    present: dict[str, set[str]] = defaultdict(set)
    for lang, emo, _ in files:
        present[lang].add(emo)
    for lang, emotions in present.items():
        for emo in meta.emotion_names:
            if emo not in emotions:
                out.append(Violation(f"stories/{lang}/{emo}.jsonl", None, None, "missing",
                                     f"no {lang} stories for emotion {emo!r}"))
    cells: dict[tuple[str, str], Counter[tuple[str, str]]] = defaultdict(Counter)
    for rec in records:
        if rec.kind == "story":
            d = rec.data or {}
            cells[(d["language"], d["emotion"])][(d["topic"], d["perspective"])] += 1
    topics = meta.topic_ids
    for (lang, emo), counts in cells.items():
        rel = f"stories/{lang}/{emo}.jsonl"
        if lang == "en" and topics is not None:
            for topic in topics:
                got = {p: counts.get((topic, p), 0) for p in PERSPECTIVES}
                if got != EN_STORIES_PER_TOPIC:
                    out.append(Violation(rel, None, "topic", "balance",
                                         f"topic {topic!r}: {got['first']} first-person and {got['third']} "
                                         "third-person stories; expected exactly 1 and 1"))
            others = sum(n for (t, p), n in counts.items() if t not in topics or p not in PERSPECTIVES)
            if others:
                out.append(Violation(rel, None, "perspective", "balance",
                                     f"{others} stories without a known topic and a first/third perspective"))
        elif lang == "zh":
            got = {p: sum(n for (_, q), n in counts.items() if q == p) for p in PERSPECTIVES}
            total = sum(counts.values())
            if got != ZH_STORIES_PER_EMOTION or total != sum(ZH_STORIES_PER_EMOTION.values()):
                out.append(Violation(rel, None, "perspective", "balance",
                                     f"{total} stories ({got['first']} first-person, {got['third']} "
                                     "third-person); expected 8 (4 and 4)"))
    return out


# ---------------------------------------------------------------------------------------- intensity

def _intensity_templates(records: Iterable[RawRecord]) -> list[Violation]:
    by_template: dict[str, list[RawRecord]] = defaultdict(list)
    for rec in records:
        if rec.kind == "intensity":
            by_template[(rec.data or {})["template"]].append(rec)
    out = []
    for template, recs in by_template.items():
        data = [r.data or {} for r in recs]
        levels = sorted(d["level"] for d in data)
        if levels != list(range(1, len(levels) + 1)) or len(levels) < 2:
            out.append(Violation(recs[0].file, recs[0].line, "level", "intensity",
                                 f"template {template!r} has levels {levels}; expected 1..n with n >= 2"))
        for key in ("emotion", "language"):
            values = {d[key] for d in data}
            if len(values) > 1:
                out.append(Violation(recs[0].file, recs[0].line, key, "intensity",
                                     f"template {template!r} mixes {key}s {sorted(values)}"))
        first = _template_text(data[0])
        for rec, d in zip(recs[1:], data[1:]):
            if _template_text(d) != first:
                out.append(Violation(rec.file, rec.line, "text", "intensity",
                                     f"text differs from level {data[0]['level']} of template {template!r} "
                                     "in more than the value"))
    return out


def _template_text(d: dict[str, Any]) -> str:
    text: str = d["text"]
    m = find_value(text, d["value"])
    assert m is not None  # guaranteed by the schema check
    return text[:m.start()] + "{value}" + text[m.end():]


__all__ = ["LENGTH_BOUNDS", "MAX_JACCARD", "MEAN_TOLERANCE", "BannedStems", "Violation",
           "near_duplicate_pairs", "shingles", "stem_pattern", "validate_corpus"]
