"""The store contract: round trips, dtypes, finalize/verify, locks, exports, remote reads."""
from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import emovec_store
from emovec.cli.main import cli
from emovec_store.dtypes import BF16_NAN_BITS, bf16_bits_to_float32, float32_to_bf16_bits
from emovec_store.finalize import manifest

from .synthetic import activations, batch_plan, make_store, stimulus_table


def expected_decoded(data: np.ndarray, storage: str) -> np.ndarray:
    if storage == "float32":
        return data
    if storage == "float16":
        return data.astype(np.float16).astype(np.float32)
    return bf16_bits_to_float32(float32_to_bf16_bits(data))


@pytest.mark.parametrize("storage", ["float32", "float16", "bfloat16"])
def test_round_trip_is_bit_exact(tmp_path: Path, storage: str) -> None:
    store, data = make_store(tmp_path / "s.zarr", storage=storage)
    ds = emovec_store.open(tmp_path / "s.zarr").dataset("m", "mean_from_50")
    assert ds.pooled.dims == ("layer", "stimulus", "hidden")
    got = np.asarray(ds.pooled.values, dtype=np.float32)
    want = expected_decoded(data, storage)
    assert got.tobytes() == want.tobytes()
    # physical bytes on disk are exactly the storage encoding
    raw = np.fromfile(tmp_path / "s.zarr/models/m/mean_from_50/pooled/c/1/0/0",
                      dtype={"float32": "<f4", "float16": "<f2", "bfloat16": "<u2"}[storage])
    first_chunk = raw.reshape(16, 8)
    if storage == "bfloat16":
        assert np.array_equal(first_chunk, float32_to_bf16_bits(data[1, :16]))
    else:
        assert np.array_equal(first_chunk.astype(np.float32), want[1, :16])


def test_dask_chunks_equal_zarr_chunks_and_labels_are_coords(tmp_path: Path) -> None:
    make_store(tmp_path / "s.zarr", n=50, chunk_rows=16)
    ds = emovec_store.open(tmp_path / "s.zarr").dataset("m")
    assert ds.pooled.chunks == ((1, 1, 1), (16, 16, 16, 2), (8,))
    for label in ("emotion", "kind", "topic", "text_sha256", "n_tokens"):
        assert label in ds.coords and label not in ds.data_vars
    assert list(ds.data_vars) == ["pooled"]
    means = ds.pooled.sel(layer=1).groupby("emotion").mean()
    assert set(means.emotion.values) == {"", "joyful", "calm", "furious", "sad"}
    # plain xarray sees the same labels as coordinates
    tree = xr.open_datatree(tmp_path / "s.zarr", engine="zarr")
    node = tree["models/m/mean_from_50"].dataset
    assert "emotion" in node.coords and list(node.data_vars) == ["pooled"]


def test_fp16_overflow_raises_naming_layer_and_value(tmp_path: Path) -> None:
    store, _ = make_store(tmp_path / "s.zarr", storage="float16", write=False)
    data = activations(3, 5, 8)
    data[2, 1, 3] = 103_795.0  # Gemma-3-270M's BOS peak (store-notes §0)
    with store.writer("m", "mean_from_50") as writer:
        with pytest.raises(emovec_store.NonFiniteActivationError, match=r"layer 2.*103795"):
            writer.write(0, data)
        assert writer.pending()[0] == 0  # nothing was flagged


def test_non_finite_input_is_refused(tmp_path: Path) -> None:
    store, _ = make_store(tmp_path / "s.zarr", write=False)
    data = activations(3, 5, 8)
    data[1, 0, 0] = np.nan
    with store.writer("m", "mean_from_50") as writer, pytest.raises(emovec_store.NonFiniteActivationError):
        writer.write(0, data)


def test_bf16_bits_decode_equals_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal(10_000).astype(np.float32) * 10.0 ** rng.integers(-6, 6, 10_000),
                        np.array([0.0, -0.0, 65504.0, 1e30, -3.4e38, 1e-40], dtype=np.float32)])
    t = torch.from_numpy(x).to(torch.bfloat16)
    torch_bits = t.view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(float32_to_bf16_bits(x), torch_bits)  # same rounding as torch
    assert np.array_equal(bf16_bits_to_float32(torch_bits), t.to(torch.float32).numpy())


