"""Import other corpora into the emovec layout (see :mod:`emovec.corpus.loader`).

Formats:

``emotion-vector-bench``
    a directory with ``emotions.json`` (``flat``: the emotion names, ``clusters``: cluster → names),
    ``topics.json`` (``flat``: topic sentences, ``by_domain``: domain → sentences),
    ``stories/<emotion>.jsonl`` (emotion, topic, story_index, perspective, text), and optionally
    ``neutral_dialogues.jsonl`` (dialogue_index, topic_category, text) and
    ``implicit_scenarios.jsonl`` (target, text). Topic ids are ``t00``, ``t01``, ... in the order of
    ``flat``; stimulus ids are ``evb.<emotion>.<topic id>.<story_index>``,
    ``evb.neutral.<dialogue_index>`` and ``evb.implicit.<target>.<k>`` (k-th scenario of that target,
    from 1). A story or dialogue whose index is already taken gets ``.<k>`` appended (k = 2, 3, ...)
    and a :class:`~emovec.corpus.errors.CorpusWarning`.
``jsonl`` / ``csv``
    one record per line/row. ``text_field`` (default ``text``) holds the text, ``label_field`` the
    emotion (lower-cased, whitespace → ``-``), ``group_field`` the topic (ids: lower-case slugs of the
    values), ``id_field`` the stimulus id (default ``<name>.<record number from 1>``). ``kind``
    (``external`` by default; ``story``, ``neutral`` or ``implicit``) says where records go; stories
    and implicit scenarios need a label. ``emotions`` restricts labels to a list (others are errors).

Every format takes ``name`` and ``version`` (defaults: the format's name or the file stem, and
``src-<first 12 hex digits of the sha256 of the source files>``). The import parses and checks the
whole source before writing anything; malformed input raises :class:`CorpusError` naming the file,
line and field. DEST must not exist or be an empty directory; the corpus is written into a temporary
directory beside it and renamed into place at the end, so a failed import leaves nothing behind.
"""
from __future__ import annotations

import csv
import hashlib
import inspect
import io
import json
import os
import re
import uuid
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emovec.common.files import atomic_path

from .errors import CorpusError, CorpusWarning
from .jsonparse import JsonProblem, parse_json
from .loader import EMOTION_NAME_RE, LANGUAGE_RE, iter_jsonl, unreadable_reason

IMPORT_FORMATS: tuple[str, ...] = ("emotion-vector-bench", "jsonl", "csv")
GENERIC_KINDS: tuple[str, ...] = ("external", "story", "neutral", "implicit")


@dataclass
class NewCorpus:
    """A corpus parsed from a source, ready to be written in the emovec layout."""

    name: str
    version: str
    emotions: list[dict[str, Any]]
    topics: list[dict[str, Any]] = field(default_factory=list)
    stories: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    neutral: list[dict[str, Any]] = field(default_factory=list)
    implicit: list[dict[str, Any]] = field(default_factory=list)
    external: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ helpers

def slug(value: str, *, max_len: int = 48) -> str:
    """A lower-case id made of letters, digits and '-' (``"Work & money"`` → ``"work-money"``).

    The rule for corpus ids (topics, record ids), at most ``max_len`` characters. Store group names
    of models follow another, :func:`emovec_store.slugify`, which keeps ``.`` and ``_`` (model ids
    such as ``SmolLM2-1.7B`` stay readable) and is recorded in stores, so the two stay separate."""
    text = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")
    return text[:max_len].rstrip("-")


def _source_sha256(paths: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(paths, key=lambda q: q.relative_to(root).as_posix()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _read_source(path: Path) -> str:
    reason = unreadable_reason(path)
    if reason is not None:
        raise CorpusError(f"unreadable: {reason}", path=str(path))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"cannot read: {exc.strerror}", path=str(path)) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=str(path),
                          line=data.count(b"\n", 0, exc.start) + 1) from None


def _load_json(path: Path) -> Any:
    try:
        return parse_json(_read_source(path))
    except JsonProblem as problem:
        raise CorpusError(problem.message, path=str(path), line=problem.line, field=problem.field) from None


