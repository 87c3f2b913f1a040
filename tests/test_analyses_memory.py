"""What an analysis holds per stimulus: labels as shared str objects, only the columns it reads, a
permutation table generated in bounded blocks (the same permutations on every call)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import emovec_store
from emovec.analyses import probes
from emovec.analyses.source import texts_for

from .synthetic import make_store, stimulus_table


def test_label_columns_hold_one_str_object_per_distinct_value(tmp_path: Path) -> None:
    store, _ = make_store(tmp_path / "s.zarr", n=60)
    ds = store.dataset("m", "mean_from_50")
    for name in ("emotion", "kind", "topic"):
        values = ds[name].values
        assert values.dtype == object
        assert len({id(v) for v in values}) == len(set(values))  # old: one str object per row
    assert list(ds["emotion"].values[:4]) == ["joyful", "calm", "furious", "sad"]
    table = store.stimuli
    assert len({id(v) for v in table["topic"].values}) == 5 and table.sizes["stimulus"] == 60


def test_stimulus_columns_and_attrs_read_only_what_is_asked(tmp_path: Path) -> None:
    store, _ = make_store(tmp_path / "s.zarr", n=20,
                          store=emovec_store.create(tmp_path / "s.zarr", stimulus_table(20), store_text=True))
    cols = store.stimulus_columns(["text", "no_such_column"])
    assert list(cols.data_vars) == ["text"] and cols["text"].values[3] == "text number 3"
    assert list(cols["stimulus"].values[:2]) == ["s0000", "s0001"]
    assert store.stimuli_attrs["corpus"]["name"] == "synthetic"
    assert store.stimuli_attrs == dict(store.stimuli.attrs)
    pooled = store.dataset("m", "mean_from_50")["pooled"].isel(stimulus=[7, 2, 11])
    texts, source = texts_for(store, pooled)
    assert source == "store" and texts == ["text number 7", "text number 2", "text number 11"]


def test_permutations_come_in_bounded_blocks_and_repeat_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    topics = np.asarray([f"t{i % 3}" for i in range(30)])
    monkeypatch.setattr(probes, "PERMUTATION_BLOCK_BYTES", 4 * 30 * 7)  # 7 permutations of 30 int32 rows a block
    draws = probes._draw(topics, 10, 50, seed=3)
    blocks = list(draws.permutation_blocks())
    assert [len(b) for b in blocks] == [7] * 7 + [1]
    table = np.concatenate(blocks)
    assert table.shape == (50, 30) and table.dtype == np.int32
    np.testing.assert_array_equal(np.concatenate(list(draws.permutation_blocks())), table)  # same every call
    code = np.unique(topics, return_inverse=True)[1]
    for perm in table:
        assert sorted(perm) == list(range(30)) and (code[perm] == code).all()  # within topic
    assert len({tuple(p) for p in table}) > 45  # shuffles, not copies of one
    again = probes._draw(topics, 10, 50, seed=3)
    np.testing.assert_array_equal(np.concatenate(list(again.permutation_blocks())), table)
    np.testing.assert_array_equal(again.weights, draws.weights)
