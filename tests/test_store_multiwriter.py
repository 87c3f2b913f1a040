"""Multi-writer safety (issue 8): shards of a per-token readout never write the same chunk file, and the
writer refuses arrays its raw chunk writes do not fit.

The plan has row chunks of 3 stimuli whose token counts (15, 11, 12, 5) are not multiples of the token
chunk (4), so in the old contiguous layout neighbouring row chunks share a token chunk.
"""
from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import emovec_store
from emovec.analyses import trace as tr
from emovec.cli.main import cli
from emovec_store import layout
from emovec_store.errors import IncompatibleStoreError, StoreError

from .synthetic import batch_plan, stimulus_table
from .tiny_models import build_model

N, LAYERS, HIDDEN, CHUNK_ROWS, TOKEN_CHUNK = 10, [0, 2], 4, 3, 4
LENGTHS = [5, 3, 7, 2, 6, 3, 8, 1, 3, 5]
TOKEN_IDS = [list(range(100 * i, 100 * i + k)) for i, k in enumerate(LENGTHS)]
IDS = [f"s{i:04d}" for i in range(N)]


def per_stimulus() -> list[np.ndarray]:
    """Activations ``(layer, tokens, hidden)`` of every stimulus (float16-exact values)."""
    rng = np.random.default_rng(3)
    return [rng.standard_normal((len(LAYERS), k, HIDDEN)).astype(np.float16).astype(np.float32) for k in LENGTHS]


def tokens_store(path: Path, *, pooled: bool = False) -> emovec_store.Store:
    """A store with an unwritten per-token readout ``tokens`` of the plan above (and a pooled one)."""
    store = emovec_store.create(path, stimulus_table(N))
    store.add_model("m", {"model": "m"}, identity={"name": "m"})
    plan = batch_plan(N, CHUNK_ROWS, 2)
    store.add_readout("m", "tokens", stimulus_ids=IDS, layers=LAYERS, hidden=HIDDEN, storage_dtype="float16",
                      batches=plan, chunk_rows=CHUNK_ROWS, n_tokens=LENGTHS, token_ids=TOKEN_IDS,
                      token_chunk_rows=TOKEN_CHUNK)
    if pooled:
        store.add_readout("m", "pooled", stimulus_ids=IDS, layers=LAYERS, hidden=HIDDEN, storage_dtype="float16",
                          batches=plan, chunk_rows=CHUNK_ROWS, n_tokens=LENGTHS)
    return store


def to_contiguous(store: emovec_store.Store, model: str = "m", readout: str = "tokens") -> None:
    """Rewrite a per-token readout as stores wrote it before the chunk-aligned layout (CSR, n + 1
    offsets, no padding, no ``token_layout``), its written chunks and done flags dropped."""
    group = store.readout_group(model, readout)
    for key in layout.TOKEN_LAYOUT_ATTRS:
        del group.attrs[key]
    lengths = np.asarray(group["n_tokens"][:], dtype=np.int64)
    starts, token_id = np.asarray(group["offsets"][:]), np.asarray(group["token_id"][:])
    rows = np.concatenate([np.arange(o, o + k) for o, k in zip(starts, lengths)])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    chunk = int(group[layout.ACTS].chunks[1])
    ints = {"offsets": (offsets, "offset", "<i8", len(offsets)),
            "token_stimulus": (np.repeat(np.arange(len(lengths)), lengths), "token", "<i4", chunk),
            "position": (np.concatenate([np.arange(k) for k in lengths]), "token", "<i4", chunk),
            "token_id": (token_id[rows], "token", "<i4", chunk)}
    for name, (values, dim, dtype, chunks) in ints.items():
        arr = group.create_array(name, shape=values.shape, chunks=(chunks,), dtype=dtype,
                                 dimension_names=(dim,), compressors=None, overwrite=True)
        arr[:] = values
    old = group[layout.ACTS]
    group.create_array(layout.ACTS, shape=(old.shape[0], int(offsets[-1]), old.shape[2]), chunks=old.chunks,
                       dtype=old.dtype, fill_value=old.fill_value, compressors=None,
                       dimension_names=("layer", "token", "hidden"), attributes=dict(old.attrs), overwrite=True)
    directory = store.readout_dir(model, readout)
    assert directory is not None
    for written in (f"{layout.ACTS}/c", "_progress/batch_done/c", "_progress/max_abs/c"):
        shutil.rmtree(directory / written, ignore_errors=True)


def write(store: emovec_store.Store, shard: tuple[int, int] | None = None) -> None:
    acts = per_stimulus()
    with store.writer("m", "tokens", shard=shard) as w:
        for b in w.pending():
            start, stop = w.rows(b)
            w.write(b, np.concatenate(acts[start:stop], axis=1))


def chunk_files(path: Path) -> set[str]:
    acts = path / "models" / "m" / "tokens" / layout.ACTS
    return {str(p.relative_to(acts)) for p in acts.rglob("c/*/*/*")}


