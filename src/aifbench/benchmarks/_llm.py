"""Helpers shared by llm_train and llm_infer: shapes from config fields, memory, per-token clocks.

A leading underscore keeps the registry from importing this module as a benchmark.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from aifbench.errors import SkipCase
from aifbench.timing import Timer
from aifbench.units import GiB

# llm_infer's decode check and its transformers peer (_llm_ref): ||cached - full|| / ||full|| allowed.
# Measured on CPU (tiny; llama3-1b cut to 4 layers): fp32 ~5e-7, fp16 ~7e-4, bf16 0.25 % / 0.7 %;
# deliberate bugs (position +1, mask off by one, a zeroed cache layer) gave 13-35 %. The bounds
# leave room for more layers and other kernels (flash vs efficient).
DECODE_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 4e-2}


def dtype_skip_reason(dtype: str, device: str) -> str | None:
    if device.startswith("cuda") and dtype == "bf16" and not torch.cuda.is_bf16_supported():
        return "bf16 needs compute capability 8.0 or newer"
    return None


def fit_reason(need_bytes: int, ctx, what: str) -> str | None:
    """'does not fit: <what> needs ...' when the rough estimate exceeds what is free
    (aifbench.hardware.detect, host RAM split among the ranks), or None."""
    from aifbench.hardware.detect import memory_skip_reason

    reason = memory_skip_reason(need_bytes, ctx.device, ctx.world_size, " (estimate, aifbench.models.flops)",
                                fraction=1.0)
    return f"does not fit: {what} {reason}" if reason else None


@contextlib.contextmanager
def oom_as_skip(what: str, need_bytes: int) -> Iterator[None]:
    """A CUDA out-of-memory error inside becomes SkipCase with the estimate: the estimate said it
    fits, the device disagreed (fragmentation, other processes, compiler workspaces)."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as exc:
        first = str(exc).split("\n")[0].split(". ")[0]
        raise SkipCase(f"does not fit: {what} ran out of device memory at run time ({first}); "
                       f"estimate {need_bytes / GiB:.1f} GiB (aifbench.models.flops)") from None


class PeakMemory:
    """Peak memory over a `with` region, in bytes.

    CUDA: torch.cuda.max_memory_allocated after resetting the peak at entry (memory held before
    the region, e.g. weights, is included). CPU (the metric dictionary's "peak RSS growth"): peak
    RSS minus RSS at entry; on Linux the kernel's VmHWM after resetting it at entry (write "5"
    to /proc/self/clear_refs, Linux >= 4.0; proc(5)), so no thread runs while timing; elsewhere
    getrusage's lifetime peak, an upper bound.
    """

    def __init__(self, device: str):
        self.device = device
        self.peak_bytes = 0
        self.detail = ""

    def __enter__(self) -> "PeakMemory":
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.detail = "torch.cuda.max_memory_allocated"
            return self
        import psutil

        self._start = psutil.Process().memory_info().rss
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self._hwm = True
            self.detail = "cpu: VmHWM (peak RSS, reset at start via /proc/self/clear_refs) - RSS at start"
        except OSError:
            self._hwm = False
            self.detail = "cpu: lifetime peak RSS (getrusage, an upper bound) - RSS at start"
        return self

    def __exit__(self, *exc) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)
            self.peak_bytes = int(torch.cuda.max_memory_allocated(self.device))
            return
        self.peak_bytes = max(0, (_vm_hwm_bytes() if self._hwm else _max_rss_bytes()) - self._start)


def _vm_hwm_bytes() -> int:
    """Peak resident set size from /proc/self/status ('VmHWM:   218392 kB')."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return _max_rss_bytes()


def _max_rss_bytes() -> int:
    """Lifetime peak RSS from getrusage (KiB on Linux, bytes on macOS)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def token_times(step: Callable[[int], object], n: int, timer: Timer) -> list[float]:
    """Seconds between the ends of consecutive calls step(0..n-1), measured without host syncs
    between tokens: one CUDA event after each step on GPU, timer.clock on CPU (or a test clock)."""
    if timer.uses_cuda_events:
        events = [torch.cuda.Event(enable_timing=True) for _ in range(n + 1)]
        events[0].record()
        for i in range(n):
            step(i)
            events[i + 1].record()
        events[-1].synchronize()
        return [events[i].elapsed_time(events[i + 1]) / 1e3 for i in range(n)]
    stamps = [timer.clock()]
    for i in range(n):
        step(i)
        stamps.append(timer.clock())
    return [(b - a) / 1e9 for a, b in zip(stamps, stamps[1:])]


def fmt_seq(values: Sequence[float], digits: int = 4) -> str:
    return ", ".join(f"{v:.{digits}g}" for v in values)
