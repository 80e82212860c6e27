"""Host <-> device copy bandwidth: GB/s = bytes across the link / median time.

direction h2d (host -> GPU), d2h (GPU -> host), or bidir (both at once on two CUDA streams;
the rate is both directions summed and its peak is twice the per-direction peak). Host memory
is pinned (page-locked: the copy engines DMA straight from it) or pageable (the driver stages
through a pinned bounce buffer, as an unprepared application gets). The link the GPU sits on is
detected (PCIe generation and width from NVML or sysfs, or NVLink-C2C on GH200) and recorded
beside every rate; pct_of_peak divides by the catalog's datasheet link figure, so a link that
trained below its datasheet speed shows up as a low percentage (and the detail names both).
Every copy is checked byte for byte before timing. GPU only: a CPU device has no host link.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from aifbench.benchmarks.configs import HOSTLINK
from aifbench.benchmarks.configs import HostlinkConfig  # noqa: F401 (re-exported)
from aifbench.benchmarks.base import Benchmark, Measurement, rate_metrics, time_metrics
from aifbench.errors import CorrectnessError
from aifbench.benchmarks.registry import register
from aifbench.timing import Timer

def link_peak(direction: str, catalog: tuple[float | None, str], detected: Any) -> tuple[float | None, str]:
    """Peak for the rate of `direction`: the catalog's per-direction host link figure (doubled
    for bidir); without one, the detected link's theoretical rate, saying so."""
    value, source = catalog
    if value is None and detected is not None and getattr(detected, "max_gbps", None):
        value, source = detected.max_gbps, f"detected {detected.describe()} (no catalog figure: {source})"
    if value is not None and direction == "bidir":
        return 2 * value, f"2 x per-direction peak (both directions at once): {source}"
    return value, source


def link_detail(detected: Any, catalog_link: str) -> str:
    """The detected link, and a warning when it differs from what the catalog's SKU has."""
    text = f"link: {detected.describe()}"
    if catalog_link == "NVLink-C2C":
        if detected.kind != "nvlink-c2c":
            text += "; C2C not confirmed by NVML (catalog says NVLink-C2C)"
    elif catalog_link.startswith("PCIe") and detected.kind == "pcie" and detected.max_gen:
        seen = f"PCIe Gen{detected.max_gen} x{detected.max_width}"
        if seen != catalog_link:
            text += f"; MISMATCH: the catalog's SKU has {catalog_link}"
    return text


@register
class Hostlink(Benchmark):
    declaration = HOSTLINK
    description = "host<->GPU copy bandwidth (h2d, d2h, both at once; pinned and pageable) vs the detected link"

    def _directions(self) -> tuple[str, ...]:
        return ("h2d", "d2h") if self.config.direction == "bidir" else (self.config.direction,)

    def skip_reason(self) -> str | None:
        if not self.ctx.is_cuda:
            return "hostlink measures host<->GPU copies; on device cpu host and device memory are the same"
        from aifbench.hardware.detect import memory_skip_reason

        need = len(self._directions()) * self.config.size_bytes
        # host: the buffers, plus the source pattern staged for d2h
        return (memory_skip_reason(need, self.ctx.device, what=" of device buffers")
                or memory_skip_reason(2 * need, "cpu", self.ctx.world_size, " of host buffers", fraction=0.8))

    def setup(self) -> None:
        n, dev = self.config.size_bytes, self.ctx.device
        pin = self.config.memory == "pinned"
        gen = torch.Generator().manual_seed(0)
        self.pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # direction -> (src, dst)
        for d in self._directions():
            host = torch.empty(n, dtype=torch.uint8, pin_memory=pin)
            device = torch.empty(n, dtype=torch.uint8, device=dev)
            if d == "h2d":
                host.random_(0, 256, generator=gen)  # touches every page, as an application would
                self.pairs[d] = (host, device)
            else:
                host.zero_()
                device.copy_(torch.empty(n, dtype=torch.uint8).random_(0, 256, generator=gen))
                self.pairs[d] = (device, host)
        self.streams = {d: torch.cuda.Stream(device=dev) for d in self.pairs}
        self.call = self._make_call()

    def _make_call(self) -> Callable[[], None]:
        if len(self.pairs) == 1:
            (src, dst), = self.pairs.values()
            return lambda: dst.copy_(src, non_blocking=True)
        pairs, streams = self.pairs, self.streams

        def both() -> None:
            current = torch.cuda.current_stream()
            for d, (src, dst) in pairs.items():
                streams[d].wait_stream(current)
                with torch.cuda.stream(streams[d]):
                    dst.copy_(src, non_blocking=True)
            for s in streams.values():
                current.wait_stream(s)
        return both

    def check(self) -> None:
        self.call()
        torch.cuda.synchronize(self.ctx.device)
        for d, (src, dst) in self.pairs.items():
            if not torch.equal(src.cpu(), dst.cpu()):
                raise CorrectnessError(f"{d} copy of {self.config.size_bytes} B did not reproduce the source")

    def measure(self, timer: Timer) -> Measurement:
        from aifbench.hardware.detect import host_link

        stats = timer.time(self.call, extend=True)  # >= Regions.min_timed_s of telemetry
        detected = host_link(self.ctx.device)
        entry = getattr(self.ctx.peak_lookup, "entry", None)
        peak = link_peak(self.config.direction, self.ctx.peak("host_link_gbps"), detected)
        detail = f"{self.config.direction} {self.config.memory}; " + link_detail(detected, getattr(entry, "host_link", ""))
        moved = len(self.pairs) * self.config.size_bytes
        out = time_metrics(stats)
        out.metrics += rate_metrics("link_gbps", moved, stats, 1e-9, peak, detail)
        return out

    def teardown(self) -> None:
        self.pairs, self.streams, self.call = {}, {}, None
