"""Load a resolved model and tokenizer, with a cache of dequantized GGUF weights.

Dequantizing a GGUF with transformers takes 15–40 s; the dequantized weights are saved once as
safetensors (keyed by the GGUF's sha256) so later runs load in about a second.
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emovec.common.files import atomic_path
from emovec.common.hashing import file_sha256, text_sha256

from ..errors import ModelResolutionError
from .device import torch_dtype
from .resolve import ALIASES, ResolvedModel, cache_dir, path_size, resolve

log = logging.getLogger("emovec")


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    source: ResolvedModel
    provenance: dict[str, Any] = field(default_factory=dict)
    identity: dict[str, Any] = field(default_factory=dict)


def _quiet_transformers() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def _tokenizer_sha256(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return text_sha256(backend.to_str())
    return text_sha256(json.dumps(tokenizer.get_vocab(), sort_keys=True))


def _dequantized_dir(gguf: Path, digest: str) -> Path:
    return cache_dir() / "dequantized" / f"{gguf.stem}-{digest[:16]}"


def _load_gguf(gguf: Path, digest: str, dtype: Any) -> tuple[Any, Any, bool]:
    """(model, tokenizer, from_cache). Dequantizes once and caches the float32 weights."""
    import transformers
    from safetensors.torch import save_model

    cached = _dequantized_dir(gguf, digest)
    if (cached / "model.safetensors").is_file():
        model = transformers.AutoModelForCausalLM.from_pretrained(cached, dtype=dtype)
        tokenizer = transformers.AutoTokenizer.from_pretrained(cached)
        return model, tokenizer, True
    t0 = time.monotonic()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # said once the file has proved readable (a damaged one fails above, in one line)
        log.info(f"{gguf.name}: dequantizing to float32 (first load only, typically 15-60 s) and caching the "
                 f"weights in {cached} (about 4 bytes per parameter; `emovec models list` shows the cache, "
                 "`emovec models rm` frees it)")
        model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                                  dtype="float32")
    except ImportError as exc:
        raise ModelResolutionError(f"loading GGUF files needs the packages gguf and accelerate: {exc}") from exc
    except Exception as exc:  # the gguf reader raises many types on a damaged file
        raise ModelResolutionError(f"cannot read GGUF file {str(gguf)!r}: {type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    # Save without the GGUF quantization marker so the cache loads as a plain float model.
    with atomic_path(cached, exclusive=True) as tmp:  # another process may cache it first: keep theirs
        tmp.mkdir()
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        type(model.config).from_dict(config).save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))
        tokenizer.save_pretrained(tmp)
    if cached.is_dir():
        log.info(f"{gguf.name}: dequantized in {time.monotonic() - t0:.0f} s; "
                 f"{path_size(cached) / 2**20:.0f} MiB cached")
    return model.to(dtype), tokenizer, False


#: Seconds the hub probe waits for a TCP connection (name lookup included) before calling it unreachable.
HUB_PROBE_TIMEOUT_S = 3.0


def _hub_address() -> tuple[str, int]:
    """The host and port a hub download connects to first: the https proxy if one is set, else the endpoint."""
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        if os.environ.get(name):
            url = urllib.parse.urlsplit(os.environ[name] if "://" in os.environ[name] else "http://" + os.environ[name])
            return url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    url = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return url.hostname or "", url.port or (443 if url.scheme == "https" else 80)


def hub_unreachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """None when the Hugging Face hub (or the proxy in front of it) takes a TCP connection within
    ``timeout`` seconds; otherwise why not, as ``"host:port: reason"``.

    One connection attempt, run in a thread so that a slow name lookup counts against the timeout
    too: an offline machine is told so in seconds instead of after the hub client's retries."""
    host, port = _hub_address()
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc.strerror or type(exc).__name__)

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        return f"{host}:{port}: no answer within {timeout:g} s"
    reason = outcome[0]
    return None if reason is None else f"{host}:{port}: {reason}"


def _hub_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_local_only(repo_id: str) -> bool:
    """Whether to load a hub id from the local Hugging Face cache only; raises when that cannot work.

    Offline (``HF_HUB_OFFLINE=1``) or with the hub unreachable (one quick probe), a model in the
    local cache still loads; one that is not fails here in one line, before any download is tried.
    """
    from huggingface_hub import try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    if _hub_offline():
        if not cached:
            raise ModelResolutionError(
                f"cannot load {repo_id!r} from the Hugging Face hub: HF_HUB_OFFLINE is set and it is not in the "
                f"local Hugging Face cache; pass a local model directory, a .gguf file, or an alias "
                f"({', '.join(ALIASES)})")
        return True
    reason = hub_unreachable()
    if reason is None:
        return False
    if not cached:
        raise ModelResolutionError(
            f"cannot load {repo_id!r} from the Hugging Face hub: the hub is unreachable ({reason}) and the model "
            f"is not in the local Hugging Face cache; pass a local model directory, a .gguf file, or an alias "
            f"({', '.join(ALIASES)})")
    log.info(f"{repo_id}: the Hugging Face hub is unreachable ({reason}); loading it from the local cache")
    return True


