"""Device memory bandwidth: GB/s = (bytes read + bytes written) / median time (DESIGN §4).

op 'copy' is STREAM's copy (b = a): one array read, one written, 2 * size_bytes moved.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aifbench.benchmarks.base import Benchmark, Measurement, param, rate_metrics, time_metrics
from aifbench.errors import CorrectnessError
from aifbench.registry import register
from aifbench.timing import Timer
from aifbench.units import GiB


@dataclass(frozen=True, kw_only=True, slots=True)
class MembwConfig:
    size_bytes: int = param(1 * GiB, "bytes of each array", min=4096)
    op: str = param("copy", "STREAM operation", choices=("copy",))


@register
class Membw(Benchmark):
    name = "membw"
    description = "device memory bandwidth (STREAM copy), bytes read + written per second"
    Config = MembwConfig
    emits = ("gbps", "time_s")

    def skip_reason(self) -> str | None:
        if self.ctx.is_cuda:
            free = torch.cuda.mem_get_info(self.ctx.device)[0]
            if 2 * self.config.size_bytes > 0.9 * free:
                return f"needs {2 * self.config.size_bytes / GiB:.1f} GiB, {free / GiB:.1f} GiB free"
        return None

    def setup(self) -> None:
        n = self.config.size_bytes // 4
        self.a = torch.arange(n, device=self.ctx.device, dtype=torch.float32)
        self.b = torch.empty_like(self.a)

    def check(self) -> None:
        self.b.copy_(self.a)
        if not torch.equal(self.a, self.b):
            raise CorrectnessError("copy produced a different array")

    def measure(self, timer: Timer) -> Measurement:
        stats = timer.time(lambda: self.b.copy_(self.a))
        moved = 2 * self.a.numel() * self.a.element_size()
        out = time_metrics(stats)
        out.metrics += rate_metrics("gbps", moved, stats, 1e-9, self.ctx.peak("hbm_gbps"))
        return out

    def teardown(self) -> None:
        self.a = self.b = None
