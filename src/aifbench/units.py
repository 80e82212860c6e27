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


def parse_bytes(text: str | int) -> int:
    """'4KiB' -> 4096, '2GB' -> 2e9, 1024 -> 1024. Binary (KiB) and decimal (KB) suffixes."""
    if isinstance(text, int):
        return text
    s = str(text).strip()
    for suffix, factor in (("TiB", 2**40), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB),
                           ("TB", TB), ("GB", GB), ("MB", MB), ("KB", KB), ("B", 1)):
        if s.endswith(suffix):
            number = s[: -len(suffix)].strip()
            return int(float(number) * factor)
    return int(float(s))


def format_bytes(n: float) -> str:
    """Human-readable binary size: 1536 -> '1.5 KiB'."""
    for suffix, factor in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(n) >= factor:
            return f"{n / factor:.4g} {suffix}"
    return f"{int(n)} B"
