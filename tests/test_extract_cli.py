"""`emovec extract` end to end on tiny models: the store it writes, bad input, options, progress (resume after
SIGKILL, shards and Ctrl-C are in test_extract_resume.py)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import emovec_store
from emovec.cli.main import cli
from emovec_store.finalize import manifest

from .extract_runs import extract_cmd, tree_digest
from .tiny_models import build_model


def test_extract_writes_a_labelled_complete_store(llama_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    r = CliRunner().invoke(cli, extract_cmd(llama_dir, store, "--limit", "60", "--json"))
    assert r.exit_code == 0, r.output
    result = json.loads(r.output)
    assert result["finalized"] and result["layers"] == [0, 1, 2, 3]
    st = emovec_store.open(store)
    assert st.readouts(result["model"]) == ["assistant", "mean_from_50"]
    ds = st.dataset(result["model"], "mean_from_50")
    assert ds.pooled.dims == ("layer", "stimulus", "hidden") and ds.pooled.shape == (4, 60, 32)
    assert {"emotion", "kind", "topic", "n_tokens"} <= set(ds.coords)
    assert np.isfinite(ds.pooled.values).all()
    assert ds.attrs["spec"] == "mean_from:50" and "n//2" in ds.attrs["short_text_rule"]
    assert (np.diff(ds.n_tokens.values) <= 0).all()  # rows are in plan order: longest first
    assistant = st.dataset(result["model"], "assistant")
    assert set(assistant.kind.values) <= {"implicit", "intensity"} and assistant.sizes["stimulus"] > 0
    attrs = st.model_attrs(result["model"])
    from emovec_store.engine.device import choose

    policy = choose("cpu", "auto")  # float32, or bfloat16 on a CPU with native bf16 (test_engine_dtype.py)
    assert attrs["n_layers"] == 3 and attrs["compute_dtype"] == policy.compute_dtype
    assert attrs["compute_dtype_reason"] == policy.compute_dtype_reason
    assert "no final norm" in attrs["layer_convention"]
    assert len(attrs["max_abs_per_layer"]) == 4


def write_corpus(path: Path, texts: list[str]) -> Path:
    (path / "stories/en").mkdir(parents=True)
    (path / "emotions.json").write_text(json.dumps({"name": "t", "version": "1", "emotions": [{"name": "calm"}]}))
    (path / "topics.json").write_text(json.dumps({"name": "t", "version": "1", "topics": [{"id": "x"}]}))
    with open(path / "stories/en/calm.jsonl", "w") as fh:
        for i, text in enumerate(texts):
            fh.write(json.dumps({"id": f"c{i}", "emotion": "calm", "topic": "x", "perspective": "first",
                                 "language": "en", "text": text}) + "\n")
    return path


def test_bad_inputs_fail_in_one_line_with_exit_2_and_leave_the_store_alone(llama_dir: Path,
                                                                           tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    runner = CliRunner()
    assert runner.invoke(cli, extract_cmd(llama_dir, store, "--limit", "20")).exit_code == 0
    before = tree_digest(store)
    corrupt = tmp_path / "broken.gguf"
    corrupt.write_bytes(b"GGUF" + os.urandom(200))
    cases = {
        "missing model": (extract_cmd(tmp_path / "no-such-model", store, "--limit", "20"), "does not exist"),
        "corrupt gguf": (extract_cmd(corrupt, store, "--limit", "20"), "cannot read GGUF"),
        "unknown alias": (extract_cmd(Path("smollm9-1m"), store, "--limit", "20"), "not a local path"),
        "hub id, hub unreachable": (extract_cmd(Path("some-org/some-model"), store, "--limit", "20"),
                                    "cannot load 'some-org/some-model' from the Hugging Face hub"),
        "layer out of range": (extract_cmd(llama_dir, store, "--limit", "20", "--layers", "0,9"), "out of range"),
        "other corpus": (extract_cmd(llama_dir, store, "--limit", "21"), "different stimulus table"),
        "other plan": (extract_cmd(llama_dir, store, "--limit", "20", "--layers", "0,1"), "layers: store has"),
        "empty corpus": (extract_cmd(llama_dir, store, "--corpus", str(write_corpus(tmp_path / "c0", []))),
                         "no stimuli"),
        "empty text": (extract_cmd(llama_dir, store, "--corpus", str(write_corpus(tmp_path / "c1", ["ok", " "]))),
                       "text"),
        "bad pooling": (extract_cmd(llama_dir, store, "--limit", "20", "--pooling", "median"), "unknown pooling"),
        "bad shard": (extract_cmd(llama_dir, store, "--limit", "20", "--shard", "2/2"), "--shard"),
    }
    for name, (args, message) in cases.items():
        r = runner.invoke(cli, args)
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert r.exit_code == 2, (name, r.output)
        assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], (name, r.output)
        assert tree_digest(store) == before, name


def test_same_name_different_weights_is_refused(tmp_path: Path) -> None:
    model = build_model("llama", tmp_path / "tiny")
    store = tmp_path / "s.zarr"
    runner = CliRunner()
    assert runner.invoke(cli, extract_cmd(model, store, "--limit", "12")).exit_code == 0
    before = tree_digest(store)
    build_model("llama", model, seed=1)  # same directory name, other weights
    r = runner.invoke(cli, extract_cmd(model, store, "--limit", "12"))
    assert r.exit_code == 2 and "model 'tiny'" in r.output and "weights_sha256" in r.output
    assert tree_digest(store) == before


def test_assistant_readout_needs_a_chat_template(tmp_path: Path) -> None:
    model = build_model("gpt2", tmp_path / "plain")
    (model / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((model / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    runner = CliRunner()
    r = runner.invoke(cli, extract_cmd(model, tmp_path / "a.zarr", "--limit", "12", "--pooling", "assistant"))
    assert r.exit_code == 2 and "needs a chat template" in r.output
    # the default readouts skip it with a note instead
    r = runner.invoke(cli, extract_cmd(model, tmp_path / "b.zarr", "--limit", "200"))
    assert r.exit_code == 0 and "skipped assistant@implicit,intensity" in r.output


def test_running_the_same_extraction_twice_is_a_no_op(llama_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    runner = CliRunner()
    assert runner.invoke(cli, extract_cmd(llama_dir, store, "--limit", "30")).exit_code == 0
    before = manifest(store)
    r = runner.invoke(cli, extract_cmd(llama_dir, store, "--limit", "30", "--json"))
    assert r.exit_code == 0, r.output
    assert all(x["batches_written"] == 0 for x in json.loads(r.output)["readouts"])
    assert manifest(store) == before and emovec_store.open(store).complete
    # a second model joins the finalized store; the first model's chunks stay as they were
    other = build_model("gpt2", tmp_path / "gpt2")
    assert runner.invoke(cli, extract_cmd(other, store, "--limit", "30")).exit_code == 0
    st = emovec_store.open(store)
    assert st.models == sorted([llama_dir.name, "gpt2"])
    assert {k: v for k, v in manifest(store).items() if k.startswith(f"models/{llama_dir.name}/")} == \
        {k: v for k, v in before.items() if k.startswith(f"models/{llama_dir.name}/")}


def test_max_length_truncates_and_counts(llama_dir: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, extract_cmd(llama_dir, tmp_path / "s.zarr", "--limit", "40", "--max-length", "30",
                                            "--pooling", "mean_from:50", "--json"))
    assert r.exit_code == 0, r.output
    readout = json.loads(r.output)["readouts"][0]
    ds = emovec_store.open(tmp_path / "s.zarr").dataset(llama_dir.name, "mean_from_50")
    assert int(ds.n_tokens.max()) == 30
    truncated = int((ds.n_tokens == 30).sum())
    assert truncated > 0 and readout["truncated"] == truncated and ds.attrs["truncated"] == truncated
    assert readout["short_texts"] == readout["stimuli"]  # 30 tokens <= 50: every text used the short rule


def test_no_lock_folder_is_left_by_a_run_a_rerun_or_a_refused_run(llama_dir: Path, tmp_path: Path) -> None:
    store, locks = tmp_path / "s.zarr", tmp_path / "s.zarr.locks"
    runner = CliRunner()
    for args, code in (((), 0), ((), 0), (("--layers", "0,1"), 2)):  # first run, no-op rerun, refused plan
        r = runner.invoke(cli, extract_cmd(llama_dir, store, "--limit", "12", *args))
        assert r.exit_code == code, r.output
        assert not locks.exists(), (args, sorted(locks.rglob("*")))


def test_threads_option_sets_and_records_the_torch_thread_count(llama_dir: Path, tmp_path: Path) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        r = CliRunner().invoke(cli, extract_cmd(llama_dir, tmp_path / "s.zarr", "--limit", "12", "--threads", "1",
                                                "--json"))
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["threads"] == 1 and torch.get_num_threads() == 1
        assert emovec_store.open(tmp_path / "s.zarr").model_attrs(llama_dir.name)["torch_threads"] == 1
        r = CliRunner().invoke(cli, extract_cmd(llama_dir, tmp_path / "t.zarr", "--limit", "12", "--threads", "0"))
        assert r.exit_code == 2 and "--threads" in r.output
    finally:
        torch.set_num_threads(before)


def test_an_unreachable_hub_is_found_out_with_one_probe_and_one_line(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import transformers

    with socket.socket() as s:  # a port nothing listens on: connecting is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for name in ("TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    probes: list[object] = []
    connect = socket.create_connection
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: probes.append(a) or connect(*a, **k))

    def download(*args: object, **kwargs: object) -> None:
        raise AssertionError("no download may be tried once the hub is known to be unreachable")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", download)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", download)
    r = CliRunner().invoke(cli, extract_cmd(Path("some-org/some-model"), tmp_path / "s.zarr", "--limit", "5"))
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0].startswith("Error: cannot load 'some-org/some-model' from the Hugging Face hub: the hub is "
                               f"unreachable (127.0.0.1:{port}: ")
    assert len(probes) == 1
    assert not (tmp_path / "s.zarr").exists()


def test_the_progress_bar_opens_after_the_screened_batch(llama_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from emovec.corpus import load_corpus
    from emovec_store.engine import extract

    meter_module = importlib.import_module("emovec_store.engine.meter")

    class Bar:
        def __init__(self, total: int, initial: int) -> None:
            self.total, self.initial, self.updates, self.closed = total, initial, [], False

        def update(self, n: int) -> None:
            self.updates.append(n)

        def set_postfix_str(self, text: str) -> None:
            pass

        def close(self) -> None:
            self.closed = True

    bars: list[Bar] = []

    def bar(total: int, desc: str, enabled: bool, initial: int = 0) -> Bar:
        bars.append(Bar(total, initial))
        return bars[-1]

    monkeypatch.setattr(meter_module, "progress_bar", bar)
    stimuli = load_corpus("emovec").iloc[:40].reset_index(drop=True)
    extract(str(llama_dir), stimuli, tmp_path / "s.zarr", pooling=["mean_from:50"], batch_tokens=400)
    group = emovec_store.open(tmp_path / "s.zarr").readout_group(llama_dir.name, "mean_from_50")
    starts, stops = group["_progress/batch_start"][:], group["_progress/batch_stop"][:]
    (only,) = bars
    assert only.initial == stops[0] - starts[0] > 0  # the screened first batch is done when the bar opens
    assert only.updates == [int(b - a) for a, b in zip(starts[1:], stops[1:])]  # the rest, as they run
    assert only.initial + sum(only.updates) == only.total == 40 and only.closed


def test_tokens_per_second_count_the_screened_batch_with_its_time() -> None:
    from emovec_store.engine.meter import Meter

    meter = Meter(started=100.0)
    meter.add(1000, seconds=2.0)  # batch 0: computed by the 2-second screening pass, written at once
    assert meter.rate(100.0) == 500.0  # not 1000 tokens in no time
    meter.add(1000)
    assert meter.rate(102.0) == 500.0 and meter.seconds(102.0) == 4.0


def test_store_info_and_corpus_stats_name_their_hashes_and_agree(llama_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, extract_cmd(llama_dir, tmp_path / "s.zarr", "--limit", "12")).exit_code == 0
    stats = runner.invoke(cli, ["corpus", "stats", "--json"])
    assert stats.exit_code == 0, stats.output
    by_language = json.loads(stats.output)["corpus"]["sha256_by_language"]
    assert set(by_language) == {"en", "zh"} and by_language["en"]["records"] == 1104
    text = runner.invoke(cli, ["corpus", "stats"]).output.splitlines()[1]
    assert text.startswith("corpus hash ") and f"en {by_language['en']['sha256'][:12]} (1,104)" in text
    info = runner.invoke(cli, ["store", "info", str(tmp_path / "s.zarr")]).output.splitlines()
    digest = emovec_store.open(tmp_path / "s.zarr").attrs["stimuli_sha256"]
    assert info[1].startswith(f"stimuli   12  (stimulus-table hash {digest[:12]}")
    assert info[2].startswith("corpus    emovec-corpus ") and (
        f"(corpus hash {by_language['en']['sha256'][:12]} of the en records, as in `emovec corpus stats`; "
        "--limit 12 of them stored)") in info[2]


def test_extract_options_normalise_and_refuse_bad_values_naming_the_field() -> None:
    from emovec.common.dtype_names import DTYPE_CHOICES
    from emovec_store.engine import ExtractOptions
    from emovec_store.errors import InputError

    opts = ExtractOptions(dtype="bf16", storage_dtype="half", shard="1/3", pooling=["last"])
    assert (opts.dtype, opts.storage_dtype, opts.shard, opts.pooling) == ("bfloat16", "float16", (1, 3), ("last",))
    assert [s.name for s in opts.specs] == ["last"] and opts.explicit_pooling
    assert not ExtractOptions().explicit_pooling and len(ExtractOptions().specs) == 2
    for bad, field in (({"dtype": "float8"}, "dtype"), ({"shard": "3/3"}, "shard"), ({"shard": (2, 1)}, "shard"),
                       ({"batch_tokens": 0}, "batch_tokens"), ({"sync_interval": -1.0}, "sync_interval"),
                       ({"pooling": ["last", "last"]}, "pooling")):
        with pytest.raises(InputError) as err:
            ExtractOptions(**bad)
        assert err.value.field == field
    # the CLI offers exactly the names the API accepts
    choices = {p.name: p.type.choices for p in cli.commands["extract"].params if p.name in ("dtype", "storage_dtype")}
    assert choices == {"dtype": DTYPE_CHOICES, "storage_dtype": DTYPE_CHOICES}


def test_limit_spreads_the_sample_over_the_corpus_and_records_it() -> None:
    from emovec.corpus import load_corpus
    from emovec.corpus.sample import spread_sample
    from emovec_store.errors import InputError

    table = load_corpus("emovec")
    sample = spread_sample(table, 48)
    assert len(sample) == 48 and sample.attrs["corpus"]["limit"] == 48
    assert set(sample["kind"]) == set(table["kind"]) and sample["emotion"].nunique() > 20
    assert spread_sample(table, None) is table and spread_sample(table, len(table) + 1) is table
    with pytest.raises(InputError, match="at least 1"):
        spread_sample(table, 0)


def test_a_lock_folder_that_cannot_be_made_is_one_line_and_leaves_no_store(llama_dir: Path, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only directory: the lock folder beside the store is the first thing extract makes there."""
    import errno

    real_mkdir = Path.mkdir

    def read_only(self: Path, *args: Any, **kwargs: Any) -> None:
        if self.name.endswith(".locks"):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    r = CliRunner().invoke(cli, extract_cmd(llama_dir, tmp_path / "s.zarr", "--limit", "4"))
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 3 and len(lines) == 1 and "Traceback" not in r.output, r.output
    assert "Read-only file system while taking a lock" in lines[0] and "s.zarr.locks" in lines[0], lines[0]
    assert not (tmp_path / "s.zarr").exists()
