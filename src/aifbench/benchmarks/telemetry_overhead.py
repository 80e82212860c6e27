"""Telemetry overhead: GEMM throughput with the sampler off, at a low and a high rate, one run.

Each round times the same GEMM three ways in rotating order (off, low, high; then low, high,
off; ...), so drift in clocks or temperature hits every setting alike. One timed segment is
`calls` back-to-back matmuls (one timing sample of `calls` inner calls, the device queue kept
full), sized to last about `round_s`. The runner's own telemetry window is suspended for the
whole measurement, so "off" really is off (that window is flagged telemetry_suspended).
Ratio = throughput with the sampler / throughput without, per round, median over rounds:
1.0 means no loss; the goal is >= 0.99 at 10 Hz on a GPU.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from aifbench.benchmarks import gemm
from aifbench.benchmarks.base import Benchmark, Measurement, Metric, param
from aifbench.errors import ConfigError, CorrectnessError
from aifbench.registry import register
from aifbench.timing import Timer, summarize

SETTINGS = ("off", "low", "high")
DTYPES = ("fp32", "tf32", "bf16", "fp16")  # gemm's dtypes that need no scaling (fp8) or fp64 units


@dataclass(frozen=True, kw_only=True, slots=True)
class TelemetryOverheadConfig:
    size: int = param(4096, "edge of the square GEMM, M = N = K", min=16)
    dtype: str = param("bf16", "matmul precision", choices=tuple(DTYPES))
    rounds: int = param(5, "rounds; each times every setting once, in rotating order", min=1, max=100)
    round_s: float = param(1.0, "target length of one timed segment in s", min=0.01, max=60)
    low_hz: float = param(10.0, "the low sampling rate in Hz (aifbench's default)", min=0.1, max=1000)
    high_hz: float = param(100.0, "the high sampling rate in Hz", min=0.1, max=1000)
    check_size: int = param(64, "edge of the correctness check against float64", min=1, max=4096)


@register
class TelemetryOverhead(Benchmark):
    name = "telemetry_overhead"
    description = "GEMM throughput with telemetry off, at 10 Hz and at 100 Hz in one run: the sampler's cost"
    Config = TelemetryOverheadConfig
    emits = ("overhead_ratio_low", "overhead_ratio_high", "overhead_loss_pct_low", "overhead_loss_pct_high",
             "overhead_off_tflops", "overhead_low_tflops", "overhead_high_tflops",
             "overhead_polls_per_s_low", "overhead_polls_per_s_high")

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
        return memory_skip_reason(3 * c.size * c.size * gemm.ELEMENT_BYTES[c.dtype], dev, self.ctx.world_size,
                                  " for A, B, C")

    def setup(self) -> None:
        import torch

        n, dev, dt = self.config.size, self.ctx.device, gemm.DTYPES[self.config.dtype]
        gen = torch.Generator(device="cpu").manual_seed(0)
        self.a = torch.randn(n, n, generator=gen).to(dev, dt)
        self.b = torch.randn(n, n, generator=gen).to(dev, dt)
        self.c = torch.empty(n, n, device=dev, dtype=dt)

    def check(self) -> None:
        """A small matmul of the same dtype against float64 (gemm's tolerances)."""
        import torch

        c = self.config
        s, dev, dt = c.check_size, self.ctx.device, gemm.DTYPES[c.dtype]
        gen = torch.Generator(device="cpu").manual_seed(1)
        a64, b64 = (torch.randn(s, s, generator=gen, dtype=torch.float64) for _ in range(2))
        with gemm.Tf32(c.dtype):
            got = torch.matmul(a64.to(dev, dt), b64.to(dev, dt)).double().cpu()
        err = gemm.relative_error(got, a64.to(dt).double() @ b64.to(dt).double())
        if not err <= gemm.TOLERANCE[c.dtype]:
            raise CorrectnessError(f"{c.dtype} matmul relative error {err:.2e} > {gemm.TOLERANCE[c.dtype]:.0e}")

    def teardown(self) -> None:
        self.a = self.b = self.c = None

    def _sampler(self, hz: float):
        """A sampler like the runner's for this device, polling at `hz`, never recording a trace."""
        from aifbench.telemetry.select import open_sampler

        return open_sampler(self.ctx.device, 1.0 / hz, record=False)

    def _call(self) -> None:
        import torch

        torch.matmul(self.a, self.b, out=self.c)

    def measure(self, timer: Timer) -> Measurement:
        from aifbench.telemetry.sampling import suspended

        c = self.config
        flop = 2.0 * c.size ** 3
        with suspended(), gemm.Tf32(c.dtype):
            samplers = {"low": self._sampler(c.low_hz), "high": self._sampler(c.high_hz)}
            try:
                one = timer.time(self._call, warmup=max(1, timer.config.warmup), repeats=3).median_s
                calls = max(1, round(c.round_s / one))
                tflops, polls = self._rounds(timer, samplers, calls, flop)
            finally:
                for s in samplers.values():
                    s.close()
        return self._metrics(tflops, polls, samplers["low"].describe(), calls)

    def _rounds(self, timer: Timer, samplers: dict, calls: int, flop: float) -> tuple[dict, dict]:
        tflops: dict[str, list[float]] = {s: [] for s in SETTINGS}
        polls: dict[str, list[float]] = {"low": [], "high": []}
        for r in range(self.config.rounds):
            order = SETTINGS[r % 3:] + SETTINGS[:r % 3]
            for setting in order:
                if setting == "off":
                    t = timer.time(self._call, warmup=0, repeats=1, inner=calls).median_s
                else:
                    sampler = samplers[setting]
                    with sampler.window(f"overhead-{setting}-{r}"):
                        t = timer.time(self._call, warmup=0, repeats=1, inner=calls).median_s
                    # intervals between the window's polls per second (its opening and closing polls included)
                    polls[setting].append(max(getattr(sampler, "polls", 0) - 1, 0) / (t * calls))
                tflops[setting].append(flop / t * 1e-12)
        return tflops, polls

    def _metrics(self, tflops: dict, polls: dict, sampler: str, calls: int) -> Measurement:
        n = self.config.rounds
        detail = f"sampler: {sampler}; {calls} calls per segment"
        out = Measurement()
        for setting, values in tflops.items():
            out.metrics.append(Metric(f"overhead_{setting}_tflops", statistics.median(values), "median", n,
                                      _noisy(values), detail=detail))
            out.samples[f"overhead_{setting}_tflops"] = values
        for setting in ("low", "high"):
            ratios = [a / b for a, b in zip(tflops[setting], tflops["off"])]
            ratio = statistics.median(ratios)
            hz = self.config.low_hz if setting == "low" else self.config.high_hz
            d = f"{hz:g} Hz; {detail}"
            out.metrics += [Metric(f"overhead_ratio_{setting}", ratio, "median", n, _noisy(ratios), detail=d),
                            Metric(f"overhead_loss_pct_{setting}", (1 - ratio) * 100, "median", n, _noisy(ratios), detail=d),
                            Metric(f"overhead_polls_per_s_{setting}", statistics.median(polls[setting]), "median", n,
                                   detail=f"requested {hz:g} Hz")]
            out.samples[f"overhead_ratio_{setting}"] = ratios
        return out


def _noisy(values: list[float]) -> bool:
    return summarize(values).noisy  # IQR / median above timing's threshold (ratios are unit-free)
