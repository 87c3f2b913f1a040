"""Every Python package folder in the repository is declared in pyproject.toml (so `pip install .`
ships it), and the corpus data files are package data."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_declared() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(tool["packages"])
    mapping = {folder: name for name, folder in tool["package-dir"].items()}
    found = set()
    tops = [p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name not in ("tests", "benchmarks")]
    for top in tops:
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT).parts
            found.add(".".join([mapping.get(rel[0], rel[0]), *rel[1:]]))
    assert found == declared


def test_corpus_data_is_package_data() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = tool["package-data"]["emovec.corpus"]
    corpus = ROOT / "corpus"
    data = [p for p in corpus.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".md")]
    assert data
    for path in data:
        rel = path.relative_to(corpus)
        assert any(rel.match(pattern) for pattern in patterns), rel
