"""Efficiency metrics: a throughput divided by the mean power of the window it was timed in.

The runner calls `region_efficiency(measurement.metrics, {region: region metrics})` once per
case. Each throughput belongs to one timed region (aifbench.telemetry.regions): tflops,
tokens_per_s ... to "main"; ref_tokens_per_s (llm_infer: ref_decode_tokens_per_s) to "ref"; prefill_tokens_per_s to "prefill";
decode_tokens_per_s and llm_infer's hbm_gbps to "decode"; bare_loop_tflops to "bare"; burst_tflops
to "burst". It is
divided by power_mean_w of that region only, never of another region or of the whole case:

    tflops_per_w = tflops / power_mean_w; gbps_per_w = gbps / power_mean_w;
    tokens_per_j = tokens per second of this device / power_mean_w (tokens/s over J/s)

and named with the region's prefix outside main (ref_tokens_per_j, decode_tokens_per_j,
prefill_tokens_per_j, decode_gbps_per_w, bare_tflops_per_w). The throughput is the rank's (per
device), the power its own device's over the region's timed work (warm-up and compilation
excluded); its scope (gpu, cpu-package) is carried into the detail. Nothing is emitted without
both a throughput and a mean power (a region marked telemetry_insufficient has no power).
Which throughputs each efficiency divides is its `per_power` trait in aifbench.metrics.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from aifbench import metrics as metric_dict
from aifbench.measurement import Metric
from aifbench.telemetry.regions import MAIN, prefixed


def _sources() -> dict[str, dict[str, tuple[str, ...]]]:
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for d in metric_dict.METRICS.values():
        if d.per_power is not None:
            out.setdefault(d.region, {})[d.base] = d.per_power.of
    return out


SOURCES = _sources()
"""region -> efficiency metric (unprefixed) -> throughput metrics to divide, first present wins
(each efficiency's per_power trait)"""
STAT_PREFERENCE = ("median", "value", "mean", "p50")


def _pick(metrics: Sequence[Metric], name: str) -> Metric | None:
    found = {m.stat: m for m in metrics if m.metric == name}
    for stat in STAT_PREFERENCE:
        if stat in found:
            return found[stat]
    return None


def _scope(detail: str) -> str:
    for part in detail.split():
        if part.startswith("scope="):
            return part
    return "scope=?"


def efficiency_metrics(measurement_metrics: Sequence[Metric], window_metrics: Sequence[Metric],
                       region: str = MAIN) -> list[Metric]:
    """tflops_per_w, gbps_per_w, tokens_per_j (prefixed outside main) of one region's throughput
    over that region's power_mean_w, where the metrics allow them."""
    power = _pick(window_metrics, metric_dict.POWER)
    if power is None or not power.value or power.value <= 0:
        return []
    out = []
    for target, names in SOURCES.get(region, {}).items():
        for name in names:
            rate = _pick(measurement_metrics, name)
            if rate is not None:
                out.append(Metric(prefixed(region, target), rate.value / power.value, stat="value", n_samples=rate.n_samples,
                                  noisy=rate.noisy, detail=f"{name}({rate.stat}) / {prefixed(region, metric_dict.POWER)}; "
                                                     f"{_scope(power.detail)}"))
                break
    return out


def region_efficiency(measurement_metrics: Sequence[Metric],
                      regions: Mapping[str, Sequence[Metric]]) -> list[Metric]:
    """Every region's efficiency metrics; `regions` maps region -> its unprefixed window metrics."""
    out: list[Metric] = []
    for region, metrics in regions.items():
        out += efficiency_metrics(measurement_metrics, metrics, region)
    return out
