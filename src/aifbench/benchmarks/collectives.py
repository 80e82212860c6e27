"""Collective communication across all ranks: algbw and busbw by the nccl-tests definitions.

nccl-tests doc/PERFORMANCE.md (NVIDIA/nccl-tests), with S the message size and n the ranks:
    algbw = S / t
    all_reduce                          busbw = algbw * 2(n-1)/n   S = bytes each rank reduces
    all_gather, reduce_scatter          busbw = algbw * (n-1)/n    S = bytes of the gathered
                                                                     output / the scattered input
    all_to_all                          busbw = algbw * (n-1)/n    S = bytes each rank sends
    broadcast, send_recv                busbw = algbw              S = buffer bytes / bytes sent
busbw is comparable to the per-direction bandwidth of the slowest link of a ring, so it is set
against the catalog's GPU-GPU link figure (one node only: across nodes the network bounds it).
Note NVLink SHARP (NVLS) can push all_reduce busbw above the link figure (>100 %).

All ranks run every case together (multi_rank). Before timing, every op runs once on
position-dependent data and each rank checks its received or reduced values exactly (small
integers; tolerance n·eps for fp16/bf16); ranks agree on skip, setup failure and the check, so
one rank's problem fails the case everywhere instead of hanging the others. Timed buffers hold
zeros for all_reduce (repeated in-place sums must not overflow; neither NCCL nor gloo does
data-dependent work). A barrier before every sample aligns the ranks outside the timed region.
Each rank keeps its own times (its rows carry its rank); rank 0 adds 'slowest_rank' rows from
the largest per-rank median, with every rank's median in the detail, so a slow rank is visible.
NCCL on GPUs, gloo on CPU (the process group the worker initialised).
"""

from __future__ import annotations

import socket

from aifbench.benchmarks import _collective_ops as ops
from aifbench.benchmarks._shared import gpu_only_reason, torch_dtype
from aifbench.benchmarks.configs import COLLECTIVES
from aifbench.benchmarks.configs import CollectivesConfig  # noqa: F401 (re-exported)
from aifbench.benchmarks.base import Benchmark, Measurement, Metric, rate_metrics, time_metrics
from aifbench.errors import CorrectnessError
from aifbench.benchmarks.registry import register
from aifbench.timing import Timer
from aifbench.units import DTYPE_BYTES, MiB

OPS = ops.OPS


def busbw_factor(op: str, n: int) -> float:
    """nccl-tests bus bandwidth factor for `op` on `n` ranks."""
    if op not in OPS:
        raise ValueError(f"unknown collective {op!r}")
    if op == "all_reduce":
        return 2.0 * (n - 1) / n
    if op in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n
    return 1.0


def algbw_busbw(op: str, n: int, size_bytes: float, time_s: float) -> tuple[float, float]:
    """(algbw, busbw) in GB/s for a message of `size_bytes` taking `time_s`."""
    algbw = size_bytes / time_s * 1e-9
    return algbw, algbw * busbw_factor(op, n)


