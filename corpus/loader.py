"""Load a corpus in the emovec layout as a stimulus table.

The emovec layout (the built-in corpus, and what ``emovec corpus import`` writes)::

    emotions.json                 {"name", "version", "emotions": [{"name", "quadrant", "valence",
                                   "arousal", "dominance", "word_forms", "synonyms", "zh_banned"}, ...]}
    topics.json                   {"name", "version", "topics": [{"id", "domain", "description"}, ...]}
    stories/<lang>/<emotion>.jsonl  id, emotion, topic, perspective, language, text
    neutral.jsonl                 id, kind="neutral", language, text   (optional: task)
    implicit.jsonl                id, kind="implicit", emotion, language, text
    intensity.jsonl               id, kind="intensity", template, level, value, emotion, language, text
    external.jsonl                id, kind="external", language, text  (optional: emotion, topic)

Only ``emotions.json`` is required; every other file is optional. Records may carry extra fields,
which the loader ignores. In ``emotions.json`` only ``name`` is required per emotion.

Row order of the table (stable, independent of the order of ``languages``): English first, then
the other languages in alphabetical order; within a language, stories (by emotion in the order of
``emotions.json``, then file order), then neutral, implicit, intensity and external records (each in
file order).

The corpus hash (``table.attrs["corpus"]["sha256"]``) is the sha256 of the UTF-8 bytes of one line
per row, in table order: the JSON array ``[stimulus, kind, emotion, topic, split, language,
perspective, text, template, level, value]`` written with ``ensure_ascii=False`` and separators
``(",", ":")``, followed by ``"\\n"``. It depends only on the loaded records (so it differs between
selections of languages or kinds) and is the same on every machine.
"""
from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emovec.common.hashing import json_lines_sha256, text_sha256

from .errors import CorpusError
from .jsonparse import JsonProblem, parse_json

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    import pandas as pd

BUILTIN_NAMES: tuple[str, ...] = ("emovec", "builtin")
KINDS: tuple[str, ...] = ("story", "neutral", "implicit", "intensity", "external")
KIND_FILES: dict[str, str] = {"neutral": "neutral.jsonl", "implicit": "implicit.jsonl",
                              "intensity": "intensity.jsonl", "external": "external.jsonl"}
PERSPECTIVES: tuple[str, ...] = ("first", "third")
COLUMNS: tuple[str, ...] = ("stimulus", "kind", "emotion", "topic", "split", "language", "perspective",
                            "text", "text_sha256", "template", "level", "value", "task")
HASH_COLUMNS: tuple[str, ...] = ("stimulus", "kind", "emotion", "topic", "split", "language", "perspective",
                                 "text", "template", "level", "value")
EMOTION_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")
LANGUAGE_RE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]+)*")
_HANZI_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_HANZI_LANGUAGES = frozenset({"zh"})


# --------------------------------------------------------------------------------------------- text

def uses_hanzi(language: str) -> bool:
    """Whether lengths and shingles of ``language`` are counted in Chinese characters (``zh``, ``zh-*``)."""
    return language.split("-")[0] in _HANZI_LANGUAGES


def length_unit(language: str) -> str:
    """``"hanzi"`` for Chinese, ``"words"`` (whitespace-separated) otherwise."""
    return "hanzi" if uses_hanzi(language) else "words"


def text_length(text: str, language: str) -> int:
    """Length of a text in the unit of :func:`length_unit`: whitespace words, or hanzi for Chinese."""
    if uses_hanzi(language):
        return len(_HANZI_RE.findall(text))
    return len(text.split())


def hanzi(text: str) -> list[str]:
    """The Chinese characters of ``text`` in order (punctuation, digits and Latin letters dropped)."""
    return _HANZI_RE.findall(text)


# ----------------------------------------------------------------------------------- corpus root

