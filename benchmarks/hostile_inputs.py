"""Hostile inputs and faults against the real ``emovec`` CLI (issue 8): how many are handled well.

Every case runs the CLI named by ``--emovec`` in a subprocess, so the same harness measures old and new
code. The base inputs are made once per run with that CLI (``emovec demo``; a store export; a copy of
its built-in corpus) plus a tiny random llama from ``tests/tiny_models.py``; every case damages its own
copy. A case is **handled** when the exit code is one the case allows (1, 2 or 3 for a bad input; 0 only
where success is right), no ``Traceback`` appears, an error (exit 2, 3) is at most two lines (exit 1,
an integrity or validation report, lists every problem), it ends within the
hang guard, and the case's own check holds (e.g. the original store still verifies, nothing leaked into
an export, a killed extraction resumes). Disk-full and read-only cases mount a tmpfs (root only); they
are skipped, and said so, where mounting fails.

    python benchmarks/hostile_inputs.py --emovec .venv/bin/emovec --json /tmp/hostile.json
"""
from __future__ import annotations

import argparse
import contextlib
import fnmatch
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the faulty HTTP server and the tiny models are the tests' own (tests/)

from tests.http_faults import handler, serving  # noqa: E402

HANG_S = 60.0
POOLED = "models/demo/mean_from_50/pooled"
ANALYZE = ["--no-lens", "--no-write", "--permutations", "99", "--bootstrap", "99"]
EXTRACT = ["--limit", "6", "--dtype", "float32", "--device", "cpu", "--threads", "1", "--sync-interval", "0"]


@dataclass
class Run:
    """One CLI call: exit code (None: killed by the hang guard) and its output."""

    code: int | None
    stdout: str
    stderr: str


@dataclass
class Result:
    """One case's outcome as printed and written to --json."""

    cls: str
    case: str
    code: int | None
    verdict: str
    message: str
    reason: str = ""


@dataclass
class Case:
    """A hostile input: ``body`` builds it and returns the run to judge and, optionally, a problem found
    by the case's own check (damage, a leak, a failed resume)."""

    cls: str
    name: str
    body: Callable[[Ctx], tuple[Run, str | None]]
    ok: frozenset[int] = frozenset({1, 2, 3})
    needs_mount: bool = False


BAR = re.compile(r"[\w ]*:?\s*\d+%\|[^|]*\|\s*\d+/\d+\s*\[[^\]]*\]")


def message_lines(text: str) -> list[str]:
    """The non-empty lines of ``text`` with progress bars (and their carriage-return redraws) cut out."""
    lines = []
    for raw in text.splitlines():
        line = BAR.sub("", raw.rsplit("\r", 1)[-1] if "Error" not in raw else raw.replace("\r", "")).strip()
        if line and not line.startswith(("Usage: ", "Try '")):  # click's usage hint above its error line
            lines.append(line)
    return lines


def judge(case: Case, run: Run, problem: str | None) -> tuple[str, str]:
    """(verdict, reason): handled, or not handled with why."""
    both = run.stdout + run.stderr
    if run.code is None:
        return "hang", f"no exit within {HANG_S:.0f} s"
    if "Traceback" in both:
        return "not handled", "traceback"
    if run.code not in case.ok:
        want = "/".join(str(c) for c in sorted(case.ok))
        return "not handled", f"exit {run.code} (want {want})" + (": accepted" if run.code == 0 else "")
    if run.code not in (0, 1) and len(message_lines(run.stderr)) > 2:  # exit 1 lists every problem
        return "not handled", f"{len(message_lines(run.stderr))}-line error"
    if problem:
        return "not handled", problem
    return "handled", ""


