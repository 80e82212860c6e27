"""The benchmark interface every kernel implements, and the helpers that build its metrics.

A benchmark is a class with a frozen config dataclass (`Config`, units in field names), then:
  skip_reason() -> why this case cannot run here (dtype absent, too big), or None
  setup()       -> allocate inputs on ctx.device
  check()       -> correctness against a reference, before any timing (raise CorrectnessError)
  measure(timer)-> time the operation through aifbench.timing and return a Measurement
  teardown()    -> free memory
It never writes files, prints, or knows about Slurm: the runner does that.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence

from aifbench.measurement import Measurement, Metric  # noqa: F401 (the benchmark API)
from aifbench.telemetry.config import TelemetryConfig
from aifbench.timing import Timer, TimingConfig, TimingStats

PeakLookup = Callable[[str], "tuple[float | None, str]"]


def _no_catalog(kind: str) -> tuple[float | None, str]:
    return None, "no hardware catalog attached to this context"


@dataclass(frozen=True, kw_only=True)
class Context:
    """Where and how a benchmark runs; built by the runner for each rank."""

    device: str = "cpu"
    """torch device string: 'cpu' or 'cuda:<local index>'"""
    device_name: str = "cpu"
    """model of the device, e.g. 'NVIDIA H100 80GB HBM3'"""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    timing: TimingConfig = field(default_factory=TimingConfig)
    peak_lookup: PeakLookup = _no_catalog
    """kind -> (peak in the metric's unit, source); kinds like 'tflops:bf16', 'hbm_gbps', 'host_link_gbps'"""
    distributed: bool = False
    """torch.distributed is initialised across world_size ranks"""
    telemetry: TelemetryConfig = TelemetryConfig()
    """the run's telemetry settings (plan.telemetry), for a benchmark that opens samplers itself"""

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def peak(self, kind: str) -> tuple[float | None, str]:
        return self.peak_lookup(kind)


def time_metrics(stats: TimingStats, name: str = "time_s") -> Measurement:
    """median, iqr, p5, p95, min, mean rows of a timing, with its raw samples."""
    noisy = stats.noisy
    values = {"median": stats.median_s, "iqr": stats.iqr_s, "p5": stats.p5_s,
              "p95": stats.p95_s, "min": stats.min_s, "mean": stats.mean_s}
    rows = [Metric(name, v, stat=k, n_samples=stats.n, noisy=noisy) for k, v in values.items()]
    return Measurement(rows, {name: stats.samples_s})


def rate_metrics(name: str, amount: float, stats: TimingStats, scale: float,
                 peak: tuple[float | None, str] = (None, ""), detail: str = "") -> list[Metric]:
    """Throughput rows: amount / median time (stat median) and amount / min time (stat max).

    `scale` converts to the metric's unit (1e-12 for TFLOP/s, 1e-9 for GB/s); `peak` is the
    datasheet value in that unit and its source, from Context.peak(); `detail` goes on both rows.
    """
    value, source = peak
    return [
        Metric(name, amount / stats.median_s * scale, stat="median", n_samples=stats.n, noisy=stats.noisy,
               peak=value, peak_source=source, detail=detail),
        Metric(name, amount / stats.min_s * scale, stat="max", n_samples=stats.n, noisy=stats.noisy,
               peak=value, peak_source=source, detail=detail),
    ]


@dataclass(frozen=True)
class Declaration:
    """What a benchmark is, torch-free: its name, config class, the metrics it emits and the
    telemetry regions it times besides its main work (names from aifbench.metrics.REGIONS).
    Built-ins declare theirs in aifbench.benchmarks.configs; the class refers to it."""

    name: str
    config: type
    emits: tuple[str, ...]
    regions: tuple[str, ...] = ()


class Benchmark(abc.ABC):
    """Base class of all benchmarks; subclass, set the ClassVars, implement setup/check/measure.

    A class with `declaration = <Declaration>` takes name, Config and emits from it; a plug-in
    may set those three ClassVars itself instead."""

    declaration: ClassVar[Declaration | None] = None
    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type]
    emits: ClassVar[tuple[str, ...]]
    """metric names this benchmark reports (all in aifbench.metrics)"""
    multi_rank: ClassVar[bool] = False
    """True: all ranks run each case together (collectives). False: each rank runs on its own device."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        d = cls.__dict__.get("declaration")
        if d is not None:
            cls.name, cls.Config, cls.emits = d.name, d.config, d.emits

    def __init__(self, config: Any, ctx: Context):
        self.config = config
        self.ctx = ctx

    def skip_reason(self) -> str | None:
        """Why this case cannot run here (e.g. 'fp8 needs compute capability 8.9'), or None."""
        return None

    def setup(self) -> None:
        """Allocate inputs on ctx.device. Not timed."""

    @abc.abstractmethod
    def check(self) -> None:
        """Verify the operation against a reference before timing; raise CorrectnessError."""

    @abc.abstractmethod
    def measure(self, timer: Timer) -> Measurement:
        """Time the operation with `timer` and return its metrics and raw samples."""

    def teardown(self) -> None:
        """Release what setup() allocated."""


# --- config dataclass helpers -------------------------------------------------------------

def param(default: Any, doc: str, *, choices: Sequence[Any] | None = None,
          min: float | None = None, max: float | None = None) -> Any:
    """A config field with its documentation and allowed values (validated by aifbench.config)."""
    meta = {"doc": doc, "choices": tuple(choices) if choices else None, "min": min, "max": max}
    return dataclasses.field(default=default, metadata=meta)


def config_fields(cls: type) -> list[dataclasses.Field]:
    return list(dataclasses.fields(cls))


def asdict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def describe(cls: type[Benchmark]) -> list[Mapping[str, Any]]:
    """Parameter table of a benchmark: name, default, allowed values, doc."""
    out: list[Mapping[str, Any]] = []
    for f in config_fields(cls.Config):
        out.append({"name": f.name, "default": f.default, "choices": f.metadata.get("choices"),
                    "min": f.metadata.get("min"), "max": f.metadata.get("max"),
                    "doc": f.metadata.get("doc", "")})
    return out