def load_tokenizer(spec: str | os.PathLike[str]) -> Any:
    """A Hugging Face tokenizer alone (no weights) from a model directory, a ``.gguf`` file or a
    built-in model alias (``smollm2-135m``, ``gemma3-270m``, resolved by :func:`.resolve.resolve`);
    local files only.

    A directory is loaded with ``AutoTokenizer.from_pretrained(dir)``, a GGUF file with
    ``AutoTokenizer.from_pretrained(parent_dir, gguf_file=name)`` (needs the ``gguf`` package). Pass
    the result to :func:`emovec.corpus.corpus_stats` to count tokens.
    """
    if str(spec) in ALIASES:
        spec = resolve(str(spec)).path
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelResolutionError(f"no tokenizer at {str(spec)!r}: expected a model directory or a .gguf file",
                                   field="tokenizer")
    from transformers import AutoTokenizer  # heavy import: only when asked for

    try:  # trust_remote_code=False: never the interactive "run the custom code? [y/N]" question
        if path.is_file() and path.suffix == ".gguf":
            return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True,
                                                 trust_remote_code=False)
        if path.is_dir():
            return AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises OSError, ValueError, ImportError...
        raise ModelResolutionError(f"could not load a tokenizer from {str(spec)!r}: {_reason(exc)}",
                                   field="tokenizer") from exc
    raise ModelResolutionError(f"no tokenizer at {str(spec)!r}: expected a model directory or a .gguf file",
                               field="tokenizer")


#: Weight files that are Python pickles: loading one may run code, unless torch's weights-only unpickler reads it.
PICKLE_SUFFIXES: tuple[str, ...] = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_ALLOW_PICKLE: ContextVar[bool] = ContextVar("emovec_allow_pickle", default=False)
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


@contextmanager
def pickle_weights_allowed(allowed: bool = True) -> Iterator[None]:
    """Within the block, :func:`load` accepts pickle weights unless told otherwise (``emovec extract
    --allow-pickle`` runs the extraction inside it)."""
    token = _ALLOW_PICKLE.set(allowed)
    try:
        yield
    finally:
        _ALLOW_PICKLE.reset(token)


def pickle_weights_are_allowed() -> bool:
    """Whether :func:`load` accepts pickle weights here (inside :func:`pickle_weights_allowed`)."""
    return _ALLOW_PICKLE.get()


_KEPT: ContextVar[dict[tuple[Any, ...], LoadedModel] | None] = ContextVar("emovec_kept_models", default=None)


@contextmanager
def models_kept(cache: dict[tuple[Any, ...], LoadedModel]) -> Iterator[None]:
    """Within the block, :func:`load` keeps each model it loads in ``cache`` and hands back the kept
    one when asked for the same model, device, dtype and flags again, instead of loading it anew
    (a cluster worker that runs several shards of one extraction loads the model once)."""
    token = _KEPT.set(cache)
    try:
        yield
    finally:
        _KEPT.reset(token)


def models_are_kept() -> bool:
    """Whether :func:`load` keeps models here (inside :func:`models_kept`)."""
    return _KEPT.get() is not None


def _pickle_weights(directory: Path) -> list[str]:
    """The pickle weight files of a model directory that has no safetensors weights (else empty)."""
    if any(directory.glob("*.safetensors")):
        return []
    return sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)


def _reason(exc: BaseException) -> str:
    """One line for an exception raised by transformers, tokenizers, safetensors, torch or jinja."""
    lines = [ln.strip() for ln in _ANSI_RE.sub("", str(exc)).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_chat_template(name: str, tokenizer: Any) -> None:
    """Render the chat template once, in transformers' Jinja sandbox, the way readouts use it.

    A template that tries to reach Python internals (``''.__class__.__mro__``...) is stopped by the
    sandbox; so is one that does not render. Either refuses the model here, in one line, instead of a
    traceback in the middle of tokenization."""
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str) or not template:
        return
    try:
        tokenizer.apply_chat_template([{"role": "user", "content": "Hello."}], tokenize=False,
                                      add_generation_prompt=True)
    except Exception as exc:
        what = ("tries to leave the Jinja sandbox" if type(exc).__name__ == "SecurityError"
                else "does not render")
        raise ModelResolutionError(f"model {name!r}: its chat template {what} ({_reason(exc)}); refusing it",
                                   field="chat_template") from None


