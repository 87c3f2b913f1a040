"""Hostile corpus files (issue #8, item 8): every JSON and JSON Lines reader of the corpus package,
and every importer, turns deep nesting, lone surrogates, NaN/Infinity, huge numbers, unknown
cluster members, a `stories` file and broken links into one CorpusError naming file, line and field."""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from emovec.cli.main import cli
from emovec.corpus import CorpusError, import_corpus, load_corpus, validate_corpus
from emovec.corpus.jsonparse import MAX_DEPTH, JsonProblem, parse_json

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "emovec_tiny"
EVB = FIXTURES / "evb_tiny"
GENERIC = FIXTURES / "generic"

#: payload (raw JSON text of one value) -> (words of the message, the field it is reported on)
PAYLOADS: dict[str, tuple[str, str, str | None]] = {
    "deep-100k": ("[" * 100_000 + "]" * 100_000, f"nested more than {MAX_DEPTH} levels deep", None),
    "deep-100": ("[" * 100 + "]" * 100, f"nested more than {MAX_DEPTH} levels deep", "x[0][0]"),
    "surrogate": ('"a \\ud800 b"', "lone surrogate", "x"),
    "nan": ("NaN", "NaN is not a JSON number", "x"),
    "infinity": ("-Infinity", "-Infinity is not a JSON number", "x"),
    "overflow": ("1e999", "Infinity is not a JSON number", "x"),
    "huge-int": ("9" * 5000, "a number with more than", None),
}


def _inject(text: str, payload: str) -> str:
    """``text`` (a JSON object, or JSON Lines of objects) with ``"x": payload`` added to its first object."""
    head, brace, rest = text.partition("{")
    assert brace, "expected a JSON object"
    return f'{head}{{"x": {payload}, {rest}'


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def _check(exc: CorpusError, path: Path, line: int | None, message: str, field: str | None) -> None:
    assert exc.path == str(path), exc
    assert exc.line == line, exc
    assert message in str(exc), exc
    if field is None:
        assert exc.field is None, exc
    else:
        assert exc.field is not None and exc.field.startswith(field), exc
    assert "\n" not in str(exc)


LOADER_FILES = [("emotions.json", None), ("topics.json", None), ("stories/en/calm.jsonl", 1),
                ("neutral.jsonl", 1), ("implicit.jsonl", 1), ("intensity.jsonl", 1)]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize(("rel", "line"), LOADER_FILES)
def test_loader_refuses_hostile_json(tmp_path: Path, rel: str, line: int | None, payload: str) -> None:
    corpus = _copy(TINY, tmp_path / "c")
    target = corpus / rel
    raw, message, field = PAYLOADS[payload]
    target.write_text(_inject(target.read_text(encoding="utf-8"), raw), encoding="utf-8")
    with pytest.raises(CorpusError) as exc:
        load_corpus(corpus, languages=None)
    _check(exc.value, target, line, message, field)
    # the validator reports the same problem as one violation of that file instead of raising
    found = [v for v in validate_corpus(corpus) if message in v.message]
    assert [(v.file, v.line) for v in found] == [(rel, line)], found


IMPORT_SOURCES: list[tuple[str, str, int | None, dict[str, str]]] = [
    ("emotion-vector-bench", "emotions.json", None, {}),
    ("emotion-vector-bench", "topics.json", None, {}),
    ("emotion-vector-bench", "stories/joyful.jsonl", 1, {}),
    ("emotion-vector-bench", "neutral_dialogues.jsonl", 1, {}),
    ("emotion-vector-bench", "implicit_scenarios.jsonl", 1, {}),
    ("jsonl", "feelings.jsonl", 1, {"text_field": "body"}),
]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize(("fmt", "rel", "line", "options"), IMPORT_SOURCES)
def test_importers_refuse_hostile_json(tmp_path: Path, fmt: str, rel: str, line: int | None,
                                       options: dict[str, str], payload: str) -> None:
    src_dir = _copy(EVB if fmt == "emotion-vector-bench" else GENERIC, tmp_path / "src")
    target = src_dir / rel
    raw, message, field = PAYLOADS[payload]
    target.write_text(_inject(target.read_text(encoding="utf-8"), raw), encoding="utf-8")
    with pytest.raises(CorpusError) as exc:
        import_corpus(fmt, src_dir if fmt == "emotion-vector-bench" else target, tmp_path / "out", **options)
    _check(exc.value, target, line, message, field)
    assert not (tmp_path / "out").exists()


