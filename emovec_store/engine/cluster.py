"""`extract_on_cluster`: the shards of one extraction as tasks on a dask.distributed cluster.

Shard k of N is one task that runs :func:`~emovec_store.engine.extract.extract` with ``shard=(k, N)``
on a worker, so the workers write disjoint chunk ranges of one store exactly as N local
``--shard k/N`` processes do. Every worker must reach the store at the same path (a shared
filesystem; docs/cluster.md). A worker process runs one shard at a time (hooks on the model are per
process) and loads the model once for all the shards of a job it runs; the model is released when
the job ends.

The last shard to finish finalizes the store, as locally. Once every task has succeeded the client
asks a worker to finalize if that has not happened yet (on NFS, a stale directory cache can hide
another machine's last done flags from the last shard). A failed shard is one line naming the shard,
its worker and the cause; every finished batch stays in the store, and the same call again resumes.
"""
from __future__ import annotations

import dataclasses
import threading
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from emovec.common.errors import one_line

from ..errors import EmovecError, IncompleteStoreError, InputError, Interrupted
from ..progress import remove_lock_dir
from ..scheduler import connected
from .extract import ExtractionResult, check_stimuli, extract, finalize_if_done
from .load import LoadedModel, models_kept, pickle_weights_allowed, pickle_weights_are_allowed
from .options import ExtractOptions

__all__ = ["ClusterExtractionResult", "ShardFailedError", "ShardResult", "extract_on_cluster"]

#: One shard at a time per worker process: the readouts' forward hooks sit on the one model object.
_RUN_LOCK = threading.Lock()
#: job id -> the models its shards loaded in this worker process (one job's at a time).
_JOB_MODELS: dict[str, dict[tuple[Any, ...], LoadedModel]] = {}


