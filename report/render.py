"""Write a results dict out as ``results.json``, PNG plots, ``REPORT.md`` and a self-contained ``report.html``.

The renderer owns exactly the files it lists in the manifest ``.emovec-report`` of the output folder.
Before writing, it deletes the files named by the previous manifest (plus the fixed report files), so
nothing stale survives a rerun and nothing else in the folder is touched. The whole report is built in
memory first: a failure while drawing leaves the previous report in place.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emovec_store.errors import InputError

from .doc import Image, to_html, to_markdown
from .sections import TITLE, document

MANIFEST = ".emovec-report"
FIXED = ("REPORT.md", "report.html", "results.json")


def jsonable(obj: Any) -> Any:
    """``obj`` with NaN/inf floats as None and numpy scalars/arrays as Python values (for strict JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "tolist") and not isinstance(obj, str | bytes):
        return jsonable(obj.tolist())
    return obj


def owned_files(out_dir: Path) -> list[Path]:
    """The files a previous render wrote into ``out_dir``: its manifest's entries and the fixed report files.

    Manifest entries that are not bare file names (a separator, ``..``, hidden) are ignored, so a
    tampered manifest cannot point outside the folder.
    """
    names = set(FIXED)
    manifest = out_dir / MANIFEST
    if manifest.is_file():
        for line in manifest.read_text(encoding="utf-8").splitlines():
            name = line.strip()
            if name and name == Path(name).name and not name.startswith("."):
                names.add(name)
    return sorted(out_dir / n for n in names)


def _remove_stale(out_dir: Path) -> None:
    for path in owned_files(out_dir):
        if path.is_file() or path.is_symlink():
            path.unlink()


def render(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Render ``results`` (the dict of ``emovec analyze``) into ``out_dir``.

    Parameters
    ----------
    results : the analysis results (the ``results.json`` schema); any section may be missing or None.
    out_dir : the report folder, created when missing. Files of an earlier render listed in its
        manifest are removed first; other files are left alone.

    Returns
    -------
    The files written: ``results.json``, the PNG plots, ``REPORT.md`` and ``report.html`` (the
    manifest ``.emovec-report`` is written too and not listed).
    """
    if not isinstance(results, Mapping):
        raise InputError(f"results must be a dict of analysis results, got {type(results).__name__}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"report folder {out_dir} exists and is not a folder")
    blocks = document(results)
    images = [b for b in blocks if isinstance(b, Image)]
    results_text = json.dumps(jsonable(results), indent=2, ensure_ascii=False, allow_nan=False)
    markdown, page = to_markdown(blocks), to_html(blocks, TITLE)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale(out_dir)
    written = [out_dir / "results.json"]
    written[0].write_text(results_text + "\n", encoding="utf-8")
    for image in images:
        path = out_dir / image.filename
        path.write_bytes(image.png)
        written.append(path)
    for name, text in (("REPORT.md", markdown), ("report.html", page)):
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    (out_dir / MANIFEST).write_text("".join(f"{p.name}\n" for p in written), encoding="utf-8")
    return written
