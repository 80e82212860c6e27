"""GEMM shapes without torch: gemm's config, its (M, N, K) rule and bytes moved per call.

Shared by benchmarks/gemm.py and analysis/plots.py (the roofline reads stored gemm cases and
must not import torch). A leading underscore keeps the registry from importing it as a benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

from aifbench.benchmarks.base import param
from aifbench.units import DTYPE_BYTES

SHAPES = ("mnk", "square", "qkv", "attn_out", "mlp_up", "mlp_down")
MAX_BUFFERS = 16


def out_dtype(dtype: str) -> str:
    """Precision of C: the inputs' own, except fp8 GEMMs (torch._scaled_mm) write bf16."""
    return "bf16" if dtype == "fp8" else dtype


def bytes_moved(m: int, n: int, k: int, dtype: str) -> int:
    """Bytes of A (M x K), B (K x N) and C (M x N) of one GEMM: its minimum memory traffic."""
    return (m * k + k * n) * DTYPE_BYTES[dtype] + m * n * DTYPE_BYTES[out_dtype(dtype)]


@dataclass(frozen=True, kw_only=True, slots=True)
class GemmConfig:
    shape: str = param("mnk", "how M, N, K are chosen: mnk (m, n, k), square (M = N = K = m), or an LLM projection "
                       "from tokens and hidden: qkv, attn_out, mlp_up, mlp_down", choices=SHAPES)
    m: int = param(1024, "rows of A and C (shape mnk); the edge for shape square; other shapes set it", min=1)
    n: int = param(1024, "columns of B and C (shape mnk); other shapes set it", min=1)
    k: int = param(1024, "inner dimension (shape mnk); other shapes set it", min=1)
    tokens: int = param(4096, "M of the LLM shapes: tokens per step (batch x sequence)", min=1)
    hidden: int = param(4096, "model width of the LLM shapes", min=1)
    ffn_hidden: int = param(0, "MLP width of mlp_up/mlp_down; 0 = 4 x hidden", min=0)
    dtype: str = param("bf16", "input precision (fp8: e4m3 inputs, bf16 output)", choices=tuple(DTYPE_BYTES))
    buffers: int = param(0, "input/output sets rotated between calls; 0 = enough to exceed 4x the "
                         "last-level cache (at most 16)", min=0, max=MAX_BUFFERS)
    fp8_fast_accum: bool = param(False, "fp8 only: torch._scaled_mm use_fast_accum (Hopper's faster, less "
                                 "precise accumulation)")
    bare_loop: bool = param(False, "also time torch.matmul (fp8: torch._scaled_mm) called directly in a bare loop "
                            "and report bare_loop_tflops and harness_overhead_pct")
    warmup_s: float = param(0.0, "seconds of untimed calls after the suite's warm-up count, so clocks and "
                            "power settle before timing (s)", min=0.0, max=600.0)
    gpu_only: bool = param(False, "skip this case on a CPU device, with the reason (cases sized for a GPU)")
    min_sample_s: float = param(1e-3, "shortest timed sample (s): calls per sample rise above the suite's "
                                "timing.inner until one sample lasts this long, so launch latency is amortised; "
                                "0 = timing.inner", min=0.0, max=10.0)
    check_size: int = param(64, "edge of the square correctness check against float64", min=16, max=4096)

    def __post_init__(self) -> None:
        # m, n, k always hold the GEMM's own dimensions, so stored params and labels never show
        # defaults the shape ignores (square: N = K = m; LLM shapes: from tokens and hidden)
        for name, value in zip("mnk", dims(self)):
            object.__setattr__(self, name, value)


def dims(c: GemmConfig) -> tuple[int, int, int]:
    """(M, N, K) of a config."""
    ffn = c.ffn_hidden or 4 * c.hidden
    return {"mnk": (c.m, c.n, c.k), "square": (c.m, c.m, c.m),
            "qkv": (c.tokens, 3 * c.hidden, c.hidden), "attn_out": (c.tokens, c.hidden, c.hidden),
            "mlp_up": (c.tokens, ffn, c.hidden), "mlp_down": (c.tokens, c.hidden, ffn)}[c.shape]