def _jsonl_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for line, obj, error in iter_jsonl(_read_source(path)):
        if error is not None:
            raise CorpusError(error.message, path=str(path), line=line, field=error.field)
        if not isinstance(obj, dict):
            raise CorpusError("expected a JSON object on each line", path=str(path), line=line)
        yield line, obj


def _text(obj: dict[str, Any], key: str, path: Path, line: int) -> str:
    if obj.get(key) is None:
        raise CorpusError("missing field", path=str(path), line=line, field=key)
    value = obj[key]
    if not isinstance(value, str):
        raise CorpusError(f"expected a string, got {json.dumps(value)[:40]}", path=str(path), line=line, field=key)
    if not value.strip():
        raise CorpusError("must not be empty", path=str(path), line=line, field=key)
    return value


def _index(obj: dict[str, Any], key: str, path: Path, line: int) -> int:
    if key not in obj:
        raise CorpusError("missing field", path=str(path), line=line, field=key)
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CorpusError(f"expected an integer >= 0, got {json.dumps(value)[:40]}", path=str(path), line=line,
                          field=key)
    return value


def _emotion_name(value: str, path: Path, line: int | None, fld: str) -> str:
    name = re.sub(r"\s+", "-", value.strip().lower())
    if not EMOTION_NAME_RE.fullmatch(name):
        raise CorpusError(f"{value!r} cannot be an emotion name (letters, digits, '-' and '_' only)",
                          path=str(path), line=line, field=fld)
    return name


class _Ids:
    """Hands out ids, appending ``.2``, ``.3``... (with a warning) when a source index repeats."""

    def __init__(self) -> None:
        self._used: dict[str, tuple[str, int]] = {}

    def take(self, base: str, path: Path, line: int, what: str) -> str:
        rid, k = base, 1
        while rid in self._used:
            k += 1
            rid = f"{base}.{k}"
        if k > 1:
            first = self._used[base]
            warnings.warn(f"{path}:{line}: {what} is already used on line {first[1]}; imported as {rid!r}",
                          CorpusWarning, stacklevel=2)
        self._used[rid] = (str(path), line)
        return rid


# ----------------------------------------------------------------------------- emotion-vector-bench

