"""Property-based fuzzing (issue #8): corpus loading, the validator and every importer, fed random
bytes, invalid UTF-8, JSON of the wrong types and deep or huge values, either succeed or raise one
CorpusError (exit code 2) in one line naming the file; never another exception, never a partial
import. Deterministic (derandomize) and small (a few dozen examples each) so the suite stays fast."""
from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emovec.corpus import CorpusError, import_corpus, load_corpus, validate_corpus

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "emovec_tiny"
EVB = FIXTURES / "evb_tiny"
GENERIC = FIXTURES / "generic"
FUZZ = settings(max_examples=30, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

LOADER_FILES = ["emotions.json", "topics.json", "stories/en/calm.jsonl", "neutral.jsonl", "intensity.jsonl"]
EVB_FILES = ["emotions.json", "topics.json", "stories/joyful.jsonl", "neutral_dialogues.jsonl",
             "implicit_scenarios.jsonl"]

#: JSON values of every type, nested a little; strings include surrogates and control characters.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20) | st.sampled_from(["\ud800", "a \udfff b", "\x00", "line\nbreak", "\u2028"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)

#: values no corpus may hold, mixed into every field the fuzzers fill (about half the examples)
field_values = st.one_of(
    st.sampled_from([float("nan"), float("inf"), "\ud800", "a \udfff b", [[[[[[[[1]]]]]]]], 2 ** 200, -0.0]),
    json_values)

#: what goes into a file: raw bytes, text that is almost JSON, or a JSON value (wrong types included)
hostile_bytes = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v, allow_nan=True).encode("utf-8", "surrogatepass")),
    st.integers(min_value=1, max_value=3000).map(lambda n: ("[" * n + "]" * n).encode()),
    st.integers(min_value=1, max_value=3000).map(lambda n: ('{"a":' * n + "1" + "}" * n).encode()),
    st.text(alphabet="0123456789", min_size=4000, max_size=6000).map(lambda t: t.encode()),
)


