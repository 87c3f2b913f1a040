"""`emovec analyze` end to end on synthetic stores: planted structure found, noise reported as noise,
results written back without breaking the store, a self-contained report, clear errors (layer blocks and
reduced bases are in test_analyze_blocks.py)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import emovec_store
from emovec.analyses.pipeline import AnalyzeOptions, analyze
from emovec.cli.main import cli
from emovec_store.derived import list_derived, read_derived
from emovec_store.finalize import manifest

from .analysis_results import at_layer
from .analysis_store import EMOTIONS, make_analysis_store
from .synthetic import make_store

FAST = AnalyzeOptions(n_permutations=199, n_bootstrap=199, lens=False)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("planted") / "p.zarr"
    make_analysis_store(path, structure=True, n_per_cell=2)
    return path, analyze(path, FAST)


def test_planted_structure_is_recovered_at_depth_and_absent_at_the_embedding_layer(planted: tuple[Path, dict]) -> None:
    _, results = planted
    res = results["models"]["m"]
    assert res["n"] == {"stories": 8 * 6 * 2, "emotions": 8, "topics": 6, "neutral": 12}
    last = res["layers"][-1]
    valence = at_layer(res, ("geometry", "cv_valence"), last)
    assert valence["value"] > 0.9 and valence["ci"][0] > 0 and valence["p"] <= 0.05 and valence["n"] == 8
    assert at_layer(res, ("geometry", "cv_valence"), 0)["p"] > 0.05  # no structure planted in layer 0
    probe = at_layer(res, ("probes", "probe"), last)
    assert probe["value"] > 0.9 and probe["ci"][0] > res["probes"]["chance"]
    top1 = at_layer(res, ("implicit", "assistant", "top1"), last)
    assert top1["value"] > 0.8


def test_noise_gives_nulls(tmp_path: Path) -> None:
    make_analysis_store(tmp_path / "n.zarr", structure=False, n_per_cell=2)
    res = analyze(tmp_path / "n.zarr", FAST)["models"]["m"]
    last = res["layers"][-1]
    probe = at_layer(res, ("probes", "probe"), last)
    chance = res["probes"]["chance"]
    assert probe["ci"][0] <= chance <= probe["ci"][1] and probe["p"] > 0.05
    assert at_layer(res, ("geometry", "cv_valence"), last)["p"] > 0.05


def test_vectors_are_written_back_and_the_store_stays_verified(planted: tuple[Path, dict]) -> None:
    path, _ = planted
    st = emovec_store.open(path)
    assert st.complete and st.verify() == []
    assert list_derived(st, "m") == ["projections", "vectors"]
    vectors = read_derived(st, "m", "vectors")
    assert vectors.denoised.dims == ("layer", "emotion", "hidden")
    assert list(vectors.emotion.values) == list(EMOTIONS)
    assert vectors.attrs["emovec_provenance"]["readout"] == "mean_from_50"
    projections = read_derived(st, "m", "projections")
    assert projections.projection.dims == ("layer", "stimulus", "emotion")


def test_results_are_the_same_for_the_same_seed(tmp_path: Path) -> None:
    make_analysis_store(tmp_path / "s.zarr", structure=True)
    options = AnalyzeOptions(n_permutations=99, n_bootstrap=99, lens=False, write=False)
    first, second = analyze(tmp_path / "s.zarr", options), analyze(tmp_path / "s.zarr", options)
    for res in (first, second):
        res.pop("created")
        for m in res["models"].values():
            m.pop("timings")
    assert first == second


def test_cli_writes_a_self_contained_report_and_removes_stale_files(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    make_analysis_store(path, structure=True)
    before = manifest(path)
    out = tmp_path / "report"
    out.mkdir()
    (out / "old-plot.png").write_bytes(b"stale")
    (out / ".emovec-report").write_text("old-plot.png\n")
    (out / "notes.txt").write_text("mine")
    args = ["analyze", str(path), "--out", str(out), "--permutations", "99", "--bootstrap", "99", "--no-lens",
            "--no-progress"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "valence r" in r.output and "report:" in r.output
    assert not (out / "old-plot.png").exists() and (out / "notes.txt").read_text() == "mine"
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["n_permutations"] == 99 and "emovec analyze" in results["command"]
    html = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<img" in html and all(src.startswith("data:image/png;base64,")
                                  for src in re.findall(r'<img[^>]*src="([^"]+)"', html))
    assert manifest(path) == before and emovec_store.open(path).complete


def test_a_partial_store_is_refused_in_one_line(tmp_path: Path) -> None:
    make_analysis_store(tmp_path / "p.zarr", finalize=False)
    r = CliRunner().invoke(cli, ["analyze", str(tmp_path / "p.zarr"), "--no-progress"])
    assert r.exit_code == 3 and "not finalized" in r.output and len(r.output.strip().splitlines()) == 1


def test_a_store_without_emotion_labels_is_refused_in_one_line(tmp_path: Path) -> None:
    st, _ = make_store(tmp_path / "s.zarr", finalize=False)
    path = st.location
    # relabel every stimulus as neutral before finalizing (a finalized store's manifest would flag the
    # edit: zarr drops the all-"" chunk, which a complete store must not lack)
    import zarr

    root = zarr.open_group(zarr.storage.LocalStore(tmp_path / "s.zarr"), mode="r+", use_consolidated=False)
    root["models/m/mean_from_50/emotion"][:] = np.asarray([""] * 50, dtype=object)
    st.finalize()
    r = CliRunner().invoke(cli, ["analyze", path, "--no-progress", "--no-lens"])
    assert r.exit_code == 2 and "no stimuli with emotion labels" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_a_norms_file_fills_a_corpus_without_norms(tmp_path: Path) -> None:
    norms = tmp_path / "norms.tsv"
    norms.write_text("# test norms\nword\tvalence\tarousal\tdominance\n" +
                     "".join(f"{e}\t{v}\t{a}\t\n" for e, (_, v, a) in EMOTIONS.items()))
    st, _ = make_store(tmp_path / "s.zarr")  # emotions joyful, calm, furious, sad without norms
    no_norms = analyze(st.location, FAST)["models"]["m"]
    assert no_norms["geometry"]["cv_valence"] is None and "cv_valence" in no_norms["geometry"]["skipped"]
    res = analyze(st.location, AnalyzeOptions(n_permutations=99, n_bootstrap=99, lens=False, norms=str(norms)))
    model = res["models"]["m"]
    assert "norms.tsv (4 of 4 emotions)" in model["norms_source"] and model["geometry"]["n_norms"] == 4
    assert model["geometry"]["quadrants"] == ["pleasant-high", "pleasant-low", "unpleasant-high", "unpleasant-low"]


@pytest.mark.parametrize(("content", "message"), [
    ("word\tvalence\n", "missing arousal"),
    ("word\tvalence\tarousal\njoyful\thigh\t0.5\n", "norms.tsv:2: expected a number, got 'high' (field 'valence')"),
    ("word\tvalence\tarousal\njoyful\t2\t0.5\n", "norms.tsv:2: norms are on 0..1"),
])
def test_a_bad_norms_file_is_one_line_naming_file_line_and_field(tmp_path: Path, content: str, message: str) -> None:
    make_analysis_store(tmp_path / "s.zarr")
    (tmp_path / "norms.tsv").write_text(content)
    r = CliRunner().invoke(cli, ["analyze", str(tmp_path / "s.zarr"), "--norms", str(tmp_path / "norms.tsv"),
                                 "--no-progress", "--no-lens"])
    assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1


def test_an_intensity_set_that_cannot_be_scored_is_skipped_with_its_reason(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A --limit sample can leave every intensity template with fewer than 3 levels: the run goes on."""
    from emovec.analyses import implicit
    from emovec_store.errors import InputError

    def unusable(*args: object, **kwargs: object) -> None:
        raise InputError("no usable intensity template: t0: 2 distinct levels (need ≥ 3)")

    monkeypatch.setattr(implicit, "run_intensity", unusable)
    make_analysis_store(tmp_path / "s.zarr", structure=True)
    res = analyze(tmp_path / "s.zarr", AnalyzeOptions(n_permutations=99, n_bootstrap=99, lens=False,
                                                      write=False))["models"]["m"]
    assert res["intensity"] == {} and "intensity" in res["skipped"]
    assert any(k.startswith("intensity.") and "2 distinct levels" in v for k, v in res["skipped"].items())
    assert res["implicit"]  # the other families ran