def test_unwritten_rows_read_as_nan_and_partial_open_needs_consent(tmp_path: Path) -> None:
    for storage in ("float32", "bfloat16"):
        path = tmp_path / f"{storage}.zarr"
        store, data = make_store(path, storage=storage, write=False)
        with store.writer("m", "mean_from_50") as writer:
            writer.write(0, data[:, 0:5])
        with pytest.raises(emovec_store.IncompleteStoreError, match="allow_partial"):
            emovec_store.open(path)
        vals = emovec_store.open(path, allow_partial=True).dataset("m").pooled.values
        assert np.isfinite(vals[:, :5]).all() and np.isnan(vals[:, 5:]).all()
        assert emovec_store.open(path, allow_partial=True).progress("m", "mean_from_50").done == 1
    assert BF16_NAN_BITS == 0x7FC0


def test_finalize_refuses_missing_batches_and_cleans_partials(tmp_path: Path) -> None:
    store, data = make_store(tmp_path / "s.zarr", write=False)
    with store.writer("m", "mean_from_50") as writer:
        for b in writer.pending()[:-1]:
            writer.write(b, data[:, slice(*writer.rows(b))])
    with pytest.raises(emovec_store.IncompleteStoreError, match=r"m/mean_from_50 \(12/13"):
        store.finalize()
    stray = tmp_path / "s.zarr/models/m/mean_from_50/pooled/c/0/0/0.123.partial"
    stray.write_bytes(b"junk")
    with store.writer("m", "mean_from_50") as writer:
        for b in writer.pending():
            writer.write(b, data[:, slice(*writer.rows(b))])
    store.finalize()
    assert not stray.exists()
    assert emovec_store.open(tmp_path / "s.zarr").complete
    with pytest.raises(emovec_store.IncompatibleStoreError, match="finalized"):
        emovec_store.open(tmp_path / "s.zarr", mode="r+").add_model("x", {})


def test_rewriting_a_batch_is_idempotent(tmp_path: Path) -> None:
    store, data = make_store(tmp_path / "a.zarr", finalize=False)
    before = emovec_store.finalize.manifest(tmp_path / "a.zarr")  # type: ignore[attr-defined]
    with store.writer("m", "mean_from_50") as writer:
        writer.write(3, data[:, slice(*writer.rows(3))])
    assert emovec_store.finalize.manifest(tmp_path / "a.zarr") == before  # type: ignore[attr-defined]


def test_verify_names_the_damaged_chunk(tmp_path: Path) -> None:
    make_store(tmp_path / "s.zarr")
    runner = CliRunner()
    ok = runner.invoke(cli, ["store", "verify", str(tmp_path / "s.zarr")])
    assert ok.exit_code == 0, ok.output
    chunk = tmp_path / "s.zarr/models/m/mean_from_50/pooled/c/2/1/0"
    raw = bytearray(chunk.read_bytes())
    raw[17] ^= 0x01
    chunk.write_bytes(bytes(raw))
    bad = runner.invoke(cli, ["store", "verify", str(tmp_path / "s.zarr")])
    assert bad.exit_code == 1
    assert "damaged: models/m/mean_from_50/pooled/c/2/1/0" in bad.output
    (tmp_path / "s.zarr/models/m/mean_from_50/pooled/c/0/0/0").unlink()
    problems = emovec_store.verify(emovec_store.open(tmp_path / "s.zarr"))
    assert "missing: models/m/mean_from_50/pooled/c/0/0/0" in problems
    with pytest.raises(emovec_store.IntegrityError, match="2 problem"):
        emovec_store.check_integrity(emovec_store.open(tmp_path / "s.zarr"))


def test_incompatible_appends_are_refused(tmp_path: Path) -> None:
    store, _ = make_store(tmp_path / "s.zarr", finalize=False)
    with pytest.raises(emovec_store.IncompatibleStoreError, match="storage_dtype"):
        store.add_readout("m", "mean_from_50", stimulus_ids=[f"s{i:04d}" for i in range(50)],
                          layers=[0, 1, 2], hidden=8, storage_dtype="float16",
                          batches=batch_plan(50, 16, 5), chunk_rows=16, n_tokens=list(range(60, 110)),
                          attrs={"spec": "mean_from:50"})
    with pytest.raises(emovec_store.IncompatibleStoreError, match="name: store has 'm'"):
        store.add_model("m", {}, identity={"name": "other"})
    with pytest.raises(emovec_store.IncompatibleStoreError, match="different stimulus table"):
        emovec_store.create(tmp_path / "s.zarr", stimulus_table(51))
    # the same plan again is a resume, not an error
    make_store(tmp_path / "s.zarr", store=emovec_store.open(tmp_path / "s.zarr", "r+", allow_partial=True),
               write=False)


