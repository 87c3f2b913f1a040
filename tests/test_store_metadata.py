"""What a store carries for the analyses: the emotions table, every stimulus field, derived results."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import emovec_store
from emovec.corpus import load_corpus
from emovec_store.derived import default_sidecar, derived_writer, list_derived, read_derived, write_derived
from emovec_store.finalize import derived_groups, manifest

from .synthetic import make_store, stimulus_table


def _vectors() -> xr.Dataset:
    rng = np.random.default_rng(0)
    return xr.Dataset({"raw": (("layer", "emotion", "hidden"), rng.standard_normal((3, 4, 8)))},
                      coords={"layer": [0, 1, 2], "emotion": ["joyful", "calm", "furious", "sad"]})


def test_builtin_corpus_norms_and_intensity_levels_reach_the_store(tmp_path: Path) -> None:
    table = load_corpus("emovec")
    st = emovec_store.create(tmp_path / "s.zarr", table)
    emotions = st.emotions
    assert list(emotions.emotion.values) == table.attrs["corpus"]["emotions"]
    joyful = emotions.sel(emotion="joyful")
    assert float(joyful.valence) == pytest.approx(0.99) and str(joyful.quadrant.values) == "pleasant-high"
    assert np.isfinite(emotions.valence.values).all() and "NRC" in emotions.attrs["norms_source"]
    stimuli = st.stimuli
    intensity = stimuli.where(stimuli.kind == "intensity", drop=True)
    assert intensity.sizes["stimulus"] > 0 and set(intensity.level.values.astype(int)) >= {1, 2, 3}
    assert all(t for t in intensity.template.values)
    neutral = stimuli.where(stimuli.kind == "neutral", drop=True)
    assert all(t for t in neutral.task.values)
    # the corpus source recorded is a name, not a path of this machine
    assert st.stimuli.attrs["corpus"]["source"] == "builtin"


def test_readouts_carry_the_extra_fields_as_coordinates(tmp_path: Path) -> None:
    table = load_corpus("emovec")
    st = emovec_store.create(tmp_path / "s.zarr", table)
    ids = list(table["stimulus"][table["kind"] == "intensity"])
    st.add_model("m", {"model": "m"}, identity={"name": "m"})
    st.add_readout("m", "assistant", stimulus_ids=ids, layers=[0], hidden=4, storage_dtype="float32",
                   batches=[(0, len(ids))], chunk_rows=len(ids))
    ds = st.dataset("m", "assistant")
    assert {"level", "template", "value"} <= set(ds.coords)
    expected = table.set_index("stimulus").loc[ids, "level"].to_numpy()
    np.testing.assert_array_equal(ds.level.values, expected)


def test_a_corpus_without_norms_gets_nan_norms(tmp_path: Path) -> None:
    st = emovec_store.create(tmp_path / "s.zarr", stimulus_table(20))
    assert list(st.emotions.emotion.values) == ["joyful", "calm", "furious", "sad"]
    assert np.isnan(st.emotions.valence.values).all()


def test_a_corpus_directory_is_recorded_relative_to_the_store(tmp_path: Path) -> None:
    table = stimulus_table(20)
    table.attrs["corpus"]["source"] = str(tmp_path / "corpora" / "mine")
    st = emovec_store.create(tmp_path / "runs" / "s.zarr", table)
    assert st.stimuli.attrs["corpus"]["source"] == "../../corpora/mine"


def test_derived_results_leave_a_finalized_store_complete_and_verified(tmp_path: Path) -> None:
    st, _ = make_store(tmp_path / "s.zarr")
    before = manifest(tmp_path / "s.zarr")
    where = write_derived(st, "m", "vectors", _vectors(), provenance={"analysis": "vectors", "layers": [0, 1, 2]})
    assert where.endswith("models/m/derived/vectors")
    reopened = emovec_store.open(tmp_path / "s.zarr")
    assert reopened.complete and reopened.verify() == [] and manifest(tmp_path / "s.zarr") == before
    assert reopened.readouts("m") == ["mean_from_50"]  # derived is not a readout
    assert derived_groups(reopened) == ["models/m/derived/vectors"]
    back = read_derived(reopened, "m", "vectors")
    xr.testing.assert_allclose(back.raw, _vectors().raw)
    assert back.attrs["emovec_provenance"]["layers"] == [0, 1, 2]
    # rewriting replaces the result whole; nothing temporary is left behind
    write_derived(reopened, "m", "vectors", _vectors() * 2)
    assert float(read_derived(reopened, "m", "vectors").raw.sum()) == pytest.approx(2 * float(_vectors().raw.sum()))
    assert list_derived(reopened, "m") == ["vectors"]
    assert not [p for p in (tmp_path / "s.zarr/models/m/derived").iterdir() if p.name.startswith(".")]


def test_a_zip_store_gets_a_sidecar(tmp_path: Path) -> None:
    st, _ = make_store(tmp_path / "s.zarr")
    emovec_store.export_zip(emovec_store.open(tmp_path / "s.zarr"), tmp_path / "s.zip")
    zipped = emovec_store.open(tmp_path / "s.zip")
    write_derived(zipped, "m", "vectors", _vectors())
    assert default_sidecar(zipped) == tmp_path / "s.derived.zarr"
    assert (tmp_path / "s.derived.zarr/models/m/derived/vectors/zarr.json").is_file()
    assert list_derived(zipped, "m") == ["vectors"]
    meta = json.loads((tmp_path / "s.derived.zarr/zarr.json").read_text())
    assert meta["attributes"]["emovec_derived_for"] == str(tmp_path / "s.zip")


def test_a_first_result_that_fails_leaves_no_sidecar(tmp_path: Path) -> None:
    """A failed analysis of a zip or URL store leaves nothing behind; a later failure keeps earlier results."""
    make_store(tmp_path / "s.zarr")
    emovec_store.export_zip(emovec_store.open(tmp_path / "s.zarr"), tmp_path / "s.zip")
    zipped = emovec_store.open(tmp_path / "s.zip")
    with pytest.raises(RuntimeError), derived_writer(zipped, "m", "vectors"):
        raise RuntimeError("the analysis failed")
    assert not (tmp_path / "s.derived.zarr").exists()
    (tmp_path / "mine").mkdir()  # an empty directory named by the user stays, empty
    with pytest.raises(RuntimeError), derived_writer(zipped, "m", "vectors", sidecar=tmp_path / "mine"):
        raise RuntimeError("the analysis failed")
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())
    write_derived(zipped, "m", "vectors", _vectors())
    with pytest.raises(RuntimeError), derived_writer(zipped, "m", "probes"):
        raise RuntimeError("the analysis failed")
    assert list_derived(zipped, "m") == ["vectors"]


def test_a_sidecar_of_another_store_is_refused(tmp_path: Path) -> None:
    st, _ = make_store(tmp_path / "a.zarr")
    other, _ = make_store(tmp_path / "b.zarr", n=40)
    write_derived(st, "m", "vectors", _vectors(), sidecar=tmp_path / "side.zarr")
    with pytest.raises(emovec_store.InputError, match="another store"):
        list_derived(other, "m", sidecar=tmp_path / "side.zarr")


def test_reading_a_missing_result_names_what_exists(tmp_path: Path) -> None:
    st, _ = make_store(tmp_path / "s.zarr")
    with pytest.raises(emovec_store.InputError, match="no derived result 'vectors'.*emovec analyze"):
        read_derived(st, "m", "vectors")
