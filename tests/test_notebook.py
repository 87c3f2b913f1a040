"""docs/analyses.ipynb runs top to bottom on a small store (its code cells, in order, in one namespace)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from .analysis_store import make_analysis_store

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "analyses.ipynb"


def test_the_notebook_runs_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_analysis_store(tmp_path / "s.zarr", n_per_cell=2)
    monkeypatch.setenv("EMOVEC_STORE", str(tmp_path / "s.zarr"))
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    assert cells and not any(line.lstrip().startswith(("%", "!")) for c in cells for line in c["source"])
    namespace: dict[str, object] = {}
    for i, cell in enumerate(cells):
        exec(compile("".join(cell["source"]), f"{NOTEBOOK.name}[code cell {i}]", "exec"), namespace)
    assert namespace["vectors"].dims == ("layer", "emotion", "hidden")  # type: ignore[attr-defined]
    assert namespace["res"]["probe"][0]["value"] > namespace["res"]["chance"]  # type: ignore[index]
