"""Build the groups and arrays of the store schema (version 1): a new store's stimulus, emotion and
models groups, and a new readout's labels, activation array and batch plan.

:mod:`emovec_store.store` decides *when* to build (create, add_readout) and checks plans against what
is there; this module only writes what :mod:`emovec_store.layout` names.
"""
from __future__ import annotations

import datetime as _dt
import itertools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from emovec.common.hashing import json_lines_sha256, text_sha256

from . import layout
from .dtypes import StorageDtype, fill_value, physical_dtype
from .errors import InputError
from .nodes import read_values


def software_versions() -> dict[str, str]:
    """Versions of the packages that shape the bytes in a store."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for pkg in ("emovec", "zarr", "numcodecs", "numpy", "xarray", "dask", "torch", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def stimuli_sha256(table: pd.DataFrame) -> str:
    """A hash of the stimulus table (ids, labels and text hashes) that the store records.

    One JSON line per row of the id and the label columns present, every value as a string, with
    json's default ``", "`` separator (see :func:`emovec.common.hashing.json_lines_sha256`). It
    identifies the rows a store was made for; the corpus hash (:func:`emovec.corpus.corpus_sha256`)
    identifies a corpus' contents and is recorded beside it.
    """
    cols = ["stimulus"] + [c for c in layout.LABEL_COLUMNS + layout.INT_LABEL_COLUMNS if c in table.columns]
    return json_lines_sha256((list(map(str, row)) for row in table[cols].itertuples(index=False)),
                             compact=False)


def normalise_stimuli(stimuli: pd.DataFrame) -> pd.DataFrame:
    if "stimulus" not in stimuli.columns:
        raise InputError("the stimulus table needs a 'stimulus' column of unique ids", field="stimulus")
    if len(stimuli) == 0:
        raise InputError("the stimulus table is empty")
    table = stimuli.reset_index(drop=True).copy()
    table["stimulus"] = table["stimulus"].astype(str)
    dup = table["stimulus"][table["stimulus"].duplicated()]
    if len(dup):
        raise InputError(f"duplicate stimulus id {dup.iloc[0]!r}", field="stimulus")
    if "text_sha256" not in table.columns and "text" in table.columns:
        table["text_sha256"] = [text_sha256(str(t)) for t in table["text"]]
    for col in layout.LABEL_COLUMNS:
        if col in table.columns:
            table[col] = table[col].fillna("").astype(str)
    for col in layout.INT_LABEL_COLUMNS:
        if col in table.columns:
            try:
                table[col] = pd.to_numeric(table[col].fillna(0), errors="raise").astype(np.int64)
            except (TypeError, ValueError) as exc:
                raise InputError(f"stimulus column {col!r} must hold integers", field=col) from exc
    return table


def _emotion_table(corpus: Mapping[str, Any], categories: Sequence[str]) -> pd.DataFrame:
    """The emotions table a store records: the corpus' norms where given, NaN norms otherwise."""
    records = {str(r["name"]): r for r in corpus.get("emotion_table") or () if isinstance(r, Mapping)}
    rows = []
    for name in categories:
        r = records.get(name, {})
        rows.append({"name": name, "quadrant": str(r.get("quadrant") or ""),
                     **{k: float("nan") if r.get(k) is None else float(r[k]) for k in layout.NORM_COLUMNS},
                     "norms_source": str(r.get("norms_source") or "")})
    return pd.DataFrame(rows, columns=["name", "quadrant", *layout.NORM_COLUMNS, "norms_source"])


def _portable_source(source: Any, store_dir: Path) -> str:
    """The corpus source as stores record it: a built-in name, or a path relative to the store."""
    text = str(source or "")
    if text in ("", "builtin") or "://" in text:
        return text
    path = Path(text)
    if not path.is_absolute():
        return text
    try:
        return os.path.relpath(path, store_dir.resolve())
    except ValueError:  # another drive (Windows): no relative form, keep only the directory name
        return path.name


def write_strings(group: zarr.Group, name: str, values: Sequence[str], dim: str) -> None:
    arr = group.create_array(name, shape=(len(values),), chunks=(max(1, len(values)),), dtype=str,
                             dimension_names=(dim,), overwrite=True)
    arr[:] = np.asarray(list(values), dtype=object).astype(str)