def chunk_bytes(path: Path) -> dict[str, bytes]:
    acts = path / "models" / "m" / "tokens" / layout.ACTS
    return {name: (acts / name).read_bytes() for name in chunk_files(path)}


def token_acts(store: emovec_store.Store) -> list[np.ndarray]:
    """Every stimulus' token activations as a reader gets them: ``offsets[i]:offsets[i] + n_tokens[i]``."""
    ds = store.dataset("m", "tokens")
    out = []
    for i in range(N):
        start = int(ds.offsets[i])
        rows = slice(start, start + int(ds.n_tokens[i]))
        assert (ds.token_stimulus.values[rows] == i).all()
        assert ds.position.values[rows].tolist() == list(range(LENGTHS[i]))
        assert ds.token_id.values[rows].tolist() == TOKEN_IDS[i]
        out.append(np.asarray(ds.acts.values[:, rows], dtype=np.float32))
    return out


def test_row_chunks_start_on_token_chunk_boundaries() -> None:
    offsets, total = layout.aligned_offsets(LENGTHS, CHUNK_ROWS, TOKEN_CHUNK)
    # row chunks of 15, 11, 12 and 5 tokens start at 0, 16, 28 and 40
    assert offsets.tolist() == [0, 5, 8, 16, 18, 24, 28, 36, 37, 40]
    assert total == 45


def test_two_shards_write_disjoint_chunk_files(tmp_path: Path) -> None:
    tokens_store(tmp_path / "empty.zarr")
    written = []
    for k in range(2):
        path = tmp_path / f"shard{k}.zarr"
        shutil.copytree(tmp_path / "empty.zarr", path)
        write(emovec_store.open(path, "r+", allow_partial=True), shard=(k, 2))
        written.append(chunk_files(path))
    assert written[0] and written[1]
    assert written[0].isdisjoint(written[1]), sorted(written[0] & written[1])
    single = tmp_path / "single.zarr"
    shutil.copytree(tmp_path / "empty.zarr", single)
    write(emovec_store.open(single, "r+", allow_partial=True))
    assert written[0] | written[1] == chunk_files(single)


@pytest.mark.parametrize("order", ["1 then 0", "interleaved"])
def test_shards_give_the_data_of_one_writer(tmp_path: Path, order: str) -> None:
    single = tokens_store(tmp_path / "single.zarr")
    write(single)
    single.finalize()
    store = tokens_store(tmp_path / "shards.zarr")
    if order == "1 then 0":
        write(store, shard=(1, 2))
        write(store, shard=(0, 2))
    else:  # both open at once, their batches alternating
        acts = per_stimulus()
        with store.writer("m", "tokens", shard=(0, 2)) as a, store.writer("m", "tokens", shard=(1, 2)) as b:
            turns = itertools.zip_longest([(a, x) for x in a.pending()], [(b, x) for x in b.pending()])
            for w, batch in (job for pair in turns for job in pair if job is not None):
                start, stop = w.rows(batch)
                w.write(batch, np.concatenate(acts[start:stop], axis=1))
    store.finalize()
    assert chunk_bytes(tmp_path / "shards.zarr") == chunk_bytes(tmp_path / "single.zarr")
    got = token_acts(emovec_store.open(tmp_path / "shards.zarr"))
    assert all(np.array_equal(g, w) for g, w in zip(got, per_stimulus()))


def test_padding_rows_are_fill_values(tmp_path: Path) -> None:
    store = tokens_store(tmp_path / "s.zarr")
    write(store)
    store.finalize()
    ds = emovec_store.open(tmp_path / "s.zarr").dataset("m", "tokens")
    assert ds.attrs["token_layout"] == "chunk-aligned" and ds.attrs["token_chunk_rows"] == TOKEN_CHUNK
    padding = ds.token_stimulus.values == -1
    assert ds.sizes["token"] == 45 and np.flatnonzero(padding).tolist() == [15, 27]  # before 16 and 28
    assert (ds.position.values[padding] == -1).all() and (ds.token_id.values[padding] == -1).all()
    assert np.isnan(ds.acts.values[:, padding]).all()
    assert not np.isnan(ds.acts.values[:, ~padding]).any()


def _units() -> xr.DataArray:
    rng = np.random.default_rng(1)
    vec = rng.standard_normal((len(LAYERS), 3, HIDDEN))
    return xr.DataArray(vec / np.linalg.norm(vec, axis=-1, keepdims=True), dims=("layer", "emotion", "hidden"),
                        coords={"layer": LAYERS, "emotion": ["calm", "sad", "joyful"]})


