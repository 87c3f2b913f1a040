"""The corpus tools: loader, validator, stats, importers, datasheet, and their CLI."""
from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from emovec.cli.main import cli
from emovec.corpus import (
    KINDS,
    CorpusError,
    CorpusWarning,
    Violation,
    balance_table,
    corpus_sha256,
    corpus_stats,
    datasheet_tables,
    emotion_table,
    import_corpus,
    load_corpus,
    validate_corpus,
)
from emovec.corpus.loader import COLUMNS, resolve_corpus, text_length
from emovec.corpus.stats import DATASHEET_BEGIN, DATASHEET_END, render_datasheet
from emovec.corpus.validate import near_duplicate_pairs, shingles, stem_pattern
from emovec_store.engine import load_tokenizer
from emovec_store.errors import InputError, ModelResolutionError

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "emovec_tiny"
EVB = FIXTURES / "evb_tiny"
GENERIC = FIXTURES / "generic"
BUILTIN_EMOTIONS = ["joyful", "excited", "proud", "amused", "enthusiastic", "inspired", "calm", "content",
                    "relieved", "grateful", "serene", "hopeful", "furious", "terrified", "panicked", "anxious",
                    "disgusted", "desperate", "sad", "depressed", "lonely", "bored", "weary", "gloomy"]
# The corpus hash of the tiny fixture, all languages and kinds: pinned so that a change to the hash
# definition (which would orphan every store made so far) cannot go unnoticed.
TINY_SHA256 = "aab15ca2bd58"


@pytest.fixture(scope="module")
def builtin() -> pd.DataFrame:
    return load_corpus("emovec", languages=None)


@pytest.fixture(scope="module")
def builtin_violations() -> list[Violation]:
    return validate_corpus()


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A writable copy of the tiny corpus (which passes every rule)."""
    return Path(shutil.copytree(TINY, tmp_path / "tiny"))


def edit_jsonl(path: Path, line: int, change: Callable[[dict], dict | str | None]) -> None:
    """Replace record ``line`` (from 1) of a JSONL file by ``change(record)``: a dict, a raw line, or None (drop)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    new = change(json.loads(lines[line - 1]))
    if new is None:
        del lines[line - 1]
    else:
        lines[line - 1] = new if isinstance(new, str) else json.dumps(new, ensure_ascii=False)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def rules(violations: list[Violation]) -> set[tuple[str, int | None, str | None, str]]:
    return {(v.file, v.line, v.field, v.rule) for v in violations}


# ------------------------------------------------------------------------------------ built-in corpus

def test_builtin_corpus_is_complete_and_labelled(builtin: pd.DataFrame) -> None:
    assert list(builtin.columns) == list(COLUMNS)
    assert builtin["level"].dtype == "int64"
    assert builtin["stimulus"].is_unique
    counts = builtin.groupby(["kind", "language"]).size().to_dict()
    assert counts == {("story", "en"): 960, ("story", "zh"): 192, ("neutral", "en"): 60,
                      ("implicit", "en"): 48, ("intensity", "en"): 36}
    info = builtin.attrs["corpus"]
    assert info["name"] == "emovec-corpus" and info["version"] == "1.0" and info["source"] == "builtin"
    assert info["emotions"] == BUILTIN_EMOTIONS
    assert info["sha256"] == corpus_sha256(builtin) and re.fullmatch(r"[0-9a-f]{64}", info["sha256"])
    assert list(emotion_table()["name"]) == BUILTIN_EMOTIONS
    en = builtin[(builtin["kind"] == "story") & (builtin["language"] == "en")]
    assert en.groupby("emotion").size().eq(40).all()
    assert (en.groupby(["emotion", "perspective"]).size() == 20).all()


def test_builtin_corpus_validates_clean(builtin_violations: list[Violation]) -> None:
    assert builtin_violations == [], "\n".join(map(str, builtin_violations[:30]))


def test_builtin_row_order_and_splits(builtin: pd.DataFrame) -> None:
    kinds_in_order = list(dict.fromkeys(zip(builtin["language"], builtin["kind"])))
    assert kinds_in_order == [("en", "story"), ("en", "neutral"), ("en", "implicit"), ("en", "intensity"),
                              ("zh", "story")]
    for lang in ("en", "zh"):
        stories = builtin[(builtin["kind"] == "story") & (builtin["language"] == lang)]
        assert list(dict.fromkeys(stories["emotion"])) == BUILTIN_EMOTIONS
    assert set(builtin.loc[builtin["split"] == "train", "kind"]) == {"story", "neutral"}
    assert set(builtin.loc[builtin["split"] == "train", "language"]) == {"en"}
    assert (builtin.loc[builtin["language"] == "zh", "split"] == "test").all()
    assert (builtin.loc[builtin["kind"].isin(["implicit", "intensity"]), "split"] == "test").all()
    assert builtin.loc[builtin["kind"] == "neutral", ["emotion", "topic", "perspective"]].eq("").all().all()


