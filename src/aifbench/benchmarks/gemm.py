"""Dense GEMM throughput: C = A @ B, TFLOP/s = 2*M*N*K / median time (DESIGN §4).

Checked against a float64 reference at a small size before timing. tf32 is fp32 inputs with
TF32 tensor-core math allowed (CUDA only); bf16 and fp16 need hardware support.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aifbench.benchmarks.base import Benchmark, Measurement, param, rate_metrics, time_metrics
from aifbench.errors import CorrectnessError
from aifbench.registry import register
from aifbench.timing import Timer

DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# relative Frobenius error allowed against float64 at K = check size (unit roundoff * sqrt(K) scale)
TOLERANCE = {"fp32": 1e-4, "tf32": 5e-3, "bf16": 2e-2, "fp16": 5e-3}


@dataclass(frozen=True, kw_only=True, slots=True)
class GemmConfig:
    m: int = param(1024, "rows of A and C", min=1)
    n: int = param(1024, "columns of B and C", min=1)
    k: int = param(1024, "inner dimension", min=1)
    dtype: str = param("bf16", "input and output precision", choices=tuple(DTYPES))
    check_size: int = param(64, "edge of the square correctness check against float64", min=1, max=4096)


def dtype_skip_reason(dtype: str, device: str) -> str | None:
    """Why `dtype` matmul cannot be measured on `device`, or None."""
    if device.startswith("cuda"):
        if dtype == "bf16" and not torch.cuda.is_bf16_supported():
            return "bf16 needs compute capability 8.0 or newer"
        if dtype == "tf32" and torch.cuda.get_device_capability(device)[0] < 8:
            return "tf32 needs compute capability 8.0 or newer"
        return None
    if dtype == "tf32":
        return "tf32 is a CUDA tensor-core mode; on CPU use fp32"
    return None


def free_bytes(device: str) -> int | None:
    if device.startswith("cuda"):
        return torch.cuda.mem_get_info(device)[0]
    return None


class _Tf32:
    """Context manager that allows TF32 matmul math only for dtype 'tf32'."""

    def __init__(self, dtype: str):
        self.allow = dtype == "tf32"

    def __enter__(self):
        self.saved = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = self.allow

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32 = self.saved


@register
class Gemm(Benchmark):
    name = "gemm"
    description = "dense matmul TFLOP/s (fp32, tf32, bf16, fp16), checked against float64"
    Config = GemmConfig
    emits = ("tflops", "time_s")

    def skip_reason(self) -> str | None:
        c = self.config
        reason = dtype_skip_reason(c.dtype, self.ctx.device)
        if reason:
            return reason
        need = (c.m * c.k + c.k * c.n + c.m * c.n) * torch.finfo(DTYPES[c.dtype]).bits // 8
        free = free_bytes(self.ctx.device)
        if free is not None and need > 0.9 * free:
            return f"needs {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free on {self.ctx.device}"
        return None

    def setup(self) -> None:
        c, dev, dt = self.config, self.ctx.device, DTYPES[self.config.dtype]
        gen = torch.Generator(device="cpu").manual_seed(0)
        self.a = torch.randn(c.m, c.k, generator=gen).to(dev, dt)
        self.b = torch.randn(c.k, c.n, generator=gen).to(dev, dt)
        self.c = torch.empty(c.m, c.n, device=dev, dtype=dt)

    def check(self) -> None:
        s, dev, dt = self.config.check_size, self.ctx.device, DTYPES[self.config.dtype]
        gen = torch.Generator(device="cpu").manual_seed(1)
        a64, b64 = torch.randn(s, s, generator=gen, dtype=torch.float64), torch.randn(s, s, generator=gen, dtype=torch.float64)
        with _Tf32(self.config.dtype):
            got = torch.matmul(a64.to(dev, dt), b64.to(dev, dt)).double().cpu()
        ref = a64.to(dt).double() @ b64.to(dt).double()  # same rounded inputs, exact-ish product
        err = (torch.linalg.norm(got - ref) / torch.linalg.norm(ref)).item()
        if not err <= TOLERANCE[self.config.dtype]:
            raise CorrectnessError(f"{self.config.dtype} matmul relative error {err:.2e} > {TOLERANCE[self.config.dtype]:.0e}")

    def measure(self, timer: Timer) -> Measurement:
        c = self.config
        with _Tf32(c.dtype):
            stats = timer.time(lambda: torch.matmul(self.a, self.b, out=self.c))
        out = time_metrics(stats)
        out.metrics += rate_metrics("tflops", 2.0 * c.m * c.n * c.k, stats, 1e-12, self.ctx.peak(f"tflops:{c.dtype}"))
        return out

    def teardown(self) -> None:
        self.a = self.b = self.c = None
