"""GEMM shapes without torch: gemm's config, its (M, N, K) rule and bytes moved per call.

Shared by benchmarks/gemm.py and analysis/plots.py (the roofline reads stored gemm cases and
must not import torch). A leading underscore keeps the registry from importing it as a benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

from aifbench.benchmarks.base import param
from aifbench.units import DTYPE_BYTES

SHAPES = ("mnk", "square", "qkv", "attn_out", "mlp_up", "mlp_down")
DEFAULT_TOKENS = 4096
DEFAULT_HIDDEN = 4096
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
    tokens: int | None = param(None, "M of the LLM shapes: tokens per step (batch x sequence); None = 4096; "
                               "mnk and square ignore it and store None", min=1)
    hidden: int | None = param(None, "model width of the LLM shapes; None = 4096; mnk and square ignore it and "
                               "store None", min=1)
    ffn_hidden: int | None = param(None, "MLP width of mlp_up/mlp_down; None = 4 x hidden; the other shapes ignore "
                                   "it and store None", min=1)
    dtype: str = param("bf16", "input precision (fp8: e4m3 inputs, bf16 output)", choices=tuple(DTYPE_BYTES))
    buffers: int = param(0, "input/output sets rotated between calls; 0 = enough to exceed 4x the "
                         "last-level cache (at most 16)", min=0, max=MAX_BUFFERS)
    fp8_fast_accum: bool = param(False, "fp8 only: torch._scaled_mm use_fast_accum (Hopper's faster, less "
                                 "precise accumulation)")
    bare_loop: bool = param(False, "also time torch.matmul (fp8: torch._scaled_mm) called directly in a bare loop "
                            "and report bare_loop_tflops and harness_overhead_pct")
    ab_rounds: int = param(10, "bare_loop only: A/B rounds (harness, bare loop; ABBA order) behind "
                           "harness_overhead_pct and its 95 % interval", min=2, max=200)
    ab_round_s: float = param(0.1, "bare_loop only: length of one side's timed segment in an A/B round (s)",
                              min=0.0, max=60.0)
    burst: bool = param(False, "also report burst_tflops: a short window of calls from an idle GPU (boost clocks, "
                        "before the power limit pulls them down), measured before the sustained figure")
    burst_idle_s: float = param(2.0, "burst only: seconds the GPU idles before the burst window (s)", min=0.0,
                                max=60.0)
    burst_s: float = param(0.1, "burst only: length of the burst window (s; at least 10 calls, each timed)",
                           min=0.0, max=10.0)
    warmup_s: float = param(0.0, "seconds of untimed calls after the suite's warm-up count, so clocks and "
                            "power settle before timing (s)", min=0.0, max=600.0)
    gpu_only: bool = param(False, "skip this case on a CPU device, with the reason (cases sized for a GPU)")
    min_sample_s: float = param(1e-3, "shortest timed sample (s): calls per sample rise above the suite's "
                                "timing.inner until one sample lasts this long, so launch latency is amortised; "
                                "0 = timing.inner", min=0.0, max=10.0)
    check_size: int = param(64, "edge of the square correctness check against float64", min=16, max=4096)

    def __post_init__(self) -> None:
        # Stored params (and the labels made of them) hold what the GEMM really used and
        # nothing it ignored: m, n, k are always the GEMM's own dimensions; tokens and hidden
        # are resolved for the LLM shapes and empty (None) for mnk/square, ffn_hidden resolved
        # for mlp_up/mlp_down and empty otherwise. A value the shape ignores is dropped, not
        # refused: `--set gemm.hidden=X` reaches every gemm block of a suite. Idempotent, so
        # GemmConfig(**asdict(c)) == c; rows stored before this rule (integer tokens/hidden on
        # mnk shapes, ffn_hidden=0 for "4 x hidden") load to the same dimensions.
        tokens = hidden = ffn = None
        if self.shape == "mnk":
            m, n, k = self.m, self.n, self.k
        elif self.shape == "square":
            m = n = k = self.m
        elif self.shape in SHAPES:
            tokens = DEFAULT_TOKENS if self.tokens is None else self.tokens
            hidden = DEFAULT_HIDDEN if self.hidden is None else self.hidden
            if self.shape in ("mlp_up", "mlp_down"):
                ffn = self.ffn_hidden or 4 * hidden  # 0: how rows stored before said "4 x hidden"
            m, n, k = {"qkv": (tokens, 3 * hidden, hidden), "attn_out": (tokens, hidden, hidden),
                       "mlp_up": (tokens, ffn, hidden), "mlp_down": (tokens, hidden, ffn)}[self.shape]
        else:
            raise ValueError(f"gemm shape {self.shape!r} not in {', '.join(SHAPES)}")
        for name, value in (("m", m), ("n", n), ("k", k), ("tokens", tokens), ("hidden", hidden), ("ffn_hidden", ffn)):
            object.__setattr__(self, name, value)


def dims(c: GemmConfig) -> tuple[int, int, int]:
    """(M, N, K) of a config (its m, n, k: __post_init__ sets them from the shape)."""
    return c.m, c.n, c.k
