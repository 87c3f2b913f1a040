"""`emovec steer` end to end on a tiny random model and a synthetic store with vectors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from emovec.cli.main import cli
from emovec_store.derived import write_derived
from tests.analysis_store import EMOTIONS, make_analysis_store
from tests.tiny_models import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("steer")
    model = build_model("llama", root / "llama")
    st = make_analysis_store(root / "s.zarr", n_layers=4, hidden=32)
    rng = np.random.default_rng(0)
    raw = xr.DataArray(rng.standard_normal((4, len(EMOTIONS), 32)), dims=("layer", "emotion", "hidden"),
                       coords={"layer": [0, 1, 2, 3], "emotion": list(EMOTIONS)})
    write_derived(st, "m", "vectors", xr.Dataset({"raw": raw}), provenance={"readout": "mean_from_50"})
    return root / "s.zarr", model


def test_steer_writes_tables_plot_and_examples(setup: tuple[Path, Path], tmp_path: Path) -> None:
    store, model = setup
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["steer", str(store), "--load", str(model), "--emotion", "joyful",
                                   "--strengths", "-1,1", "--rollouts", "1", "--random-controls", "2",
                                   "--max-new-tokens", "4", "--from-position", "generated", "--threads", "1",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "joyful -> " in res.output and "p " in res.output
    for name in ("dose_response.csv", "slopes.csv", "generations.csv", "dose_response.png"):
        assert (out / name).stat().st_size > 0
    payload = json.loads((out / "results.json").read_text())
    assert payload["source"]["layer"] == 2 and payload["settings"]["from_position"] == "generated"
    assert {r["scorer"] for r in payload["slopes"]} >= {"vader", "nrc:positive", "perplexity", "readout:joyful"}
    assert len(payload["examples"]) == (1 + 1 + 2) * 3  # joyful, its control, 2 random; 3 strengths
    assert (out / "dose_response.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("args", "message"), [
    (["--emotion", "bored"], "no emotion 'bored'"),
    (["--emotion", "sad", "--layer", "7"], "no layer 7"),
    (["--emotion", "sad", "--strengths", "x"], "--strengths 'x'"),
    (["--emotion", "sad", "--scorer", "nomodule_here:f"], "--scorer 'nomodule_here:f'"),
    (["--emotion", "sad", "--from-position", "-2"], "--from-position '-2'"),
])
def test_bad_input_is_one_line_and_exit_2(setup: tuple[Path, Path], args: list[str], message: str) -> None:
    store, model = setup
    res = CliRunner().invoke(cli, ["steer", str(store), "--load", str(model), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_a_store_without_vectors_asks_for_analyze(tmp_path: Path) -> None:
    make_analysis_store(tmp_path / "s.zarr", n_layers=2, hidden=24)
    res = CliRunner().invoke(cli, ["steer", str(tmp_path / "s.zarr"), "--emotion", "sad"])
    assert res.exit_code == 2
    assert "run `emovec analyze" in res.output
