"""Small helpers several benchmarks share: precision names -> torch dtypes, the gpu_only skip.

A leading underscore keeps the registry from importing this module as a benchmark.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _torch_dtypes() -> dict[str, Any]:
    import torch

    return {"fp64": torch.float64, "fp32": torch.float32, "tf32": torch.float32,  # tf32: fp32 storage
            "bf16": torch.bfloat16, "fp16": torch.float16}


def torch_dtype(name: str) -> Any:
    """torch dtype of a precision name (fp64 ... fp16; fp8 depends on the device: gemm.fp8_dtype)."""
    return _torch_dtypes()[name]


def gpu_only_reason(gpu_only: bool, ctx: Any, sized: str) -> str | None:
    """Skip reason of a `gpu_only` case on a CPU device; `sized` says what the case holds."""
    if gpu_only and not ctx.is_cuda:
        return f"gpu_only: this case is sized for a GPU ({sized}); device is {ctx.device}"
    return None
