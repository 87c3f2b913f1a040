"""Steering mechanics on a tiny random model: hooks in and out cleanly, strength 0 is the unsteered
model, seeds reproduce, and the strength scale comes from the store."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from emovec.analyses import steer
from emovec_store.derived import write_derived
from emovec_store.errors import InputError
from tests.analysis_store import EMOTIONS, make_analysis_store

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _hook_count(model: Any) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _logits(model: Any, ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits.numpy()


IDS = [2, 20, 21, 22, 23, 24, 25]


@pytest.mark.parametrize("layer", [0, 1, 3])
def test_steering_changes_outputs_inside_and_leaves_the_model_as_it_was(tiny_llama: tuple[Any, Any],
                                                                        layer: int) -> None:
    model, _ = tiny_llama
    before = _logits(model, IDS)
    direction = steer.random_direction(32, seed=1)
    with steer.steering(model, layer, 5.0 * direction):
        assert _hook_count(model) == 1
        inside = _logits(model, IDS)
    assert _hook_count(model) == 0
    assert not np.allclose(inside, before)
    np.testing.assert_array_equal(_logits(model, IDS), before)


def test_the_hook_is_removed_after_an_exception(tiny_llama: tuple[Any, Any]) -> None:
    model, _ = tiny_llama
    with pytest.raises(RuntimeError), steer.steering(model, 2, np.ones(32)):
        raise RuntimeError("boom")
    assert _hook_count(model) == 0


def test_steering_adds_the_vector_to_the_residual_stream_at_the_layer(tiny_llama: tuple[Any, Any]) -> None:
    import torch

    model, _ = tiny_llama
    seen: list[np.ndarray] = []
    block = steer._blocks(model)[2]  # its input is layer 2 (the output of block 1)
    handle = block.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().numpy().copy()))
    vec = steer.random_direction(32, seed=3) * 2.0
    try:
        with torch.no_grad():
            model(torch.tensor([IDS]))
            with steer.steering(model, 2, vec):
                model(torch.tensor([IDS]))
    finally:
        handle.remove()
    plain, steered = seen
    np.testing.assert_allclose(steered - plain, np.broadcast_to(vec, plain.shape), atol=1e-5)


def _hidden_states(model: Any, ids: list[int]) -> np.ndarray:
    """Every layer's residual, (layer, position, hidden), each read as the input of the block after it
    (hooks added after the steering hook, so they see what it did), the last one as the final norm's."""
    import torch

    seen: list[np.ndarray] = []
    modules = [*steer._blocks(model), model.model.norm]
    handles = [m.register_forward_pre_hook(lambda m, args: seen.append(args[0][0].detach().numpy().copy()))
               for m in modules]
    try:
        with torch.no_grad():
            model(torch.tensor([ids]))
    finally:
        for h in handles:
            h.remove()
    return np.stack(seen)


@pytest.mark.parametrize("layer", [0, 2])
def test_steering_from_a_position_leaves_earlier_positions_as_unsteered(tiny_llama: tuple[Any, Any],
                                                                        layer: int) -> None:
    model, _ = tiny_llama
    vec = 5.0 * steer.random_direction(32, seed=4)
    plain = _hidden_states(model, IDS)
    with steer.steering(model, layer, vec, from_position=4):
        late = _hidden_states(model, IDS)
    with steer.steering(model, layer, vec):
        everywhere = _hidden_states(model, IDS)
    with steer.steering(model, layer, vec, from_position=0):
        from_zero = _hidden_states(model, IDS)
    np.testing.assert_array_equal(late[:, :4], plain[:, :4])  # every layer, positions 0..3
    np.testing.assert_allclose(late[layer, 4:] - plain[layer, 4:], np.broadcast_to(vec, (len(IDS) - 4, 32)),
                               atol=1e-5)
    assert not np.allclose(late[-1, 4:], plain[-1, 4:])
    np.testing.assert_array_equal(from_zero, everywhere)
    assert _hook_count(model) == 0