def write_ints(group: zarr.Group, name: str, values: Any, dim: str, dtype: str = "<i4",
                chunks: int | None = None, fill: int = 0) -> None:
    values = np.asarray(values, dtype=dtype)
    arr = group.create_array(name, shape=values.shape, chunks=(chunks or max(1, len(values)),),
                             dtype=dtype, dimension_names=(dim,), compressors=None, fill_value=fill,
                             overwrite=True)
    if len(values):
        arr[:] = values



def build_store(tmp: Path, table: pd.DataFrame, corpus_attrs: Mapping[str, Any], digest: str, *,
                 store_text: bool, final: Path) -> None:
    """Write the root, stimulus, emotion and models groups of a new store into directory ``tmp``."""
    root = zarr.open_group(zarr.storage.LocalStore(tmp), mode="w", zarr_format=3)
    group = root.create_group("stimuli")
    n = len(table)
    write_strings(group, "stimulus", table["stimulus"], "stimulus")
    for col in layout.LABEL_COLUMNS + (("text",) if store_text else ()):
        if col in table.columns:
            write_strings(group, col, table[col].fillna("").astype(str), "stimulus")
    for col in layout.INT_LABEL_COLUMNS:
        if col in table.columns:
            write_ints(group, col, table[col], "stimulus", "<i8")
    corpus = dict(corpus_attrs)
    emotion_records = corpus.pop("emotion_table", None) or ()
    corpus["source"] = _portable_source(corpus.get("source"), final)
    categories = corpus.get("emotions") or sorted({e for e in table.get("emotion", []) if e})
    group.attrs.update({"corpus": corpus, "emotion_categories": list(categories), "n_stimuli": n})
    emotions = _emotion_table({"emotion_table": emotion_records}, list(categories))
    egroup = root.create_group(layout.EMOTIONS_GROUP)
    write_strings(egroup, "emotion", emotions["name"], "emotion")
    write_strings(egroup, "quadrant", emotions["quadrant"], "emotion")
    for col in layout.NORM_COLUMNS:
        arr = egroup.create_array(col, shape=(len(emotions),), chunks=(max(1, len(emotions)),), dtype="<f8",
                                  dimension_names=("emotion",), compressors=None, fill_value=float("nan"))
        if len(emotions):
            arr[:] = emotions[col].to_numpy(dtype=np.float64)
    sources = sorted({s for s in emotions["norms_source"] if s})
    egroup.attrs.update({"norms_source": "; ".join(sources), "n_with_norms":
                         int(np.isfinite(emotions["valence"].to_numpy(dtype=float)).sum())})
    root.create_group("models")
    root.attrs.update({"emovec_schema": layout.SCHEMA_VERSION, "created": _now(), "finalized": None,
                       "complete": False, "software": software_versions(), "stimuli_sha256": digest})