class Ctx:
    """The CLI under test, a scratch directory and the base inputs (each made on first use)."""

    def __init__(self, emovec: Path, work: Path) -> None:
        self.emovec = emovec
        self.work = work
        self.python = emovec.parent / "python"
        self._n = 0

    def cli(self, *args: str | Path, env: dict[str, str] | None = None, timeout: float | None = None) -> Run:
        """Run ``emovec ARGS`` in the scratch directory; a run past ``timeout`` (default: the hang guard,
        ``--hang-s``) is killed (code None)."""
        timeout = HANG_S if timeout is None else timeout
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    **(env or {})}
        proc = subprocess.Popen([str(self.emovec), *map(str, args)], cwd=self.work, env=full_env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
            return Run(proc.returncode, out, err)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return Run(None, out, err)

    def fresh(self, stem: str) -> Path:
        """A new, unused path in the scratch directory."""
        self._n += 1
        return self.work / f"{self._n:02d}-{stem}"

    def copy_store(self) -> Path:
        dest = self.fresh("s.zarr")
        shutil.copytree(self.store, dest, symlinks=True)
        return dest

    def copy_corpus(self) -> Path:
        dest = self.fresh("corpus")
        shutil.copytree(self.corpus, dest, symlinks=True)
        return dest

    def copy_model(self) -> Path:
        dest = self.fresh("model")
        shutil.copytree(self.model, dest)
        return dest

    def verifies(self, store: Path) -> bool:
        return self.cli("store", "verify", store).code == 0

    @functools.cached_property
    def store(self) -> Path:
        """A finalized synthetic store made by ``emovec demo``."""
        path = self.work / "base.zarr"
        run = self.cli("demo", "--store", path)
        if run.code != 0:
            raise SystemExit(f"emovec demo failed (exit {run.code}): {run.stderr.strip()[-300:]}")
        return path

    @functools.cached_property
    def zip(self) -> Path:
        path = self.work / "base.zip"
        run = self.cli("store", "export", self.store, "--zip", path)
        if run.code != 0:
            raise SystemExit(f"emovec store export failed (exit {run.code}): {run.stderr.strip()[-300:]}")
        return path

    @functools.cached_property
    def corpus(self) -> Path:
        """A copy of the CLI's own built-in corpus (data files only)."""
        where = subprocess.run([str(self.python), "-c", "import corpus; print(corpus.__file__)"],
                               capture_output=True, text=True, check=True).stdout.strip()
        dest = self.work / "base-corpus"
        shutil.copytree(Path(where).parent, dest, ignore=shutil.ignore_patterns("*.py", "__pycache__", "*.md"))
        return dest

    @functools.cached_property
    def model(self) -> Path:
        """A tiny random llama (3 layers, hidden 32) saved as safetensors with its tokenizer."""
        from tests.tiny_models import build_model

        return build_model("llama", self.work / "tiny-llama")

    def extract(self, model: Path, store: Path, *extra: str, env: dict[str, str] | None = None) -> Run:
        return self.cli("extract", "--model", model, "--store", store, *EXTRACT, *extra, env=env)


# ---------------------------------------------------------------- helpers that make hostile inputs

@contextlib.contextmanager
def tmpfs(ctx: Ctx, *, size: str = "3m", readonly: bool = False) -> Iterator[Path]:
    """A fresh tmpfs mounted under the scratch directory (root only)."""
    where = ctx.fresh("mnt")
    where.mkdir()
    opts = f"size={size}" + (",ro" if readonly else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], check=True, capture_output=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def fill(directory: Path, leave: int = 0) -> Path:
    """Write a filler file until ``leave`` bytes are free (0: until the file system is full); returns it
    (delete it, and ``tail``, to give the space back)."""
    filler = directory / "filler"
    budget = shutil.disk_usage(directory).free - leave
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while leave == 0 or f.tell() + 65536 <= budget:
            f.write(bytes(65536))
    with open(directory / "tail", "wb", buffering=0) as f, contextlib.suppress(OSError):
        while leave == 0:
            f.write(bytes(512))
    return filler


def first_chunk(store: Path, array: str = POOLED) -> Path:
    return sorted(p for p in (store / array / "c").rglob("*") if p.is_file())[0]


def edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def write_bytes(relative: str, data: bytes, command: str) -> Callable[[Ctx], tuple[Run, str | None]]:
    """A case body: replace a metadata document of a store copy with ``data`` and run ``store COMMAND``."""
    def body(ctx: Ctx) -> tuple[Run, str | None]:
        store = ctx.copy_store()
        target = store / relative
        target.write_bytes(data if data != b"HALF" else target.read_bytes()[: len(target.read_bytes()) // 2])
        return ctx.cli("store", command, store), None
    return body


# ---------------------------------------------------------------- 1. kill during store creation

def kill_during_creation(delay: float) -> Callable[[Ctx], tuple[Run, str | None]]:
    """SIGKILL extract ``delay`` s after the first store entry appears, rerun, then verify."""
    def body(ctx: Ctx) -> tuple[Run, str | None]:
        store = ctx.fresh("k.zarr")
        args = [str(ctx.emovec), "extract", "--model", str(ctx.model), "--store", str(store), *EXTRACT]
        proc = subprocess.Popen(args, cwd=ctx.work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        seen = False
        deadline = time.monotonic() + HANG_S
        while proc.poll() is None and time.monotonic() < deadline:
            if any(p.name.startswith(store.name) for p in store.parent.iterdir()):
                seen = True
                time.sleep(delay)
                break
            time.sleep(0.002)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        rerun = ctx.extract(ctx.model, store)
        if rerun.code != 0:
            return rerun, None
        if not seen:
            return rerun, "the kill came too late (store never seen)"
        return rerun, None if ctx.verifies(store) else "resumed store does not verify"
    return body


# ---------------------------------------------------------------- 2. disk full

def disk_full_extract(midway: bool) -> Callable[[Ctx], tuple[Run, str | None]]:
    """Extract into a 3 MB tmpfs that is full from the start, or (``midway``) has half the room the
    store takes (measured by a first extraction there); then free the space and resume."""
    def body(ctx: Ctx) -> tuple[Run, str | None]:
        with tmpfs(ctx) as mnt:
            store = mnt / "x.zarr"
            leave = 0
            if midway:
                before = shutil.disk_usage(mnt).used
                roomy = ctx.extract(ctx.model, store)
                if roomy.code != 0:
                    return roomy, "extract failed with room to spare"
                leave = (shutil.disk_usage(mnt).used - before) // 2
                shutil.rmtree(store)
                for lock in mnt.glob("x.zarr*"):
                    shutil.rmtree(lock) if lock.is_dir() else lock.unlink()
            filler = fill(mnt, leave)
            full = ctx.extract(ctx.model, store)
            if full.code == 0 or "Traceback" in full.stdout + full.stderr:
                return full, None
            filler.unlink()
            (mnt / "tail").unlink()
            again = ctx.extract(ctx.model, store)
            if again.code != 0:
                return full, f"no resume once space is back (exit {again.code}: {last_line(again)})"
            return full, None if ctx.verifies(store) else "resumed store does not verify"
    return body


def disk_full(make: Callable[[Ctx, Path], Run]) -> Callable[[Ctx], tuple[Run, str | None]]:
    def body(ctx: Ctx) -> tuple[Run, str | None]:
        ctx.store, ctx.corpus  # noqa: B018 - made before the disk fills
        with tmpfs(ctx) as mnt:
            fill(mnt)
            run = make(ctx, mnt)
        return run, None if ctx.verifies(ctx.store) else "the source store no longer verifies"
    return body


# ---------------------------------------------------------------- 3. damaged metadata

def consolidated_shape(ctx: Ctx) -> tuple[Run, str | None]:
    store = ctx.copy_store()
    edit_json(store / "zarr.json",
              lambda d: d["consolidated_metadata"]["metadata"][POOLED].__setitem__(
                  "shape", [s + 1 for s in d["consolidated_metadata"]["metadata"][POOLED]["shape"]]))
    return ctx.cli("store", "verify", store), None


def array_dtype(ctx: Ctx) -> tuple[Run, str | None]:
    store = ctx.copy_store()

    def swap(doc: dict) -> None:
        doc["data_type"] = "float32" if doc["data_type"] != "float32" else "float16"
    edit_json(store / POOLED / "zarr.json", swap)
    edit_json(store / "zarr.json", lambda d: swap(d["consolidated_metadata"]["metadata"][POOLED]))
    return ctx.cli("store", "verify", store), None


def complete_by_hand(ctx: Ctx) -> tuple[Run, str | None]:
    """An unfinalized store (a done flag gone, no manifest) whose root says complete=true."""
    store = ctx.copy_store()
    shutil.rmtree(store / "_manifest")
    first_chunk(store, "models/demo/mean_from_50/_progress/batch_done").unlink()

    def edit(doc: dict) -> None:
        doc["attributes"]["complete"] = True
        meta = doc.get("consolidated_metadata", {}).get("metadata", {})
        for key in [k for k in meta if k.startswith("_manifest")]:
            del meta[key]
    edit_json(store / "zarr.json", edit)
    return ctx.cli("analyze", store, *ANALYZE, "--out", ctx.fresh("an")), None


def manifest_deleted(ctx: Ctx) -> tuple[Run, str | None]:
    store = ctx.copy_store()
    shutil.rmtree(store / "_manifest")
    return ctx.cli("store", "verify", store), None


def manifest_truncated(ctx: Ctx) -> tuple[Run, str | None]:
    store = ctx.copy_store()
    chunk = first_chunk(store, "_manifest/sha256")
    chunk.write_bytes(chunk.read_bytes()[:5])
    return ctx.cli("store", "verify", store), None


def symlink_loop_chunk(command: str) -> Callable[[Ctx], tuple[Run, str | None]]:
    def body(ctx: Ctx) -> tuple[Run, str | None]:
        store = ctx.copy_store()
        chunk = first_chunk(store)
        chunk.unlink()
        chunk.symlink_to(chunk.name)
        if command == "analyze":
            return ctx.cli("analyze", store, *ANALYZE, "--out", ctx.fresh("an")), None
        return ctx.cli("store", command, store), None
    return body


# ---------------------------------------------------------------- 4. zip

def zip_file(make: Callable[[Ctx, Path], None], command: str = "info") -> Callable[[Ctx], tuple[Run, str | None]]:
    def body(ctx: Ctx) -> tuple[Run, str | None]:
        path = ctx.fresh("x.zip")
        make(ctx, path)
        if command == "analyze":
            return ctx.cli("analyze", path, *ANALYZE, "--out", ctx.fresh("an")), None
        return ctx.cli("store", command, path), None
    return body


def rezip(ctx: Ctx, path: Path, *, compress: int = zipfile.ZIP_STORED, bomb: str | None = None,
          extra: tuple[str, bytes] | None = None, drop: str | None = None) -> None:
    """Rewrite the base zip: recompressed, one entry swapped for a deflate bomb (1 GiB of zeros in about
    1 MB), an entry added or one dropped."""
    with zipfile.ZipFile(ctx.zip) as src, zipfile.ZipFile(path, "w", compression=compress) as dst:
        for info in src.infolist():
            if info.filename == drop:
                continue
            if info.filename == bomb:
                entry = zipfile.ZipInfo(info.filename)
                entry.compress_type = zipfile.ZIP_DEFLATED
                with dst.open(entry, "w", force_zip64=True) as out:
                    block = bytes(1 << 20)
                    for _ in range(1024):
                        out.write(block)
                continue
            dst.writestr(info.filename, src.read(info), compress_type=compress)
        if extra:
            dst.writestr(extra[0], extra[1])


def zip_entry(ctx: Ctx, kind: str) -> str:
    with zipfile.ZipFile(ctx.zip) as z:
        names = z.namelist()
    prefix = next(n for n in names if n.endswith("zarr.json")).split("/")[0]
    chunk = next(n for n in names if f"{POOLED}/c/" in n)
    return {"chunk": chunk, "prefix": prefix}[kind]


# ---------------------------------------------------------------- 5. export leaks files

def export_leak(plant: Callable[[Path], str], fmt: str = "zip") -> Callable[[Ctx], tuple[Run, str | None]]:
    """Plant something in a store copy, export it; the leak check looks for the planted name in the output."""
    def body(ctx: Ctx) -> tuple[Run, str | None]:
        store = ctx.copy_store()
        planted = plant(store)
        out = ctx.fresh("out.zip" if fmt == "zip" else "out-v2.zarr")
        run = (ctx.cli("store", "export", store, "--zip", out) if fmt == "zip"
               else ctx.cli("store", "export", store, "--zarr-format", "2", out))
        leaked = False
        if out.is_file():
            with contextlib.suppress(zipfile.BadZipFile), zipfile.ZipFile(out) as z:
                leaked = any(n.endswith(planted) for n in z.namelist())
        elif out.is_dir():
            leaked = any(str(p).endswith(planted) for p in out.rglob("*"))
        return run, f"{planted} exported" if leaked else None
    return body


def plant_symlink(target: str, name: str = "models/demo/notes") -> Callable[[Path], str]:
    def plant(store: Path) -> str:
        (store / name).symlink_to(target)
        return name
    return plant


def plant_file(store: Path) -> str:
    (store / "models/demo/extra.txt").write_text("not part of any store\n")
    return "models/demo/extra.txt"


def plant_chunk_link(store: Path) -> str:
    """A chunk replaced by a symlink to an identical copy outside the store (its hash still matches)."""
    chunk = first_chunk(store)
    outside = store.parent / f"{store.name}-outside-chunk"
    shutil.copyfile(chunk, outside)
    chunk.unlink()
    chunk.symlink_to(outside)
    return str(chunk.relative_to(store))


# ---------------------------------------------------------------- 6. HTTP stores

@contextlib.contextmanager
def serve(directory: Path, fault_path: str, fault: str) -> Iterator[str]:
    """Serve ``directory`` with one fault at ``fault_path`` (:mod:`tests.http_faults`); yields the base URL."""
    with serving(directory, handler(fault_path, fault)) as base:
        yield base


def http_case(where: str, fault: str, command: str) -> Callable[[Ctx], tuple[Run, str | None]]:
    """Serve the base store with one fault at ``where`` (chunk: the first pooled chunk; root: zarr.json)."""
    def body(ctx: Ctx) -> tuple[Run, str | None]:
        store = ctx.store
        rel = {"chunk": str(first_chunk(store).relative_to(ctx.work)),
               "root": f"{store.name}/zarr.json"}.get(where, where)
        env = {"EMOVEC_HTTP_TIMEOUT": "2"}
        with serve(ctx.work, rel, fault) as base:
            url = f"{base}/{store.name}" if where != "missing" else f"{base}/no-such.zarr"
            if command == "analyze":
                return ctx.cli("analyze", url, *ANALYZE, "--out", ctx.fresh("an"), env=env), None
            return ctx.cli("store", command, url, env=env), None
    return body


def http_refused(ctx: Ctx) -> tuple[Run, str | None]:
    with serve(ctx.work, "", "") as base:
        pass  # the port is closed again: connection refused
    return ctx.cli("store", "info", f"{base}/base.zarr", env={"EMOVEC_HTTP_TIMEOUT": "2"}), None


# ---------------------------------------------------------------- 7. filesystem errors

def readonly(make: Callable[[Ctx, Path], Run]) -> Callable[[Ctx], tuple[Run, str | None]]:
    def body(ctx: Ctx) -> tuple[Run, str | None]:
        ctx.store  # noqa: B018 - made before
        with tmpfs(ctx, size="1m", readonly=True) as mnt:
            return make(ctx, mnt), None
    return body


def regular_file(ctx: Ctx) -> Path:
    path = ctx.fresh("plain.zarr")
    path.write_text("a regular file\n")
    return path


def with_source_check(make: Callable[[Ctx], Run]) -> Callable[[Ctx], tuple[Run, str | None]]:
    def body(ctx: Ctx) -> tuple[Run, str | None]:
        run = make(ctx)
        return run, None if ctx.verifies(ctx.store) else "the source store no longer verifies"
    return body


# ---------------------------------------------------------------- 8. hostile corpus files

def corpus_case(damage: Callable[[Path], None], *, warn_ok: str | None = None
                ) -> Callable[[Ctx], tuple[Run, str | None]]:
    """Damage a corpus copy and validate it; with ``warn_ok``, exit 0 is right if the output names it."""
    def body(ctx: Ctx) -> tuple[Run, str | None]:
        corpus = ctx.copy_corpus()
        damage(corpus)
        run = ctx.cli("corpus", "validate", corpus)
        if warn_ok and run.code == 0 and warn_ok not in run.stdout + run.stderr:
            return run, f"{warn_ok} skipped silently"
        return run, None
    return body


def first_story(corpus: Path) -> Path:
    return sorted((corpus / "stories" / "en").glob("*.jsonl"))[0]


def set_story_text(text_json: str) -> Callable[[Path], None]:
    """Replace the first story's text with the raw JSON string ``text_json``."""
    def damage(corpus: Path) -> None:
        path = first_story(corpus)
        lines = path.read_text().splitlines()
        record = json.loads(lines[0])
        record["text"] = "@@TEXT@@"
        lines[0] = json.dumps(record).replace('"@@TEXT@@"', text_json)
        path.write_text("\n".join(lines) + "\n")
    return damage


def set_norm(value: str) -> Callable[[Path], None]:
    def damage(corpus: Path) -> None:
        path = corpus / "emotions.json"
        doc = json.loads(path.read_text())
        doc["emotions"][0]["valence"] = "@@V@@"
        path.write_text(json.dumps(doc).replace('"@@V@@"', value))
    return damage


def stories_is_file(corpus: Path) -> None:
    shutil.rmtree(corpus / "stories")
    (corpus / "stories").write_text("not a directory\n")


def story_loop(corpus: Path) -> None:
    (corpus / "stories" / "en" / "loop.jsonl").symlink_to("loop.jsonl")


def story_bad_utf8(corpus: Path) -> None:
    path = first_story(corpus)
    path.write_bytes(path.read_bytes().replace(b"the", b"th\xff\xfe", 1))


def import_case(content: bytes, fmt: str = "jsonl") -> Callable[[Ctx], tuple[Run, str | None]]:
    def body(ctx: Ctx) -> tuple[Run, str | None]:
        src = ctx.fresh(f"in.{fmt}")
        src.write_bytes(content)
        dest = ctx.fresh("imported")
        run = ctx.cli("corpus", "import", fmt, src, dest, "--label-field", "label")
        partial = dest.exists() and run.code != 0
        return run, "partial output left" if partial else None
    return body


DEEP = b"[" * 100_000 + b"]" * 100_000


# ---------------------------------------------------------------- 9. hostile model directories

def model_case(damage: Callable[[Path], None]) -> Callable[[Ctx], tuple[Run, str | None]]:
    def body(ctx: Ctx) -> tuple[Run, str | None]:
        model = ctx.copy_model()
        damage(model)
        return ctx.extract(model, ctx.fresh("m.zarr")), None
    return body


def truncate_weights(model: Path) -> None:
    path = model / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def garbage_weights(model: Path) -> None:
    (model / "model.safetensors").write_bytes(os.urandom(4096))


def pickle_weights(model: Path) -> None:
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(model / "model.safetensors"), model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()


def jinja_escape(model: Path) -> None:
    edit_json(model / "tokenizer_config.json", lambda d: d.__setitem__(
        "chat_template", "{{ ''.__class__.__mro__[1].__subclasses__() }}{% for m in messages %}{{ m['content'] }}"
                         "{% endfor %}"))
    (model / "chat_template.jinja").unlink(missing_ok=True)


def garbage_config(model: Path) -> None:
    (model / "config.json").write_text("{ this is not json")


def no_config(model: Path) -> None:
    (model / "config.json").unlink()


def no_tokenizer(model: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        (model / name).unlink(missing_ok=True)


def empty_dir(model: Path) -> None:
    shutil.rmtree(model)
    model.mkdir()


# ---------------------------------------------------------------- the cases

def last_line(run: Run) -> str:
    lines = message_lines(run.stderr) or message_lines(run.stdout)
    return lines[-1] if lines else ""


def first_line(run: Run) -> str:
    lines = message_lines(run.stderr) if run.code else []
    return (lines[0] if lines else last_line(run))[:110]


def cases() -> list[Case]:
    """Every case, in class order."""
    k, d, m, z, e, h, f, c, mo = ("kill during creation", "disk full", "damaged metadata", "zip",
                                  "export leaks files", "HTTP stores", "filesystem errors", "hostile corpus",
                                  "hostile model dir")
    zero = frozenset({0})
    return [
        Case(k, "SIGKILL as the store appears, rerun, verify", kill_during_creation(0.0), zero),
        Case(k, "SIGKILL 30 ms after, rerun, verify", kill_during_creation(0.03), zero),
        Case(k, "SIGKILL 100 ms after, rerun, verify", kill_during_creation(0.1), zero),
        Case(k, "SIGKILL 300 ms after, rerun, verify", kill_during_creation(0.3), zero),
        Case(d, "extract into a full 3 MB tmpfs, then resume", disk_full_extract(False), needs_mount=True),
        Case(d, "extract, the disk fills midway, then resume", disk_full_extract(True), needs_mount=True),
        Case(d, "demo into a full tmpfs", disk_full(lambda x, mnt: x.cli("demo", "--store", mnt / "d.zarr")),
             needs_mount=True),
        Case(d, "export --zip into a full tmpfs",
             disk_full(lambda x, mnt: x.cli("store", "export", x.store, "--zip", mnt / "o.zip")), needs_mount=True),
        Case(d, "export --zarr-format 2 into a full tmpfs",
             disk_full(lambda x, mnt: x.cli("store", "export", x.store, "--zarr-format", "2", mnt / "v2.zarr")),
             needs_mount=True),
        Case(d, "corpus import into a full tmpfs",
             disk_full(lambda x, mnt: x.cli("corpus", "import", "jsonl", first_story(x.corpus), mnt / "imp",
                                            "--label-field", "emotion")), needs_mount=True),
        Case(m, "root zarr.json empty: info", write_bytes("zarr.json", b"", "info")),
        Case(m, "root zarr.json truncated: ls", write_bytes("zarr.json", b"HALF", "ls")),
        Case(m, "root zarr.json garbage: verify", write_bytes("zarr.json", b"\x00\xffgarbage{", "verify")),
        Case(m, "group zarr.json empty: info", write_bytes("models/zarr.json", b"", "info")),
        Case(m, "group zarr.json garbage: verify", write_bytes("stimuli/zarr.json", b"<html>", "verify")),
        Case(m, "array zarr.json truncated: info", write_bytes(f"{POOLED}/zarr.json", b"HALF", "info")),
        Case(m, "array zarr.json garbage: verify", write_bytes(f"{POOLED}/zarr.json", b"[1, 2", "verify")),
        Case(m, "consolidated shape edited: verify", consolidated_shape, frozenset({1})),
        Case(m, "array dtype edited (array + consolidated): verify", array_dtype, frozenset({1})),
        Case(m, "complete=true by hand on an unfinalized store: analyze", complete_by_hand),
        Case(m, "manifest group deleted: verify", manifest_deleted, frozenset({1})),
        Case(m, "manifest truncated: verify", manifest_truncated, frozenset({1})),
        Case(m, "chunk is a symlink loop: verify", symlink_loop_chunk("verify"), frozenset({1})),
        Case(m, "chunk is a symlink loop: analyze", symlink_loop_chunk("analyze")),
        Case(z, "not a zip: info", zip_file(lambda x, p: p.write_text("just text\n"))),
        Case(z, "empty .zip: info", zip_file(lambda x, p: p.write_bytes(b""))),
        Case(z, "truncated zip: info",
             zip_file(lambda x, p: p.write_bytes(x.zip.read_bytes()[: x.zip.stat().st_size // 2]))),
        Case(z, "deflate bomb (1 MB -> 1 GiB chunk): verify",
             zip_file(lambda x, p: rezip(x, p, bomb=zip_entry(x, "chunk")), "verify")),
        Case(z, "deflate bomb: analyze",
             zip_file(lambda x, p: rezip(x, p, bomb=zip_entry(x, "chunk")), "analyze")),
        Case(z, "every entry deflated: verify",
             zip_file(lambda x, p: rezip(x, p, compress=zipfile.ZIP_DEFLATED), "verify")),
        Case(z, "extra entry '../escape': verify",
             zip_file(lambda x, p: rezip(x, p, extra=("../escape", b"x")), "verify"), frozenset({1})),
        Case(z, "a chunk entry missing: analyze",
             zip_file(lambda x, p: rezip(x, p, drop=zip_entry(x, "chunk")), "analyze")),
        Case(e, "symlink to /etc/passwd: export --zip", export_leak(plant_symlink("/etc/passwd"))),
        Case(e, "symlink to /etc/passwd: export --zarr-format 2", export_leak(plant_symlink("/etc/passwd"), "v2")),
        Case(e, "symlink to /etc (a directory): export --zip", export_leak(plant_symlink("/etc", "models/demo/etc"))),
        Case(e, "unexpected regular file: export --zip", export_leak(plant_file)),
        Case(e, "chunk is a symlink to an identical outside file: export --zip", export_leak(plant_chunk_link)),
        Case(h, "404 on a chunk: analyze", http_case("chunk", "404", "analyze")),
        Case(h, "500 on a chunk: analyze", http_case("chunk", "500", "analyze")),
        Case(h, "garbage chunk: analyze", http_case("chunk", "garbage", "analyze")),
        Case(h, "chunk never answers (EMOVEC_HTTP_TIMEOUT=2): analyze", http_case("chunk", "hang", "analyze")),
        Case(h, "500 on root zarr.json: info", http_case("root", "500", "info")),
        Case(h, "garbage root zarr.json: info", http_case("root", "garbage", "info")),
        Case(h, "root never answers (EMOVEC_HTTP_TIMEOUT=2): info", http_case("root", "hang", "info")),
        Case(h, "no store at the URL (404): info", http_case("missing", "", "info")),
        Case(h, "connection refused: info", http_refused),
        Case(f, "extract into a read-only directory",
             readonly(lambda x, mnt: x.extract(x.model, mnt / "x.zarr")), needs_mount=True),
        Case(f, "demo into a read-only directory",
             readonly(lambda x, mnt: x.cli("demo", "--store", mnt / "d.zarr")), needs_mount=True),
        Case(f, "export --zip into a read-only directory",
             readonly(lambda x, mnt: x.cli("store", "export", x.store, "--zip", mnt / "o.zip")), needs_mount=True),
        Case(f, "demo with a missing parent directory",
             lambda x: (x.cli("demo", "--store", x.fresh("no") / "such" / "d.zarr"), None), frozenset({0, 2, 3})),
        Case(f, "export --zip with a missing parent directory",
             with_source_check(lambda x: x.cli("store", "export", x.store, "--zip", x.fresh("no") / "o.zip")),
             frozenset({0, 2, 3})),
        Case(f, "export --zip onto an existing directory",
             with_source_check(lambda x: x.cli("store", "export", x.store, "--zip", x.work))),
        Case(f, "extract --store is a regular file", lambda x: (x.extract(x.model, regular_file(x)), None)),
        Case(f, "info on a regular file", lambda x: (x.cli("store", "info", regular_file(x)), None)),
        Case(f, "demo --store is a regular file", lambda x: (x.cli("demo", "--store", regular_file(x)), None)),
        Case(f, "corpus import onto an existing file",
             lambda x: (x.cli("corpus", "import", "jsonl", first_story(x.corpus), regular_file(x),
                              "--label-field", "emotion"), None)),
        Case(f, "ls on a missing path", lambda x: (x.cli("store", "ls", x.fresh("missing.zarr")), None)),
        Case(c, "emotions.json nested 100k levels", corpus_case(
            lambda p: (p / "emotions.json").write_bytes(DEEP))),
        Case(c, "lone surrogate \\ud800 in a story", corpus_case(set_story_text('"\\ud800 she smiled."'))),
        Case(c, "NaN valence in emotions.json", corpus_case(set_norm("NaN"))),
        Case(c, "Infinity valence in emotions.json", corpus_case(set_norm("Infinity"))),
        Case(c, "emotions.json empty", corpus_case(lambda p: (p / "emotions.json").write_bytes(b""))),
        Case(c, "stories is a file", corpus_case(stories_is_file)),
        Case(c, "symlink loop in stories/en", corpus_case(story_loop, warn_ok="loop.jsonl"),
             frozenset({0, 1, 2})),
        Case(c, "invalid UTF-8 in a story file", corpus_case(story_bad_utf8)),
        Case(c, "import jsonl nested 100k levels", import_case(DEEP + b"\n")),
        Case(c, "import jsonl with a lone surrogate",
             import_case(b'{"text": "\\udc00 he left.", "label": "sad"}\n')),
        Case(c, "import csv with invalid UTF-8", import_case(b"text,label\nhe \xff\xfe left,sad\n", "csv")),
        Case(mo, "truncated model.safetensors", model_case(truncate_weights)),
        Case(mo, "garbage model.safetensors", model_case(garbage_weights)),
        Case(mo, "pickle-only pytorch_model.bin", model_case(pickle_weights)),
        Case(mo, "chat template escaping the Jinja sandbox", model_case(jinja_escape)),
        Case(mo, "config.json garbage", model_case(garbage_config)),
        Case(mo, "config.json missing", model_case(no_config)),
        Case(mo, "tokenizer files missing", model_case(no_tokenizer)),
        Case(mo, "empty model directory", model_case(empty_dir)),
    ]


def can_mount(work: Path) -> bool:
    probe = work / "mount-probe"
    probe.mkdir()
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
                        capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", str(probe)], capture_output=True)
    return ok


def run_case(ctx: Ctx, case: Case) -> Result:
    try:
        run, problem = case.body(ctx)
    except Exception as exc:
        return Result(case.cls, case.name, None, "harness error", f"{type(exc).__name__}: {exc}"[:110],
                      "the harness failed to build the input")
    verdict, reason = judge(case, run, problem)
    return Result(case.cls, case.name, run.code, verdict, first_line(run), reason)


def print_table(results: list[Result], skipped: list[Case]) -> None:
    print("| class | case | exit | verdict | first line of the message |")
    print("|---|---|---|---|---|")
    for r in results:
        verdict = r.verdict + (f" ({r.reason})" if r.reason else "")
        print(f"| {r.cls} | {r.case} | {r.code} | {verdict} | {r.message.replace('|', '/')} |")
    for c in skipped:
        print(f"| {c.cls} | {c.name} | - | skipped (cannot mount a tmpfs) | |")
    print()
    print("| class | handled | not handled |")
    print("|---|---|---|")
    for cls in dict.fromkeys(r.cls for r in results):
        mine = [r for r in results if r.cls == cls]
        good = sum(r.verdict == "handled" for r in mine)
        print(f"| {cls} | {good} | {len(mine) - good} |")
    good = sum(r.verdict == "handled" for r in results)
    print(f"| **total** | **{good}** | **{len(results) - good}** |")


@dataclass
class Summary:
    emovec: str
    handled: int
    cases: int
    skipped: list[str] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)


def set_hang_guard(seconds: float) -> None:
    """Every CLI call of this run counts as a hang after ``seconds`` (``--hang-s``)."""
    global HANG_S
    HANG_S = seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emovec", type=Path, default=REPO / ".venv" / "bin" / "emovec",
                        help="the emovec executable under test (its venv's python builds the corpus copy)")
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="run only cases whose 'class/case' matches this glob (repeatable)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--hang-s", type=float, default=HANG_S,
                        help="hang guard: a CLI call still running after this many seconds is a hang")
    args = parser.parse_args(argv)
    set_hang_guard(args.hang_s)
    if not args.emovec.is_file():
        parser.error(f"--emovec {args.emovec}: no such file")
    selected = [c for c in cases() if not args.only
                or any(fnmatch.fnmatch(f"{c.cls}/{c.name}", p) for p in args.only)]
    if not selected:
        parser.error("--only matched no case")
    work = Path(tempfile.mkdtemp(prefix="emovec-hostile-"))
    try:
        mount = can_mount(work) if any(c.needs_mount for c in selected) else True
        skipped = [c for c in selected if c.needs_mount and not mount]
        ctx = Ctx(args.emovec.absolute(), work)
        results = []
        for case in selected:
            if case in skipped:
                continue
            results.append(run_case(ctx, case))
            r = results[-1]
            print(f"  {r.cls} / {r.case}: {r.verdict} {r.reason}", file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            for mnt in work.glob("*-mnt"):
                subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
            shutil.rmtree(work, ignore_errors=True)
    print_table(results, skipped)
    if args.json:
        good = sum(r.verdict == "handled" for r in results)
        summary = Summary(str(args.emovec), good, len(results), [f"{c.cls}/{c.name}" for c in skipped],
                          [asdict(r) for r in results])
        args.json.write_text(json.dumps(asdict(summary), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
