"""Telemetry overhead: GEMM throughput with the sampler off, at a low and a high rate, one run.

Two comparisons through aifbench.ab's A/B protocol, each `rounds` rounds in ABBA order: off vs
low, then off vs high, so drift in clocks or temperature hits both sides of a pair alike. One
timed segment is `calls` back-to-back matmuls (one event pair around them, the device queue kept
full), sized to last about `round_s`. The runner's own telemetry window is suspended for the
whole measurement, so "off" really is off (that window is flagged telemetry_suspended).
Ratio = throughput with the sampler / throughput without in the same round; reported as the mean
over rounds with its 95 % paired t interval (stats mean, ci_low, ci_high); 1.0 means no loss; the
goal is >= 0.99 at 10 Hz on a GPU (noisy: the interval's half-width exceeds 1 point).
"""

from __future__ import annotations

import contextlib
import time

from aifbench.ab import ABResult, interval_metrics, run_ab
from aifbench.benchmarks import gemm
from aifbench.benchmarks.configs import TELEMETRY_OVERHEAD
from aifbench.benchmarks.configs import TelemetryOverheadConfig
from aifbench.benchmarks.base import Benchmark, Measurement, Metric
from aifbench.errors import ConfigError
from aifbench.benchmarks.registry import register
from aifbench.timing import Timer, summarize_figures
from aifbench.units import DTYPE_BYTES

LOSS_TOL_PCT = 1.0  # the goal is a loss <= 1 % at 10 Hz: an interval wider than ±1 point is noisy
@register
class TelemetryOverhead(Benchmark):
    declaration = TELEMETRY_OVERHEAD
    description = "GEMM throughput with telemetry off, at 10 Hz and at 100 Hz in one run: the sampler's cost"

    def __init__(self, config: TelemetryOverheadConfig, ctx):
        super().__init__(config, ctx)
        if config.high_hz <= config.low_hz:
            raise ConfigError(f"telemetry_overhead: high_hz ({config.high_hz}) must exceed low_hz ({config.low_hz})")

    def skip_reason(self) -> str | None:
        from aifbench.hardware.detect import memory_skip_reason

        c, dev = self.config, self.ctx.device
        why = gemm.dtype_skip_reason(c.dtype, dev)
        if why:
            return why
        probe = self._sampler(c.low_hz)
        live, what = getattr(probe, "live", False), probe.describe()
        probe.close()
        if not live:  # off, unavailable, or a replayed trace (no thread, nothing to cost)
            return f"no live telemetry sampler to measure here ({what})"
        return memory_skip_reason(3 * c.size * c.size * DTYPE_BYTES[c.dtype], dev, self.ctx.world_size,
                                  " for A, B, C")

    def setup(self) -> None:
        n = self.config.size
        self.operands = gemm.make_operands(n, n, n, self.config.dtype, self.ctx.device, seed=0)
        matmul = gemm.matmul_fn(self.config.dtype)
        self._call = lambda: matmul(self.operands)

    def check(self) -> None:
        """gemm's check: the same call at a small size, then a corner of the real C, against float64."""
        c = self.config
        with gemm.Tf32(c.dtype):
            small = gemm.make_operands(c.check_size, c.check_size, c.check_size, c.dtype, self.ctx.device, seed=1)
            gemm.check_operands(small, gemm.matmul_fn(c.dtype), c.dtype, rows=c.check_size, cols=c.check_size)
            gemm.check_operands(self.operands, gemm.matmul_fn(c.dtype), c.dtype)

    def teardown(self) -> None:
        self.operands = self._call = None

    def _sampler(self, hz: float):
        """A sampler like the runner's for this device (the run's telemetry settings), polling at
        `hz`, never recording a trace."""
        from aifbench.telemetry.select import sampler_for

        return sampler_for(self.ctx.device, self.ctx.telemetry.replace(interval_s=1.0 / hz), record=False)

    def measure(self, timer: Timer) -> Measurement:
        from aifbench.telemetry.sampling import suspended

        c = self.config
        with suspended(), gemm.Tf32(c.dtype):
            samplers = {"low": self._sampler(c.low_hz), "high": self._sampler(c.high_hz)}
            try:
                for _ in range(timer.config.warmup):
                    self._call()
                calls = timer.calls_lasting(self._call, c.round_s)
                results = {s: self._ab(timer, samplers[s], s, calls) for s in ("low", "high")}
            finally:
                for s in samplers.values():
                    s.close()
        return self._metrics(results, samplers["low"].describe(), calls)

    def _ab(self, timer: Timer, sampler, setting: str, calls: int) -> tuple[ABResult, list[float]]:
        """aifbench.ab rounds: sampler off (A) vs on at `setting` (B); the on side's polls per s."""
        polls: list[float] = []

        @contextlib.contextmanager
        def window():
            with sampler.window(f"overhead-{setting}-{len(polls)}"):
                t0 = time.perf_counter()
                yield
                seconds = time.perf_counter() - t0
            # intervals between the window's polls per second (its opening and closing polls included)
            polls.append(max(getattr(sampler, "polls", 0) - 1, 0) / max(seconds, 1e-9))

        ab = run_ab(timer, self._call, self._call, rounds=self.config.rounds, calls_a=calls,
                    paired=lambda off_s, on_s: off_s / on_s, regions=None,  # the runner's telemetry is suspended
                    around=(contextlib.nullcontext, window))
        return ab, polls

    def _metrics(self, results: dict, sampler: str, calls: int) -> Measurement:
        """Ratio and loss: A/B mean with 95 % interval (noisy when wider than ±LOSS_TOL_PCT); the
        throughputs: median over rounds (the off side pooled from both comparisons)."""
        flop = 2.0 * self.config.size ** 3
        detail = f"sampler: {sampler}; {calls} calls per segment"
        tflops = {"off": [flop / t * 1e-12 for s in ("low", "high") for t in results[s][0].a_s]}
        out = Measurement()
        for setting in ("low", "high"):
            ab, polls = results[setting]
            tflops[setting] = [flop / t * 1e-12 for t in ab.b_s]
            hz = self.config.low_hz if setting == "low" else self.config.high_hz
            d = f"{hz:g} Hz; {detail}"
            out.extend(interval_metrics(f"overhead_ratio_{setting}", ab, LOSS_TOL_PCT / 100, d))
            out.extend(interval_metrics(f"overhead_loss_pct_{setting}", ab, LOSS_TOL_PCT, d,
                                        transform=lambda r: (1 - r) * 100))
            out.metrics.append(Metric(f"overhead_polls_per_s_{setting}", summarize_figures(polls).median, stat="median",
                                      n_samples=len(polls), detail=f"requested {hz:g} Hz"))
        for setting, values in tflops.items():
            st = summarize_figures(values)
            out.metrics.append(Metric(f"overhead_{setting}_tflops", st.median, stat="median", n_samples=st.n, noisy=st.noisy,
                                      detail=detail))
            out.samples[f"overhead_{setting}_tflops"] = values
        return out
