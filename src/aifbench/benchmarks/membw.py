"""Device memory bandwidth, STREAM semantics: GB/s = (bytes read + bytes written) / median time.

The four STREAM kernels (McCalpin, https://www.cs.virginia.edu/stream/ref.html), on arrays
a, b, c of `size_bytes` each and a scalar q:
    copy   c = a          2 arrays moved per element (1 read, 1 write)
    scale  b = q * c      2
    add    c = a + b      3 (2 reads, 1 write)
    triad  a = b + q * c  3
Each case times one kernel; every kernel leaves its inputs unchanged, so repeats are identical.
Each is one torch kernel (triad is torch.add(b, c, alpha=q): one fused pass). Arrays start at
STREAM's values in exact binary fractions (a = 1, b = 2, c = 0.5, q = 3), so the check is exact:
every element of the output equals its expected value (min and max, no temporary array).
The default size (1 GiB per array) is far above any GPU L2 or CPU L3; a size whose working set
is under 4x the last-level cache is still measured, with a note in the detail column.
`gpu_only` skips a case on a CPU device (the acceptance suite's multi-GiB arrays).
"""

from __future__ import annotations

from typing import Callable

import torch

from aifbench.benchmarks._shared import gpu_only_reason, torch_dtype
from aifbench.benchmarks.configs import MEMBW
from aifbench.benchmarks.configs import MembwConfig  # noqa: F401 (re-exported)
from aifbench.benchmarks.base import Benchmark, Measurement, rate_metrics, time_metrics
from aifbench.errors import CorrectnessError
from aifbench.benchmarks.registry import register
from aifbench.timing import Timer
from aifbench.units import DTYPE_BYTES, GiB, MiB

ARRAYS_MOVED = {"copy": 2, "scale": 2, "add": 3, "triad": 3}
INIT = {"a": 1.0, "b": 2.0, "c": 0.5}
Q = 3.0
# (output array, expected value) after one kernel from INIT
EXPECTED = {"copy": ("c", INIT["a"]), "scale": ("b", Q * INIT["c"]),
            "add": ("c", INIT["a"] + INIT["b"]), "triad": ("a", INIT["b"] + Q * INIT["c"])}


def kernel(op: str, arrays: dict[str, torch.Tensor]) -> Callable[[], object]:
    """The STREAM kernel `op` on arrays a, b, c, writing in place (no allocation per call)."""
    a, b, c = arrays["a"], arrays["b"], arrays["c"]
    return {"copy": lambda: c.copy_(a),
            "scale": lambda: torch.mul(c, Q, out=b),
            "add": lambda: torch.add(a, b, out=c),
            "triad": lambda: torch.add(b, c, alpha=Q, out=a)}[op]


def reset(arrays: dict[str, torch.Tensor]) -> None:
    for name, value in INIT.items():
        arrays[name].fill_(value)


def check_result(op: str, arrays: dict[str, torch.Tensor]) -> None:
    """Every element of the kernel's output equals the exact expected value."""
    name, want = EXPECTED[op]
    out = arrays[name]
    lo, hi = out.min().item(), out.max().item()
    if lo != want or hi != want:
        raise CorrectnessError(f"STREAM {op}: {name} should be {want} everywhere, found values in [{lo}, {hi}]")


@register
class Membw(Benchmark):
    declaration = MEMBW
    description = "device memory bandwidth, STREAM copy/scale/add/triad, bytes read + written per second"

    def _elements(self) -> int:
        return self.config.size_bytes // DTYPE_BYTES[self.config.dtype]

    def skip_reason(self) -> str | None:
        from aifbench.hardware.detect import memory_skip_reason

        need = 3 * self._elements() * DTYPE_BYTES[self.config.dtype]
        return gpu_only_reason(self.config.gpu_only, self.ctx, f"{need / GiB:.1f} GiB") or memory_skip_reason(need, self.ctx.device, self.ctx.world_size, " for 3 arrays")

    def setup(self) -> None:
        n, dt, dev = self._elements(), torch_dtype(self.config.dtype), self.ctx.device
        self.arrays = {name: torch.empty(n, device=dev, dtype=dt) for name in INIT}
        self.call = kernel(self.config.op, self.arrays)

    def check(self) -> None:
        reset(self.arrays)
        self.call()
        check_result(self.config.op, self.arrays)

    def measure(self, timer: Timer) -> Measurement:
        stats = timer.time(self.call, extend=True)  # >= Regions.min_timed_s of telemetry
        check_result(self.config.op, self.arrays)  # repeats leave the output as it was
        n_bytes = self._elements() * DTYPE_BYTES[self.config.dtype]
        moved = ARRAYS_MOVED[self.config.op] * n_bytes
        out = time_metrics(stats)
        detail = f"op={self.config.op} moved={moved} B per call ({ARRAYS_MOVED[self.config.op]} arrays)"
        detail += self._cache_note(3 * n_bytes)
        out.metrics += rate_metrics("gbps", moved, stats, 1e-9, self.ctx.peak("hbm_gbps"), detail)
        return out

    def _cache_note(self, working_set: int) -> str:
        from aifbench.hardware.detect import last_level_cache_bytes

        llc = last_level_cache_bytes(self.ctx.device)
        if llc and working_set < 4 * llc:
            return f"; working set {working_set / MiB:.0f} MiB < 4x last-level cache ({llc / MiB:.0f} MiB): cache bandwidth included"
        return ""

    def teardown(self) -> None:
        self.arrays = {}
        self.call = None