def test_builtin_default_selection_and_version(builtin: pd.DataFrame) -> None:
    en = load_corpus()  # English, every kind
    assert set(en["language"]) == {"en"} and len(en) == 1104
    assert en.attrs["corpus"]["sha256"] != builtin.attrs["corpus"]["sha256"]  # the hash covers what was loaded
    assert load_corpus("builtin", version="1.0", languages=("zh",), kinds="story").shape[0] == 192
    with pytest.raises(CorpusError, match=r"version '1\.0', not '2\.0'") as exc:
        load_corpus("emovec", version="2.0")
    assert exc.value.exit_code == 2 and isinstance(exc.value, InputError)


# ------------------------------------------------------------------------------------------- loader

def test_tiny_corpus_table() -> None:
    table = load_corpus(TINY, languages=None)
    assert list(table["stimulus"][:3]) == ["en.calm.bus-stop.first", "en.calm.bus-stop.third",
                                           "en.calm.kitchen-repair.first"]
    assert list(dict.fromkeys(table["kind"])) == ["story", "neutral", "implicit", "intensity"]
    row = table.set_index("stimulus").loc["intensity.on-hold.2"]
    assert (row["template"], row["level"], row["value"], row["emotion"], row["split"]) == \
        ("on-hold", 2, "40", "furious", "test")
    for text, digest in zip(table["text"], table["text_sha256"]):
        assert digest == hashlib.sha256(text.encode("utf-8")).hexdigest()
    info = table.attrs["corpus"]
    assert info["sha256"].startswith(TINY_SHA256)
    assert info["source"] == str(TINY.resolve()) and info["emotions"] == ["calm", "furious"]
    # the hash and the order do not depend on how the selection is spelt
    again = load_corpus(str(TINY), languages=["zh", "en"], kinds=list(reversed(KINDS)))
    pd.testing.assert_frame_equal(table, again)
    assert again.attrs["corpus"]["sha256"] == info["sha256"]


def test_emotion_table_of_a_path() -> None:
    table = emotion_table(TINY)
    assert list(table.columns) == ["name", "quadrant", "valence", "arousal", "dominance"]
    assert table.loc[1].to_dict() == {"name": "furious", "quadrant": "unpleasant-high", "valence": 0.062,
                                      "arousal": 0.953, "dominance": 0.598}


