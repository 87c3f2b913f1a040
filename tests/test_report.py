"""The report renderer: self-contained HTML, Markdown that references real files, no stale files, verdicts
that follow the numbers, and skipped sections that say why. Synthetic results only (tests/report_fixtures.py)."""
from __future__ import annotations

import copy
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from emovec.report import answers, render
from emovec.report.fmt import layer_ranges
from emovec.report.render import MANIFEST
from emovec_store.errors import InputError

from .report_fixtures import fake_results


class _Links(HTMLParser):
    """Every tag, and every src/href value, of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, val in attrs:
            if name in ("src", "href", "srcset", "poster", "data") and val is not None:
                self.urls.append((tag, name, val))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, list[Path]]:
    results = fake_results(models=("smollm2-135m", "gemma-3-270m"))
    results["models"]["gemma-3-270m"].update(intensity={}, layers_summary=None)  # fewer plots to draw
    out = tmp_path_factory.mktemp("report")
    return results, out, render(results, out)


def _default(results: dict[str, Any], slug: str = "smollm2-135m") -> tuple[dict[str, Any], int]:
    model = results["models"][slug]
    return model, model["layers"].index(model["default_layer"])


def test_html_is_self_contained(rendered: tuple[dict[str, Any], Path, list[Path]]) -> None:
    _, out, files = rendered
    page = (out / "report.html").read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(page)
    assert not {"script", "link", "iframe", "object", "embed"} & set(parser.tags)
    assert "url(" not in page and "@import" not in page
    images = [url for tag, _, url in parser.urls if tag == "img"]
    assert len(images) == len([f for f in files if f.suffix == ".png"]) > 10
    assert all(url.startswith("data:image/png;base64,") for url in images)
    for _, _, url in parser.urls:
        assert not re.match(r"(?i)^\s*(https?:|//|file:|ftp:)", url), url
        assert url.startswith(("data:image/png;base64,", "#")), url
    assert "http://" not in page and "https://" not in page


def test_markdown_references_files_that_exist(rendered: tuple[dict[str, Any], Path, list[Path]]) -> None:
    _, out, files = rendered
    md = (out / "REPORT.md").read_text(encoding="utf-8")
    referenced = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert referenced
    for name in referenced:
        assert "/" not in name and (out / name).is_file(), name
    assert set(referenced) == {f.name for f in files if f.suffix == ".png"}
    assert {"REPORT.md", "report.html", "results.json"} <= {f.name for f in files}
    assert all(f.parent == out and f.is_file() for f in files)


def test_results_json_is_the_input(rendered: tuple[dict[str, Any], Path, list[Path]]) -> None:
    results, out, _ = rendered
    assert json.loads((out / "results.json").read_text(encoding="utf-8")) == results


def test_lead_prints_numbers_with_ci_and_n(rendered: tuple[dict[str, Any], Path, list[Path]]) -> None:
    results, out, _ = rendered
    md = (out / "REPORT.md").read_text(encoding="utf-8")
    lead = md.split("## Comparison across models")[0]
    model, i = _default(results)
    cv = model["geometry"]["cv_valence"][i]
    assert f"{cv['value']:.3f} [{cv['ci'][0]:.3f}, {cv['ci'][1]:.3f}], n = {cv['n']} emotions" in lead
    assert "Valence axis: **yes**" in lead and "Arousal axis: **no evidence**" in lead
    assert "Emotion-specific directions that beat text baselines: **yes**" in lead
    assert "default minus embedding layer = +" in lead
    assert md.index("## Answers") < md.index("## Comparison across models") < md.index("## Model smollm2-135m")
    assert "| gemma-3-270m |" in md


def test_verdicts_follow_the_numbers() -> None:
    results = fake_results()
    model, i = _default(results)
    verdicts = {a.question: a.verdict for a in answers(model)}
    assert verdicts["Valence axis"] == "yes" and verdicts["Arousal axis"] == "no evidence"
    assert verdicts["Emotion-specific directions that beat text baselines"] == "yes"

    covering = copy.deepcopy(model)
    covering["geometry"]["cv_valence"][i].update(value=0.1, ci=[-0.2, 0.4], p=0.3)
    covering["probes"]["margin"][i].update(value=0.02, ci=[-0.05, 0.09])
    verdicts = {a.question: a for a in answers(covering)}
    assert verdicts["Valence axis"].verdict == "no evidence" and not verdicts["Valence axis"].positive
    assert verdicts["Emotion-specific directions that beat text baselines"].verdict.startswith(
        "no: the probe does not beat the bag_of_words baseline")

    small_p_only = copy.deepcopy(model)
    small_p_only["geometry"]["cv_valence"][i].update(p=0.2)  # CI above 0 but p not small: not a "yes"
    assert answers(small_p_only)[0].verdict == "no evidence"

    worse = copy.deepcopy(model)
    worse["probes"]["margin"][i].update(value=-0.2, ci=[-0.3, -0.1])
    assert answers(worse)[2].verdict == "no: the bag_of_words baseline beats the probe"

    arousal = copy.deepcopy(model)
    arousal["geometry"]["cv_arousal"][i].update(value=0.6, ci=[0.3, 0.8], p=0.004)
    assert answers(arousal)[1].verdict == "yes"


def test_lead_names_the_layers_where_the_ci_excludes_zero() -> None:
    model, _ = _default(fake_results())
    valence, _, margin = answers(model)[:3]
    assert "The CI lies above 0 at layers 0–6 (7 of 7 analysed)" in valence.layers
    above = [layer for layer, e in zip(model["layers"], model["probes"]["margin"]) if e["ci"][0] > 0]
    assert f"at layers {above[0]}–{above[-1]} ({len(above)} of 7 analysed)" in margin.layers
    assert "at no layer (0 of 7 analysed)" in answers(model)[1].layers


def test_changed_numbers_change_the_rendered_lead(tmp_path: Path) -> None:
    results = fake_results(n_layers=4)
    model, _ = _default(results)
    model.update(probes=None, implicit={}, intensity={}, layers_summary=None)  # fewer plots: the lead is the point
    for e in model["geometry"]["cv_valence"]:
        e.update(ci=[e["value"] - 1.0, e["value"] + 0.1])
    md = (render(results, tmp_path)[-2]).read_text(encoding="utf-8")
    assert "Valence axis: **no evidence**" in md and "Valence axis: **yes**" not in md
    assert "The CI lies above 0 at no layer" in md


def test_rerender_removes_stale_files_and_keeps_the_users(tmp_path: Path) -> None:
    results = fake_results(n_layers=4)
    results["models"]["smollm2-135m"].update(geometry=None, probes=None, intensity={}, layers_summary=None)
    first = render(results, tmp_path)
    stale = tmp_path / "smollm2-135m_implicit_mean.png"
    assert stale in first
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "my_figure.png").write_bytes(b"not ours")
    reduced = copy.deepcopy(results)
    model = reduced["models"]["smollm2-135m"]
    model["implicit"] = {}
    model["skipped"]["implicit"] = "no implicit scenarios in this store"
    second = render(reduced, tmp_path)
    assert not stale.exists()
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "my_figure.png").read_bytes() == b"not ours"
    on_disk = {p.name for p in tmp_path.iterdir()}
    assert on_disk == {p.name for p in second} | {"notes.txt", "my_figure.png", MANIFEST}
    assert (tmp_path / MANIFEST).read_text().split() == [p.name for p in second]


def test_a_tampered_manifest_cannot_delete_outside_the_folder(tmp_path: Path) -> None:
    outside = tmp_path / "keep.png"
    outside.write_bytes(b"x")
    out = tmp_path / "report"
    out.mkdir()
    (out / MANIFEST).write_text("../keep.png\n.hidden\n")
    (out / ".hidden").write_text("y")
    render({"models": {}}, out)
    assert outside.exists() and (out / ".hidden").exists()


def test_missing_sections_render_with_their_reasons(tmp_path: Path) -> None:
    results = fake_results(n_layers=3)
    model = results["models"]["smollm2-135m"]
    model["probes"] = None
    model["lens"] = None
    model["intensity"] = {}
    del model["layers_summary"]
    model["geometry"]["cv_arousal"] = None
    model["geometry"]["skipped"] = {"cv_arousal": "fewer than 4 emotions with arousal norms"}
    model["skipped"] = {"probes": "every story has the same topic: no grouped CV",
                        "lens": "model weights not available offline", "intensity": "no intensity prompts"}
    files = render(results, tmp_path)
    md = (tmp_path / "REPORT.md").read_text(encoding="utf-8")
    for reason in ("every story has the same topic: no grouped CV", "model weights not available offline",
                   "no intensity prompts", "fewer than 4 emotions with arousal norms"):
        assert reason in md
    assert "Arousal axis: **not measured**" in md
    assert "Emotion-specific directions that beat text baselines: **not measured**" in md
    assert "| layers_summary | not in the results |" in md
    assert not any("probes" in f.name or "layer_rsa" in f.name for f in files)


def test_skeletal_results_never_crash(tmp_path: Path) -> None:
    skeletons: list[dict[str, Any]] = [{}, {"models": {}}, {"models": {"m": {}}},
                                       {"models": {"m": {"geometry": {"layer": [0, 1]}}}}]
    for results in skeletons:
        files = render(results, tmp_path)
        assert (tmp_path / "report.html").is_file() and files[-1].name == "report.html"
    md = (tmp_path / "REPORT.md").read_text(encoding="utf-8")
    assert "Valence axis: **not measured**" in md


def test_nan_becomes_null_in_results_json(tmp_path: Path) -> None:
    results = {"models": {}, "settings": {"denoise": float("nan")}}
    render(results, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["settings"]["denoise"] is None


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="results must be a dict"):
        render([], tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError, match="is not a folder"):
        render({}, blocker)


def test_layer_ranges_follow_the_analysed_layers() -> None:
    assert layer_ranges([2, 3, 4, 9, 12, 14], list(range(16))) == "2–4, 9, 12, 14"
    assert layer_ranges([0, 4, 8, 12], [0, 4, 8, 12, 16]) == "0–12"
    assert layer_ranges([], [0, 1]) == ""


def test_table_headers_name_what_n_counts(rendered: tuple[dict[str, Any], Path, list[Path]]) -> None:
    """Every estimate's n is counted in the unit its analysis records (RSA: the emotions whose pairs are
    compared, not pairs)."""
    results, out, _ = rendered
    md = (out / "REPORT.md").read_text()
    n = results["models"]["smollm2-135m"]["geometry"]["rsa_norms"][0]["n"]
    assert f"RSA with human V–A distances (n = {n} emotions)" in md