def with_layout(theirs: dict[str, Any], group: zarr.Group, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A readout's attributes with the structural ``layout`` key, also for readouts written before it
    existed (their structural kind was stored as ``kind``, which is now the spec's provenance)."""
    if "layout" in theirs:
        return theirs
    theirs["layout"] = "tokens" if layout.ACTS in group else "pooled"
    if theirs.get("kind") == theirs["layout"] and "kind" not in spec:
        del theirs["kind"]
    return theirs


def check_plan(batches: Sequence[tuple[int, int]], n: int, chunk_rows: int) -> None:
    expected = 0
    for i, (start, stop) in enumerate(batches):
        if start != expected or stop <= start:
            raise InputError(f"batch {i} covers rows [{start}, {stop}); batches must tile 0..{n} in order")
        if start // chunk_rows != (stop - 1) // chunk_rows:
            raise InputError(f"batch {i} rows [{start}, {stop}) cross a chunk boundary (chunk_rows={chunk_rows}); "
                             "plan batches inside chunks")
        expected = stop
    if expected != n:
        raise InputError(f"the batch plan covers {expected} rows, the readout has {n}")


def _write_token_index(group: zarr.Group, offsets: np.ndarray[Any, Any], lengths: np.ndarray[Any, Any],
                       token_ids: Sequence[Sequence[int]], total: int, tchunk: int) -> None:
    """The per-token index arrays ``token_stimulus``, ``position`` and ``token_id`` (dim ``token``):
    -1 on the padding rows between row chunks."""
    stimulus = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(len(stimulus)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    rows = offsets[stimulus] + position
    columns = {"token_stimulus": stimulus, "position": position,
               "token_id": np.fromiter(itertools.chain.from_iterable(token_ids), dtype=np.int64, count=len(rows))}
    for name, values in columns.items():
        column = np.full(total, -1, dtype="<i4")
        column[rows] = values
        write_ints(group, name, column, "token", chunks=tchunk, fill=-1)


def build_readout(group: zarr.Group, stim: zarr.Group, ids: list[str], rows: np.ndarray[Any, Any],
                   layers: Sequence[int], hidden: int, storage: StorageDtype, chunk_rows: int,
                   batches: Sequence[tuple[int, int]], n_tokens: Sequence[int] | None,
                   token_ids: Sequence[Sequence[int]] | None, token_chunk_rows: int | None) -> None:
    """The arrays of a new readout group: labels (copied from the ``stimuli`` group ``stim``), the
    activation array, the batch plan.

    Per-token readouts (``token_ids`` given) get the chunk-aligned token layout
    (:func:`layout.aligned_offsets <emovec_store.layout.aligned_offsets>`): ``offsets`` (dim
    ``stimulus``) holds the first token row of each stimulus, and the attributes ``token_layout`` and
    ``token_chunk_rows`` say so."""
    n, n_layers = len(ids), len(layers)
    write_strings(group, "stimulus", ids, "stimulus")
    labels = [c for c in layout.LABEL_COLUMNS if c in stim]
    for col in labels:
        write_strings(group, col, np.array(read_values(stim, col).tolist(), dtype=object)[rows], "stimulus")
    int_labels = [c for c in layout.INT_LABEL_COLUMNS if c in stim]
    for col in int_labels:
        write_ints(group, col, read_values(stim, col)[rows], "stimulus", "<i8")
    labels += int_labels
    write_ints(group, "stimulus_index", rows, "stimulus")
    write_ints(group, "layer", layers, "layer")
    if n_tokens is not None:
        write_ints(group, "n_tokens", n_tokens, "stimulus")
    coords = " ".join(labels + ["stimulus_index"] + (["n_tokens"] if n_tokens is not None else []))
    array_attrs = {"emovec_storage_dtype": storage,
                   "emovec_logical_dtype": "bfloat16" if storage == "bfloat16" else storage}
    if token_ids is not None:
        if n_tokens is None:
            raise InputError("per-token readouts need n_tokens")
        lengths = np.asarray([len(t) for t in token_ids], dtype=np.int64)
        if not np.array_equal(lengths, np.asarray(n_tokens)):
            raise InputError("token_ids lengths differ from n_tokens")
        tchunk = token_chunk_rows or layout.default_token_chunk_rows(hidden, storage)
        offsets, total = layout.aligned_offsets(lengths, chunk_rows, tchunk)
        write_ints(group, "offsets", offsets, "stimulus", "<i8")
        _write_token_index(group, offsets, lengths, token_ids, total, tchunk)
        group.attrs.update({"token_layout": layout.TOKEN_LAYOUT_ALIGNED, "token_chunk_rows": int(tchunk)})
        group.create_array(layout.ACTS, shape=(n_layers, total, hidden), chunks=(1, tchunk, hidden),
                           dtype=physical_dtype(storage), fill_value=fill_value(storage),
                           compressors=None, dimension_names=("layer", "token", "hidden"),
                           attributes={**array_attrs, "coordinates": "token_stimulus position token_id"})
    else:
        group.create_array(layout.POOLED, shape=(n_layers, n, hidden), chunks=(1, chunk_rows, hidden),
                           dtype=physical_dtype(storage), fill_value=fill_value(storage),
                           compressors=None, dimension_names=("layer", "stimulus", "hidden"),
                           attributes={**array_attrs, "coordinates": coords})
    prog = group.create_group(layout.PROGRESS)
    plan = np.asarray(batches, dtype="<i8").reshape(-1, 2)
    write_ints(prog, "batch_start", plan[:, 0], "batch", "<i8")
    write_ints(prog, "batch_stop", plan[:, 1], "batch", "<i8")
    prog.create_array("batch_done", shape=(len(plan),), chunks=(1,), dtype="uint8", fill_value=0,
                      compressors=None, dimension_names=("batch",))
    prog.create_array("max_abs", shape=(len(plan), n_layers), chunks=(1, n_layers), dtype="<f4",
                      fill_value=float("nan"), compressors=None, dimension_names=("batch", "layer"))
