"""The dose-response experiment: its design (shared strength 0, matched controls) and its statistics."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from emovec.analyses import dose_response as dr
from emovec.analyses.steer import SteeringSource
from emovec_store.errors import InputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _source(hidden: int = 32, mean_norm: float = 30.0) -> SteeringSource:
    rng = np.random.default_rng(1)
    names = ["joyful", "sad", "calm"]
    vec = xr.DataArray(rng.standard_normal((3, hidden)), dims=("emotion", "hidden"), coords={"emotion": names})
    vec[1] = -vec[0] + 0.1 * rng.standard_normal(hidden)  # sad is nearly opposite joyful
    return SteeringSource(model="m", layer=2, vectors=vec, mean_norm=mean_norm, readout="mean", vector_set="raw")


def test_a_small_run_has_every_cell_shares_strength_zero_and_reports_controls(tiny_llama: tuple[Any, Any]) -> None:
    model, tok = tiny_llama
    settings = dr.SteerSettings(emotions=["joyful"], strengths=(-1.0, 0.0, 1.0), prompts=("the dog", "a train"),
                                rollouts=2, random_controls=2, max_new_tokens=6, bootstrap=50)
    calls: list[int] = []
    result = dr.run_steering(model, tok, _source(mean_norm=500.0), settings,
                             extra_scorers={"length": lambda t: float(len(t))},
                             progress=lambda done, total: calls.append(total))
    assert result.controls == {"joyful": "sad"}  # the least similar vector of the store
    gen = result.generations
    assert set(gen["condition"]) == {"joyful", "sad", "random:0", "random:1"}
    assert len(gen) == 4 * 3 * 2 * 2
    assert calls[-1] == len(calls) == (4 * 2 + 1) * 4  # strength 0 generated once per unit
    # the tiny vocabulary decodes to little text: perplexity tells generations apart
    zero = gen[gen["strength"] == 0].groupby("condition")["perplexity"].apply(list)
    assert all(values == zero.iloc[0] for values in zero)
    steered = gen[(gen["strength"] == 1.0) & (gen["condition"] == "joyful")]["perplexity"].tolist()
    assert steered != zero.iloc[0]
    assert {"perplexity", "vader", "nrc:joy", "nrc:negative", "length", "readout:joyful", "readout:calm"} <= set(
        result.scorers())
    slope = result.slopes.set_index(["emotion", "scorer"]).loc[("joyful", "vader")]
    assert slope["p_vs_random"] in (1 / 3, 2 / 3, 1.0)
    assert len(slope["random_slopes"]) == 2
    assert set(result.perplexity_doubling) == set(gen["condition"])
    assert len(dr.examples(result)) == 4 * 3


def _synthetic_generations(slope: float, n_units: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for cond, b in (("joyful", slope), ("random:0", 0.0), ("random:1", 0.01), ("random:2", -0.02), ("sad", -slope)):
        for s in (-1.0, 0.0, 1.0):
            for u in range(n_units):
                rows.append({"condition": cond, "strength": s, "prompt": u, "rollout": 0, "text": "", "n_tokens": 3,
                             "perplexity": 10.0 * (4.0 if abs(s) == 1 and cond == "joyful" else 1.0),
                             "vader": b * s + 0.01 * rng.standard_normal()})
    return pd.DataFrame(rows)


def test_statistics_recover_a_planted_slope_its_p_and_the_perplexity_doubling() -> None:
    settings = dr.SteerSettings(emotions=["joyful"], bootstrap=200)
    result = dr.summarise(_synthetic_generations(0.5), settings, {"joyful": "sad"}, _source())
    row = result.slopes.set_index(["emotion", "scorer"]).loc[("joyful", "vader")]
    assert row["slope"] == pytest.approx(0.5, abs=0.02)
    assert row["ci_low"] <= row["slope"] <= row["ci_high"] and row["ci_high"] - row["ci_low"] < 0.05
    assert row["p_vs_random"] == pytest.approx(1 / 4)  # beats all 3 random slopes: the smallest p possible
    assert row["control_slope"] == pytest.approx(-0.5, abs=0.02)
    assert result.perplexity_doubling["joyful"] == {"positive": 1.0, "negative": -1.0}
    assert result.perplexity_doubling["random:0"] == {"positive": None, "negative": None}
    cell = result.cells.set_index(["condition", "strength", "scorer"]).loc[("joyful", 1.0, "perplexity")]
    assert cell["mean"] == pytest.approx(40.0)
    weak = dr.summarise(_synthetic_generations(0.0), settings, {"joyful": "sad"}, _source())
    assert weak.slopes.set_index(["emotion", "scorer"]).loc[("joyful", "vader"), "p_vs_random"] > 0.25


def test_strength_specs() -> None:
    assert dr.parse_strengths("-0.5:0.5:5") == [-0.5, -0.25, 0.0, 0.25, 0.5]
    assert dr.parse_strengths("0.2,0.1") == [0.0, 0.1, 0.2]  # 0 always runs: the unsteered reference
    for bad in ("a:b:c", "0:1:1", ""):
        with pytest.raises(InputError, match="--strengths"):
            dr.parse_strengths(bad)


def test_from_position_specs() -> None:
    assert dr.parse_from_position("generated") == dr.GENERATED
    assert dr.parse_from_position("12") == 12
    assert dr.start_position(dr.GENERATED, 9) == 9  # the generated tokens start after the prompt
    assert dr.start_position(5, 9) == 5 and dr.start_position(None, 9) is None
    for bad in ("-1", "x", "1.5"):
        with pytest.raises(InputError, match="--from-position"):
            dr.parse_from_position(bad)


def test_prompts_file(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("one\n\n two \n")
    assert dr.read_prompts(str(path)) == ["one", "two"]
    path.write_text("\n")
    with pytest.raises(InputError, match="no non-empty line"):
        dr.read_prompts(str(path))


def test_the_judge_gives_the_unsteered_perplexity_and_read_out_of_the_generated_tokens(
        tiny_llama: tuple[Any, Any]) -> None:
    import torch

    from emovec.analyses.scorers import ModelJudge, vader_valence

    model, _ = tiny_llama
    prompt, gen = [2, 20, 21, 22], [23, 24, 25, 26, 27]
    units = np.eye(32)[:3]
    verdict = ModelJudge(model, 3, units, ["a", "b", "c"]).judge(prompt, gen)
    ids = torch.tensor([prompt + gen])
    labels = torch.tensor([[-100] * len(prompt) + gen])
    seen: list[Any] = []
    handle = model.model.norm.register_forward_pre_hook(lambda m, args: seen.append(args[0]))  # layer 3, raw
    with torch.no_grad():
        loss = model(ids, labels=labels).loss
    handle.remove()
    assert verdict.perplexity == pytest.approx(float(torch.exp(loss)), rel=1e-4)
    mean = seen[0][0, len(prompt):].mean(0).numpy()
    assert [verdict.readout[k] for k in "abc"] == pytest.approx(mean[:3].tolist(), rel=1e-4)
    assert vader_valence("What a wonderful, happy day!") > 0.5 > -0.5 > vader_valence("This is awful and sad.")