def test_steering_the_generated_tokens_only_keeps_the_prompt_and_the_first_token(tiny_llama: tuple[Any, Any]) -> None:
    import torch

    model, tok = tiny_llama
    ids = steer.prompt_ids(tok, "tell me about the train")
    vec = 40.0 * steer.random_direction(32, seed=6)
    seen: list[np.ndarray] = []
    handle = steer._blocks(model)[-1].register_forward_hook(lambda m, a, out: seen.append(
        (out[0] if isinstance(out, tuple) else out)[0].detach().numpy().copy()))
    try:
        plain = steer.generate(model, tok, ids, seed=3, max_new_tokens=10)
        n_plain = len(seen)
        with steer.steering(model, 2, vec, from_position=len(ids)):
            steered = steer.generate(model, tok, ids, seed=3, max_new_tokens=10)
    finally:
        handle.remove()
    # the prompt pass (the cache the generated tokens attend to) is the unsteered one, so the first
    # token, sampled from the prompt's last position, is the same; later tokens are steered
    np.testing.assert_array_equal(seen[n_plain], seen[0])
    assert steered[0] == plain[0]
    assert steered != plain
    with torch.no_grad(), pytest.raises(InputError, match="negative"), steer.steering(model, 2, vec,
                                                                                     from_position=-1):
        pass


def test_strength_zero_reproduces_unsteered_generation_token_for_token(tiny_llama: tuple[Any, Any]) -> None:
    model, tok = tiny_llama
    ids = steer.prompt_ids(tok, "tell me about the train")
    plain = steer.generate(model, tok, ids, seed=7, max_new_tokens=12)
    direction = steer.random_direction(32, seed=0)
    vector = steer.steering_vector(direction, 0.0, mean_norm=10.0)
    assert vector is None
    with steer.steering(model, 2, vector):
        zero = steer.generate(model, tok, ids, seed=7, max_new_tokens=12)
    with steer.steering(model, 2, 0.0 * direction):  # an installed hook adding zeros changes nothing either
        zero_hook = steer.generate(model, tok, ids, seed=7, max_new_tokens=12)
    assert plain == zero == zero_hook
    assert len(plain) == 12


def test_seeds_reproduce_and_differ(tiny_llama: tuple[Any, Any]) -> None:
    model, tok = tiny_llama
    ids = steer.prompt_ids(tok, "the dog")
    runs = [steer.generate(model, tok, ids, seed=s, max_new_tokens=16) for s in (1, 1, 2)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    vec = steer.steering_vector(steer.random_direction(32, seed=5), 0.5, mean_norm=40.0)
    with steer.steering(model, 1, vec):
        steered = [steer.generate(model, tok, ids, seed=1, max_new_tokens=16) for _ in range(2)]
    assert steered[0] == steered[1]
    assert steered[0] != runs[0]


def test_prompt_ids_use_the_chat_template(tiny_llama: tuple[Any, Any]) -> None:
    _, tok = tiny_llama
    ids = steer.prompt_ids(tok, "the dog")
    plain = tok("the dog", add_special_tokens=False)["input_ids"]
    assert len(ids) > len(plain) + 4  # the template's role markers wrap the prompt
    assert any(ids[i:i + len(plain)] == plain for i in range(len(ids)))


def _store_with_vectors(tmp_path: Path) -> Any:
    st = make_analysis_store(tmp_path / "s.zarr", n_layers=4, hidden=24)
    rng = np.random.default_rng(0)
    raw = xr.DataArray(rng.standard_normal((4, len(EMOTIONS), 24)), dims=("layer", "emotion", "hidden"),
                       coords={"layer": [0, 1, 2, 3], "emotion": list(EMOTIONS)})
    write_derived(st, "m", "vectors", xr.Dataset({"raw": raw}), provenance={"readout": "mean_from_50"})
    return st


def test_the_source_reads_vectors_and_the_layer_mean_norm_from_the_store(tmp_path: Path) -> None:
    st = _store_with_vectors(tmp_path)
    src = steer.steering_source(st, layer=2)
    pooled = st.dataset("m", "mean_from_50")["pooled"].sel(layer=2).to_numpy().astype(np.float64)
    assert src.mean_norm == pytest.approx(np.linalg.norm(pooled, axis=1).mean())
    assert src.vector_set == "raw" and src.layer == 2 and src.emotions == list(EMOTIONS)
    assert np.linalg.norm(src.unit("sad")) == pytest.approx(1.0)
    assert steer.steering_source(st).layer == 2  # two thirds of depth 3
    with pytest.raises(InputError, match="no layer 9"):
        steer.steering_source(st, layer=9)
    with pytest.raises(InputError, match="no emotion 'bored'"):
        src.unit("bored")


def test_a_store_without_vectors_asks_for_analyze(tmp_path: Path) -> None:
    st = make_analysis_store(tmp_path / "s.zarr", n_layers=2, hidden=24)
    with pytest.raises(InputError, match="run `emovec analyze"):
        steer.steering_source(st)