def import_emotion_vector_bench(src: Path, *, name: str = "emotion-vector-bench",
                                version: str | None = None) -> NewCorpus:
    """Parse an emotion-vector-bench corpus directory (see the module docstring)."""
    if not src.is_dir():
        raise CorpusError("expected an emotion-vector-bench corpus directory (with emotions.json, topics.json, "
                          "stories/)", path=str(src))
    for required in ("emotions.json", "topics.json", "stories"):
        if not os.path.lexists(src / required):
            raise CorpusError(f"no {required} in this emotion-vector-bench directory", path=str(src / required))
    if not (src / "stories").is_dir():
        found = unreadable_reason(src / "stories") or "a regular file"
        raise CorpusError(f"expected a directory of <emotion>.jsonl files, found {found}", path=str(src / "stories"))
    emotions, clusters = _evb_emotions(src / "emotions.json")
    topics = _evb_topics(src / "topics.json")
    topic_ids = {t["description"]: t["id"] for t in topics}
    rank = {e: i for i, e in enumerate(emotions)}
    files = sorted((src / "stories").glob("*.jsonl"), key=lambda p: (rank.get(p.stem, len(rank)), p.stem))
    if not files:
        raise CorpusError("no story files (<emotion>.jsonl) in this directory", path=str(src / "stories"))
    ids = _Ids()
    stories: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for path in files:
        if path.stem not in rank:
            raise CorpusError(f"story file of unknown emotion {path.stem!r}; emotions.json lists "
                              f"{', '.join(emotions)}", path=str(path), field="emotion")
        records = []
        for line, obj in _jsonl_objects(path):
            emotion = _text(obj, "emotion", path, line)
            if emotion not in rank:
                raise CorpusError(f"unknown emotion {emotion!r}", path=str(path), line=line, field="emotion")
            if emotion != path.stem:
                raise CorpusError(f"emotion {emotion!r} in the file of {path.stem!r}", path=str(path), line=line,
                                  field="emotion")
            topic = _text(obj, "topic", path, line)
            if topic not in topic_ids:
                raise CorpusError(f"unknown topic {topic[:60]!r}: not in topics.json", path=str(path), line=line,
                                  field="topic")
            index = _index(obj, "story_index", path, line)
            perspective = _text(obj, "perspective", path, line)
            if perspective not in ("first", "third"):
                raise CorpusError(f"expected 'first' or 'third', got {perspective!r}", path=str(path), line=line,
                                  field="perspective")
            text = _text(obj, "text", path, line)
            tid = topic_ids[topic]
            rid = ids.take(f"evb.{emotion}.{tid}.{index}", path, line, f"story_index {index} of topic {tid}")
            records.append({"id": rid, "emotion": emotion, "topic": tid, "perspective": perspective,
                            "language": "en", "text": text, "story_index": index})
        stories[("en", path.stem)] = records
    neutral = []
    path = src / "neutral_dialogues.jsonl"
    if os.path.lexists(path):  # a broken link in its place is an error when read, not a file left out
        for line, obj in _jsonl_objects(path):
            index = _index(obj, "dialogue_index", path, line)
            task = _text(obj, "topic_category", path, line)
            text = _text(obj, "text", path, line)
            rid = ids.take(f"evb.neutral.{index}", path, line, f"dialogue_index {index}")
            neutral.append({"id": rid, "kind": "neutral", "task": task, "language": "en", "text": text})
    implicit = []
    path = src / "implicit_scenarios.jsonl"
    if os.path.lexists(path):
        counts: dict[str, int] = defaultdict(int)
        for line, obj in _jsonl_objects(path):
            target = _text(obj, "target", path, line)
            if target not in rank:
                raise CorpusError(f"unknown emotion {target!r}; emotions.json lists {', '.join(emotions)}",
                                  path=str(path), line=line, field="target")
            text = _text(obj, "text", path, line)
            counts[target] += 1
            implicit.append({"id": f"evb.implicit.{target}.{counts[target]}", "kind": "implicit",
                             "emotion": target, "language": "en", "text": text})
    sources = [src / "emotions.json", src / "topics.json", *files]
    sources += [p for p in (src / "neutral_dialogues.jsonl", src / "implicit_scenarios.jsonl") if p.is_file()]
    digest = _source_sha256(sources, src)
    return NewCorpus(
        name=name, version=version or f"src-{digest[:12]}",
        emotions=[{"name": e, **({"cluster": clusters[e]} if e in clusters else {})} for e in emotions],
        topics=topics, stories=stories, neutral=neutral, implicit=implicit,
        provenance={"format": "emotion-vector-bench", "source": str(src.resolve()), "source_sha256": digest})


def _evb_grouped(path: Path, group_field: str, what: str) -> tuple[list[str], dict[str, str]]:
    """The ``flat`` list of an emotion-vector-bench JSON file (or the concatenated groups when it has
    none) and each entry's group, from ``{group_field: {group: [entries]}, "flat": [entries]}``."""
    doc = _load_json(path)
    if not isinstance(doc, dict):
        raise CorpusError("expected a JSON object", path=str(path))
    groups = doc.get(group_field, {})
    if not isinstance(groups, dict) or not all(isinstance(v, list) for v in groups.values()):
        raise CorpusError(f"expected an object of group name → list of {what}s", path=str(path), field=group_field)
    group_of: dict[str, str] = {}
    for group, members in groups.items():
        for i, x in enumerate(members):
            at = f"{group_field}.{group}[{i}]"
            if not isinstance(x, str) or not x.strip():
                raise CorpusError(f"expected a non-empty {what} string, got {json.dumps(x)[:40]}", path=str(path),
                                  field=at)
            if x in group_of:
                raise CorpusError(f"{what} {x[:60]!r} is in both {group_of[x]!r} and {group!r}", path=str(path),
                                  field=at)
            group_of[x] = group
    flat = doc.get("flat", list(group_of))
    if not isinstance(flat, list) or not flat or not all(isinstance(x, str) and x.strip() for x in flat):
        raise CorpusError(f"expected a non-empty list of {what}s", path=str(path), field="flat")
    if len(set(flat)) != len(flat):
        dup = next(x for x in flat if flat.count(x) > 1)
        raise CorpusError(f"{what} {dup!r} is listed twice", path=str(path), field="flat")
    listed = set(flat)
    for group, members in groups.items():
        for i, x in enumerate(members):
            if x not in listed:
                raise CorpusError(f"{group!r} names the {what} {x[:60]!r}, which is not in 'flat'", path=str(path),
                                  field=f"{group_field}.{group}[{i}]")
    return list(flat), group_of