def test_unknown_corpus_kind_and_version(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no corpus at 'nope'"):
        load_corpus("nope")
    with pytest.raises(CorpusError, match="unknown kinds 'stories'"):
        load_corpus(TINY, kinds=["stories"])
    with pytest.raises(CorpusError, match=r"emotions\.json.*not a corpus in the emovec layout"):
        load_corpus(tmp_path)
    with pytest.raises(CorpusError, match="version '0.1', not '1.0'"):
        load_corpus(TINY, version="1.0")


@pytest.mark.parametrize(("file", "line", "change", "field", "message"), [
    ("stories/en/furious.jsonl", 2, lambda r: "{not json", None, "invalid JSON"),
    ("stories/en/furious.jsonl", 3, lambda r: {k: v for k, v in r.items() if k != "topic"}, "topic", "missing field"),
    ("stories/en/calm.jsonl", 4, lambda r: {**r, "emotion": "furious"}, "emotion", "in the file of 'calm'"),
    ("stories/en/calm.jsonl", 1, lambda r: {**r, "language": "zh"}, "language", "under stories/en/"),
    ("stories/en/calm.jsonl", 1, lambda r: {**r, "perspective": "second"}, "perspective", "'second'"),
    ("implicit.jsonl", 2, lambda r: {**r, "emotion": "smug"}, "emotion", "'smug' is not in emotions.json"),
    ("intensity.jsonl", 3, lambda r: {**r, "level": "3"}, "level", "integer"),
    ("intensity.jsonl", 1, lambda r: {**r, "value": "7"}, "value", "does not occur"),
    ("neutral.jsonl", 1, lambda r: {**r, "text": "  "}, "text", "must not be empty"),
    ("implicit.jsonl", 1, lambda r: {**r, "id": "neutral.02"}, "id", "duplicate id 'neutral.02'"),
])
def test_loader_names_file_line_and_field(tiny: Path, file: str, line: int, change: Callable[[dict], object],
                                          field: str | None, message: str) -> None:
    edit_jsonl(tiny / file, line, change)  # type: ignore[arg-type]
    with pytest.raises(CorpusError) as exc:
        load_corpus(tiny, languages=None)
    assert exc.value.path == str(tiny / file) and exc.value.line == line and exc.value.field == field
    assert str(exc.value).startswith(f"{tiny / file}:{line}: ") and message in str(exc.value)


def test_loader_rejects_story_file_of_unknown_emotion(tiny: Path) -> None:
    shutil.copy(tiny / "stories/en/calm.jsonl", tiny / "stories/en/smug.jsonl")
    with pytest.raises(CorpusError, match="'smug' .* is not an emotion") as exc:
        load_corpus(tiny)
    assert exc.value.field == "emotion"


# ---------------------------------------------------------------------------------------- validator

def test_tiny_corpus_validates_clean() -> None:
    assert validate_corpus(TINY) == []


def _append_words(n: int) -> Callable[[dict], dict]:
    return lambda r: {**r, "text": r["text"] + " " + " ".join(f"filler{i}" for i in range(n))}


@pytest.mark.parametrize(("file", "line", "change", "expected"), [
    ("stories/en/calm.jsonl", 1, lambda r: {**r, "text": r["text"].replace("loose", "relaxed")},
     ("stories/en/calm.jsonl", 1, "text", "banned-stem")),  # own synonym
    ("stories/en/furious.jsonl", 2, lambda r: {**r, "text": r["text"].replace("hot", "CALMLY")},
     ("stories/en/furious.jsonl", 2, "text", "banned-stem")),  # another emotion's word form
    ("neutral.jsonl", 1, lambda r: {**r, "text": r["text"].replace("quick", "peacefully quick")},
     ("neutral.jsonl", 1, "text", "banned-stem")),  # neutral: every list
    ("stories/en/calm.jsonl", 3, lambda r: {**r, "text": " ".join(r["text"].split()[:70])},
     ("stories/en/calm.jsonl", 3, "text", "length")),
    ("implicit.jsonl", 1, _append_words(30), ("implicit.jsonl", 1, "text", "length")),
    ("stories/en/furious.jsonl", 4, lambda r: {**r, "id": "en.calm.bus-stop.first"},
     ("stories/en/furious.jsonl", 4, "id", "duplicate-id")),
    ("stories/en/furious.jsonl", 1, lambda r: {**r, "topic": "garden"},
     ("stories/en/furious.jsonl", 1, "topic", "schema")),
    ("stories/en/furious.jsonl", 1, lambda r: "[1, 2]", ("stories/en/furious.jsonl", 1, None, "json")),
    ("stories/en/furious.jsonl", 1, lambda r: {**r, "perspective": "third"},
     ("stories/en/furious.jsonl", None, "topic", "balance")),
    ("stories/en/furious.jsonl", 1, lambda r: None, ("stories/en/furious.jsonl", None, "topic", "balance")),
    ("intensity.jsonl", 2, lambda r: {**r, "text": r["text"].replace("third", "fourth")},
     ("intensity.jsonl", 2, "text", "intensity")),
    ("intensity.jsonl", 3, lambda r: {**r, "level": 4}, ("intensity.jsonl", 1, "level", "intensity")),
])
def test_each_rule_fires(tiny: Path, file: str, line: int, change: Callable[[dict], object],
                         expected: tuple[str, int | None, str | None, str]) -> None:
    edit_jsonl(tiny / file, line, change)  # type: ignore[arg-type]
    found = validate_corpus(tiny)
    assert expected in rules(found), "\n".join(map(str, found))


def test_banned_stem_message_names_entry_and_owner(tiny: Path) -> None:
    edit_jsonl(tiny / "stories/en/furious.jsonl", 3, lambda r: {**r, "text": r["text"] + " Enraged."})
    (v,) = validate_corpus(tiny)
    assert v.message == "banned stem 'enraged' (synonym of furious) matched 'Enraged'"
    assert str(v) == f"stories/en/furious.jsonl:3: [banned-stem] (text) {v.message}"


def test_other_emotions_synonyms_are_allowed(tiny: Path) -> None:
    # "angry" is a synonym of furious: banned in furious stories, allowed in calm ones
    edit_jsonl(tiny / "stories/en/calm.jsonl", 2, lambda r: {**r, "text": r["text"].replace("swore", "swore, angry,")})
    assert validate_corpus(tiny) == []


def test_near_duplicate_and_length_balance(tiny: Path) -> None:
    calm = (tiny / "stories/en/calm.jsonl").read_text(encoding="utf-8").splitlines()
    text = json.loads(calm[0])["text"]
    edit_jsonl(tiny / "stories/en/furious.jsonl", 1, lambda r: {**r, "text": text.replace("late", "early")})
    for line in range(1, 5):
        edit_jsonl(tiny / "stories/en/calm.jsonl", line, _append_words(20))
    found = validate_corpus(tiny)
    near = [v for v in found if v.rule == "near-duplicate"]
    assert [(v.file, v.line) for v in near] == [("stories/en/furious.jsonl", 1)]
    assert "stories/en/calm.jsonl:1 (en.calm.bus-stop.first)" in near[0].message
    balance = {v.file for v in found if v.rule == "length-balance"}
    assert balance == {"stories/en/calm.jsonl", "stories/en/furious.jsonl"}


def test_chinese_rules(tiny: Path) -> None:
    zh = tiny / "stories/zh"
    zh.mkdir()
    text = "她把伞收好，站在公交站牌下面，慢慢数着路过的车。" * 7  # 147 hanzi, no banned word
    rec = {"id": "zh.calm.bus-stop.first", "emotion": "calm", "topic": "bus-stop", "perspective": "first",
           "language": "zh", "text": text}
    banned = {**rec, "id": "zh.calm.bus-stop.third", "perspective": "third", "text": "暴怒" + text[2:]}
    short = {**rec, "id": "zh.calm.kitchen-repair.first", "topic": "kitchen-repair", "text": text[:100]}
    (zh / "calm.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in (rec, banned, short)),
                                   encoding="utf-8")
    found = validate_corpus(tiny)
    assert rules(found) >= {("stories/zh/calm.jsonl", 2, "text", "banned-stem"),  # first two of furious
                            ("stories/zh/calm.jsonl", 3, "text", "length"),
                            ("stories/zh/calm.jsonl", 2, "text", "near-duplicate"),  # character 5-grams
                            ("stories/zh/calm.jsonl", None, "perspective", "balance"),
                            ("stories/zh/furious.jsonl", None, None, "missing")}
    assert not {r for r in rules(found) if r[:2] == ("stories/zh/calm.jsonl", 1)}
    assert text_length(text, "zh") == 147


def test_non_utf8_file_is_reported_not_raised(tiny: Path) -> None:
    path = tiny / "stories/en/calm.jsonl"
    path.write_bytes(path.read_bytes().replace(b"Tomas", b"Tom\xe1s"))
    (v, *_) = validate_corpus(tiny)
    assert (v.file, v.line, v.rule) == ("stories/en/calm.jsonl", 4, "json") and v.message.startswith("not UTF-8")
    with pytest.raises(CorpusError, match=r"calm\.jsonl:4: not UTF-8"):
        load_corpus(tiny)


def test_broken_emotions_json_is_one_violation(tiny: Path) -> None:
    (tiny / "emotions.json").write_text('{"name": "tiny", "version": "0.1", "emotions": [}', encoding="utf-8")
    (v,) = validate_corpus(tiny)
    assert (v.file, v.line, v.rule) == ("emotions.json", 1, "schema") and v.message.startswith("invalid JSON")


@pytest.mark.parametrize(("entry", "hits", "misses"), [
    ("joy*", ["joy", "Joyfully", "JOYOUS"], ["enjoy", "killjoy"]),
    ("sad", ["Sad.", "so sad!"], ["sadly", "saddle"]),
    ("can't wait", ["I can't  wait", "can’t\nwait"], ["cant wait", "can't waiting"]),
    ("self-satisfied", ["a self-satisfied grin"], ["selfsatisfied"]),
])
def test_stem_patterns(entry: str, hits: list[str], misses: list[str]) -> None:
    regex = re.compile(stem_pattern(entry), re.IGNORECASE)
    assert all(regex.search(t) for t in hits)
    assert not any(regex.search(t) for t in misses)


def test_near_duplicate_search_equals_brute_force() -> None:
    rng = random.Random(0)
    sets = [frozenset(rng.sample(range(40), rng.randint(0, 12))) for _ in range(60)]
    groups = [rng.choice([None, "a", "b"]) for _ in sets]
    brute = [(i, j, len(a & b) / len(a | b)) for (i, a), (j, b) in itertools.combinations(enumerate(sets), 2)
             if a and b and len(a & b) / len(a | b) > 0.35 and not (groups[i] and groups[i] == groups[j])]
    assert near_duplicate_pairs(sets, 0.35, groups) == brute
    assert shingles("A b, c d e F", "en") == {("a", "b", "c", "d", "e"), ("b", "c", "d", "e", "f")}


# -------------------------------------------------------------------------------------------- stats

def test_corpus_stats_counts_and_lengths() -> None:
    stats = corpus_stats(TINY)
    table = load_corpus(TINY)
    assert list(stats.columns) == ["kind", "language", "emotion", "n", "unit", "length_mean", "length_sd",
                                   "length_min", "length_max"]
    row = stats[(stats["kind"] == "story") & (stats["emotion"] == "calm")].iloc[0]
    words = [len(t.split()) for t in table.loc[(table["kind"] == "story") & (table["emotion"] == "calm"), "text"]]
    assert row["n"] == 4 and row["unit"] == "words"
    assert row["length_mean"] == pytest.approx(sum(words) / 4)
    assert (row["length_min"], row["length_max"]) == (min(words), max(words))
    assert row["length_sd"] == pytest.approx(pd.Series(words).std())
    assert stats["n"].sum() == len(table)
    assert pd.isna(stats.loc[stats["kind"] == "implicit", "length_sd"]).all()  # one text each


def _word_tokenizer(directory: Path, texts: list[str]) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0}
    for t in texts:
        for piece in re.findall(r"\w+|[^\w\s]+", t):
            vocab.setdefault(piece, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(directory)
    return directory


def test_corpus_stats_counts_tokens(tmp_path: Path) -> None:
    table = load_corpus(TINY)
    tok_dir = _word_tokenizer(tmp_path / "tok", list(table["text"]))
    stats = corpus_stats(TINY, tokenizer=load_tokenizer(str(tok_dir)))
    neutral = stats[stats["kind"] == "neutral"].iloc[0]
    pieces = [len(re.findall(r"\w+|[^\w\s]+", t)) for t in table.loc[table["kind"] == "neutral", "text"]]
    assert neutral["tokens_mean"] == pytest.approx(sum(pieces) / len(pieces))
    assert (neutral["tokens_min"], neutral["tokens_max"]) == (min(pieces), max(pieces))
    r = CliRunner().invoke(cli, ["corpus", "stats", str(TINY), "--tokenizer", str(tok_dir), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["corpus"]["name"] == "tiny" and doc["stats"][0]["tokens_max"] >= doc["stats"][0]["length_max"]
    assert doc["stats"][3]["length_sd"] is None  # NaN becomes null


def test_gguf_tokenizers_load_from_the_parent_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    calls = []
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained",
                        lambda *a, **kw: calls.append((a, kw)) or "tok")
    gguf = tmp_path / "m" / "model-Q4.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    assert load_tokenizer(gguf) == "tok"
    assert calls == [((str(gguf.parent),), {"gguf_file": "model-Q4.gguf", "local_files_only": True,
                                            "trust_remote_code": False})]


def test_bad_tokenizer_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(ModelResolutionError, match="no tokenizer at"):
        load_tokenizer(tmp_path / "missing")
    with pytest.raises(CorpusError, match="takes a tokenizer object"):  # the corpus layer loads no models
        corpus_stats(TINY, tokenizer=str(tmp_path))
    r = CliRunner().invoke(cli, ["corpus", "stats", str(TINY), "--tokenizer", str(tmp_path)])
    assert r.exit_code == 2 and "could not load a tokenizer" in r.stderr


def test_balance_table() -> None:
    table = balance_table(TINY)
    assert len(table) == 2 * 2 * 2 and (table["n"] == 1).all()
    assert list(table.iloc[0]) == ["calm", "bus-stop", "first", 1]


def test_datasheet_tables_are_current() -> None:
    readme = (resolve_corpus("emovec")[0] / "README.md").read_text(encoding="utf-8")
    section = readme.split(DATASHEET_BEGIN, 1)[1].split(DATASHEET_END, 1)[0]
    assert section.strip() == datasheet_tables().strip(), \
        "the datasheet is stale: run `emovec corpus stats --datasheet corpus/README.md`"


def test_render_datasheet_replaces_only_the_generated_part(tmp_path: Path) -> None:
    doc = f"intro\n{DATASHEET_BEGIN}\nSTALE\n{DATASHEET_END}\noutro\n"
    assert render_datasheet(doc, "new\n") == f"intro\n{DATASHEET_BEGIN}\n\nnew\n\n{DATASHEET_END}\noutro\n"
    sheet = tmp_path / "README.md"
    sheet.write_text(doc, encoding="utf-8")
    r = CliRunner().invoke(cli, ["corpus", "stats", str(TINY), "--datasheet", str(sheet)])
    assert r.exit_code == 0, r.output
    text = sheet.read_text(encoding="utf-8")
    assert text.startswith("intro\n") and text.endswith("outro\n") and "| calm |" in text and "STALE" not in text


# ---------------------------------------------------------------------------------------- importers

def test_import_emotion_vector_bench(tmp_path: Path) -> None:
    dest = import_corpus("emotion-vector-bench", EVB, tmp_path / "out")
    table = load_corpus(dest, languages=None)
    assert table.groupby("kind").size().to_dict() == {"story": 8, "neutral": 2, "implicit": 2}
    assert list(table["stimulus"][:4]) == ["evb.joyful.t00.0", "evb.joyful.t00.1", "evb.joyful.t01.0",
                                           "evb.joyful.t01.1"]
    assert list(table.loc[table["kind"] != "story", "stimulus"]) == [
        "evb.neutral.0", "evb.neutral.1", "evb.implicit.joyful.1", "evb.implicit.weary.1"]
    assert table.attrs["corpus"]["emotions"] == ["joyful", "weary"]
    assert table.attrs["corpus"]["name"] == "emotion-vector-bench"
    assert table.attrs["corpus"]["version"].startswith("src-")
    src_texts = [json.loads(line)["text"] for line in (EVB / "stories/joyful.jsonl").read_text().splitlines()]
    assert list(table["text"][:4]) == src_texts  # texts are imported verbatim
    topics = json.loads((dest / "topics.json").read_text())["topics"]
    assert topics[1] == {"id": "t01", "domain": "Professional/Career",
                         "description": "A colleague retires after thirty years"}
    emotions = json.loads((dest / "emotions.json").read_text())
    assert emotions["emotions"][0] == {"name": "joyful", "cluster": "Exuberant Joy"}
    # the validator checks it against emovec's rules: schema-clean, but short and unbalanced texts
    found = {v.rule for v in validate_corpus(dest)}
    assert found and not found & {"schema", "json", "duplicate-id"}
    # same source, same corpus: the import is deterministic
    again = load_corpus(import_corpus("emotion-vector-bench", EVB, tmp_path / "again"), languages=None)
    assert again.attrs["corpus"]["sha256"] == table.attrs["corpus"]["sha256"]


def test_import_disambiguates_a_reused_story_index(tmp_path: Path) -> None:
    src = Path(shutil.copytree(EVB, tmp_path / "src"))
    edit_jsonl(src / "stories/weary.jsonl", 2, lambda r: {**r, "story_index": 0})
    with pytest.warns(CorpusWarning, match=r"weary\.jsonl:2: story_index 0 of topic t00 is already used on line 1"):
        dest = import_corpus("emotion-vector-bench", src, tmp_path / "out", name="evb", version="6dde90c")
    table = load_corpus(dest)
    assert "evb.weary.t00.0.2" in set(table["stimulus"]) and table["stimulus"].is_unique
    assert table.attrs["corpus"]["version"] == "6dde90c"


@pytest.mark.parametrize(("file", "line", "change", "field", "message"), [
    ("stories/joyful.jsonl", 2, lambda r: '{"emotion": "joyful",', None, "invalid JSON"),
    ("stories/joyful.jsonl", 3, lambda r: {k: v for k, v in r.items() if k != "text"}, "text", "missing field"),
    ("stories/weary.jsonl", 4, lambda r: {**r, "text": ""}, "text", "must not be empty"),
    ("stories/weary.jsonl", 1, lambda r: {**r, "emotion": "bored"}, "emotion", "unknown emotion 'bored'"),
    ("stories/weary.jsonl", 2, lambda r: {**r, "emotion": "joyful"}, "emotion", "in the file of 'weary'"),
    ("stories/weary.jsonl", 3, lambda r: {**r, "topic": "A dog learns to swim"}, "topic", "unknown topic"),
    ("stories/weary.jsonl", 3, lambda r: {**r, "story_index": -1}, "story_index", "integer >= 0"),
    ("stories/weary.jsonl", 3, lambda r: {**r, "perspective": "second"}, "perspective", "'second'"),
    ("neutral_dialogues.jsonl", 2, lambda r: {**r, "dialogue_index": "1"}, "dialogue_index", "integer"),
    ("implicit_scenarios.jsonl", 2, lambda r: {**r, "target": "smug"}, "target", "unknown emotion 'smug'"),
])
def test_malformed_import_writes_nothing(tmp_path: Path, file: str, line: int, change: Callable[[dict], object],
                                         field: str | None, message: str) -> None:
    src = Path(shutil.copytree(EVB, tmp_path / "src"))
    edit_jsonl(src / file, line, change)  # type: ignore[arg-type]
    out = tmp_path / "out"
    with pytest.raises(CorpusError) as exc:
        import_corpus("emotion-vector-bench", src, out)
    assert (exc.value.path, exc.value.line, exc.value.field) == (str(src / file), line, field)
    assert message in str(exc.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no DEST, no temp dir
    r = CliRunner().invoke(cli, ["corpus", "import", "emotion-vector-bench", str(src), str(out)])
    assert r.exit_code == 2 and r.stderr.startswith(f"Error: {src / file}:{line}: ")
    assert not out.exists()


def test_story_file_of_unknown_emotion_is_refused(tmp_path: Path) -> None:
    src = Path(shutil.copytree(EVB, tmp_path / "src"))
    shutil.copy(src / "stories/weary.jsonl", src / "stories/bored.jsonl")
    with pytest.raises(CorpusError, match="story file of unknown emotion 'bored'") as exc:
        import_corpus("emotion-vector-bench", src, tmp_path / "out")
    assert exc.value.path == str(src / "stories/bored.jsonl") and not (tmp_path / "out").exists()


def test_import_refuses_a_non_empty_destination(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(CorpusError, match="not empty"):
        import_corpus("emotion-vector-bench", EVB, dest)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert import_corpus("emotion-vector-bench", EVB, empty) == empty and (empty / "emotions.json").is_file()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_import_generic_labelled_stories(tmp_path: Path, fmt: str) -> None:
    dest = import_corpus(fmt, GENERIC / f"feelings.{fmt}", tmp_path / "out", text_field="body",
                         label_field="feeling", group_field="setting", id_field="uid", kind="story")
    table = load_corpus(dest)
    assert list(table["stimulus"]) == ["r2", "r4", "r1", "r3"]  # emotions sorted: anger, joy
    assert list(table["emotion"]) == ["anger", "anger", "joy", "joy"]
    assert list(table["topic"]) == ["work-life", "home", "work-life", "home"]
    assert set(table["split"]) == {"train"} and set(table["perspective"]) == {""}
    assert table.loc[1, "text"].endswith("morning,\nright above the bed.")  # a quoted multi-line CSV field
    assert table.attrs["corpus"]["name"] == "feelings"
    assert (dest / "stories/en/joy.jsonl").is_file()


def test_generic_jsonl_and_csv_import_the_same_records(tmp_path: Path) -> None:
    a = load_corpus(import_corpus("jsonl", GENERIC / "feelings.jsonl", tmp_path / "a", text_field="body"))
    b = load_corpus(import_corpus("csv", GENERIC / "feelings.csv", tmp_path / "b", text_field="body"))
    assert list(a["stimulus"]) == ["feelings.1", "feelings.2", "feelings.3", "feelings.4"]
    assert set(a["kind"]) == {"external"} and set(a["split"]) == {"test"} and set(a["emotion"]) == {""}
    assert a.attrs["corpus"]["sha256"] == b.attrs["corpus"]["sha256"]


@pytest.mark.parametrize(("fmt", "options", "line", "field", "message"), [
    ("csv", {"text_field": "text"}, 1, "text", "no column 'text'; the header has uid, body, feeling, setting"),
    ("jsonl", {"text_field": "body", "label_field": "mood"}, 1, "mood", "missing field"),
    ("jsonl", {"text_field": "body", "label_field": "feeling", "emotions": "joy,fear"}, 2, "feeling",
     "unknown emotion 'anger'"),
    ("csv", {"text_field": "body", "id_field": "feeling"}, 4, "feeling", "duplicate id 'Joy' (first on line 2)"),
    ("csv", {"text_field": "body", "id_field": "setting"}, 2, "setting", "must not contain whitespace"),
])
def test_generic_import_errors(tmp_path: Path, fmt: str, options: dict, line: int, field: str, message: str) -> None:
    with pytest.raises(CorpusError) as exc:
        import_corpus(fmt, GENERIC / f"feelings.{fmt}", tmp_path / "out", **options)
    assert (exc.value.line, exc.value.field) == (line, field) and message in str(exc.value)
    assert not (tmp_path / "out").exists()


def test_csv_errors_give_the_physical_line(tmp_path: Path) -> None:
    src = tmp_path / "x.csv"
    rows = (GENERIC / "feelings.csv").read_text().splitlines()
    src.write_text("\n".join([*rows, 'r5,,joy,Home']) + "\n")  # the multi-line record spans lines 5-6
    with pytest.raises(CorpusError, match="must not be empty") as exc:
        import_corpus("csv", src, tmp_path / "out", text_field="body")
    assert (exc.value.path, exc.value.line, exc.value.field) == (str(src), 7, "body")


def test_import_option_checks(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="option 'text_field' does not apply to format 'emotion-vector-bench'"):
        import_corpus("emotion-vector-bench", EVB, tmp_path / "o", text_field="body")
    with pytest.raises(CorpusError, match="needs emotion labels"):
        import_corpus("jsonl", GENERIC / "feelings.jsonl", tmp_path / "o", kind="story")
    with pytest.raises(CorpusError, match="unknown import format 'tsv'"):
        import_corpus("tsv", GENERIC / "feelings.jsonl", tmp_path / "o")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------- CLI

def test_cli_validate_builtin_ok(builtin_violations: list[Violation]) -> None:
    r = CliRunner().invoke(cli, ["corpus", "validate"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("ok: emovec-corpus 1.0 (builtin): 1296 records") and r.stdout.count("\n") == 1


def test_cli_validate_reports_a_table_and_exits_1(tiny: Path) -> None:
    edit_jsonl(tiny / "stories/en/calm.jsonl", 2, lambda r: {**r, "text": r["text"] + " So tranquil."})
    r = CliRunner().invoke(cli, ["corpus", "validate", str(tiny)])
    assert r.exit_code == 1
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["where", "rule", "field", "message"]
    assert lines[1].split()[:3] == ["stories/en/calm.jsonl:2", "banned-stem", "text"]
    assert lines[-1] == "1 violation(s): 1 banned-stem"
    r = CliRunner().invoke(cli, ["corpus", "validate", str(tiny / "nowhere")])
    assert r.exit_code == 2 and r.stderr.startswith("Error: no corpus at")
    r = CliRunner().invoke(cli, ["corpus", "validate", str(tiny), "--json"])
    assert r.exit_code == 1
    assert json.loads(r.stdout)[0] == {"file": "stories/en/calm.jsonl", "line": 2, "field": "text",
                                       "rule": "banned-stem",
                                       "message": "banned stem 'tranquil*' (synonym of calm) matched 'tranquil'"}


def test_cli_import_then_stats(tmp_path: Path) -> None:
    src = Path(shutil.copytree(EVB, tmp_path / "src"))
    edit_jsonl(src / "stories/joyful.jsonl", 4, lambda r: {**r, "story_index": 0})
    out = tmp_path / "imported"
    r = CliRunner().invoke(cli, ["corpus", "import", "emotion-vector-bench", str(src), str(out),
                                 "--corpus-version", "v1"])
    assert r.exit_code == 0, r.output
    assert "note: " in r.stderr and "imported as 'evb.joyful.t01.0.2'" in r.stderr
    assert r.stdout.startswith(f"imported 12 records (8 story (en), 2 neutral (en), 2 implicit (en)) into {out}")
    r = CliRunner().invoke(cli, ["corpus", "stats", str(out)])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("corpus emotion-vector-bench v1 (") and "joyful" in r.stdout
    r = CliRunner().invoke(cli, ["corpus", "import", "csv", str(GENERIC / "feelings.csv"), str(tmp_path / "g"),
                                 "--text-field", "body", "--label-field", "feeling", "--kind", "implicit"])
    assert r.exit_code == 0, r.output
    assert set(load_corpus(tmp_path / "g")["kind"]) == {"implicit"}
    r = CliRunner().invoke(cli, ["corpus", "import", "jsonl", str(GENERIC / "feelings.jsonl"), str(out)])
    assert r.exit_code == 2 and "not empty" in r.stderr
