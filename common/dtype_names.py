"""The float dtype names that compute and storage options accept, with their aliases.

Standard library only, so that the CLI builds its ``--dtype`` and ``--storage-dtype`` choices from
the same list the Python API accepts without importing numpy or torch.
"""
from __future__ import annotations

#: The canonical float dtype names, widest first.
FLOAT_DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")
#: Other spellings accepted for them.
DTYPE_ALIASES: dict[str, str] = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}
#: Every name a compute or storage dtype option accepts (``auto`` = decided by policy).
DTYPE_CHOICES: tuple[str, ...] = ("auto", *FLOAT_DTYPES, *DTYPE_ALIASES)


def canonical_dtype(name: str) -> str | None:
    """``auto`` or the canonical name of ``name`` (aliases resolved); None when it is not a dtype name."""
    if name == "auto" or name in FLOAT_DTYPES:
        return name
    return DTYPE_ALIASES.get(name)