class ShardFailedError(EmovecError):
    """A shard of a cluster extraction failed; the exit code is its cause's (1 for a worker that died
    or an error outside emovec's error tree)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class ShardResult:
    """One shard's outcome: where it ran, whether it loaded the model there, and what it wrote.

    ``error`` (one line) and ``exit_code`` are set instead of ``result`` when the shard failed."""

    shard: int
    shards: int
    worker: str
    loaded_model: bool = False
    result: ExtractionResult | None = None
    error: str = ""
    exit_code: int = 0


@dataclass
class ClusterExtractionResult:
    """The outcome of :func:`extract_on_cluster` (``--json`` prints it)."""

    store: str
    scheduler: str
    shards: list[ShardResult] = field(default_factory=list)
    finalized: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _worker_address() -> str:
    from distributed import get_worker

    try:
        return str(get_worker().address)
    except ValueError:  # not on a worker (called directly)
        return "local"


def _run_shard(job: str, model: str, stimuli: pd.DataFrame, store: str, options: ExtractOptions,
               shard: tuple[int, int], allow_pickle: bool) -> ShardResult:
    """The task: one shard of ``job`` on this worker. Failures come back as a one-line ``error``
    (emovec's own message, or the exception's type and first line), never as a traceback."""
    with _RUN_LOCK:
        for other in [j for j in _JOB_MODELS if j != job]:  # a worker holds one job's model at a time
            del _JOB_MODELS[other]
        kept = _JOB_MODELS.setdefault(job, {})
        loaded_before = len(kept)
        out = ShardResult(shard[0], shard[1], _worker_address())
        try:
            with models_kept(kept), pickle_weights_allowed(allow_pickle):
                # a dask worker is daemonic and cannot start the processes MPS recycling needs
                out.result = extract(model, stimuli, store, options, shard=shard, progress=False, mps_recycle_mb=0)
        except EmovecError as exc:
            out.error, out.exit_code = f"{exc.label}: {exc}", exc.exit_code
        except Exception as exc:
            out.error, out.exit_code = one_line(exc), 1
        out.loaded_model = len(kept) > loaded_before
        return out


def _same(table: pd.DataFrame) -> pd.DataFrame:
    """The task that holds the stimulus table on the cluster (see :func:`extract_on_cluster`)."""
    return table


def _release(job: str) -> None:
    """Drop the models ``job`` kept in this worker process."""
    _JOB_MODELS.pop(job, None)


def _finish(store: str) -> bool:
    """Finalize ``store`` if every batch is done; True when it is complete."""
    try:
        return finalize_if_done(Path(store))
    finally:
        with suppress(OSError):
            remove_lock_dir(Path(store))


@contextmanager
def _client_for(scheduler: Any) -> Iterator[tuple[Any, str]]:
    """(client, address) for a scheduler address, a ``distributed.Client`` (used as it is, left open)
    or a cluster object with a ``scheduler_address`` (``LocalCluster``, ``SLURMCluster``...)."""
    if isinstance(scheduler, str):
        with connected(scheduler, as_default=False) as client:
            yield client, scheduler
        return
    from distributed import Client

    if isinstance(scheduler, Client):
        yield scheduler, str(getattr(scheduler.scheduler, "address", "a dask client"))
    elif isinstance(getattr(scheduler, "scheduler_address", None), str):
        address = scheduler.scheduler_address
        with connected(address, as_default=False) as client:
            yield client, address
    else:
        raise InputError(f"scheduler must be an address, a distributed.Client or a cluster, not "
                         f"{type(scheduler).__name__}", field="scheduler")


def _failed_task(shard: tuple[int, int], exc: BaseException) -> ShardResult:
    """A task that failed outside :func:`_run_shard` (its worker died, or could not unpickle it)."""
    return ShardResult(shard[0], shard[1], "unknown", error=one_line(exc), exit_code=1)


def _failure_line(failed: list[ShardResult], n_shards: int, store: str) -> ShardFailedError:
    first = failed[0]
    more = (f"; {len(failed) - 1} more shard{'s' if len(failed) > 2 else ''} failed "
            f"({', '.join(f'{s.shard}/{n_shards}' for s in failed[1:])})" if len(failed) > 1 else "")
    where = f" on worker {first.worker}" if first.worker != "unknown" else ""
    return ShardFailedError(
        f"shard {first.shard}/{n_shards} failed{where}: {first.error}{more}; the finished batches are kept in "
        f"{store!r}: run the same command again to resume", exit_code=first.exit_code or 1)


def extract_on_cluster(model: str, stimuli: pd.DataFrame, store: str | Path, scheduler: Any, shards: int,
                       options: ExtractOptions | None = None, *, allow_pickle: bool | None = None,
                       **overrides: Any) -> ClusterExtractionResult:
    """Extract into ``store`` as ``shards`` tasks on a dask.distributed cluster; returns when all ended.

    Parameters
    ----------
    model : as for :func:`~emovec_store.engine.extract.extract`; a local path is made absolute, and
        must name the same model on every worker (as must an alias: installed on every worker).
    stimuli : the stimulus table; sent to the cluster once.
    store : the store directory, made absolute; every worker must reach it at that path.
    scheduler : a scheduler address (``tcp://HOST:8786``), a ``distributed.Client`` (left open), or a
        cluster object such as ``LocalCluster`` or dask-jobqueue's ``SLURMCluster``.
    shards : how many shards (tasks); more shards than workers queue on them, each worker loading
        the model once.
    options, overrides : as for ``extract``; ``shard`` is refused (the shards are this call's), and
        progress bars and MPS recycling (``mps_recycle_mb``) are off on the workers: a dask worker is a
        daemonic process, which may not start the fresh processes recycling needs.
    allow_pickle : accept pickle weights (None: as :func:`~emovec_store.engine.load.pickle_weights_allowed`
        is set here).

    An unreachable scheduler is an :class:`InputError`; a failed shard raises :class:`ShardFailedError`
    naming the shard, its worker and the cause after the other shards ended (their batches are kept,
    and the same call again resumes); Ctrl-C cancels the shards not yet started and raises
    :class:`Interrupted` (shards already running go on to the end of their range).
    """
    opts = dataclasses.replace(options or ExtractOptions(), **overrides)
    if opts.shard_range is not None:
        raise InputError("--shard and --scheduler do not go together: --shards N splits the store", field="shard")
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise InputError(f"--shards must be a whole number of at least 1, got {shards!r}", field="shards")
    check_stimuli(stimuli)
    store_path = str(Path(store).absolute())
    model_spec = str(Path(model).absolute()) if Path(model).exists() else model
    allow = pickle_weights_are_allowed() if allow_pickle is None else allow_pickle
    job = uuid.uuid4().hex
    with _client_for(scheduler) as (client, address):
        from distributed import as_completed
        from tqdm import tqdm

        result = ClusterExtractionResult(store_path, address)
        with warnings.catch_warnings():
            # the table travels once, as the argument of a task, so that the scheduler can make it again
            # if the worker holding it dies (data scattered to a worker is lost with it); that a big one
            # makes a big graph is known, and said here rather than in dask's warning
            warnings.filterwarnings("ignore", message="Sending large graph")
            table = client.submit(_same, stimuli, key=f"emovec-stimuli-{job[:8]}", pure=False)
        futures = {client.submit(_run_shard, job, model_spec, table, store_path, opts, (k, shards), allow,
                                 key=f"emovec-extract-{job[:8]}-shard-{k}-of-{shards}", pure=False): (k, shards)
                   for k in range(shards)}
        try:
            with tqdm(total=shards, desc="shards", unit="shard", disable=not opts.progress) as bar:
                for future in as_completed(futures, loop=client.loop):  # type: ignore[no-untyped-call]
                    try:
                        result.shards.append(future.result())
                    except Exception as exc:  # the task never ran to its end in _run_shard
                        result.shards.append(_failed_task(futures[future], exc))
                    bar.update(1)
        except KeyboardInterrupt:
            client.cancel(list(futures))
            raise Interrupted(f"stopped waiting for the shards of {store_path!r}; those not yet started are "
                              "cancelled, those running go on to the end of their range (every finished batch "
                              "is kept); run the same command again to resume") from None
        finally:
            with suppress(Exception):  # freeing the workers' models must not hide what happened
                client.run(_release, job)
        result.shards.sort(key=lambda s: s.shard)
        failed = [s for s in result.shards if s.error]
        if failed:
            raise _failure_line(failed, shards, store_path)
        result.finalized = any(s.result is not None and s.result.finalized for s in result.shards)
        if not result.finalized:
            try:
                result.finalized = bool(client.submit(_finish, store_path, pure=False).result())
            except EmovecError:
                raise
            except Exception as exc:
                raise ShardFailedError(f"every shard of {store_path!r} succeeded, but finalizing it on a worker "
                                       f"failed: {one_line(exc)}") from None
    if not result.finalized:
        raise IncompleteStoreError(f"all {shards} shards of {store_path!r} succeeded, yet it is not complete; "
                                   f"`emovec store finalize {store_path}` says which batches are missing")
    return result
