"""Storage dtypes: float32, float16 (overflow-checked) and bfloat16 kept as raw uint16 bits.

zarr has no bfloat16 data type, so bf16 values are stored as their uint16 bit patterns with the
attribute ``emovec_logical_dtype = "bfloat16"``; decoding is a 16-bit left shift into a float32,
which is exact.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

from emovec.common.dtype_names import FLOAT_DTYPES, canonical_dtype

from .errors import InputError, NonFiniteActivationError

StorageDtype = Literal["float32", "float16", "bfloat16"]
STORAGE_DTYPES: tuple[str, ...] = FLOAT_DTYPES

#: The largest finite float16 value.
FLOAT16_MAX = 65504.0
#: Bit pattern of a quiet bfloat16 NaN; the fill value of bf16-bits arrays, so unwritten rows decode to NaN.
BF16_NAN_BITS = 0x7FC0


def parse_storage_dtype(value: str) -> StorageDtype:
    """Validate a storage dtype name ("float32", "float16", "bfloat16"; aliases fp32/fp16/half/bf16)."""
    name = canonical_dtype(value)
    if name not in STORAGE_DTYPES:
        raise InputError(f"unknown storage dtype {value!r}; expected one of {', '.join(STORAGE_DTYPES)}")
    return name  # type: ignore[return-value]


#: fp16 storage only with 2x headroom below float16's maximum (store-notes §2.5).
FP16_SAFE_MAX = FLOAT16_MAX / 2


def storage_for_peak(peak: float, compute_dtype: str) -> StorageDtype:
    """The storage dtype for activations whose screened max |x| is ``peak``.

    float16 when ``peak`` leaves 2x headroom below float16's maximum (float16 keeps 3 more mantissa
    bits than bfloat16); otherwise bfloat16 bits after bf16 compute (nothing finer was computed) and
    float32 after any other compute dtype.
    """
    if peak < FP16_SAFE_MAX:
        return "float16"
    return "bfloat16" if compute_dtype == "bfloat16" else "float32"


def physical_dtype(storage: StorageDtype) -> np.dtype:
    """The numpy dtype written to disk for a storage dtype."""
    return np.dtype({"float32": "<f4", "float16": "<f2", "bfloat16": "<u2"}[storage])


def fill_value(storage: StorageDtype) -> float | int:
    """The zarr fill value: NaN, so rows never written read back as NaN."""
    return BF16_NAN_BITS if storage == "bfloat16" else float("nan")


def float32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (nearest, ties to even) and return the uint16 bit patterns.

    Values that are already bfloat16 (e.g. computed in bf16 and upcast) convert exactly.
    """
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((u >> 16) & 1) + np.uint32(0x7FFF)
    bits = ((u + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        bits[nan] = BF16_NAN_BITS
    return bits


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """Decode uint16 bfloat16 bit patterns to float32 (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


#: float16 casting rounds |x| >= 65520 to inf; below that it rounds to at most 65504.
_FLOAT16_OVERFLOW = 65520.0


def encode_batch(data: np.ndarray, storage: StorageDtype, layers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cast a float batch ``[layer, rows, hidden]`` to its storage form, refusing non-finite values.

    Returns the encoded batch and max |x| per layer (one pass over the data serves both checks).
    Raises :class:`NonFiniteActivationError` naming the layer (hidden_states index) and value when
    the input is non-finite or a value would overflow float16.
    """
    data = np.asarray(data, dtype=np.float32)
    max_abs = np.abs(data).max(axis=(1, 2)) if data.size else np.zeros(data.shape[0], np.float32)
    bad = ~np.isfinite(max_abs)
    if bad.any():
        raise NonFiniteActivationError(
            f"non-finite activation at layer {int(layers[int(np.argmax(bad))])} (the model produced "
            "NaN/inf; try a wider compute dtype such as float32)")
    if storage == "float32":
        return data, max_abs
    if storage == "float16":
        over = max_abs >= _FLOAT16_OVERFLOW
        if over.any():
            pos = int(np.argmax(over))
            raise NonFiniteActivationError(
                f"float16 overflow at layer {int(layers[pos])}: |x| = {float(max_abs[pos]):.6g} > "
                f"{FLOAT16_MAX:g}; store as float32 or bfloat16 instead")
        return data.astype("<f2"), max_abs
    return float32_to_bf16_bits(data), max_abs
