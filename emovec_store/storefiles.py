"""The files of a store directory or zip export, listed and checked without trusting them.

:func:`file_tree` lists a store's files (a directory walk that never follows links, or a zip's
entries, refused before anything is inflated unless every entry is stored uncompressed, as
``emovec store export --zip`` writes them). :func:`structure_problems` reads every metadata document
and names each that is unreadable, malformed, or disagrees with the consolidated metadata, and each
link planted in a store. :func:`open` runs it before zarr reads anything; ``verify`` reports it with
the manifest check.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from . import layout
from .errors import StoreError

#: Largest metadata document read (ours are a few KiB; the consolidated root of a big store a few MiB).
MAX_METADATA_BYTES = 64 * 2**20
V2_METADATA = (".zarray", ".zgroup", ".zattrs", ".zmetadata")
#: Fields of an array or group document that its entry in the consolidated metadata must repeat.
CONSOLIDATED_FIELDS = ("node_type", "shape", "data_type", "chunk_grid", "chunk_key_encoding", "fill_value",
                       "codecs", "dimension_names", "attributes")


class FileTree:
    """The files of a store: relative paths (``/``-separated), their bytes and sha256."""

    def __init__(self, location: str, files: Mapping[str, int], symlinks: list[str]) -> None:
        #: relative path -> size in bytes (links are not in it; :attr:`symlinks` lists them)
        self.location, self.files, self.symlinks = location, dict(files), symlinks

    def read(self, rel: str) -> bytes:
        """The bytes of one file (raises OSError)."""
        raise NotImplementedError

    def chunks(self, rel: str) -> Iterator[bytes]:
        """The bytes of one file in pieces (raises OSError)."""
        yield self.read(rel)

    def sha256(self, rel: str) -> str:
        digest = hashlib.sha256()
        for piece in self.chunks(rel):
            digest.update(piece)
        return digest.hexdigest()


class DirTree(FileTree):
    """The files of a store directory; links are listed, never followed."""

    def __init__(self, path: Path) -> None:
        files: dict[str, int] = {}
        symlinks: list[str] = []
        stack = [""]
        while stack:
            rel_dir = stack.pop()
            try:
                entries = list(os.scandir(path / rel_dir if rel_dir else path))
            except OSError as exc:
                raise StoreError(f"cannot list {str(path / rel_dir)!r}: {exc.strerror}") from None
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if entry.is_symlink():
                    symlinks.append(rel)
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(rel)
                elif entry.is_file(follow_symlinks=False):
                    files[rel] = entry.stat(follow_symlinks=False).st_size
        super().__init__(str(path), dict(sorted(files.items())), sorted(symlinks))
        self.path = path

    def read(self, rel: str) -> bytes:
        return (self.path / rel).read_bytes()

    def chunks(self, rel: str) -> Iterator[bytes]:
        with (self.path / rel).open("rb") as fh:
            while piece := fh.read(2**20):
                yield piece


class ZipTree(FileTree):
    """The entries of a zip export, each checked to be stored uncompressed before any is read."""

    def __init__(self, path: Path) -> None:
        try:
            self.zip = zipfile.ZipFile(path)
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise StoreError(f"{str(path)!r} is not a readable zip file ({exc})") from None
        total = path.stat().st_size
        files: dict[str, int] = {}
        symlinks: list[str] = []
        for info in infos:
            if info.is_dir():
                continue
            if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                raise StoreError(f"zip entry {info.filename!r} of {str(path)!r} is compressed; emovec exports "
                                 "store entries uncompressed, so this zip is refused before anything is inflated")
            if info.file_size > total:
                raise StoreError(f"zip entry {info.filename!r} of {str(path)!r} declares {info.file_size} "
                                 f"bytes, more than the whole file ({total}); the zip is damaged")
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                symlinks.append(info.filename)
                continue
            files[info.filename] = info.file_size
        super().__init__(str(path), files, sorted(symlinks))

    def read(self, rel: str) -> bytes:
        try:
            return self.zip.read(rel)
        except (zipfile.BadZipFile, KeyError, EOFError) as exc:
            raise OSError(f"zip entry {rel!r}: {exc}") from None


def file_tree(location: str) -> FileTree | None:
    """The files of a store directory or ``.zip``; None for a URL (its files cannot be listed)."""
    if "://" in location:
        return None
    path = Path(location)
    return ZipTree(path) if path.suffix == ".zip" else DirTree(path)


def is_litter(rel: str) -> bool:
    """Temporary files and trees of writers (``*.partial``, ``.NAME.creating``…): not part of a store."""
    return rel.endswith(".partial") or any(part.startswith(".") and part not in V2_METADATA
                                           for part in rel.split("/"))


def is_metadata(rel: str) -> bool:
    """A metadata document: ``zarr.json`` (format 3) or ``.zarray``/``.zgroup``/``.zattrs``/``.zmetadata``."""
    return rel.rsplit("/", 1)[-1] in ("zarr.json", *V2_METADATA)


def read_json(tree: FileTree, rel: str) -> tuple[dict[str, Any] | None, str | None]:
    """A metadata document as a JSON object, or None and why it cannot be read."""
    size = tree.files.get(rel)
    if size is None:
        return None, "missing"
    if size > MAX_METADATA_BYTES:
        return None, f"{size} bytes, more than a metadata document may have"
    try:
        doc = json.loads(tree.read(rel))
    except OSError as exc:
        return None, f"unreadable ({exc})"
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None, "empty" if size == 0 else f"not JSON ({str(exc)[:80]})"
    if not isinstance(doc, dict):
        return None, f"a JSON {type(doc).__name__}, not an object"
    return doc, None


def _node_problem(doc: dict[str, Any]) -> str | None:
    """Why a format 3 node document is malformed, or None."""
    if doc.get("zarr_format") != 3:
        return f"zarr_format is {doc.get('zarr_format')!r}, expected 3"
    if doc.get("node_type") == "group":
        return None if isinstance(doc.get("attributes", {}), dict) else "attributes is not an object"
    if doc.get("node_type") != "array":
        return f"node_type is {doc.get('node_type')!r}"
    from zarr.core.metadata.v3 import ArrayV3Metadata

    try:
        ArrayV3Metadata.from_dict(dict(doc))
    except Exception as exc:  # zarr raises many kinds for malformed metadata; each is a damaged document
        return f"invalid array metadata ({type(exc).__name__}: {str(exc)[:100]})"
    return None


def structure_problems(tree: FileTree) -> list[str]:
    """Every problem in a store's metadata documents and layout, one line each; empty when sound.

    Checks: each metadata document parses and is a valid node; the root is a group; a store that says
    it is complete has consolidated metadata that repeats each node's document, and a manifest; no
    links anywhere in the store.
    """
    problems = [f"symlink: {rel} (a store holds no links)" for rel in tree.symlinks if not is_litter(rel)]
    v2 = "zarr.json" not in tree.files and ".zgroup" in tree.files
    docs: dict[str, dict[str, Any]] = {}
    for rel in tree.files:
        if not is_metadata(rel) or is_litter(rel):
            continue
        doc, why = read_json(tree, rel)
        if why is None and doc is not None and not v2:
            why = _node_problem(doc)
        if why is not None or doc is None:
            problems.append(f"bad metadata: {rel} ({why})")
            continue
        docs[rel] = doc
    root_name = ".zattrs" if v2 else "zarr.json"
    if not v2 and "zarr.json" not in tree.files:
        return [*problems, "missing: zarr.json (the root metadata)"]
    root = docs.get(root_name, {} if v2 and root_name not in tree.files else None)
    if root is None:
        return problems
    attrs = root if v2 else root.get("attributes", {})
    if not v2 and root.get("node_type") != "group":
        problems.append("bad metadata: zarr.json (the root is not a group)")
    if isinstance(attrs, dict) and attrs.get("complete") is True:
        problems += _sealed_problems(tree, docs, root, v2)
    return problems


def _sealed_problems(tree: FileTree, docs: Mapping[str, dict[str, Any]], root: dict[str, Any],
                     v2: bool) -> list[str]:
    """What a store that says it is complete lacks: manifest, consolidated metadata, or their agreement."""
    node_doc = ".zarray" if v2 else "zarr.json"
    manifest = [f"missing: {layout.MANIFEST_GROUP}/{name}/{node_doc} (the store says it is complete but its "
                "manifest is gone)" for name in ("path", "sha256")
                if f"{layout.MANIFEST_GROUP}/{name}/{node_doc}" not in tree.files]
    if v2:
        if ".zmetadata" not in tree.files:
            return ["missing: .zmetadata (the store says it is complete but has no consolidated metadata)",
                    *manifest]
        return manifest
    block = root.get("consolidated_metadata")
    entries = block.get("metadata") if isinstance(block, dict) else None
    if not isinstance(entries, dict):
        return ["bad metadata: zarr.json (the store says it is complete but has no consolidated metadata: "
                "it was not finalized)", *manifest]
    problems: list[str] = []
    for key, entry in sorted(entries.items()):
        rel = f"{key}/zarr.json"
        doc = docs.get(rel)
        if doc is None:
            if rel not in tree.files:
                problems.append(f"missing: {rel} (listed in the consolidated metadata)")
            continue
        if not isinstance(entry, dict):
            problems.append(f"bad metadata: zarr.json (consolidated entry {key!r} is not an object)")
            continue
        differ = [f for f in CONSOLIDATED_FIELDS if entry.get(f) != doc.get(f)]
        if differ:
            problems.append(f"bad metadata: zarr.json (consolidated entry {key!r} differs from {rel} in "
                            f"{', '.join(differ)})")
    return problems + manifest


def check_structure(location: str) -> None:
    """Raise :class:`StoreError` naming the first problem :func:`structure_problems` finds (if any)."""
    tree = file_tree(location)
    if tree is None:
        return
    problems = structure_problems(tree)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise StoreError(f"store {location!r} is damaged: {problems[0]}{more}; `emovec store verify` lists "
                         "every problem")
