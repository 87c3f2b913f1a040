"""`emovec vectors export`: tensor names, layers, mean norms and metadata, in both formats."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from emovec.analyses.export_vectors import LAYER_CONVENTION, export_vectors
from emovec.cli.main import cli
from emovec_store.derived import write_derived
from tests.analysis_store import EMOTIONS, make_analysis_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, xr.DataArray]:
    path = tmp_path_factory.mktemp("v") / "s.zarr"
    st = make_analysis_store(path, n_layers=4, hidden=24)
    rng = np.random.default_rng(0)
    raw = xr.DataArray(rng.standard_normal((4, len(EMOTIONS), 24)), dims=("layer", "emotion", "hidden"),
                       coords={"layer": [0, 1, 2, 3], "emotion": list(EMOTIONS)})
    write_derived(st, "m", "vectors", xr.Dataset({"raw": raw, "denoised": raw * 2}),
                  provenance={"readout": "mean_from_50"})
    return path, raw


def _expected_norms(path: Path) -> np.ndarray:
    import emovec_store

    pooled = emovec_store.open(path).dataset("m", "mean_from_50")["pooled"].to_numpy().astype(np.float64)
    return np.linalg.norm(pooled, axis=2).mean(1)


def test_safetensors_holds_one_tensor_per_emotion_layers_norms_and_metadata(
        store: tuple[Path, xr.DataArray], tmp_path: Path) -> None:
    from safetensors import safe_open

    path, raw = store
    out = export_vectors(path, tmp_path / "v.safetensors", fmt="safetensors", vector_set="raw")
    with safe_open(str(out), "np") as fh:
        names = set(fh.keys())
        meta = fh.metadata()
        assert names == set(EMOTIONS) | {"layers", "mean_norm"}
        np.testing.assert_allclose(fh.get_tensor("sad"), raw.sel(emotion="sad").to_numpy(), rtol=1e-6)
        assert fh.get_tensor("layers").tolist() == [0, 1, 2, 3]
        np.testing.assert_allclose(fh.get_tensor("mean_norm"), _expected_norms(path), rtol=1e-5)
    assert meta["layer_convention"] == LAYER_CONVENTION and meta["vector_set"] == "raw"
    assert json.loads(meta["emotions"]) == list(EMOTIONS)


def test_npz_defaults_to_denoised_and_the_cli_writes_it(store: tuple[Path, xr.DataArray], tmp_path: Path) -> None:
    path, raw = store
    out = tmp_path / "v.npz"
    res = CliRunner().invoke(cli, ["vectors", "export", str(path), "--format", "npz", "--out", str(out)])
    assert res.exit_code == 0, res.output
    with np.load(out) as data:
        np.testing.assert_allclose(data["joyful"], 2 * raw.sel(emotion="joyful").to_numpy(), rtol=1e-6)
        assert json.loads(str(data["metadata"]))["vector_set"] == "denoised"
    assert not list(tmp_path.glob(".*writing"))


def test_a_store_without_vectors_is_one_line_exit_2(tmp_path: Path) -> None:
    make_analysis_store(tmp_path / "s.zarr", n_layers=2, hidden=24)
    res = CliRunner().invoke(cli, ["vectors", "export", str(tmp_path / "s.zarr"), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "run `emovec analyze" in res.output
    assert not (tmp_path / "x").exists()


def test_gguf_is_a_llama_cpp_control_vector_that_reads_back(store: tuple[Path, xr.DataArray], tmp_path: Path) -> None:
    import gguf

    path, raw = store
    res = CliRunner().invoke(cli, ["vectors", "export", str(path), "--format", "gguf", "--emotion", "sad",
                                   "--vectors", "raw", "--layer", "2", "--layer", "3", "--out",
                                   str(tmp_path / "sad.gguf")])
    assert res.exit_code == 0, res.output
    reader = gguf.GGUFReader(str(tmp_path / "sad.gguf"))
    fields = {name: field.contents() for name, field in reader.fields.items()}
    assert fields["general.architecture"] == "controlvector"
    assert fields["controlvector.layer_count"] == 2 and "controlvector.model_hint" in fields
    assert fields["emovec.emotion"] == "sad" and fields["emovec.layers"] == [2, 3]
    tensors = {t.name: np.asarray(t.data) for t in reader.tensors}
    assert set(tensors) == {"direction.1", "direction.2"}  # decoder blocks 1 and 2 = emovec layers 2 and 3
    norms = _expected_norms(path)
    for block, layer in ((1, 2), (2, 3)):
        v = raw.sel(emotion="sad", layer=layer).to_numpy()
        assert tensors[f"direction.{block}"].dtype == np.float32 and tensors[f"direction.{block}"].shape == (24,)
        np.testing.assert_allclose(tensors[f"direction.{block}"], norms[layer] * v / np.linalg.norm(v), rtol=1e-5)
    default = export_vectors(path, tmp_path / "d.gguf", fmt="gguf", emotion="calm")
    assert [t.name for t in gguf.GGUFReader(str(default)).tensors] == ["direction.1"]  # layer 2 of 0..3


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "gguf"], "holds one emotion: name it with --emotion"),
    (["--format", "gguf", "--emotion", "bored"], "no emotion 'bored'"),
    (["--format", "gguf", "--emotion", "sad", "--layer", "1"], "llama.cpp steers the outputs of decoder blocks 1"),
    (["--format", "gguf", "--emotion", "sad", "--layer", "7"], "no layer 7"),
    (["--format", "npz", "--emotion", "sad"], "npz holds every emotion"),
])
def test_gguf_bad_input_is_one_line_exit_2(store: tuple[Path, xr.DataArray], tmp_path: Path, args: list[str],
                                           message: str) -> None:
    path, _ = store
    res = CliRunner().invoke(cli, ["vectors", "export", str(path), *args, "--out", str(tmp_path / "x")])
    assert res.exit_code == 2, res.output
    assert message in res.output and len(res.output.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())