def test_csv_cannot_smuggle_surrogates(tmp_path: Path) -> None:
    src = tmp_path / "x.csv"
    src.write_bytes(b"text\nok\na \xed\xa0\x80 b\n")  # U+D800 encoded as UTF-8 bytes: not valid UTF-8
    with pytest.raises(CorpusError, match="not UTF-8") as exc:
        import_corpus("csv", src, tmp_path / "out")
    assert (exc.value.path, exc.value.line) == (str(src), 3)


def test_parse_json_accepts_what_corpora_use() -> None:
    doc = '{"name": "x", "n": [1, 2.5, -3e2, true, null], "text": "caf\\u00e9 \\ud83d\\ude00"}'
    assert parse_json(doc) == {"name": "x", "n": [1, 2.5, -300.0, True, None], "text": "café 😀"}
    nested = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert parse_json(nested) is not None
    with pytest.raises(JsonProblem, match="nested"):
        parse_json("[" + nested + "]")


# ------------------------------------------------------------------------------- evb groups

@pytest.mark.parametrize(("rel", "group_field", "edit", "field", "message"), [
    ("emotions.json", "clusters", lambda d: d["clusters"]["Exuberant Joy"].append("ghost"),
     "clusters.Exuberant Joy[1]", "names the emotion 'ghost', which is not in 'flat'"),
    ("emotions.json", "clusters", lambda d: d["clusters"]["Depleted Disengagement"].append("joyful"),
     "clusters.Depleted Disengagement[1]", "is in both 'Exuberant Joy' and 'Depleted Disengagement'"),
    ("emotions.json", "clusters", lambda d: d["clusters"]["Exuberant Joy"].append(7),
     "clusters.Exuberant Joy[1]", "expected a non-empty emotion string, got 7"),
    ("topics.json", "by_domain", lambda d: next(iter(d["by_domain"].values())).append("A topic nobody listed"),
     "by_domain.", "which is not in 'flat'"),
])
def test_evb_groups_must_name_listed_entries(tmp_path: Path, rel: str, group_field: str,
                                             edit: Callable[[dict], None], field: str, message: str) -> None:
    import json

    src = _copy(EVB, tmp_path / "src")
    doc = json.loads((src / rel).read_text())
    edit(doc)
    (src / rel).write_text(json.dumps(doc))
    with pytest.raises(CorpusError) as exc:
        import_corpus("emotion-vector-bench", src, tmp_path / "out")
    assert exc.value.path == str(src / rel) and exc.value.field is not None
    assert exc.value.field.startswith(field) and message in str(exc.value), exc.value
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------- files and links

def test_stories_must_be_a_directory(tmp_path: Path) -> None:
    corpus = _copy(TINY, tmp_path / "c")
    shutil.rmtree(corpus / "stories")
    (corpus / "stories").write_text("not a directory")
    with pytest.raises(CorpusError, match="expected the directory stories/<language>/, found a regular file") as exc:
        load_corpus(corpus)
    assert exc.value.path == str(corpus / "stories")
    assert [v.file for v in validate_corpus(corpus)] == ["stories"]
    # without stories asked for, the other kinds still load
    assert len(load_corpus(corpus, kinds=("neutral",))) == 2

    evb = _copy(EVB, tmp_path / "evb")
    shutil.rmtree(evb / "stories")
    (evb / "stories").write_text("not a directory")
    with pytest.raises(CorpusError, match="expected a directory of <emotion>.jsonl files, found a regular file"):
        import_corpus("emotion-vector-bench", evb, tmp_path / "out")
    (evb / "stories").unlink()
    (evb / "stories").mkdir()
    with pytest.raises(CorpusError, match=r"no story files \(<emotion>.jsonl\)"):
        import_corpus("emotion-vector-bench", evb, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("make", "reason"), [
    (lambda p: os.symlink(p.name, p), "a symbolic link that loops"),
    (lambda p: os.symlink("missing-target", p), "a symbolic link to nothing"),
    (lambda p: p.mkdir(), "a directory, not a file"),
    (lambda p: os.mkfifo(p), "not a regular file"),
])
def test_unreadable_corpus_files_are_errors_not_skipped(tmp_path: Path, make: Callable[[Path], None],
                                                        reason: str) -> None:
    for rel in ("stories/en/calm.jsonl", "neutral.jsonl", "topics.json"):
        corpus = _copy(TINY, tmp_path / rel.replace("/", "_"))
        (corpus / rel).unlink()
        make(corpus / rel)
        with pytest.raises(CorpusError, match=f"unreadable: {reason}") as exc:
            load_corpus(corpus)
        assert exc.value.path == str(corpus / rel)
        if rel != "topics.json":  # topics.json is read with emotions.json: one schema violation
            assert [(v.file, v.rule) for v in validate_corpus(corpus) if "unreadable" in v.message] == [(rel, "json")]


