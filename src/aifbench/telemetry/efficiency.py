"""Efficiency metrics: a case's throughput divided by the power its telemetry window saw.

The runner calls `efficiency_metrics(measurement.metrics, window.metrics)` and stores the
result with the case. tflops_per_w = tflops / power_mean_w; gbps_per_w = gbps / power_mean_w;
tokens_per_j = tokens per second of this device / power_mean_w (tokens/s over J/s). The
throughput is the rank's (per device), the power its own device's: power_mean_w covers the
whole window around measure(), warm-up included; its scope (gpu, cpu-package) is carried
into the detail. Nothing is emitted without both a throughput and a mean power.
"""

from __future__ import annotations

from typing import Sequence

from aifbench.benchmarks.base import Metric

# target -> throughput metrics to divide, first present wins
SOURCES = {
    "tflops_per_w": ("tflops", "model_tflops_per_device"),
    "gbps_per_w": ("gbps", "hbm_gbps", "busbw_gbps"),
    # per device first: llm_train's tokens_per_s counts every rank's tokens, the power is one GPU's
    "tokens_per_j": ("tokens_per_s_per_device", "tokens_per_s", "decode_tokens_per_s", "prefill_tokens_per_s"),
}
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


def efficiency_metrics(measurement_metrics: Sequence[Metric], window_metrics: Sequence[Metric]) -> list[Metric]:
    """tflops_per_w, gbps_per_w, tokens_per_j of one case, where its metrics allow them."""
    power = _pick(window_metrics, "power_mean_w")
    if power is None or not power.value or power.value <= 0:
        return []
    out = []
    for target, names in SOURCES.items():
        for name in names:
            rate = _pick(measurement_metrics, name)
            if rate is not None:
                out.append(Metric(target, rate.value / power.value, "value", rate.n_samples, rate.noisy,
                                  detail=f"{name}({rate.stat}) / power_mean_w; {_scope(power.detail)}"))
                break
    return out