def test_readers_give_the_old_layouts_tokens(tmp_path: Path) -> None:
    new = tokens_store(tmp_path / "new.zarr")
    write(new)
    new.finalize()
    old = tokens_store(tmp_path / "old.zarr")
    to_contiguous(old)
    write(old)  # an old store resumes with one writer
    old.finalize()
    new, old = emovec_store.open(tmp_path / "new.zarr"), emovec_store.open(tmp_path / "old.zarr")
    assert "token_layout" not in old.readout_attrs("m", "tokens")
    for a, b, want in zip(token_acts(new), token_acts(old), per_stimulus()):
        assert np.array_equal(a, want) and np.array_equal(b, want)
    units = _units()
    for sid in IDS:
        got = tr.trace_from_store(new, "m", sid, units)
        xr.testing.assert_identical(got, tr.trace_from_store(old, "m", sid, units))
        assert got.sizes["position"] == LENGTHS[IDS.index(sid)]


def test_an_old_layout_readout_refuses_shards(tmp_path: Path) -> None:
    store = tokens_store(tmp_path / "s.zarr")
    to_contiguous(store)
    with pytest.raises(IncompatibleStoreError) as err:
        store.writer("m", "tokens", shard=(1, 2))
    message = str(err.value)
    assert err.value.exit_code == 2 and "\n" not in message
    assert "m/tokens" in message and "contiguous per-token layout" in message and "one writer" in message
    write(store, shard=(0, 1))  # one writer is fine
    assert store.progress("m", "tokens").complete


def _edit(path: Path, edit: Any) -> None:
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


TAMPER = {
    "codecs": lambda m: m["codecs"].append({"name": "gzip", "configuration": {"level": 1}}),
    "chunk_key_encoding": lambda m: m.update(chunk_key_encoding={"name": "v2", "configuration": {"separator": "."}}),
    "data_type": lambda m: m.update(data_type="float32", fill_value="NaN"),
    "chunk_grid": lambda m: m["chunk_grid"]["configuration"].update(
        chunk_shape=[1, 2 * m["chunk_grid"]["configuration"]["chunk_shape"][1], m["shape"][2]]),
}


@pytest.mark.parametrize("array", ["tokens/acts", "pooled/pooled", "tokens/_progress/batch_done"])
@pytest.mark.parametrize("key", sorted(TAMPER))
def test_the_writer_refuses_arrays_it_cannot_memmap(tmp_path: Path, array: str, key: str) -> None:
    tokens_store(tmp_path / "s.zarr", pooled=True)
    doc = tmp_path / "s.zarr" / "models" / "m" / array / "zarr.json"
    if array.endswith("batch_done") and key in ("data_type", "chunk_grid"):
        tamper = {"data_type": lambda m: m.update(data_type="uint16"),
                  "chunk_grid": lambda m: m["chunk_grid"]["configuration"].update(chunk_shape=[2])}[key]
    else:
        tamper = TAMPER[key]
    _edit(doc, tamper)
    store = emovec_store.open(tmp_path / "s.zarr", "r+", allow_partial=True)
    with pytest.raises(StoreError) as err:
        store.writer("m", array.split("/")[0])
    message = str(err.value)
    assert err.value.exit_code == 3 and "\n" not in message
    assert f"{doc}" in message and f": {key} " in message


def test_extract_refuses_a_shard_of_an_old_layout_store_and_resumes_it_alone(tmp_path: Path) -> None:
    model = build_model("llama", tmp_path / "llama")
    args = ["extract", "--model", str(model), "--no-progress", "--limit", "12", "--chunk-rows", "4",
            "--pooling", "tokens", "--dtype", "float32", "--storage-dtype", "float32", "--threads", "1"]
    runner = CliRunner()
    fresh, old = tmp_path / "fresh.zarr", tmp_path / "old.zarr"
    assert runner.invoke(cli, [*args, "--store", str(fresh)]).exit_code == 0
    r = runner.invoke(cli, [*args, "--store", str(old), "--shard", "0/2"])
    assert r.exit_code == 0, r.output
    store = emovec_store.open(old, "r+", allow_partial=True)
    slug = store.models[0]
    to_contiguous(store, slug)
    r = runner.invoke(cli, [*args, "--store", str(old), "--shard", "1/2"])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0].startswith("Error:") and "contiguous per-token layout" in lines[0]
    r = runner.invoke(cli, [*args, "--store", str(old)])
    assert r.exit_code == 0, r.output
    a, b = emovec_store.open(fresh).dataset(slug, "tokens"), emovec_store.open(old).dataset(slug, "tokens")
    assert "token_layout" not in b.attrs and b.sizes["token"] < a.sizes["token"]  # the old one has no padding
    for i in range(a.sizes["stimulus"]):
        rows = [slice(int(ds.offsets[i]), int(ds.offsets[i] + ds.n_tokens[i])) for ds in (a, b)]
        np.testing.assert_array_equal(a.acts.values[:, rows[0]], b.acts.values[:, rows[1]])
        assert a.token_id.values[rows[0]].tolist() == b.token_id.values[rows[1]].tolist()
