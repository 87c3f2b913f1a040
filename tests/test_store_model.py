"""One place loads the model that wrote a store and checks it is the same model, for steer, trace and
the logit lens alike."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from emovec.analyses.lens_model import lens_from_provenance
from emovec.analyses.store_model import identity_differences, load_store_model
from emovec_store.errors import InputError
from tests.tiny_models import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model("llama", tmp_path_factory.mktemp("llama"))


def test_identity_differences_compare_only_hashes_both_sides_record() -> None:
    stored = {"weights_sha256": "a", "tokenizer_sha256": "t", "gguf_sha256": "g"}
    assert identity_differences(stored, {"weights_sha256": "a", "tokenizer_sha256": "x"}) == ["tokenizer_sha256"]
    assert identity_differences(stored, {}) == []


def test_the_store_model_loads_when_it_matches_and_is_refused_when_it_differs(tiny: Path) -> None:
    loaded = load_store_model({"model": str(tiny)})
    assert not loaded.model.training and next(loaded.model.parameters()).dtype.is_floating_point
    same = {"model": str(tiny), "identity": dict(loaded.identity)}
    assert load_store_model(same).identity == loaded.identity
    other = {"model": str(tiny), "identity": {**loaded.identity, "weights_sha256": "0" * 64}}
    with pytest.raises(InputError, match="differs from the one that wrote the store .weights_sha256"):
        load_store_model(other)
    with pytest.raises(InputError, match="names no model; name one with --load"):
        load_store_model({})
    assert load_store_model({}, str(tiny)).identity == loaded.identity  # --load names it instead


def test_the_lens_skips_with_the_same_check(tiny: Path) -> None:
    loaded = load_store_model({"model": str(tiny)})
    vectors = xr.DataArray(np.ones((1, 2, 32)), dims=("layer", "emotion", "hidden"),
                           coords={"layer": [3], "emotion": ["joyful", "sad"]})
    other = {"model": str(tiny), "identity": {**loaded.identity, "weights_sha256": "0" * 64}}
    result, reason = lens_from_provenance(other, vectors)
    assert result is None and "differs from the one that wrote the store" in reason
    assert lens_from_provenance({}, vectors) == (None, "the store's provenance names no model")
