"""One contract, every way a store can be opened (directory, zip, format-2 copy, HTTP, S3); and the
readout attributes' two namespaces (the store's structural layout, the caller's provenance)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import emovec_store

from .s3_server import s3_server
from .synthetic import make_store
from .test_store import serve

N, LAYERS, HIDDEN = 50, 3, 8


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("contract") / "s.zarr"
    _, data = make_store(path, n=N, n_layers=LAYERS, hidden=HIDDEN, storage="float16")
    return path, data


@pytest.fixture(scope="module", params=["directory", "zip", "zarr2", "http", "s3"])
def opened(request: pytest.FixtureRequest, original: tuple[Path, np.ndarray]) -> Iterator[tuple[str, str]]:
    """(way, location) of the same finalized store, opened each way it can be."""
    path, _ = original
    way = request.param
    if way == "directory":
        yield way, str(path)
    elif way == "zip":
        out = path.with_name("s.zip")
        if not out.exists():
            emovec_store.export_zip(emovec_store.open(path), out)
        yield way, str(out)
    elif way == "zarr2":
        out = path.with_name("s2.zarr")
        if not out.exists():
            emovec_store.export_zarr2(emovec_store.open(path), out)
        yield way, str(out)
    elif way == "http":
        with serve(path.parent) as base:
            yield way, f"{base}/s.zarr"
    else:  # a real S3-compatible server on 127.0.0.1 (moto; skipped without moto and s3fs)
        with s3_server(path.parent) as s3:
            yield way, s3.upload(path, "s3://bucket/s.zarr")


class TestEveryWayToOpenAStore:
    """What every opened store promises, whatever it is opened from."""

    def test_it_is_complete_with_its_model_and_readout(self, opened: tuple[str, str]) -> None:
        store = emovec_store.open(opened[1])
        assert store.complete and store.models == ["m"] and store.readouts("m") == ["mean_from_50"]

    def test_its_activations_and_labels_equal_the_original(self, opened: tuple[str, str],
                                                          original: tuple[Path, np.ndarray]) -> None:
        ds = emovec_store.open(opened[1]).dataset("m").load()
        mine = emovec_store.open(original[0]).dataset("m").load()
        assert ds.pooled.dims == ("layer", "stimulus", "hidden")
        np.testing.assert_array_equal(ds.pooled.values, original[1].astype(np.float16).astype(np.float32))
        assert list(ds.emotion.values) == list(mine.emotion.values)
        xr.testing.assert_identical(emovec_store.open(opened[1]).stimuli, emovec_store.open(original[0]).stimuli)

    def test_its_readout_says_its_layout(self, opened: tuple[str, str]) -> None:
        attrs = emovec_store.open(opened[1]).readout_attrs("m", "mean_from_50")
        assert attrs["layout"] == "pooled" and attrs["spec"] == "mean_from:50" and "kind" not in attrs

    def test_info_sums_it_up(self, opened: tuple[str, str]) -> None:
        summary = emovec_store.info(emovec_store.open(opened[1]))
        readout = summary["models"]["m"]["readouts"]["mean_from_50"]
        assert readout["shape"] == [LAYERS, N, HIDDEN] and readout["batches_done"] == readout["batches"]

    def test_it_verifies_clean_where_its_files_can_be_listed(self, opened: tuple[str, str]) -> None:
        way, location = opened
        if way in ("http", "s3"):
            with pytest.raises(emovec_store.StoreError, match="local store directory or zip"):
                emovec_store.verify(location)
        else:
            assert emovec_store.verify(location) == []

    def test_it_refuses_writes_unless_it_is_a_directory(self, opened: tuple[str, str]) -> None:
        way, location = opened
        if way in ("zip", "http", "s3"):
            with pytest.raises(emovec_store.ReadOnlyStoreError):
                emovec_store.open(location, mode="r+")
        with pytest.raises(emovec_store.ReadOnlyStoreError):
            emovec_store.open(location).writer("m", "mean_from_50")


def test_provenance_may_not_reuse_a_structural_key(tmp_path: Path) -> None:
    store, _ = make_store(tmp_path / "s.zarr", write=False)
    for key in ("layout", "hidden", "storage_dtype", "coordinates", "max_abs_per_layer"):
        with pytest.raises(emovec_store.InputError, match=key):
            store.add_readout("m", "other", stimulus_ids=[f"s{i:04d}" for i in range(50)], layers=[0],
                              hidden=8, storage_dtype="float32", batches=[(0, 16), (16, 32), (32, 48), (48, 50)],
                              chunk_rows=16, attrs={key: "mine"})
    assert store.readouts("m") == ["mean_from_50"]


def test_a_readout_written_before_layout_existed_still_resumes_and_reads(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    make_store(path, write=False)
    meta = path / "models/m/mean_from_50/zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["kind"] = doc["attributes"].pop("layout")  # how older stores said it
    meta.write_text(json.dumps(doc))
    store, data = make_store(path, store=emovec_store.open(path, "r+", allow_partial=True))  # same plan again
    np.testing.assert_array_equal(emovec_store.open(path).dataset("m").pooled.values, data)