def test_batches_must_not_cross_chunks(tmp_path: Path) -> None:
    store = emovec_store.create(tmp_path / "s.zarr", stimulus_table(20))
    store.add_model("m", {})
    with pytest.raises(emovec_store.InputError, match="cross a chunk boundary"):
        store.add_readout("m", "r", stimulus_ids=[f"s{i:04d}" for i in range(20)], layers=[0], hidden=4,
                          storage_dtype="float32", batches=[(0, 6), (6, 12), (12, 20)], chunk_rows=10)


def test_writers_on_the_same_rows_conflict_disjoint_shards_do_not(tmp_path: Path) -> None:
    store, data = make_store(tmp_path / "s.zarr", n=64, chunk_rows=16, write=False)
    with store.writer("m", "mean_from_50", shard=(0, 2)) as first:
        with pytest.raises(emovec_store.StoreLockedError, match="another writer"):
            store.writer("m", "mean_from_50").__enter__()
        with store.writer("m", "mean_from_50", shard=(1, 2)) as second:
            assert set(first.batches).isdisjoint(second.batches)
            for w in (first, second):
                for b in w.pending():
                    w.write(b, data[:, slice(*w.rows(b))])
    store.finalize()
    got = emovec_store.open(tmp_path / "s.zarr").dataset("m").pooled.values
    assert np.array_equal(got, data)


def test_per_token_round_trip(tmp_path: Path) -> None:
    n, n_layers, hidden = 12, 2, 4
    store = emovec_store.create(tmp_path / "s.zarr", stimulus_table(n))
    store.add_model("m", {})
    lengths = [3 + (i * 7) % 11 for i in range(n)]
    token_ids = [list(range(100 * i, 100 * i + k)) for i, k in enumerate(lengths)]
    store.add_readout("m", "tokens", stimulus_ids=[f"s{i:04d}" for i in range(n)], layers=[0, 5],
                      hidden=hidden, storage_dtype="float16", batches=batch_plan(n, 12, 4), chunk_rows=12,
                      n_tokens=lengths, token_ids=token_ids, token_chunk_rows=16)
    total = sum(lengths)
    acts = activations(n_layers, total, hidden)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    with store.writer("m", "tokens") as writer:
        for b in writer.pending():
            s, e = writer.rows(b)
            writer.write(b, acts[:, offsets[s]:offsets[e]])  # spans token chunks of 16
    store.finalize()
    ds = emovec_store.open(tmp_path / "s.zarr").dataset("m", "tokens")
    assert ds.acts.dims == ("layer", "token", "hidden")
    assert np.array_equal(ds.acts.values, acts.astype(np.float16))
    assert ds.attrs["token_layout"] == "chunk-aligned"
    assert np.array_equal(ds.offsets.values, offsets[:-1])  # one row chunk: no padding
    k = 5
    rows = slice(int(ds.offsets[k]), int(ds.offsets[k] + ds.n_tokens[k]))
    assert (ds.token_stimulus.values[rows] == k).all()
    assert ds.token_id.values[rows].tolist() == token_ids[k]
    assert ds.position.values[rows].tolist() == list(range(lengths[k]))


def test_tree_with_two_models_of_different_shapes(tmp_path: Path) -> None:
    store, a = make_store(tmp_path / "s.zarr", model="small", n_layers=3, hidden=8, finalize=False)
    _, b = make_store(tmp_path / "s.zarr", store=store, model="wide", n_layers=5, hidden=12,
                      storage="bfloat16", seed=3)
    tree = emovec_store.open(tmp_path / "s.zarr").tree()
    assert tree["models/small/mean_from_50"].dataset.pooled.shape == (3, 50, 8)
    assert tree["models/wide/mean_from_50"].dataset.pooled.shape == (5, 50, 12)
    assert tree["models/wide/mean_from_50"].dataset.pooled.dtype == np.float32  # bf16 decoded
    assert tree["models/small"].attrs["d_model"] == 8
    raw = xr.open_datatree(tmp_path / "s.zarr", engine="zarr")
    assert raw["models/wide/mean_from_50"].dataset.pooled.attrs["emovec_logical_dtype"] == "bfloat16"
    assert np.array_equal(raw["models/small/mean_from_50"].dataset.pooled.values, a)


