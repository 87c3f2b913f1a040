"""`emovec trace`: the trace from a model equals the one from a per-token readout of the same model."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from click.testing import CliRunner

import emovec_store
from emovec.analyses import trace as tr
from emovec.cli.main import cli
from emovec_store.derived import write_derived
from emovec_store.engine.extract import extract
from tests.tiny_models import build_model

TEXTS = ["the dog was at the door .", "she had a letter from her mother and it was not good",
         "rain on the window , then morning"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("trace")
    model = build_model("llama", root / "llama")
    table = pd.DataFrame({"stimulus": [f"s{i}" for i in range(len(TEXTS))], "text": TEXTS,
                          "kind": "story", "emotion": ["calm", "sad", "calm"]})
    # float32 compute, as the trace from the model uses: `auto` would pick bf16 on a CPU with native bf16
    extract(str(model), table, root / "s.zarr", pooling=["mean", "tokens"], storage_dtype="float32",
            dtype="float32", device="cpu", progress=False)
    st = emovec_store.open(root / "s.zarr")
    slug = st.models[0]
    rng = np.random.default_rng(0)
    raw = xr.DataArray(rng.standard_normal((4, 3, 32)), dims=("layer", "emotion", "hidden"),
                       coords={"layer": [0, 1, 2, 3], "emotion": ["calm", "sad", "joyful"]})
    write_derived(st, slug, "vectors", xr.Dataset({"raw": raw}), provenance={"readout": "mean"})
    return root / "s.zarr", model, slug


def _loaded(model: Path) -> tuple[Any, Any]:
    import transformers

    return (transformers.AutoModelForCausalLM.from_pretrained(model).eval(),
            transformers.AutoTokenizer.from_pretrained(model))


def test_trace_from_the_model_equals_the_trace_from_the_per_token_readout(setup: tuple[Path, Path, str]) -> None:
    path, model, slug = setup
    st = emovec_store.open(path)
    units = tr.unit_vectors(st, slug, [1, 3])
    lm, tok = _loaded(model)
    for i, text in enumerate(TEXTS):
        live = tr.trace_from_model(lm, tok, text, units)
        stored = tr.trace_from_store(st, slug, f"s{i}", units, decode=tok.decode)
        assert live.shape == stored.shape and live.sizes["position"] == len(tok(text)["input_ids"])
        np.testing.assert_allclose(live.to_numpy(), stored.to_numpy(), rtol=1e-4, atol=1e-4)
        assert list(live["token"].values) == list(stored["token"].values)
    assert np.abs(live.sel(layer=3).to_numpy()).max() > 0.1


def test_the_html_escapes_tokens_and_colours_by_sign() -> None:
    from emovec.report.trace_view import trace_html

    page = trace_html(np.array([[1.0, -0.5]]), ["calm"], ["<b>", "x"])
    assert "&lt;b&gt;" in page and "<b>" not in page
    assert "rgba(230,159,0,1.00)" in page and "rgba(0,114,178,0.50)" in page


def test_smoothing_is_a_trailing_mean() -> None:
    values = xr.DataArray(np.arange(5.0)[None, :, None], dims=("layer", "position", "emotion"))
    out = tr.smooth(values, 2).to_numpy()[0, :, 0]
    assert out.tolist() == [0.0, 0.5, 1.5, 2.5, 3.5]
    assert tr.smooth(values, 1) is values


def test_cli_writes_csv_heatmap_and_html(setup: tuple[Path, Path, str], tmp_path: Path) -> None:
    path, model, _ = setup
    out = tmp_path / "t"
    res = CliRunner().invoke(cli, ["trace", "the dog", "--store", str(path), "--load", str(model),
                                   "--layer", "2", "--smooth", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "trace.csv")
    assert set(table["emotion"]) == {"calm", "sad", "joyful"} and set(table["layer"]) == {2}
    assert (out / "trace_layer2.png").read_bytes()[:4] == b"\x89PNG"
    assert "the" in (out / "trace_layer2.html").read_text()
    res = CliRunner().invoke(cli, ["trace", "--store", str(path), "--stimulus", "nope", "--out", str(out)])
    assert res.exit_code == 2 and "no stimulus 'nope'" in res.output
    res = CliRunner().invoke(cli, ["trace", "x", "--stimulus", "s0", "--store", str(path)])
    assert res.exit_code == 2 and "exactly one" in res.output