def resolve_corpus(name_or_path: str | Path = "emovec") -> tuple[Traversable, str]:
    """The root of a corpus and how to name it: ``(files("emovec.corpus"), "builtin")`` or ``(path, path)``.

    ``"emovec"`` and ``"builtin"`` name the built-in corpus (to load a directory with one of these
    names, pass ``"./emovec"``); anything else must be a directory in the emovec layout.
    """
    if isinstance(name_or_path, str) and name_or_path in BUILTIN_NAMES:
        return resources.files("emovec.corpus"), "builtin"
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        raise CorpusError(
            f"no corpus at {str(name_or_path)!r}: expected {' or '.join(map(repr, BUILTIN_NAMES))} "
            "(the built-in corpus) or a directory in the emovec layout; import other corpora with "
            "`emovec corpus import`")
    return path, str(path.resolve())


def _where(root: Traversable, rel: str) -> str:
    return str(root.joinpath(*rel.split("/")))


def unreadable_reason(path: Path) -> str | None:
    """Why ``path`` cannot be read as a corpus file (a directory, a broken or looping symbolic link,
    a device or pipe), or None when it is a regular file."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if path.is_symlink():
            return "a symbolic link that loops" if exc.errno == errno.ELOOP else "a symbolic link to nothing"
        return f"cannot read it: {exc.strerror or type(exc).__name__}"
    if stat.S_ISDIR(mode):
        return "a directory, not a file"
    if not stat.S_ISREG(mode):
        return "not a regular file (a device, pipe or socket)"
    return None


def _read_bytes(root: Traversable, rel: str) -> bytes:
    node = root.joinpath(*rel.split("/"))
    reason = unreadable_reason(node) if isinstance(node, Path) else None
    if reason is not None:
        raise CorpusError(f"unreadable: {reason}", path=_where(root, rel))
    try:
        return node.read_bytes()
    except OSError as exc:
        raise CorpusError(f"cannot read: {exc.strerror or type(exc).__name__}", path=_where(root, rel)) from None


def _read_text(root: Traversable, rel: str) -> str:
    data = _read_bytes(root, rel)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CorpusError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=_where(root, rel),
                          line=line) from None


def _present(root: Traversable, rel: str) -> bool:
    """Whether ``rel`` exists in any form: a broken link or a directory in its place is then an
    error when it is read, not a file silently left out."""
    node = root.joinpath(*rel.split("/"))
    return os.path.lexists(node) if isinstance(node, Path) else node.is_file()


def read_json(root: Traversable, rel: str) -> Any:
    """Parse a JSON file of a corpus; a syntax error is a :class:`CorpusError` naming file and line."""
    text = _read_text(root, rel)
    try:
        return parse_json(text)
    except JsonProblem as problem:
        raise CorpusError(problem.message, path=_where(root, rel), line=problem.line, field=problem.field) from None


def iter_jsonl(text: str) -> Iterator[tuple[int, Any, JsonProblem | None]]:
    """``(line, object, problem)`` for each non-blank line of a JSON Lines text (line numbers from 1).

    Lines are split on ``"\\n"`` only (a raw U+2028 inside a JSON string is not a line break).
    ``problem`` says why a line is not strict corpus JSON (:func:`~.jsonparse.parse_json`: syntax,
    NaN/Infinity, lone surrogates, too deep); ``object`` is then None.
    """
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield number, parse_json(line, line=number), None
        except JsonProblem as problem:
            yield number, None, problem


# ------------------------------------------------------------------------------------ metadata

@dataclass(frozen=True)
class CorpusMeta:
    """What ``emotions.json`` (and ``topics.json``, when present) say about a corpus."""

    name: str
    version: str
    emotions: tuple[dict[str, Any], ...]
    topics: tuple[dict[str, Any], ...] | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def emotion_names(self) -> list[str]:
        return [e["name"] for e in self.emotions]

    @property
    def topic_ids(self) -> list[str] | None:
        return None if self.topics is None else [t["id"] for t in self.topics]


def _check_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) and x.strip() for x in value)


def read_meta(root: Traversable, source: str = "") -> CorpusMeta:
    """Read and check ``emotions.json`` and the optional ``topics.json`` of a corpus root."""
    if not _present(root, "emotions.json"):
        raise CorpusError(f"no emotions.json in {str(root)!r}: not a corpus in the emovec layout; "
                          "import other corpora with `emovec corpus import`", path=_where(root, "emotions.json"))
    where = _where(root, "emotions.json")
    doc = read_json(root, "emotions.json")
    if not isinstance(doc, dict):
        raise CorpusError("expected a JSON object", path=where)
    for key in ("name", "version"):
        if not isinstance(doc.get(key), str) or not doc[key].strip():
            raise CorpusError("expected a non-empty string", path=where, field=key)
    emotions = doc.get("emotions")
    if not isinstance(emotions, list):
        raise CorpusError("expected a list of emotion objects", path=where, field="emotions")
    seen: set[str] = set()
    for i, emo in enumerate(emotions):
        at = f"emotions[{i}]"
        if not isinstance(emo, dict):
            raise CorpusError("expected an object", path=where, field=at)
        name = emo.get("name")
        if not isinstance(name, str) or not EMOTION_NAME_RE.fullmatch(name):
            raise CorpusError(f"emotion name {name!r} must be lower-case letters, digits, '-' or '_'",
                              path=where, field=f"{at}.name")
        if name in seen:
            raise CorpusError(f"emotion {name!r} is listed twice", path=where, field=f"{at}.name")
        seen.add(name)
        for key in ("word_forms", "synonyms", "zh_banned"):
            if key in emo and not _check_str_list(emo[key]):
                raise CorpusError("expected a list of non-empty strings", path=where, field=f"{at}.{key}")
        for key in ("valence", "arousal", "dominance"):
            value = emo.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise CorpusError(f"expected a number or null, got {value!r}", path=where, field=f"{at}.{key}")
        if "quadrant" in emo and not isinstance(emo["quadrant"], str):
            raise CorpusError("expected a string", path=where, field=f"{at}.quadrant")
    extra = {k: v for k, v in doc.items() if k not in ("name", "version", "emotions")}
    return CorpusMeta(name=doc["name"], version=doc["version"], emotions=tuple(emotions),
                      topics=_read_topics(root), source=source, extra=extra)


def _read_topics(root: Traversable) -> tuple[dict[str, Any], ...] | None:
    if not _present(root, "topics.json"):
        return None
    where = _where(root, "topics.json")
    doc = read_json(root, "topics.json")
    topics = doc.get("topics") if isinstance(doc, dict) else None
    if not isinstance(topics, list):
        raise CorpusError("expected a list of topic objects", path=where, field="topics")
    seen: set[str] = set()
    for i, topic in enumerate(topics):
        tid = topic.get("id") if isinstance(topic, dict) else None
        if not isinstance(tid, str) or not tid.strip() or tid != tid.strip():
            raise CorpusError(f"topic id {tid!r} must be a non-empty string", path=where, field=f"topics[{i}].id")
        if tid in seen:
            raise CorpusError(f"topic id {tid!r} is listed twice", path=where, field=f"topics[{i}].id")
        seen.add(tid)
    return tuple(topics)


# ------------------------------------------------------------------------------------- records

@dataclass(frozen=True)
class RawRecord:
    """One line of a corpus file as read, with the schema problems found in it.

    ``file`` is relative to the corpus root (``stories/en/calm.jsonl``); ``kind`` follows from the
    file; ``data`` is None when the line is not a JSON object; ``problems`` are ``(field, message)``.
    """

    file: str
    line: int
    kind: str
    data: dict[str, Any] | None
    problems: tuple[tuple[str | None, str], ...]
    file_language: str | None = None
    file_emotion: str | None = None

    @property
    def ok(self) -> bool:
        return self.data is not None and not self.problems


def _describe(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _need_str(data: dict[str, Any], key: str, problems: list[tuple[str | None, str]], *,
              empty_ok: bool = False, required: bool = True) -> str | None:
    if key not in data:
        if required:
            problems.append((key, "missing field"))
        return None
    value = data[key]
    if not isinstance(value, str):
        problems.append((key, f"expected a string, got {_describe(value)}"))
        return None
    if not empty_ok and not value.strip():
        problems.append((key, "must not be empty"))
        return None
    return value


def check_record(kind: str, data: dict[str, Any], *, emotions: Iterable[str],
                 file_language: str | None = None, file_emotion: str | None = None
                 ) -> list[tuple[str | None, str]]:
    """Schema problems of one record of ``kind`` as ``(field, message)`` pairs (empty when fine)."""
    known = emotions if isinstance(emotions, (set, frozenset, dict)) else set(emotions)
    problems: list[tuple[str | None, str]] = []
    rid = _need_str(data, "id", problems)
    if rid is not None and (rid != rid.strip() or any(c.isspace() for c in rid)):
        problems.append(("id", f"id {rid!r} must not contain whitespace"))
    lang = _need_str(data, "language", problems)
    if lang is not None:
        if not LANGUAGE_RE.fullmatch(lang):
            problems.append(("language", f"{lang!r} is not a language code such as 'en' or 'zh'"))
        elif file_language is not None and lang != file_language:
            problems.append(("language", f"{lang!r} in a file under stories/{file_language}/"))
    _need_str(data, "text", problems)
    if kind == "story":
        if "kind" in data and data["kind"] != "story":
            problems.append(("kind", f"expected 'story', got {_describe(data['kind'])}"))
    else:
        got = _need_str(data, "kind", problems)
        if got is not None and got != kind:
            problems.append(("kind", f"expected {kind!r}, got {got!r}"))
    emotion_required = kind in ("story", "implicit", "intensity")
    emotion = _need_str(data, "emotion", problems, required=emotion_required, empty_ok=not emotion_required)
    if emotion:
        if emotion not in known:
            problems.append(("emotion", f"emotion {emotion!r} is not in emotions.json "
                                        f"(known: {', '.join(sorted(known)) or 'none'})"))
        elif file_emotion is not None and emotion != file_emotion:
            problems.append(("emotion", f"emotion {emotion!r} in the file of {file_emotion!r}"))
    if kind in ("story", "external"):
        _need_str(data, "topic", problems, empty_ok=True, required=kind == "story")
    if kind == "story":
        persp = _need_str(data, "perspective", problems, empty_ok=True)
        if persp and persp not in PERSPECTIVES:
            problems.append(("perspective", f"expected 'first', 'third' or '', got {persp!r}"))
    if kind == "neutral":
        _need_str(data, "task", problems, required=False, empty_ok=True)
    if kind == "intensity":
        _need_str(data, "template", problems)
        level = data.get("level")
        if "level" not in data:
            problems.append(("level", "missing field"))
        elif isinstance(level, bool) or not isinstance(level, int) or level < 1:
            problems.append(("level", f"expected an integer >= 1, got {_describe(level)}"))
        value = _need_str(data, "value", problems)
        text = data.get("text")
        if value is not None and isinstance(text, str) and find_value(text, value) is None:
            problems.append(("value", f"value {value!r} does not occur in the text as a number"))
    return problems


def find_value(text: str, value: str) -> re.Match[str] | None:
    """The first occurrence of ``value`` in ``text`` not glued to other digits, letters or separators."""
    return re.search(r"(?<![\w.,])" + re.escape(value) + r"(?![\w]|[.,]\d)", text)


def _file_records(root: Traversable, rel: str, kind: str, emotions: set[str], *,
                  file_language: str | None = None, file_emotion: str | None = None) -> Iterator[RawRecord]:
    try:
        text = _read_text(root, rel)
    except CorpusError as exc:  # unreadable or not UTF-8: one problem for the file (at the first bad line)
        where = ":".join(str(x) for x in (exc.path, exc.line) if x is not None)
        message = str(exc).removeprefix(f"{where}: ")
        yield RawRecord(rel, exc.line or 0, kind, None, ((None, message),), file_language, file_emotion)
        return
    for line, obj, error in iter_jsonl(text):
        if error is not None:
            yield RawRecord(rel, line, kind, None, ((error.field, error.message),), file_language, file_emotion)
        elif not isinstance(obj, dict):
            yield RawRecord(rel, line, kind, None, ((None, f"expected a JSON object, got {_describe(obj)}"),),
                            file_language, file_emotion)
        else:
            problems = check_record(kind, obj, emotions=emotions, file_language=file_language,
                                    file_emotion=file_emotion)
            yield RawRecord(rel, line, kind, obj, tuple(problems), file_language, file_emotion)


def story_files(root: Traversable, meta: CorpusMeta) -> list[tuple[str, str, str]]:
    """``(language, emotion, relative path)`` of every ``stories/<lang>/<name>.jsonl`` file.

    Languages are ordered English first, then alphabetically; files by the order of ``emotions.json``,
    then files whose name is not an emotion of ``emotions.json``, alphabetically.
    """
    stories = root.joinpath("stories")
    if not stories.is_dir():
        return []
    rank = {name: i for i, name in enumerate(meta.emotion_names)}
    out = []
    for lang_dir in sorted((d for d in stories.iterdir() if d.is_dir()), key=lambda d: language_rank(d.name)):
        # every *.jsonl entry, readable or not: a broken link or a directory so named is reported
        files = [f.name[: -len(".jsonl")] for f in lang_dir.iterdir() if f.name.endswith(".jsonl")]
        for emo in sorted(files, key=lambda n: (rank.get(n, len(rank)), n)):
            out.append((lang_dir.name, emo, f"stories/{lang_dir.name}/{emo}.jsonl"))
    return out


def language_rank(language: str) -> tuple[int, str]:
    """Sort key of languages: English first, then alphabetical."""
    return (0 if language == "en" else 1, language)


def iter_records(root: Traversable, meta: CorpusMeta, *, languages: Iterable[str] | None = None,
                 kinds: Iterable[str] | None = None) -> Iterator[RawRecord]:
    """Every record of the chosen kinds, file by file (stories first), with its schema problems.

    Story directories of languages that are not asked for are not read. A story file whose name is
    not an emotion of ``emotions.json`` yields one record with a problem on field ``emotion``.
    """
    langs = None if languages is None else set(languages)
    wanted = set(KINDS if kinds is None else kinds)
    names = set(meta.emotion_names)
    if "story" in wanted:
        yield from _broken_story_entries(root)
        for lang, emo, rel in story_files(root, meta):
            if langs is not None and lang not in langs:
                continue
            if emo not in names:
                yield RawRecord(rel, 0, "story", None, (("emotion", f"{emo!r} (the file name) is not an emotion "
                                                                    "of emotions.json"),), lang, emo)
                continue
            yield from _file_records(root, rel, "story", names, file_language=lang, file_emotion=emo)
    for kind, rel in KIND_FILES.items():
        if kind in wanted and _present(root, rel):
            yield from _file_records(root, rel, kind, names)


def _broken_story_entries(root: Traversable) -> Iterator[RawRecord]:
    """A problem for ``stories`` when it is there but not a directory, and for each entry of it that
    is a broken or looping link (it cannot be told whether a language directory was meant)."""
    stories = root.joinpath("stories")
    if not isinstance(stories, Path) or not os.path.lexists(stories):
        return
    if not stories.is_dir():
        found = unreadable_reason(stories) or "a regular file"
        yield RawRecord("stories", 0, "story", None,
                        ((None, f"expected the directory stories/<language>/, found {found}"),))
        return
    for entry in sorted(stories.iterdir()):
        if entry.is_symlink() and not entry.exists():
            yield RawRecord(f"stories/{entry.name}", 0, "story", None,
                            ((None, f"unreadable: {unreadable_reason(entry)}"),))


# -------------------------------------------------------------------------------------- loading

def split_of(kind: str, language: str) -> str:
    """``"train"`` for English stories and neutral dialogues, ``"test"`` for everything else."""
    return "train" if language == "en" and kind in ("story", "neutral") else "test"


def _row(rec: RawRecord) -> dict[str, Any]:
    d = rec.data
    assert d is not None
    text, language = d["text"], d["language"]
    return {
        "stimulus": d["id"], "kind": rec.kind, "emotion": d.get("emotion") or "",
        "topic": (d.get("topic") or "") if rec.kind in ("story", "external") else "",
        "split": split_of(rec.kind, language), "language": language,
        "perspective": (d.get("perspective") or "") if rec.kind == "story" else "",
        "text": text, "text_sha256": text_sha256(text),
        "template": d.get("template", "") if rec.kind == "intensity" else "",
        "level": int(d.get("level", 0)) if rec.kind == "intensity" else 0,
        "value": d.get("value", "") if rec.kind == "intensity" else "",
        "task": str(d.get("task") or "") if rec.kind == "neutral" else "",
    }


def corpus_sha256(table: pd.DataFrame) -> str:
    """The corpus hash of a stimulus table (see the module docstring for the exact definition).

    It identifies a corpus' contents (texts included); a store records it beside its own
    stimulus-table hash (``emovec_store.stimuli_sha256``), which identifies the rows and labels the
    store was made for. Both are JSON lines (:func:`emovec.common.hashing.json_lines_sha256`)."""
    rows = table[list(HASH_COLUMNS)].itertuples(index=False, name=None)
    return json_lines_sha256([int(v) if c == "level" else str(v) for c, v in zip(HASH_COLUMNS, row)]
                             for row in rows)


def _normalise_selection(values: Iterable[str] | str | None, allowed: tuple[str, ...] | None,
                         what: str) -> tuple[str, ...] | None:
    if values is None:
        return None
    out = (values,) if isinstance(values, str) else tuple(values)
    if allowed is not None:
        bad = [v for v in out if v not in allowed]
        if bad:
            raise CorpusError(f"unknown {what} {bad[0]!r}; expected some of: {', '.join(allowed)}", field=what)
    return out


def load_corpus(name_or_path: str | Path = "emovec", *, version: str | None = None,
                languages: Iterable[str] | str | None = ("en",),
                kinds: Iterable[str] | str | None = None) -> pd.DataFrame:
    """Load a corpus as a stimulus table, one row per stimulus.

    Parameters
    ----------
    name_or_path : ``"emovec"`` (or ``"builtin"``) for the corpus shipped in the package, or a
        directory in the emovec layout (what ``emovec corpus import`` writes).
    version : when given, must equal the ``version`` of ``emotions.json``.
    languages : language codes to load (default English only); None loads every language.
    kinds : kinds to load (``story``, ``neutral``, ``implicit``, ``intensity``, ``external``); None: all.

    Returns
    -------
    DataFrame with columns ``stimulus`` (the record's ``id``), ``kind``, ``emotion`` ("" when none),
    ``topic`` ("" when none), ``split`` ("train" for English stories and neutral dialogues, "test"
    otherwise), ``language``, ``perspective`` ("" when none), ``text``, ``text_sha256``, and for
    intensity rows ``template``, ``level`` (int; 0 on other rows) and ``value`` ("" on other rows),
    and ``task`` (neutral dialogues; "" on other rows; not part of the corpus hash).
    Rows are in the order given in the module docstring. ``attrs["corpus"]`` holds ``name``,
    ``version``, ``sha256`` (the corpus hash), ``emotions`` (names in the order of
    ``emotions.json``), ``source`` (the resolved directory, or ``"builtin"``) and
    ``emotion_table`` (one dict per emotion: ``name``, ``quadrant``, ``valence``, ``arousal``,
    ``dominance`` — None when unknown — and the corpus' ``norms_source``), which stores record.

    Raises
    ------
    CorpusError
        Unknown corpus, version mismatch, or a malformed record (naming file, line and field).
    """
    langs = _normalise_selection(languages, None, "languages")
    kind_sel = _normalise_selection(kinds, KINDS, "kinds")
    root, source = resolve_corpus(name_or_path)
    meta = read_meta(root, source)
    if version is not None and str(version) != meta.version:
        raise CorpusError(f"corpus {meta.name!r} at {source} is version {meta.version!r}, not {str(version)!r}",
                          field="version")
    rows: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    seen: dict[str, tuple[str, int]] = {}
    kind_rank = {k: i for i, k in enumerate(KINDS)}
    emotion_rank = {e: i for i, e in enumerate(meta.emotion_names)}
    for n, rec in enumerate(iter_records(root, meta, languages=langs, kinds=kind_sel)):
        if rec.problems:
            fld, message = rec.problems[0]
            raise CorpusError(message, path=_where(root, rec.file), line=rec.line or None, field=fld)
        row = _row(rec)
        if langs is not None and row["language"] not in langs:
            continue
        if row["stimulus"] in seen:
            first = seen[row["stimulus"]]
            raise CorpusError(f"duplicate id {row['stimulus']!r} (first on {first[0]}:{first[1]})",
                              path=_where(root, rec.file), line=rec.line, field="id")
        seen[row["stimulus"]] = (rec.file, rec.line)
        key = (language_rank(row["language"]), kind_rank[rec.kind],
               emotion_rank.get(row["emotion"], -1) if rec.kind == "story" else 0, n)
        rows.append((key, row))
    rows.sort(key=lambda kr: kr[0])
    records = [r for _, r in rows]
    import pandas as pd  # here, not at the top: `emovec --help` imports the corpus package

    table = pd.DataFrame({c: [r[c] for r in records] for c in COLUMNS})
    table["level"] = table["level"].astype("int64")
    table.attrs["corpus"] = {"name": meta.name, "version": meta.version, "sha256": corpus_sha256(table),
                             "emotions": meta.emotion_names, "source": source,
                             "emotion_table": _emotion_records(meta)}
    return table


def _emotion_records(meta: CorpusMeta) -> list[dict[str, Any]]:
    norms_source = str(meta.extra.get("norms_source") or "")
    return [{"name": e["name"], "quadrant": e.get("quadrant") or "",
             **{k: None if e.get(k) is None else float(e[k]) for k in ("valence", "arousal", "dominance")},
             "norms_source": norms_source} for e in meta.emotions]


def emotion_table(name_or_path: str | Path = "emovec", *, version: str | None = None) -> pd.DataFrame:
    """The emotions of a corpus (``emotions.json``), in its order.

    Returns
    -------
    DataFrame with columns ``name``, ``quadrant`` ("" when unknown), ``valence``, ``arousal`` and
    ``dominance`` (NRC VAD norms on 0..1, NaN when unknown). ``attrs["corpus"]`` holds ``name``,
    ``version`` and ``source``.
    """
    root, source = resolve_corpus(name_or_path)
    meta = read_meta(root, source)
    if version is not None and str(version) != meta.version:
        raise CorpusError(f"corpus {meta.name!r} at {source} is version {meta.version!r}, not {str(version)!r}",
                          field="version")
    import pandas as pd

    table = pd.DataFrame({
        "name": meta.emotion_names,
        "quadrant": [e.get("quadrant") or "" for e in meta.emotions],
        **{k: [float("nan") if e.get(k) is None else float(e[k]) for e in meta.emotions]
           for k in ("valence", "arousal", "dominance")},
    })
    table.attrs["corpus"] = {"name": meta.name, "version": meta.version, "source": source}
    return table