def load(source: ResolvedModel, *, device: str, compute_dtype: str, trust_remote_code: bool = False,
         allow_pickle: bool | None = None) -> LoadedModel:
    """Load model and tokenizer in eval mode on ``device``; fills provenance and identity.

    Only safetensors (or GGUF) weights load unless ``allow_pickle`` is True (None: as set by
    :func:`pickle_weights_allowed`, else False); pickle weights are then read by torch's weights-only
    unpickler, which refuses anything but tensors. Model code from the model's files runs only with
    ``trust_remote_code``. Any failure to read the model (a damaged weight file, a garbage or unknown
    ``config.json``, a chat template that breaks the sandbox) is one :class:`ModelResolutionError`
    naming the model and the reason.
    """
    if allow_pickle is None:
        allow_pickle = _ALLOW_PICKLE.get()
    kept = _KEPT.get()
    key = (source.kind, source.path, device, compute_dtype, trust_remote_code, allow_pickle)
    if kept is not None and key in kept:
        return kept[key]
    if source.kind == "directory":
        pickles = _pickle_weights(Path(source.path))
        if pickles and not allow_pickle:
            raise ModelResolutionError(
                f"model {source.requested!r}: its weights ({', '.join(pickles)}) are Python pickles, which can run "
                "code when loaded; refusing them. Convert them to safetensors, or, if you trust their source, "
                "pass --allow-pickle (API: allow_pickle=True) to read them with torch's weights-only unpickler")
    _quiet_transformers()
    import transformers

    dtype = torch_dtype(compute_dtype)
    provenance: dict[str, Any] = {"model": source.requested, "source": source.kind, "path": source.path,
                                  "alias": source.alias, "trust_remote_code": trust_remote_code}
    identity: dict[str, Any] = {}
    if source.kind in ("gguf", "alias"):
        gguf = Path(source.path)
        digest = file_sha256(gguf)
        model, tokenizer, cached = _load_gguf(gguf, digest, dtype)
        provenance.update(gguf_sha256=digest, dequantized_cache_hit=cached)
        identity["gguf_sha256"] = digest
    else:
        kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": trust_remote_code}
        if not allow_pickle:
            kwargs["use_safetensors"] = True  # a hub repository with pickle weights only is refused too
        local_only = source.kind == "hub" and _hub_local_only(source.path)
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source.path, trust_remote_code=trust_remote_code,
                                                                   local_files_only=local_only)
            model = transformers.AutoModelForCausalLM.from_pretrained(source.path, local_files_only=local_only,
                                                                      **kwargs)
        except OSError as exc:
            if source.kind == "hub":
                raise ModelResolutionError(
                    f"cannot load {source.path!r} from the Hugging Face hub (offline or unknown id); pass a local "
                    f"model directory, a .gguf file, or an alias ({', '.join(ALIASES)})") from exc
            raise ModelResolutionError(f"model {source.requested!r}: cannot load it from {source.path!r} "
                                       f"({_reason(exc)})") from exc
        except Exception as exc:  # safetensors, torch, json, tokenizers and transformers raise many types
            raise ModelResolutionError(f"model {source.requested!r}: cannot load it from {source.path!r} "
                                       f"({_reason(exc)})") from exc
        revision = getattr(model.config, "_commit_hash", None)
        weights = sorted(Path(source.path).glob("*.safetensors")) if source.kind == "directory" else []
        weight_digest = text_sha256("".join(file_sha256(w) for w in weights)) if weights else None
        provenance.update(revision=revision, weights_sha256=weight_digest)
        identity.update(revision=revision, weights_sha256=weight_digest,
                        config_sha256=text_sha256(model.config.to_json_string()))
    _check_chat_template(source.requested, tokenizer)
    model.eval()
    model.to(device)
    cfg = getattr(model.config, "text_config", None) or model.config
    template = getattr(tokenizer, "chat_template", None)
    provenance.update(architecture=type(model).__name__, model_type=cfg.model_type,
                      tokenizer_sha256=_tokenizer_sha256(tokenizer),
                      chat_template_sha256=text_sha256(template) if isinstance(template, str) and template else None,
                      compute_dtype=compute_dtype, device=device)
    identity.update(tokenizer_sha256=provenance["tokenizer_sha256"],
                    chat_template_sha256=provenance["chat_template_sha256"], compute_dtype=compute_dtype)
    loaded = LoadedModel(model, tokenizer, source, provenance, identity)
    if kept is not None:
        kept[key] = loaded
    return loaded
