"""What a measurement yields: Metric (one value of one metric, one metrics-table row) and
Measurement (metric values plus the raw samples behind them).

Torch-free and below both benchmarks/ and telemetry/: a benchmark returns a Measurement, a
telemetry window adds Metrics, analysis reads the rows they become. Every metric name is
defined, with its unit, in aifbench.metrics.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import Sequence

from aifbench import metrics as metric_dict


@dataclass(frozen=True, slots=True)
class Metric:
    """One value of one metric; becomes one row of the metrics table. Built by keyword after
    name and value: Metric("tflops", 512.0, stat="max", n_samples=20, peak=989.0, ...)."""

    metric: str
    value: float
    _: KW_ONLY
    stat: str = "median"
    n_samples: int = 1
    noisy: bool | None = None
    peak: float | None = None
    peak_source: str = ""
    detail: str = ""

    @property
    def unit(self) -> str:
        return metric_dict.get(self.metric).unit

    @property
    def pct_of_peak(self) -> float | None:
        return None if not self.peak else 100.0 * self.value / self.peak


@dataclass
class Measurement:
    """What measure() returns: metric values plus the raw samples behind them."""

    metrics: list[Metric] = field(default_factory=list)
    samples: dict[str, Sequence[float]] = field(default_factory=dict)
    """metric name -> raw samples in that metric's unit (time_s, itl_s, ...)"""

    def extend(self, other: "Measurement") -> "Measurement":
        self.metrics.extend(other.metrics)
        self.samples.update(other.samples)
        return self