@contextmanager
def _copy(src: Path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "c"
        shutil.copytree(src, dest)
        yield dest


def _one_line_corpus_error(exc: BaseException, path: Path | None = None) -> None:
    assert isinstance(exc, CorpusError), f"{type(exc).__name__}: {exc}"
    assert exc.exit_code == 2
    assert "\n" not in str(exc), str(exc)
    if path is not None:
        assert exc.path is not None and exc.path.startswith(str(path)), exc


def _loads_storable(corpus: Path) -> None:
    """What loads can be stored: finite numbers, UTF-8 texts, JSON metadata (the properties a store needs)."""
    table = load_corpus(corpus, languages=None)
    json.dumps(table.attrs["corpus"], allow_nan=False)
    for column in ("stimulus", "text", "emotion", "topic", "language"):
        "".join(table[column]).encode("utf-8")


def _loads_or_fails_in_one_line(corpus: Path, named: Path) -> None:
    """The corpus loads into something storable, or fails with one line naming ``named``; the validator
    reports (never raises), one line per violation."""
    try:
        _loads_storable(corpus)
    except Exception as exc:
        _one_line_corpus_error(exc, named)
    violations = validate_corpus(corpus)
    assert all("\n" not in v.message for v in violations)


def _record_line(record: dict[str, Any], replace: dict[str, Any]) -> str:
    return json.dumps({**record, **replace}, allow_nan=True)


@FUZZ
@given(rel=st.sampled_from(LOADER_FILES), data=hostile_bytes)
def test_loader_on_hostile_bytes(rel: str, data: bytes) -> None:
    with _copy(TINY) as corpus:
        (corpus / rel).write_bytes(data)
        _loads_or_fails_in_one_line(corpus, corpus / rel)


@FUZZ
@given(rel=st.sampled_from(LOADER_FILES[2:]), key=st.sampled_from(
    ["id", "kind", "emotion", "topic", "perspective", "language", "text", "level", "value", "template", "task"]),
    value=field_values)
def test_loader_on_records_of_wrong_types(rel: str, key: str, value: Any) -> None:
    with _copy(TINY) as corpus:
        path = corpus / rel
        lines = path.read_text(encoding="utf-8").splitlines()
        lines[0] = _record_line(json.loads(lines[0]), {key: value})
        path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
        _loads_or_fails_in_one_line(corpus, corpus)


@FUZZ
@given(key=st.sampled_from(["name", "version", "emotions", "valence", "word_forms", "quadrant", "topics"]),
       value=field_values)
def test_loader_on_metadata_of_wrong_types(key: str, value: Any) -> None:
    with _copy(TINY) as corpus:
        emotions = json.loads((corpus / "emotions.json").read_text(encoding="utf-8"))
        topics = json.loads((corpus / "topics.json").read_text(encoding="utf-8"))
        if key in ("valence", "word_forms", "quadrant"):
            emotions["emotions"][0][key] = value
        elif key == "topics":
            topics["topics"] = value
        else:
            emotions[key] = value
        for name, doc in (("emotions.json", emotions), ("topics.json", topics)):
            (corpus / name).write_text(json.dumps(doc, allow_nan=True), encoding="utf-8", errors="surrogatepass")
        _loads_or_fails_in_one_line(corpus, corpus)


@FUZZ
@given(rel=st.sampled_from(EVB_FILES), data=hostile_bytes)
def test_evb_import_on_hostile_bytes(rel: str, data: bytes) -> None:
    with _copy(EVB) as src, tempfile.TemporaryDirectory() as out:
        (src / rel).write_bytes(data)
        dest = Path(out) / "corpus"
        try:
            import_corpus("emotion-vector-bench", src, dest)
        except Exception as exc:
            _one_line_corpus_error(exc, src / rel)
            assert not dest.exists() and list(Path(out).iterdir()) == []
        else:
            _loads_storable(dest)  # what an import writes always loads


@FUZZ
@given(rel=st.sampled_from(EVB_FILES[2:]),
       key=st.sampled_from(["emotion", "topic", "story_index", "perspective", "text", "dialogue_index",
                            "topic_category", "target"]), value=field_values)
def test_evb_import_on_records_of_wrong_types(rel: str, key: str, value: Any) -> None:
    with _copy(EVB) as src, tempfile.TemporaryDirectory() as out:
        path = src / rel
        lines = path.read_text(encoding="utf-8").splitlines()
        lines[0] = _record_line(json.loads(lines[0]), {key: value})
        path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
        try:
            import_corpus("emotion-vector-bench", src, Path(out) / "corpus")
        except Exception as exc:
            _one_line_corpus_error(exc, path)
        else:
            _loads_storable(Path(out) / "corpus")


@FUZZ
@given(group=st.sampled_from(["clusters", "flat"]), value=field_values)
def test_evb_import_on_emotion_lists_of_wrong_types(group: str, value: Any) -> None:
    with _copy(EVB) as src, tempfile.TemporaryDirectory() as out:
        doc = json.loads((src / "emotions.json").read_text(encoding="utf-8"))
        doc[group] = value
        (src / "emotions.json").write_text(json.dumps(doc, allow_nan=True), encoding="utf-8", errors="surrogatepass")
        try:
            import_corpus("emotion-vector-bench", src, Path(out) / "corpus")
        except Exception as exc:
            _one_line_corpus_error(exc, src)
        else:
            _loads_storable(Path(out) / "corpus")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@FUZZ
@given(data=hostile_bytes, label=st.booleans())
def test_generic_import_on_hostile_bytes(fmt: str, data: bytes, label: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"in.{fmt}"
        src.write_bytes(data)
        dest = Path(tmp) / "out"
        options = {"label_field": "text", "kind": "story"} if label else {}
        try:
            import_corpus(fmt, src, dest, **options)
        except Exception as exc:
            _one_line_corpus_error(exc)
            assert not dest.exists()
        else:
            _loads_storable(dest)


@FUZZ
@given(value=field_values, label=field_values)
def test_generic_jsonl_import_on_fields_of_wrong_types(value: Any, label: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        good = (GENERIC / "feelings.jsonl").read_text(encoding="utf-8").splitlines()
        bad = json.dumps({"body": value, "feeling": label, "uid": value, "setting": label}, allow_nan=True)
        src.write_text("\n".join([good[0], bad, *good[1:]]) + "\n", encoding="utf-8", errors="surrogatepass")
        try:
            import_corpus("jsonl", src, Path(tmp) / "out", text_field="body", label_field="feeling",
                          group_field="setting", id_field="uid")
        except Exception as exc:
            _one_line_corpus_error(exc, src)
        else:
            _loads_storable(Path(tmp) / "out")