def _evb_emotions(path: Path) -> tuple[list[str], dict[str, str]]:
    flat, clusters = _evb_grouped(path, "clusters", "emotion")
    for e in flat:
        _emotion_name(e, path, None, "flat")
        if e != e.strip().lower():
            raise CorpusError(f"emotion name {e!r} must be lower-case", path=str(path), field="flat")
    return flat, clusters


def _evb_topics(path: Path) -> list[dict[str, Any]]:
    flat, domain_of = _evb_grouped(path, "by_domain", "topic")
    width = max(2, len(str(len(flat) - 1)))
    return [{"id": f"t{i:0{width}d}", "domain": domain_of.get(t, ""), "description": t} for i, t in enumerate(flat)]


# ------------------------------------------------------------------------------------ jsonl and csv

def _csv_rows(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    text = _read_source(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = list(reader.fieldnames or [])
    except csv.Error as exc:
        raise CorpusError(f"invalid CSV: {exc}", path=str(path), line=1) from None

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        start = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise CorpusError(f"invalid CSV: {exc}", path=str(path), line=start) from None
            if None in row:
                raise CorpusError(f"{len(row[None])} more value(s) than header columns", path=str(path), line=start)
            yield start, row
            start = reader.line_num + 1

    return header, rows()


def _value(obj: dict[str, Any], key: str, path: Path, line: int) -> str:
    if key not in obj or obj[key] is None:
        raise CorpusError("missing field", path=str(path), line=line, field=key)
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise CorpusError(f"expected a string or number, got {json.dumps(value)[:40]}", path=str(path), line=line,
                          field=key)
    text = str(value).strip()
    if not text:
        raise CorpusError("must not be empty", path=str(path), line=line, field=key)
    return text


def import_table(src: Path, *, fmt: str, text_field: str = "text", label_field: str | None = None,
                 group_field: str | None = None, id_field: str | None = None, kind: str = "external",
                 language: str = "en", emotions: list[str] | str | None = None, name: str | None = None,
                 version: str | None = None) -> NewCorpus:
    """Parse a generic JSON Lines or CSV file (see the module docstring)."""
    if kind not in GENERIC_KINDS:
        raise CorpusError(f"unknown kind {kind!r}; expected one of {', '.join(GENERIC_KINDS)}", field="kind")
    if kind in ("story", "implicit") and not label_field:
        raise CorpusError(f"kind {kind!r} needs emotion labels: give label_field (--label-field)", field="label_field")
    if kind == "neutral" and label_field:
        raise CorpusError("neutral texts carry no emotion: drop label_field, or use kind 'external'",
                          field="label_field")
    if not LANGUAGE_RE.fullmatch(language):
        raise CorpusError(f"{language!r} is not a language code such as 'en' or 'zh'", field="language")
    if not src.is_file():
        raise CorpusError(f"expected a {fmt.upper()} file", path=str(src))
    allowed: list[str] | None = None
    if emotions is not None:
        names = emotions.split(",") if isinstance(emotions, str) else list(emotions)
        allowed = [_emotion_name(e, src, None, "emotions") for e in names if e.strip()]
    corpus_name = name or slug(src.stem) or "imported"
    prefix = slug(corpus_name) or "imported"
    if fmt == "csv":
        header, rows = _csv_rows(src)
        for key in (text_field, label_field, group_field, id_field):
            if key and key not in header:
                raise CorpusError(f"no column {key!r}; the header has {', '.join(header) or 'no columns'}",
                                  path=str(src), line=1, field=key)
    else:
        rows = _jsonl_objects(src)
    records: list[tuple[int, dict[str, Any]]] = []
    seen_ids: dict[str, int] = {}
    topic_of: dict[str, str] = {}
    for n, (line, obj) in enumerate(rows, 1):
        text = _text(obj, text_field, src, line)
        rec: dict[str, Any] = {}
        if id_field:
            rid = _value(obj, id_field, src, line)
            if any(c.isspace() for c in rid):
                raise CorpusError(f"id {rid!r} must not contain whitespace", path=str(src), line=line, field=id_field)
        else:
            rid = f"{prefix}.{n}"
        if rid in seen_ids:
            raise CorpusError(f"duplicate id {rid!r} (first on line {seen_ids[rid]})", path=str(src), line=line,
                              field=id_field)
        seen_ids[rid] = line
        rec["id"] = rid
        if kind != "story":
            rec["kind"] = kind
        if label_field:
            emotion = _emotion_name(_value(obj, label_field, src, line), src, line, label_field)
            if allowed is not None and emotion not in allowed:
                raise CorpusError(f"unknown emotion {emotion!r}; expected one of {', '.join(allowed)}",
                                  path=str(src), line=line, field=label_field)
            rec["emotion"] = emotion
        elif kind == "external":
            rec["emotion"] = ""
        if group_field:
            group = _value(obj, group_field, src, line)
            rec["topic"] = topic_of.setdefault(group, _new_topic_id(group, set(topic_of.values())))
        elif kind in ("story", "external"):
            rec["topic"] = ""
        if kind == "story":
            rec["perspective"] = ""
        rec["language"] = language
        rec["text"] = text
        records.append((line, rec))
    if not records:
        raise CorpusError("no records", path=str(src))
    labels = sorted({r["emotion"] for _, r in records if r.get("emotion")})
    emotion_list = allowed if allowed is not None else labels
    corpus = NewCorpus(name=corpus_name, version="", emotions=[{"name": e} for e in emotion_list],
                       topics=[{"id": tid, "domain": "", "description": group} for group, tid in topic_of.items()])
    for _, rec in records:
        if kind == "story":
            corpus.stories.setdefault((language, rec["emotion"]), []).append(rec)
        else:
            getattr(corpus, kind).append(rec)
    digest = _source_sha256([src], src.parent)
    corpus.version = version or f"src-{digest[:12]}"
    corpus.provenance = {"format": fmt, "source": str(src.resolve()), "source_sha256": digest,
                         "options": {"text_field": text_field, "label_field": label_field,
                                     "group_field": group_field, "id_field": id_field, "kind": kind,
                                     "language": language}}
    return corpus


def _new_topic_id(group: str, taken: set[str]) -> str:
    base = slug(group) or "topic"
    tid, k = base, 1
    while tid in taken:
        k += 1
        tid = f"{base}-{k}"
    return tid


# --------------------------------------------------------------------------------------------- write

def _dump_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def _dump_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8", newline="\n")


def write_corpus(corpus: NewCorpus, dest: Path) -> Path:
    """Write ``corpus`` to ``dest`` in the emovec layout, atomically (temp dir + rename).

    A file system error (no parent directory, no permission, disk full) is a :class:`CorpusError`
    naming ``dest``; nothing is left behind then."""
    try:
        _write_corpus(corpus, dest)
    except OSError as exc:
        raise CorpusError(f"cannot write the corpus here: {exc.strerror or type(exc).__name__}", path=str(dest)
                          ) from None
    return dest


def _write_corpus(corpus: NewCorpus, dest: Path) -> None:
    _check_dest(dest)
    with atomic_path(dest, tmp=dest.parent / f".{dest.name}.importing-{uuid.uuid4().hex[:12]}") as tmp:
        tmp.mkdir()
        _dump_json(tmp / "emotions.json", {"name": corpus.name, "version": corpus.version,
                                           "imported_from": corpus.provenance, "emotions": corpus.emotions})
        if corpus.topics:
            _dump_json(tmp / "topics.json", {"name": corpus.name, "version": corpus.version,
                                             "topics": corpus.topics})
        for (lang, emotion), records in corpus.stories.items():
            _dump_jsonl(tmp / "stories" / lang / f"{emotion}.jsonl", records)
        for kind in ("neutral", "implicit", "external"):
            records = getattr(corpus, kind)
            if records:
                _dump_jsonl(tmp / f"{kind}.jsonl", records)
        _check_dest(dest)
        if dest.exists():  # an empty directory: make way for the rename
            dest.rmdir()


def _check_dest(dest: Path) -> None:
    if dest.is_dir() and any(dest.iterdir()):
        raise CorpusError("destination exists and is not empty; choose a new directory", path=str(dest))
    if os.path.lexists(dest) and not dest.is_dir():
        raise CorpusError("destination exists and is not a directory", path=str(dest))
    ancestor = next((p for p in dest.absolute().parents if os.path.lexists(p)), None)
    if ancestor is not None and not ancestor.is_dir():
        raise CorpusError(f"cannot create the destination: {str(ancestor)!r} is not a directory", path=str(dest))


# ------------------------------------------------------------------------------------------- public

def _generic(fmt: str) -> Callable[..., NewCorpus]:
    def parse(src: Path, *, text_field: str = "text", label_field: str | None = None,
              group_field: str | None = None, id_field: str | None = None, kind: str = "external",
              language: str = "en", emotions: list[str] | str | None = None, name: str | None = None,
              version: str | None = None) -> NewCorpus:
        return import_table(src, fmt=fmt, text_field=text_field, label_field=label_field,
                            group_field=group_field, id_field=id_field, kind=kind, language=language,
                            emotions=emotions, name=name, version=version)
    return parse


IMPORTERS: dict[str, Callable[..., NewCorpus]] = {
    "emotion-vector-bench": import_emotion_vector_bench,
    "jsonl": _generic("jsonl"),
    "csv": _generic("csv"),
}


def import_corpus(fmt: str, src: str | Path, dest: str | Path, **options: Any) -> Path:
    """Import a corpus in format ``fmt`` from ``src`` into a new directory ``dest`` (emovec layout).

    Parameters
    ----------
    fmt : ``"emotion-vector-bench"``, ``"jsonl"`` or ``"csv"``.
    src : the source directory (emotion-vector-bench) or file (jsonl, csv).
    dest : a directory that does not exist yet, or an empty one.
    **options : per format (see the module docstring): ``name``, ``version``; for jsonl/csv also
        ``text_field``, ``label_field``, ``group_field``, ``id_field``, ``kind``, ``language``, ``emotions``.

    Returns
    -------
    Path of the written corpus; ``load_corpus(dest)`` reads it.

    Raises
    ------
    CorpusError
        Unknown format or option, a non-empty ``dest``, or malformed input (naming file, line and
        field). Nothing is written then.
    """
    if fmt not in IMPORTERS:
        raise CorpusError(f"unknown import format {fmt!r}; available: {', '.join(IMPORT_FORMATS)}", field="format")
    parse = IMPORTERS[fmt]
    accepted = [p for p in inspect.signature(parse).parameters if p != "src"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise CorpusError(f"option {unknown[0]!r} does not apply to format {fmt!r}; it takes "
                          f"{', '.join(accepted)}", field=unknown[0])
    dest_path = Path(dest).expanduser()
    try:
        _check_dest(dest_path)
    except OSError as exc:
        raise CorpusError(f"cannot use as destination: {exc.strerror or type(exc).__name__}", path=str(dest_path)
                          ) from None
    corpus = parse(Path(src).expanduser(), **{k: v for k, v in options.items() if v is not None})
    return write_corpus(corpus, dest_path)


__all__ = ["IMPORTERS", "IMPORT_FORMATS", "NewCorpus", "import_corpus", "slug", "write_corpus"]
