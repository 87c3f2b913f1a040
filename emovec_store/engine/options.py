"""`ExtractOptions`: what an extraction is asked to do, checked once before any work starts."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from emovec.common.dtype_names import DTYPE_CHOICES, canonical_dtype

from ..dtypes import parse_storage_dtype
from ..errors import InputError
from .readouts import DEFAULT_READOUTS, ReadoutSpec, parse_readout


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``k/n`` → (k, n) with 0 <= k < n."""
    if text is None:
        return None
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit()) or not 0 <= int(k) < int(n):
        raise InputError(f"--shard takes k/n with 0 <= k < n, got {text!r}", field="shard")
    return int(k), int(n)


def _at_least(value: float | None, low: float, name: str) -> None:
    if value is not None and value < low:
        raise InputError(f"--{name.replace('_', '-')} must be at least {low:g}, got {value}", field=name)


@dataclass(frozen=True)
class ExtractOptions:
    """Options of :func:`emovec_store.engine.extract`; invalid values raise :class:`InputError` here.

    Names are normalised on construction: ``pooling`` becomes a tuple (None = the defaults),
    ``shard`` a ``(k, n)`` tuple, dtype aliases (``fp32``, ``bf16``...) their canonical names.

    Attributes
    ----------
    layers : ``"all"``, ``"every:K"``, ``"a,b,c"`` or a sequence of hidden_states indices.
    pooling : readout specs (see :mod:`emovec_store.engine.readouts`); None = ``mean_from:50`` for
        every stimulus plus ``assistant`` for implicit/intensity ones.
    dtype, storage_dtype : compute and storage dtypes (``auto`` = device policy and screening pass).
    device : ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``.
    batch_tokens : token budget per batch (rows x padded length).
    max_length : truncate longer stimuli (counted in the readout's attrs).
    shard : ``"k/n"`` or ``(k, n)``: fill only chunk range k of n (several processes, one store).
    chunk_rows : stimuli per chunk file (default: about 8 MiB per layer chunk); shards split chunks.
    sync_interval : seconds between commits of done flags (data is flushed first); a crash loses at
        most this much work.
    threads : torch threads on CPU (default ``$EMOVEC_THREADS``, else ``$OMP_NUM_THREADS``, else
        one per core this process may use).
    mps_recycle_mb : Apple MPS: when the Metal driver's memory passes this many MB after a batch, the
        batches so far are flushed and a fresh process continues from the store's done flags (None:
        80% of the GPU's recommended working set; 0: never; docs/hardware.md). Off on other devices.
    trust_remote_code : allow model code from the model's repository.
    store_text : also store the stimulus texts.
    progress : show a progress bar.
    """

    layers: str | Sequence[int] = "all"
    pooling: Sequence[str] | None = None
    dtype: str = "auto"
    storage_dtype: str = "auto"
    device: str = "auto"
    batch_tokens: int = 2048
    max_length: int | None = None
    shard: str | tuple[int, int] | None = None
    chunk_rows: int | None = None
    sync_interval: float = 1.0
    threads: int | None = None
    mps_recycle_mb: float | None = None
    trust_remote_code: bool = False
    store_text: bool = False
    progress: bool = True
    specs: tuple[ReadoutSpec, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pooling = None if self.pooling is None else tuple(self.pooling)
        specs = tuple(parse_readout(p) for p in (pooling or DEFAULT_READOUTS))
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise InputError(f"two pooling specs map to the same readout: {', '.join(names)}", field="pooling")
        dtype = canonical_dtype(self.dtype)
        if dtype is None:
            raise InputError(f"unknown --dtype {self.dtype!r}; choose from {', '.join(DTYPE_CHOICES)}",
                             field="dtype")
        storage = self.storage_dtype if self.storage_dtype == "auto" else parse_storage_dtype(self.storage_dtype)
        shard = self.shard if isinstance(self.shard, tuple) else parse_shard(self.shard)
        if shard is not None and not 0 <= shard[0] < shard[1]:
            raise InputError(f"shard (k, n) needs 0 <= k < n, got {shard}", field="shard")
        for name, low in (("batch_tokens", 1), ("max_length", 1), ("chunk_rows", 1), ("sync_interval", 0),
                          ("threads", 1), ("mps_recycle_mb", 0)):
            _at_least(getattr(self, name), low, name)
        for name, value in (("pooling", pooling), ("specs", specs), ("dtype", dtype), ("storage_dtype", storage),
                            ("shard", shard)):
            object.__setattr__(self, name, value)

    @property
    def shard_range(self) -> tuple[int, int] | None:
        """The shard as ``(k, n)`` (None = the whole store)."""
        assert not isinstance(self.shard, str)  # normalised on construction
        return self.shard

    @property
    def explicit_pooling(self) -> bool:
        """True when the caller chose the readouts (then an impossible one is an error, not a skip)."""
        return self.pooling is not None
