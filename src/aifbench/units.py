"""Units, decided once: GB = 1e9 bytes, GiB = 2**30 bytes, TFLOP = 1e12 FLOP."""

from __future__ import annotations

KB = 10**3
MB = 10**6
GB = 10**9
TB = 10**12
KiB = 2**10
MiB = 2**20
GiB = 2**30
TFLOP = 10**12
NS_PER_S = 10**9

# bytes per element of each precision name used in configs (fp8 = e4m3/e5m2; tf32 is stored as fp32)
DTYPE_BYTES = {"fp64": 8, "fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1}


def format_bytes(n: float) -> str:
    """Human-readable binary size: 1536 -> '1.5 KiB'."""
    for suffix, factor in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(n) >= factor:
            return f"{n / factor:.4g} {suffix}"
    return f"{int(n)} B"