def test_a_broken_link_among_language_directories_is_an_error(tmp_path: Path) -> None:
    corpus = _copy(TINY, tmp_path / "c")
    os.symlink("fr", corpus / "stories" / "fr")  # loops
    with pytest.raises(CorpusError, match="a symbolic link that loops") as exc:
        load_corpus(corpus)
    assert exc.value.path == str(corpus / "stories" / "fr")


@pytest.mark.parametrize("rel", ["stories/joyful.jsonl", "neutral_dialogues.jsonl", "implicit_scenarios.jsonl",
                                 "emotions.json"])
def test_evb_unreadable_sources_are_errors(tmp_path: Path, rel: str) -> None:
    src = _copy(EVB, tmp_path / "src")
    (src / rel).unlink()
    os.symlink((src / rel).name, src / rel)
    with pytest.raises(CorpusError, match="unreadable: a symbolic link that loops") as exc:
        import_corpus("emotion-vector-bench", src, tmp_path / "out")
    assert exc.value.path == str(src / rel)
    assert not (tmp_path / "out").exists()


def test_generic_import_refuses_a_pipe(tmp_path: Path) -> None:
    fifo = tmp_path / "feed.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(CorpusError, match="expected a JSONL file"):
        import_corpus("jsonl", fifo, tmp_path / "out")


def test_import_into_an_unwritable_place_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(CorpusError, match="cannot create the destination: '.*a-file' is not a directory") as exc:
        import_corpus("emotion-vector-bench", EVB, tmp_path / "a-file" / "out")
    assert exc.value.path == str(tmp_path / "a-file" / "out")
    with pytest.raises(CorpusError, match="cannot use as destination: File name too long"):
        import_corpus("emotion-vector-bench", EVB, tmp_path / ("x" * 300))
    # a name that fits, but its temporary sibling (.NAME.importing-<id>) does not: fails while writing
    with pytest.raises(CorpusError, match="cannot write the corpus here: File name too long"):
        import_corpus("emotion-vector-bench", EVB, tmp_path / ("x" * 250))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
    loop = tmp_path / "loop"
    os.symlink("loop", loop)
    with pytest.raises(CorpusError, match="destination exists and is not a directory"):
        import_corpus("emotion-vector-bench", EVB, loop)


# ----------------------------------------------------------------------------------- the CLI

@pytest.mark.parametrize("args", [["corpus", "validate"], ["corpus", "stats"]])
def test_cli_reads_hostile_corpora_without_traceback(tmp_path: Path, args: list[str]) -> None:
    corpus = _copy(TINY, tmp_path / "c")
    (corpus / "emotions.json").write_text(_inject((corpus / "emotions.json").read_text(), "NaN"))
    r = CliRunner().invoke(cli, [*args, str(corpus)])
    assert "Traceback" not in r.output and not (r.exception and not isinstance(r.exception, SystemExit))
    if args[1] == "validate":
        assert r.exit_code == 1 and "NaN is not a JSON number" in r.output and "emotions.json" in r.output
    else:
        assert r.exit_code == 2
        assert r.stderr.strip() == (f"Error: {corpus / 'emotions.json'}: NaN is not a JSON number (numbers must be "
                                    "finite) (field 'x')")


def test_cli_import_of_a_stories_file_fails_instead_of_importing_nothing(tmp_path: Path) -> None:
    src = _copy(EVB, tmp_path / "src")
    shutil.rmtree(src / "stories")
    (src / "stories").write_text("")
    r = CliRunner().invoke(cli, ["corpus", "import", "emotion-vector-bench", str(src), str(tmp_path / "out")])
    assert r.exit_code == 2 and "imported" not in r.output
    assert r.stderr.strip() == (f"Error: {src / 'stories'}: expected a directory of <emotion>.jsonl files, "
                                "found a regular file")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("content", "message"), [
    (b"# a readme without the generated-table markers\n", "the datasheet has no generated-table markers"),
    (b"\xff\xfe not UTF-8", "not UTF-8 text"),
])
def test_cli_datasheet_that_cannot_be_updated(tmp_path: Path, content: bytes, message: str) -> None:
    sheet = tmp_path / "README.md"
    sheet.write_bytes(content)
    r = CliRunner().invoke(cli, ["corpus", "stats", str(TINY), "--datasheet", str(sheet)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.stderr.startswith(f"Error: {sheet}: {message}") and len(r.stderr.strip().splitlines()) == 1
    assert sheet.read_bytes() == content and sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]
