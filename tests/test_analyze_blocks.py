"""`emovec analyze` under memory bounds: blocks of layers give the results of one block, and layers over the
memory budget are probed on a reduced basis of as many components as fit (apart from test_analyze.py so
that the two test processes share the work)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import emovec_store
from emovec.analyses.pipeline import AnalyzeOptions, analyze
from emovec_store.derived import read_derived

from .analysis_results import at_layer
from .analysis_store import make_analysis_store


def _assert_close(a: object, b: object, where: str = "") -> None:
    """Equal structure and labels; numbers equal up to summation order (1e-9 relative)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_close(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12, nan_ok=True), where
    else:
        assert a == b, where


def _without_run_details(results: dict) -> dict:
    out = {k: v for k, v in results.items() if k not in ("created", "settings", "store")}
    out["models"] = {m: {k: v for k, v in res.items() if k not in ("timings", "derived")}
                     for m, res in results["models"].items()}
    return out


def test_blocks_of_layers_give_the_results_of_one_block(tmp_path: Path) -> None:
    """Memory is bounded by analysing a block of layers at a time; the numbers must not depend on it."""
    import shutil

    make_analysis_store(tmp_path / "a.zarr", structure=True)
    shutil.copytree(tmp_path / "a.zarr", tmp_path / "b.zarr")
    whole = AnalyzeOptions(n_permutations=99, n_bootstrap=99, lens=False, layer_block=100)
    steps: list[tuple[str, int, int]] = []
    one = analyze(tmp_path / "a.zarr", whole)
    blocked = analyze(tmp_path / "b.zarr", AnalyzeOptions(n_permutations=99, n_bootstrap=99, lens=False,
                                                          layer_block=1),
                      progress=lambda label, done, total: steps.append((label, done, total)))
    in_memory = analyze(tmp_path / "b.zarr", AnalyzeOptions(n_permutations=99, n_bootstrap=99, lens=False,
                                                            layer_block=2, write=False))
    n_layers = len(one["models"]["m"]["layers"])
    assert n_layers >= 3
    _assert_close(_without_run_details(blocked), _without_run_details(one))
    _assert_close(_without_run_details(in_memory), _without_run_details(one))
    a, b = (emovec_store.open(tmp_path / name) for name in ("a.zarr", "b.zarr"))
    for name in ("vectors", "projections"):
        xr_a, xr_b = read_derived(a, "m", name), read_derived(b, "m", name)
        for var in xr_a.data_vars:
            np.testing.assert_allclose(xr_a[var].values, xr_b[var].values, rtol=1e-6, atol=1e-7, err_msg=name)
        assert xr_a[var].dims == xr_b[var].dims and xr_a.sizes == xr_b.sizes
    # every step reported once, in order, with the right total; block steps name their layers
    total = 5 * n_layers + 3
    assert [(d, t) for _, d, t in steps] == [(i, total) for i in range(total)]
    assert steps[0][0] == f"vectors (layers {one['models']['m']['layers'][0]}–{one['models']['m']['layers'][0]})"
    assert [label for label, _, _ in steps[-3:]] == ["probes", "layers", "lens"]
    from emovec.analyses.pipeline import DEFAULT_LAYER_BLOCK
    from emovec.cli.analyze import analyze as analyze_command

    assert {p.name: p.default for p in analyze_command.params}["layer_block"] == DEFAULT_LAYER_BLOCK


def test_layers_over_the_memory_budget_are_probed_on_a_reduced_basis_and_say_so(tmp_path: Path) -> None:
    make_analysis_store(tmp_path / "s.zarr", structure=True, n_per_cell=2)
    options = AnalyzeOptions(n_permutations=19, n_bootstrap=19, lens=False, write=False, layer_budget_mb=0.01,
                             basis_components=8)
    res = analyze(tmp_path / "s.zarr", options)["models"]["m"]
    assert "top 8 principal components" in res["probes"]["reduction"]
    assert at_layer(res, ("probes", "probe"), res["layers"][-1])["value"] > 0.8


def test_a_reduced_basis_has_as_many_components_as_fit_the_budget(tmp_path: Path) -> None:
    """stories × k × 8 bytes ≤ the budget: k shrinks as stories grow, so the probe's layer stays bounded."""
    make_analysis_store(tmp_path / "s.zarr", structure=True, n_per_cell=2)
    from emovec.analyses.source import STORY_KINDS, main_language, open_readout, open_store, select

    pooled = open_readout(open_store(tmp_path / "s.zarr"), "m", "mean_from_50").pooled
    n = select(pooled, kinds=STORY_KINDS, language=main_language(pooled), labelled=True).sizes["stimulus"]
    budget_mb = n * 5 * 8 / 1e6  # room for exactly 5 components
    options = AnalyzeOptions(n_permutations=19, n_bootstrap=19, lens=False, write=False,
                             layer_budget_mb=budget_mb, basis_components=8)
    reduction = analyze(tmp_path / "s.zarr", options)["models"]["m"]["probes"]["reduction"]
    assert "top 5 principal components" in reduction and "8 asked for, 5 fit the budget" in reduction