def test_zip_and_zarr2_exports_read_back_equal(tmp_path: Path) -> None:
    make_store(tmp_path / "s.zarr", storage="bfloat16")
    runner = CliRunner()
    r = runner.invoke(cli, ["store", "export", str(tmp_path / "s.zarr"), "--zip", str(tmp_path / "s.zip")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["store", "export", str(tmp_path / "s.zarr"), "--zarr-format", "2",
                            str(tmp_path / "v2.zarr")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "v2.zarr/.zgroup").exists()
    local = emovec_store.open(tmp_path / "s.zarr").dataset("m").load()
    for other in (tmp_path / "s.zip", tmp_path / "v2.zarr"):
        xr.testing.assert_identical(local, emovec_store.open(other).dataset("m").load())
    assert emovec_store.verify(emovec_store.open(tmp_path / "s.zip")) == []
    # older stacks: plain xarray on the v2 copy, labelled by _ARRAY_DIMENSIONS
    v2 = xr.open_zarr(tmp_path / "v2.zarr", group="models/m/mean_from_50", zarr_format=2)
    assert v2.pooled.dims == ("layer", "stimulus", "hidden")
    assert r.exit_code == 0
    again = runner.invoke(cli, ["store", "export", str(tmp_path / "s.zarr"), "--zip", str(tmp_path / "s.zip")])
    assert again.exit_code == 2 and "already exists" in again.output


def test_export_refuses_an_incomplete_store(tmp_path: Path) -> None:
    make_store(tmp_path / "s.zarr", finalize=False)
    r = CliRunner().invoke(cli, ["store", "export", str(tmp_path / "s.zarr"), "--zip", str(tmp_path / "x.zip")])
    assert r.exit_code == 3 and "not finalized" in r.output
    assert not (tmp_path / "x.zip").exists()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_http_read_equals_local(tmp_path: Path) -> None:
    make_store(tmp_path / "s.zarr", storage="float16")
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/s.zarr"
        remote = emovec_store.open(url)
        assert remote.models == ["m"]
        xr.testing.assert_identical(remote.dataset("m").load(),
                                    emovec_store.open(tmp_path / "s.zarr").dataset("m").load())
        with pytest.raises(emovec_store.ReadOnlyStoreError):
            emovec_store.open(url, mode="r+")
    finally:
        server.shutdown()
        server.server_close()


def test_cli_info_ls_and_errors(tmp_path: Path) -> None:
    make_store(tmp_path / "s.zarr", finalize=False)
    runner = CliRunner()
    r = runner.invoke(cli, ["store", "info", str(tmp_path / "s.zarr")])
    assert r.exit_code == 0 and "INCOMPLETE" in r.output and "batches 13/13" in r.output
    r = runner.invoke(cli, ["store", "finalize", str(tmp_path / "s.zarr")])
    assert r.exit_code == 0, r.output
    before = manifest(tmp_path / "s.zarr")
    r = runner.invoke(cli, ["store", "finalize", str(tmp_path / "s.zarr")])  # again: nothing to do, not an error
    assert r.exit_code == 0 and "finalized already" in r.output, r.output
    assert manifest(tmp_path / "s.zarr") == before
    r = runner.invoke(cli, ["store", "info", "--json", str(tmp_path / "s.zarr")])
    import json
    summary = json.loads(r.output)
    assert summary["complete"] is True
    readout = summary["models"]["m"]["readouts"]["mean_from_50"]
    assert readout["shape"] == [3, 50, 8] and readout["storage_dtype"] == "float32"
    assert len(summary["models"]["m"]["attrs"]["max_abs_per_layer"]) == 3
    r = runner.invoke(cli, ["store", "ls", str(tmp_path / "s.zarr")])
    assert "pooled  (layer,stimulus,hidden) [3, 50, 8] float32" in r.output
    r = runner.invoke(cli, ["store", "info", str(tmp_path / "missing.zarr")])
    assert r.exit_code == 3 and r.output.startswith("Error: no emovec store")
    shutil.rmtree(tmp_path / "s.zarr")


def test_demo_command_writes_a_complete_store(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["demo", "--store", str(tmp_path / "d.zarr")])
    assert r.exit_code == 0, r.output
    ds = emovec_store.open(tmp_path / "d.zarr").dataset("demo")
    assert ds.pooled.shape == (8, 240, 64)


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_demo_twice_writes_once_and_leaves_no_lock_folder(tmp_path: Path) -> None:
    path, runner = tmp_path / "d.zarr", CliRunner()
    assert runner.invoke(cli, ["demo", "--store", str(path)]).exit_code == 0
    before = _files(path)
    r = runner.invoke(cli, ["demo", "--store", str(path)])
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"{path} is complete already (nothing to write)")
    assert _files(path) == before
    assert not emovec_store.layout.lock_dir(path).exists()


def test_a_finalized_readout_is_the_same_plan_again(tmp_path: Path) -> None:
    store, _ = make_store(tmp_path / "s.zarr")  # finalize added max_abs_per_layer to the readout
    again = emovec_store.open(tmp_path / "s.zarr", "r+")
    make_store(tmp_path / "s.zarr", store=again, write=False)  # no "planned differently"
    with pytest.raises(emovec_store.IncompatibleStoreError, match="storage_dtype"):
        make_store(tmp_path / "s.zarr", store=again, write=False, storage="float16")


def test_a_refused_plan_names_the_difference_instead_of_two_whole_lists(tmp_path: Path) -> None:
    from emovec.common.compare import mismatches

    (line,) = mismatches({"layers": list(range(31))}, {"layers": [0, 1]})
    assert line == "layers: store has 31 values [0, 1, 2, …, 30], this run [0, 1] (only in the store: [2, 3, 4, …, 30])"
    (line,) = mismatches({"max_abs": [1.5] * 31}, {"max_abs": [1.5] * 30 + [2.5]})
    assert line.endswith("(1 of 31 positions differ, first at index 30: 1.5 vs 2.5)")
    assert mismatches({"a": 1, "b": [1, 2]}, {"a": 2, "b": [1, 2]}) == ["a: store has 1, this run 2"]
    store, _ = make_store(tmp_path / "s.zarr", n_layers=31, hidden=4, finalize=False)
    with pytest.raises(emovec_store.IncompatibleStoreError) as err:
        store.add_readout("m", "mean_from_50", stimulus_ids=[f"s{i:04d}" for i in range(50)], layers=[0, 1],
                          hidden=4, storage_dtype="float32", batches=batch_plan(50, 16, 5), chunk_rows=16,
                          n_tokens=list(range(60, 110)), attrs={"spec": "mean_from:50"})
    assert "layers: store has 31 values [0, 1, 2, …, 30], this run [0, 1] (only in the store" in str(err.value)
    assert len(str(err.value)) < 400


def test_a_zarr2_export_verifies_clean_and_names_a_damaged_chunk(tmp_path: Path) -> None:
    make_store(tmp_path / "s.zarr")
    v2, runner = tmp_path / "v2.zarr", CliRunner()
    r = runner.invoke(cli, ["store", "export", str(tmp_path / "s.zarr"), "--zarr-format", "2", str(v2)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["store", "verify", str(v2)])
    ok = f"ok: every chunk file and metadata document of {v2} matches"
    assert r.exit_code == 0 and r.output.startswith(ok), r.output
    manifest = emovec_store.finalize.read_manifest(emovec_store.open(v2))
    assert "models/m/mean_from_50/pooled/1.0.0" in manifest and not any("/c/" in k for k in manifest)
    chunk = v2 / "models/m/mean_from_50/pooled/1.0.0"
    chunk.write_bytes(b"\0" + chunk.read_bytes()[1:])
    r = runner.invoke(cli, ["store", "verify", str(v2)])
    assert r.exit_code == 1 and "damaged: models/m/mean_from_50/pooled/1.0.0" in r.output


def test_lock_folder_goes_only_when_no_writer_holds_a_lock_in_it(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from emovec_store import progress

    store, data = make_store(tmp_path / "s.zarr", n=64, chunk_rows=16, write=False)
    locks = emovec_store.layout.lock_dir(tmp_path / "s.zarr")
    with store.writer("m", "mean_from_50", shard=(0, 2)) as first:
        assert not progress.remove_lock_dir(tmp_path / "s.zarr") and locks.is_dir()  # held: it stays
        with pytest.raises(emovec_store.StoreLockedError):  # ...and still locks out the same rows
            store.writer("m", "mean_from_50").__enter__()
        for b in first.pending():
            first.write(b, data[:, slice(*first.rows(b))])
    assert progress.remove_lock_dir(tmp_path / "s.zarr") and not locks.exists()
    # A lock file removed between a writer's open and its flock is not trusted: the writer locks a new one.
    flock, locked = progress.fcntl.flock, []

    def flock_after_removal(fd: int, op: int) -> None:
        if not locked:
            os.unlink(locks / "x.lock")
        locked.append(os.fstat(fd))
        flock(fd, op)

    monkeypatch.setattr(progress.fcntl, "flock", flock_after_removal)
    fd = progress.lock_file(locks / "x.lock")
    assert fd is not None and len(locked) == 2 and locked[0].st_nlink == 0  # locked a removed file, retried
    assert os.path.samestat(os.fstat(fd), os.stat(locks / "x.lock"))
    os.close(fd)
    monkeypatch.undo()
    with store.writer("m", "mean_from_50", shard=(1, 2)) as second:
        for b in second.pending():
            second.write(b, data[:, slice(*second.rows(b))])
    store.finalize()
    assert not locks.exists()
    assert np.array_equal(emovec_store.open(tmp_path / "s.zarr").dataset("m").pooled.values, data)


def test_tree_labels_are_plain_strings_everywhere(tmp_path: Path) -> None:
    make_store(tmp_path / "s.zarr")
    tree = emovec_store.open(tmp_path / "s.zarr").tree()
    kinds = {(node.path, name): var.dtype.kind for node in tree.subtree for name, var in node.dataset.variables.items()
             if var.dtype.kind in "OTU"}
    assert ("/stimuli", "emotion") in kinds and ("/models/m/mean_from_50", "emotion") in kinds
    assert set(kinds.values()) == {"O"}, kinds


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_store_info_sizes_zip_and_url_stores(tmp_path: Path) -> None:
    import zipfile

    make_store(tmp_path / "s.zarr", storage="float16")
    emovec_store.export_zip(emovec_store.open(tmp_path / "s.zarr"), tmp_path / "s.zip")
    local = emovec_store.info(emovec_store.open(tmp_path / "s.zarr"))
    zipped = emovec_store.info(emovec_store.open(tmp_path / "s.zip"))
    with zipfile.ZipFile(tmp_path / "s.zip") as zf:
        assert zipped["stored_bytes"] == sum(i.file_size for i in zf.infolist()) == local["stored_bytes"]
    assert zipped["models"]["m"]["stored_bytes"] == local["models"]["m"]["stored_bytes"]
    assert zipped["size_basis"] == "zip" and local["size_basis"] == "files"
    runner = CliRunner()
    assert "?" not in runner.invoke(cli, ["store", "info", str(tmp_path / "s.zip")]).output.splitlines()[0]
    with serve(tmp_path) as base:
        remote = emovec_store.info(emovec_store.open(f"{base}/s.zarr"))
        r = runner.invoke(cli, ["store", "info", f"{base}/s.zarr"])
    assert remote["size_basis"] == "metadata"
    readout = remote["models"]["m"]["readouts"]["mean_from_50"]["stored_bytes"]
    pooled = 3 * 50 * 8 * 2 + 3 * (64 - 50) * 8 * 2  # 3 layers x 4 chunks of 16 rows, fp16, edge chunk whole
    assert pooled <= readout <= local["models"]["m"]["readouts"]["mean_from_50"]["stored_bytes"]
    assert r.exit_code == 0 and "?" not in r.output.split("\n")[0] and "≈" in r.output, r.output


def test_plain_xarray_opens_a_zip_export_with_the_zip_prefix(tmp_path: Path) -> None:
    _, data = make_store(tmp_path / "s.zarr")
    emovec_store.export_zip(emovec_store.open(tmp_path / "s.zarr"), tmp_path / "s.zip")
    tree = xr.open_datatree(f"zip::{tmp_path / 's.zip'}", engine="zarr")  # as the README says
    assert np.array_equal(tree["models/m/mean_from_50"].dataset.pooled.values, data)