@register
class Collectives(Benchmark):
    declaration = COLLECTIVES
    description = "all_reduce, all_gather, reduce_scatter, all_to_all, broadcast, send_recv: algbw/busbw (nccl-tests)"
    multi_rank = True

    @property
    def n(self) -> int:
        return self.ctx.world_size

    def _count(self) -> int:
        return ops.element_count(self.config.op, self.config.size_bytes, self.n, torch_dtype(self.config.dtype))

    def _local_skip_reason(self) -> str | None:
        from aifbench.hardware.detect import memory_skip_reason

        need = ops.memory_factor(self.config.op, self.n) * self._count() * DTYPE_BYTES[self.config.dtype]
        if self.ctx.is_cuda:
            need += 256 * MiB  # NCCL's own buffers and the check's chunk
        return memory_skip_reason(need, self.ctx.device, self.n, " per rank")

    def skip_reason(self) -> str | None:
        sized = gpu_only_reason(self.config.gpu_only, self.ctx, f"{self.config.op} of {self.config.size_bytes} B")
        if sized:  # the same on every rank (one device kind per run): no agreement needed
            return sized
        if self.n < 2:
            return "collectives need at least 2 ranks: run with --nproc N (N >= 2) or through Slurm"
        if not self.ctx.distributed:
            return f"world size {self.n} but torch.distributed is not initialised on this rank"
        reason = self._local_skip_reason()
        bad = ops.ranks_flagging(reason is not None, self.ctx)
        if reason:
            return reason
        if bad:
            return f"rank(s) {bad} cannot run this case (their rows give the reason)"
        return None

    def setup(self) -> None:
        error: Exception | None = None
        try:
            self.bufs = ops.allocate(self.config.op, self._count(), self.config.dtype, self.ctx)
        except Exception as exc:  # e.g. out of memory on this rank only
            error = exc
        bad = ops.ranks_flagging(error is not None, self.ctx)
        if error is not None:
            raise error
        if bad:
            raise RuntimeError(f"setup failed on rank(s) {bad}")
        self.call = ops.make_call(self.config.op, self.bufs, self.ctx)
        self.hosts = ops.gather_hostnames(socket.gethostname())

    def check(self) -> None:
        ops.fill_for_check(self.config.op, self.bufs, self.ctx)
        self.call()
        problem = ops.verify(self.config.op, self.bufs, self.config.dtype, self.ctx)
        bad = ops.ranks_flagging(problem is not None, self.ctx)
        if bad:
            raise CorrectnessError(f"{self.config.op} wrong on rank(s) {bad}" + (f": {problem}" if problem else ""))
        ops.fill_for_timing(self.config.op, self.bufs)

    def measure(self, timer: Timer) -> Measurement:
        c = self.config
        inner = c.inner or timer.config.inner
        stats = timer.time(self.call, inner=inner, before_each=lambda: ops.barrier(self.ctx))
        size = self._count() * DTYPE_BYTES[c.dtype]
        factor = busbw_factor(c.op, self.n)
        peak, source = self._peak()
        detail = f"S={size} B n={self.n} nodes={len(set(self.hosts))} factor={factor:.4g} inner={inner}"
        out = time_metrics(stats)
        alg_peak = (peak / factor if peak else None, f"GPU link / busbw factor {factor:.4g}: {source}" if peak else source)
        out.metrics += rate_metrics("busbw_gbps", size * factor, stats, 1e-9, (peak, source), detail)
        out.metrics += rate_metrics("algbw_gbps", size, stats, 1e-9, alg_peak, detail)
        out.metrics += self._slowest_rank_rows(stats.median_s, size, (peak, source), alg_peak, detail)
        return out

    def _peak(self) -> tuple[float | None, str]:
        nodes = len(set(self.hosts))
        if nodes > 1:
            return None, (f"ranks span {nodes} nodes: the network, not the GPU link, bounds busbw; "
                          "the catalog has no per-node network figure")
        return self.ctx.peak("gpu_link_gbps")

    def _slowest_rank_rows(self, median_s: float, size: int, bus_peak: tuple[float | None, str],
                           alg_peak: tuple[float | None, str], detail: str) -> list[Metric]:
        """Rank 0 only: rows from the slowest rank's median, every rank's median in the detail."""
        medians = ops.gather_floats(median_s, self.ctx)
        if self.ctx.rank != 0:
            return []
        slow = max(range(len(medians)), key=medians.__getitem__)
        spread = 100.0 * (max(medians) - min(medians)) / min(medians)
        text = (f"{detail}; slowest rank {slow} ({self.hosts[slow]}); spread {spread:.1f}%; per-rank median s: "
                + " ".join(f"r{i}={m:.4g}" for i, m in enumerate(medians)))
        algbw, busbw = algbw_busbw(self.config.op, self.n, size, medians[slow])
        return [Metric("time_s", medians[slow], stat="slowest_rank", n_samples=self.n, detail=text),
                Metric("busbw_gbps", busbw, stat="slowest_rank", n_samples=self.n, noisy=None, peak=bus_peak[0], peak_source=bus_peak[1],
                       detail=text),
                Metric("algbw_gbps", algbw, stat="slowest_rank", n_samples=self.n, noisy=None, peak=alg_peak[0], peak_source=alg_peak[1],
                       detail=text)]

    def teardown(self) -> None:
        self.bufs, self.call = {}, None
