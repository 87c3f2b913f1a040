"""Stores under hostile conditions: kills during creation, damaged metadata, bad zips, hostile
servers, filesystem errors. Every one ends in one clear line and the documented exit code."""
from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import emovec_store
from emovec.cli.main import cli

from .http_faults import FaultyHandler, handler, serving
from .synthetic import make_store

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, fault: tuple[str, int] | None = None) -> subprocess.CompletedProcess[str]:
    """The emovec CLI in a subprocess, optionally under a fault of tests/faults.py."""
    prefix = ["-m", "tests.faults", fault[0], str(fault[1]), "emovec"] if fault else ["-m", "emovec.cli"]
    return subprocess.run([sys.executable, *prefix, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)  # a hang guard, not a speed limit


@pytest.mark.parametrize("kill_at", [1, 4])
def test_a_kill_during_creation_leaves_a_store_a_rerun_completes(tmp_path: Path, kill_at: int) -> None:
    path = tmp_path / "d.zarr"
    killed = run_cli("demo", "--store", str(path), fault=("--create", kill_at))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (path / "zarr.json").exists()  # nothing half-made at the store's path
    rerun = run_cli("demo", "--store", str(path))
    assert rerun.returncode == 0, rerun.stderr
    assert emovec_store.open(path).complete
    assert not list(tmp_path.glob(".*.creating"))  # the killed creation's tree is cleaned up


POOLED = "models/m/mean_from_50/pooled"


def _edit_json(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _set_consolidated(key: str, field: str, value: object) -> Callable[[Path], None]:
    def damage(store: Path) -> None:
        _edit_json(store / "zarr.json", lambda d: d["consolidated_metadata"]["metadata"][key].update({field: value}))
    return damage


def _truncate(rel: str) -> Callable[[Path], None]:
    def damage(store: Path) -> None:
        data = (store / rel).read_bytes()
        (store / rel).write_bytes(data[: len(data) // 2])
    return damage


def _write(rel: str, data: bytes) -> Callable[[Path], None]:
    return lambda store: (store / rel).write_bytes(data)


def _symlink_loop(rel: str) -> Callable[[Path], None]:
    def damage(store: Path) -> None:
        (store / rel).unlink()
        (store / rel).symlink_to(store / rel)
    return damage


#: name -> (damage, a problem `verify` must name)
DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "root empty": (_write("zarr.json", b""), "bad metadata: zarr.json (empty)"),
    "root truncated": (_truncate("zarr.json"), "bad metadata: zarr.json (not JSON"),
    "root garbage": (_write("zarr.json", b"\xff\xfe\x00garbage"), "bad metadata: zarr.json (not JSON"),
    "root a list": (_write("zarr.json", b"[1, 2]"), "bad metadata: zarr.json (a JSON list"),
    "group empty": (_write("models/m/zarr.json", b""), "bad metadata: models/m/zarr.json (empty)"),
    "array truncated": (_truncate(f"{POOLED}/zarr.json"), f"bad metadata: {POOLED}/zarr.json (not JSON"),
    "array garbage": (_write(f"{POOLED}/zarr.json", b'{"zarr_format": 3, "node_type": "array"}'),
                      f"bad metadata: {POOLED}/zarr.json (invalid array metadata"),
    "array shape edited": (lambda s: _edit_json(s / f"{POOLED}/zarr.json", lambda d: d.update(shape=[3, 60, 8])),
                           f"damaged: {POOLED}/zarr.json"),
    "consolidated shape edited": (_set_consolidated(POOLED, "shape", [3, 60, 8]),
                                  f"consolidated entry '{POOLED}' differs from {POOLED}/zarr.json in shape"),
    "consolidated dtype edited": (_set_consolidated(POOLED, "data_type", "float64"),
                                  "differs from models/m/mean_from_50/pooled/zarr.json in data_type"),
    "manifest deleted": (lambda s: shutil.rmtree(s / "_manifest"), "missing: _manifest/path/zarr.json"),
    "manifest truncated": (_truncate("_manifest/path/c/0"), "damaged: _manifest ("),
    "chunk symlink loop": (_symlink_loop(f"{POOLED}/c/0/0/0"), f"symlink: {POOLED}/c/0/0/0"),
}


def invoke(*args: str) -> Result:
    """The emovec CLI in this process (the damage tests run many commands; a subprocess each is slow)."""
    return CliRunner().invoke(cli, list(args))


def _one_line_error(result: Result, code: int = 3) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def finalized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pristine") / "s.zarr"
    make_store(path)
    return path


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_metadata_gives_one_line_and_verify_names_it(finalized: Path, tmp_path: Path, case: str) -> None:
    damage, expected = DAMAGE[case]
    path = tmp_path / "s.zarr"
    shutil.copytree(finalized, path)
    assert emovec_store.verify(path) == []
    damage(path)
    for command in ("info", "ls"):
        assert str(path) in _one_line_error(invoke("store", command, str(path)))
    with pytest.raises(emovec_store.StoreError):
        emovec_store.open(path).dataset("m").load()
    result = invoke("store", "verify", str(path))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert any(expected in line for line in result.stderr.splitlines()), result.stderr


def test_complete_set_by_hand_on_an_unfinalized_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    make_store(path, finalize=False)
    _edit_json(path / "zarr.json", lambda d: d["attributes"].update(complete=True))
    assert "has no consolidated metadata" in _one_line_error(invoke("store", "info", str(path)))
    result = invoke("store", "verify", str(path))
    assert result.exit_code == 1 and "missing: _manifest/path/zarr.json" in result.stderr, result.stderr


def test_edited_array_metadata_is_caught_by_the_manifest(finalized: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    shutil.copytree(finalized, path)
    # an edit that keeps the consolidated block and the node document in agreement: only hashes see it
    for rel in (f"{POOLED}/zarr.json",):
        _edit_json(path / rel, lambda d: d["attributes"].update(emovec_logical_dtype="bfloat16"))
    _edit_json(path / "zarr.json", lambda d: d["consolidated_metadata"]["metadata"][POOLED]["attributes"]
               .update(emovec_logical_dtype="bfloat16"))
    assert emovec_store.verify(path) == [f"damaged: {POOLED}/zarr.json"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), where=st.sampled_from(["zarr.json", "models/m/zarr.json",
                                                             f"{POOLED}/zarr.json", "stimuli/stimulus/zarr.json"]))
def test_random_bytes_as_metadata_give_a_store_error_never_a_traceback(finalized: Path, tmp_path: Path,
                                                                      data: bytes, where: str) -> None:
    path = tmp_path / "fuzz.zarr"
    if not path.exists():
        shutil.copytree(finalized, path)
    original = (path / where).read_bytes()
    (path / where).write_bytes(data)
    try:
        with pytest.raises(emovec_store.StoreError):
            emovec_store.info(emovec_store.open(path))
        assert emovec_store.verify(path)
    finally:
        (path / where).write_bytes(original)


@pytest.fixture(scope="module")
def zipped(finalized: Path) -> Path:
    out = finalized.parent / "s.zip"
    emovec_store.export_zip(emovec_store.open(finalized), out)
    return out


def test_a_zip_export_opens_and_verifies_clean(zipped: Path) -> None:
    assert emovec_store.open(zipped).models == ["m"] and emovec_store.verify(zipped) == []


@pytest.mark.parametrize("damage", ["not a zip", "truncated", "empty"])
def test_a_non_zip_or_truncated_zip_gives_one_line(zipped: Path, tmp_path: Path, damage: str) -> None:
    data = zipped.read_bytes()
    bad = tmp_path / "bad.zip"
    bad.write_bytes({"not a zip": b"PK\x03\x04 this is not a zip file", "truncated": data[: len(data) // 2],
                     "empty": b""}[damage])
    for command in ("info", "ls", "verify"):
        assert str(bad) in _one_line_error(invoke("store", command, str(bad)))


def test_a_compressed_zip_entry_is_refused_before_it_is_inflated(zipped: Path, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zipped) as src, zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        # 64 MiB of zeros deflate to about 64 KiB: what a zip bomb's entry looks like
        dst.writestr(f"{POOLED}/c/0/0/9", b"\0" * 2**26, compress_type=zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < zipped.stat().st_size + 2**20
    line = _one_line_error(invoke("store", "info", str(bomb)))
    assert f"{POOLED}/c/0/0/9" in line and "compressed" in line
    with pytest.raises(emovec_store.StoreError, match="compressed"):
        emovec_store.verify(bomb)


@pytest.mark.parametrize("entry", ["../escape", "/etc/cron.d/x", ".hidden", f"{POOLED}/c/0/0/0.partial"])
def test_a_zip_entry_an_export_never_writes_is_unexpected(zipped: Path, tmp_path: Path, entry: str) -> None:
    """Names that are writers' litter in a store directory ('..', hidden, ``.partial``) are never in an
    export, so in a zip they are unexpected entries, not skipped (they were: verify said ok)."""
    planted = tmp_path / "planted.zip"
    shutil.copyfile(zipped, planted)
    with zipfile.ZipFile(planted, "a", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(entry, b"x")
    assert f"unexpected: {entry}" in "\n".join(emovec_store.verify(planted))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000), keep=st.integers(min_value=0, max_value=99))
def test_random_or_cut_bytes_as_a_zip_give_a_store_error(zipped: Path, tmp_path: Path, data: bytes,
                                                        keep: int) -> None:
    original = zipped.read_bytes()
    bad = tmp_path / "fuzz.zip"
    bad.write_bytes(original[: len(original) * keep // 100] + data)
    try:
        emovec_store.info(emovec_store.open(bad))
    except emovec_store.StoreError:
        return
    assert emovec_store.verify(bad) != [], "a changed zip must fail to open or fail verify"


@pytest.mark.parametrize("plant", ["symlink", "unexpected file"])
@pytest.mark.parametrize("fmt", ["--zip", "--zarr-format"])
def test_export_refuses_a_planted_link_or_file_and_names_it(finalized: Path, tmp_path: Path, plant: str,
                                                            fmt: str) -> None:
    path = tmp_path / "s.zarr"
    shutil.copytree(finalized, path)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for sharing")
    notes = path / "models/m/notes"
    if plant == "symlink":
        notes.symlink_to(secret)
    else:
        notes.write_text("stray")
    out = tmp_path / ("out.zip" if fmt == "--zip" else "out.zarr")
    args = ["--zip", str(out)] if fmt == "--zip" else ["--zarr-format", "2", str(out)]
    result = invoke("store", "export", str(path), *args)
    line = _one_line_error(result, code=3 if plant == "symlink" else 1)  # a link is refused when opening
    assert "models/m/notes" in line and ("symlink" if plant == "symlink" else "unexpected") in line
    assert not out.exists() and not list(tmp_path.glob("out*"))


def test_export_into_a_missing_or_unwritable_place_gives_one_line(finalized: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = _one_line_error(invoke("store", "export", str(finalized), "--zip", str(blocker / "out.zip")))
    assert "a-file" in line


@contextlib.contextmanager
def faulty_server(directory: Path, fault_path: str, fault: str) -> Iterator[str]:
    with serving(directory, handler(fault_path, fault), "s.zarr") as url:
        yield url


CHUNK = f"{POOLED}/c/0/1/0"


@pytest.mark.parametrize("fault", ["404", "500", "garbage", "hang"])
def test_http_chunk_faults_are_errors_naming_the_url_and_key(finalized: Path, fault: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMOVEC_HTTP_TIMEOUT", "1")
    with faulty_server(finalized.parent, CHUNK, fault) as url:
        store = emovec_store.open(url)  # the metadata is served fine
        with pytest.raises(emovec_store.StoreError) as caught:
            store.dataset("m").pooled.load()
    message = str(caught.value)
    assert f"{url}/{CHUNK}" in message
    assert {"404": "is missing", "500": "HTTP 500", "garbage": "sha256",
            "hang": "no answer within 1 s"}[fault] in message, message


@pytest.fixture(scope="module")
def fuzzing_server(finalized: Path) -> Iterator[tuple[type[FaultyHandler], str]]:
    """One server for every example of the HTTP fuzz test; each example sets its fault path and body."""
    answer = handler("", "bytes")
    with serving(finalized.parent, answer, "s.zarr") as url:
        yield answer, url


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=400), where=st.sampled_from(["s.zarr/zarr.json", "s.zarr/models/m/zarr.json",
                                                            f"s.zarr/{POOLED}/zarr.json", f"s.zarr/{CHUNK}"]))
def test_random_bytes_served_over_http_give_a_store_error_never_a_traceback(
        finalized: Path, fuzzing_server: tuple[type[FaultyHandler], str], body: bytes, where: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A server answering one metadata document or chunk of a complete store with random bytes: opening,
    info and reading either fail with one StoreError or (bytes that happen to be a valid document) succeed
    with the chunk's values intact — never another exception."""
    monkeypatch.setenv("EMOVEC_HTTP_TIMEOUT", "5")
    answer, url = fuzzing_server
    answer.fault_path, answer.body = where, body
    try:
        store = emovec_store.open(url)
        emovec_store.info(store)
        values = store.dataset("m").pooled.values
    except emovec_store.StoreError:
        return
    np.testing.assert_array_equal(values, emovec_store.open(finalized).dataset("m").pooled.values)


def test_http_metadata_fault_gives_one_line_exit_3(finalized: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMOVEC_HTTP_TIMEOUT", "1")
    with faulty_server(finalized.parent, "s.zarr/zarr.json", "500") as url:
        line = _one_line_error(invoke("store", "info", url))
    assert url in line and "500" in line


def test_a_bad_timeout_setting_is_an_input_error(finalized: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMOVEC_HTTP_TIMEOUT", "soon")
    with faulty_server(finalized.parent, "", "") as url:
        assert "EMOVEC_HTTP_TIMEOUT" in _one_line_error(invoke("store", "info", url), code=2)


def test_a_full_disk_while_writing_is_one_line_and_a_rerun_resumes(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from emovec_store import writer

    real = writer._fill_chunk_file
    calls = 0

    def fill_until_full(path: Path, *args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls > 8:  # the demo has 8 layers: the disk fills up at its second row chunk
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, *args)

    monkeypatch.setattr(writer, "_fill_chunk_file", fill_until_full)
    path = tmp_path / "d.zarr"
    line = _one_line_error(invoke("demo", "--store", str(path)))
    assert "disk is full" in line and str(path) in line and "MiB more is needed" in line, line
    partial = emovec_store.open(path, allow_partial=True)
    assert 0 < partial.progress("demo", "mean_from_50").done < partial.progress("demo", "mean_from_50").total
    monkeypatch.setattr(writer, "_fill_chunk_file", real)  # space is back
    assert invoke("demo", "--store", str(path)).exit_code == 0
    clean = tmp_path / "clean.zarr"
    assert invoke("demo", "--store", str(clean)).exit_code == 0
    from emovec_store.finalize import manifest
    assert manifest(path) == manifest(clean)


def test_a_store_path_that_is_a_file_or_under_a_file_is_one_line(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("")
    assert "is a file" in _one_line_error(invoke("demo", "--store", str(plain)), code=2)
    assert str(plain) in _one_line_error(invoke("demo", "--store", str(plain / "d.zarr")))
    assert "plain.txt" in _one_line_error(invoke("store", "info", str(plain)))
    deep = tmp_path / "missing" / "parent" / "d.zarr"
    assert invoke("demo", "--store", str(deep)).exit_code == 0  # missing parents are made


def test_a_store_path_that_is_a_symlink_loop_is_one_line(tmp_path: Path) -> None:
    loop = tmp_path / "loop.zarr"
    loop.symlink_to(loop)
    assert "link to nothing" in _one_line_error(invoke("demo", "--store", str(loop)), code=2)


@pytest.mark.parametrize("where", ["model", "readout"])
def test_a_filesystem_error_while_adding_a_model_or_readout_is_one_line_and_leaves_nothing_half_made(
        tmp_path: Path, where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import zarr

    from emovec_store import planning

    real_create_group = zarr.Group.create_group

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "d.zarr" / "models"))

    def refuse_the_model_group(group: zarr.Group, name: str, **kwargs: Any) -> zarr.Group:
        if name == "demo":  # the demo's model; creating the store itself still works
            refuse()
        return real_create_group(group, name, **kwargs)

    with monkeypatch.context() as patch:
        if where == "model":
            patch.setattr(zarr.Group, "create_group", refuse_the_model_group)
        else:
            patch.setattr(planning, "build_readout", refuse)
        line = _one_line_error(invoke("demo", "--store", str(tmp_path / "d.zarr")))
    assert "Read-only file system while adding" in line and where in line, line
    assert not list((tmp_path / "d.zarr").rglob("*.creating"))  # no half-made readout left behind
    assert invoke("demo", "--store", str(tmp_path / "d.zarr")).exit_code == 0  # the filesystem is back


def test_an_output_folder_that_cannot_be_written_is_refused_before_the_work(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """analyze, compare and trace check their --out folder first (a read-only filesystem, no
    permission: os.access says no), instead of failing with a traceback once the work is done."""
    import os

    store = tmp_path / "d.zarr"
    assert invoke("demo", "--store", str(store)).exit_code == 0
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    for args in (("analyze", str(store), "--no-lens", "--no-progress", "--no-write", "--out", str(locked / "an")),
                 ("compare", str(store), "--out", str(locked / "c")),
                 ("trace", "hello", "--store", str(store), "--out", str(locked / "t"))):
        line = _one_line_error(invoke(*args))
        assert f"cannot write the {args[0] if args[0] != 'analyze' else 'report'} folder" in line, line
        assert "is not writable" in line and str(locked) in line, line
    assert not list(locked.iterdir())
    plain = tmp_path / "plain.txt"
    plain.write_text("")
    assert "is a file" in _one_line_error(invoke("compare", str(store), "--out", str(plain / "c")))


def test_an_os_error_no_command_reported_is_one_line_naming_the_file(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's net for the class: any OSError left over (here the report's writer on a filesystem
    that turned read-only mid-run) is one line with the file, exit 3, never a traceback."""
    import errno

    from emovec import report

    store = tmp_path / "d.zarr"
    assert invoke("demo", "--store", str(store)).exit_code == 0

    def read_only(results: Any, out: Path) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(out / "results.json"))

    monkeypatch.setattr(report, "render", read_only)
    line = _one_line_error(invoke("analyze", str(store), "--no-lens", "--no-progress", "--no-write",
                                  "--out", str(tmp_path / "an")))
    assert line == f"Error: Read-only file system: {str(tmp_path / 'an' / 'results.json')!r}", line
