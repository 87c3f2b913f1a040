"""Compare: linear CKA's invariances, RSA's permutation p, and refusing stores with no shared stimuli."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from click.testing import CliRunner

import emovec_store
from emovec.analyses import compare as cmp
from emovec.cli.main import cli
from emovec_store.derived import write_derived
from emovec_store.errors import InputError
from tests.analysis_store import EMOTIONS, make_analysis_store


def test_cka_of_a_representation_with_itself_and_a_rotation_of_itself_is_one() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 12))
    rotation = np.linalg.qr(rng.standard_normal((12, 12)))[0]
    assert cmp.linear_cka(x, x) == pytest.approx(1.0)
    assert cmp.linear_cka(x, 3.0 * x @ rotation) == pytest.approx(1.0)
    y = rng.standard_normal((50, 7))
    assert cmp.linear_cka(x, y) == pytest.approx(cmp.linear_cka(x @ rotation, y))
    assert cmp.linear_cka(x, y) < 0.5


def test_rsa_finds_the_same_geometry_and_not_a_random_one() -> None:
    rng = np.random.default_rng(1)
    v = rng.standard_normal((8, 20))
    a = cmp.cosine_matrix(v)
    same = cmp.rsa(a, cmp.cosine_matrix(v @ np.linalg.qr(rng.standard_normal((20, 20)))[0]), n_permutations=199)
    assert same.r == pytest.approx(1.0) and same.p == pytest.approx(1 / 200)
    other = cmp.rsa(a, cmp.cosine_matrix(rng.standard_normal((8, 20))), n_permutations=199)
    assert other.r < 0.8 and other.p > 0.01
    with pytest.raises(InputError, match="3 or more"):
        cmp.rsa(a[:2, :2], a[:2, :2])


def _with_vectors(path: Path, seed: int) -> emovec_store.Store:
    st = make_analysis_store(path, n_layers=3, hidden=24, seed=seed)
    rng = np.random.default_rng(seed)
    raw = xr.DataArray(rng.standard_normal((3, len(EMOTIONS), 24)), dims=("layer", "emotion", "hidden"),
                       coords={"layer": [0, 1, 2], "emotion": list(EMOTIONS)})
    write_derived(st, "m", "vectors", xr.Dataset({"raw": raw}), provenance={"readout": "mean_from_50"})
    return st


def test_cli_compares_two_stores(tmp_path: Path) -> None:
    _with_vectors(tmp_path / "a.zarr", 0)
    _with_vectors(tmp_path / "b.zarr", 0)
    out = tmp_path / "cmp"
    res = CliRunner().invoke(cli, ["compare", str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr"),
                                   "--permutations", "99", "--out", str(out)])
    assert res.exit_code == 0, res.output
    cka = pd.read_csv(out / "cka.csv")
    diag = cka[cka["layer_a"] == cka["layer_b"]]["cka"]
    assert np.allclose(diag, 1.0)  # the same data in both stores
    assert (out / "cka.png").read_bytes()[:4] == b"\x89PNG"
    assert "rsa r +1.000" in res.output


def test_stores_with_no_shared_stimuli_are_refused(tmp_path: Path) -> None:
    a = _with_vectors(tmp_path / "a.zarr", 0)
    table = pd.DataFrame({"stimulus": ["x1", "x2"], "text": ["a", "b"], "kind": "story", "emotion": "sad"})
    b = emovec_store.create(tmp_path / "b.zarr", table)
    b.add_model("m", {"model": "m"})
    b.add_readout("m", "mean_from_50", stimulus_ids=["x1", "x2"], layers=[0], hidden=4, storage_dtype="float32",
                  batches=[(0, 2)], chunk_rows=2, n_tokens=[3, 3], attrs={"spec": "mean_from_50"})
    with b.writer("m", "mean_from_50") as writer:
        for batch in writer.pending():
            writer.write(batch, np.ones((1, 2, 4), np.float32))
    b.finalize()
    with pytest.raises(InputError, match="share no stimuli"):
        cmp.shared_stimuli([(a, "m"), (emovec_store.open(tmp_path / "b.zarr"), "m")])
    res = CliRunner().invoke(cli, ["compare", str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr")])
    assert res.exit_code == 2 and "share no stimuli" in res.output
