"""The validity model of one telemetry window: the power state it ran in, and what invalidates it.

A window's figures are judged on the rank's own GPU (slot 0) from its samples:

State (shown beside the figures, never invalidating; fields.STATES): the power limit in force
(nvmlDeviceGetEnforcedPowerLimit), the default limit (nvmlDeviceGetPowerManagementDefaultLimit),
the share of samples with SwPowerCap set. Dense GEMM on an H100/H200 SXM at its default limit
always runs power-capped: measured on an H200 SXM at 700 W (shared H200 README, 2026-12-04),
SwPowerCap in 70-100 % of samples at 1350-1630 MHz of 1980. That is `capped_at_default`.

Invalidating flags (the metrics `flags` column; fields.FLAGS): an enforced limit below the
default (power_limit_below_default), thermal slowdown SW or HW (thermal_throttle), HwSlowdown
(hw_slowdown), HwPowerBrakeSlowdown (power_brake), clocks held by a setting (sw_slowdown), a
busy SM clock far below what the part sustains at its limit (low_sm_clock, LOW_CLOCK_RULE),
other processes on the GPU, new ECC errors (the last two in nvml.py).

A reading the device or the trace does not give (older drivers have no default-limit query,
AMD has no clock-event reasons) leaves the state `unknown` with the reason; nothing is guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from aifbench.measurement import Metric
from aifbench.telemetry import fields as F
from aifbench.telemetry.config import DEFAULT_MIN_CLOCK_FRACTION
from aifbench.telemetry.sampling import Sample, series, time_mean

LOW_CLOCK_RULE = ("low_sm_clock when the mean SM clock of the busy (not GpuIdle) samples is below "
                  "0.6 x the maximum SM clock (TelemetryConfig.min_clock_fraction, from AIFBENCH_TELEMETRY_MIN_CLOCK_FRACTION). Source: an H200 SXM "
                  "at its default 700 W limit sustains 1350-1630 MHz of 1980 (0.68-0.82 x max) in dense "
                  "bf16/fp8 GEMM (measured 2026-12-04, shared H200 README); below 0.6 is slower than any "
                  "power-capped sample seen")
LIMIT_TOLERANCE_W = 1.0
"""enforced and default limits closer than this are equal (NVML reports whole mW)"""


@dataclass(frozen=True, slots=True)
class PowerState:
    state: str
    """a key of fields.STATES"""
    why: str
    """the evidence, or why the state is unknown"""

    def text(self) -> str:
        return f"state={self.state} ({self.why})"


def power_state(masks: list[int], limit_w: float | None, default_w: float | None,
                missing: dict[str, str]) -> PowerState:
    """The power state from the window's clock-event masks and its limits in W (None: not read;
    `missing`: field -> why it was not read)."""
    if not masks:
        return PowerState("unknown", f"no clock-event reasons: {missing.get('clocks_event_reasons', 'not read')}")
    capped = sum(1 for m in masks if m & F.SW_POWER_CAP)
    seen = f"SwPowerCap in {capped} of {len(masks)} samples"
    if not capped:
        return PowerState("uncapped", seen)
    if limit_w is None:
        return PowerState("unknown", f"{seen}; enforced limit unknown: {missing.get('power_limit_w', 'not read')}")
    if default_w is None:
        return PowerState("unknown", f"{seen} at the {limit_w:g} W limit; default limit unknown: "
                                     f"{missing.get('power_limit_default_w', 'not read')}")
    if abs(limit_w - default_w) < LIMIT_TOLERANCE_W:
        return PowerState("capped_at_default", f"{seen} at the {limit_w:g} W limit = default")
    side = "below" if limit_w < default_w else "above"
    return PowerState(f"capped_{side}_default", f"{seen} at the {limit_w:g} W limit, default {default_w:g} W")


def window_validity(samples: list[Sample], max_sm_mhz: float | None, missing: dict[str, str],
                    min_clock_fraction: float = DEFAULT_MIN_CLOCK_FRACTION) -> tuple[list[Metric], list[str]]:
    """(state metrics, invalidating flags) of the own GPU's samples: clocks, temperature,
    clock-event reasons, power limits and the power state."""
    metrics, flags = _clock(samples, max_sm_mhz, min_clock_fraction)
    _, temps = series(samples, "temperature_c")
    if temps:
        metrics.append(Metric("temperature_max_c", max(temps), stat="max", n_samples=len(temps)))
    masks = [int(m) for m in series(samples, "clocks_event_reasons")[1]]
    _, limits = series(samples, "power_limit_w")
    _, defaults = series(samples, "power_limit_default_w")
    limit, default = (min(limits) if limits else None), (defaults[-1] if defaults else None)
    state = power_state(masks, limit, default, missing)
    if masks:
        union = 0
        for m in masks:
            union |= m
        metrics += _reason_metrics(masks, union, state)
        flags += F.reason_flags(union)
    metrics += _limit_metrics(limits, defaults, state, missing)
    if limit is not None and default is not None and limit <= default - LIMIT_TOLERANCE_W:  # = the state's "below"
        flags.append("power_limit_below_default")
    return metrics, flags


def _clock(samples: list[Sample], max_sm: float | None, fraction: float) -> tuple[list[Metric], list[str]]:
    """sm_clock_mean_mhz (every sample, time-weighted) and low_sm_clock (busy samples: LOW_CLOCK_RULE)."""
    ts, clocks = series(samples, "sm_clock_mhz")
    if not clocks:
        return [], []
    busy = [c for s in samples if (c := s.values.get("sm_clock_mhz")) is not None
            and not int(s.values.get("clocks_event_reasons", 0)) & F.REASON_BITS["GpuIdle"]]
    detail = f"max={max_sm:g} MHz" if max_sm else "max unknown"
    flags = []
    if max_sm and busy:
        mean = sum(busy) / len(busy)
        detail += f"; busy mean {mean:.0f} MHz = {mean / max_sm:.2f} x max"
        if mean < fraction * max_sm:
            flags.append("low_sm_clock")
            detail += f" < {fraction:g} x max"
    return [Metric("sm_clock_mean_mhz", time_mean(ts, clocks), stat="mean", n_samples=len(clocks), detail=detail)], flags


def _reason_metrics(masks: list[int], union: int, state: PowerState) -> list[Metric]:
    """throttle_pct (invalidating reasons) and power_capped_pct (SwPowerCap, with the state)."""
    reasons = ",".join(F.decode_reasons(union)) or "none"
    throttled = sum(1 for m in masks if m & F.THROTTLE_MASK)
    capped = sum(1 for m in masks if m & F.SW_POWER_CAP)
    return [Metric("throttle_pct", 100.0 * throttled / len(masks), stat="value", n_samples=len(masks), detail=f"reasons={reasons}"),
            Metric("power_capped_pct", 100.0 * capped / len(masks), stat="value", n_samples=len(masks), detail=state.text())]


def _limit_metrics(limits: list[float], defaults: list[float], state: PowerState,
                   missing: dict[str, str]) -> list[Metric]:
    out = []
    if defaults:
        out.append(Metric("power_limit_default_w", defaults[-1], stat="value", n_samples=len(defaults),
                          detail="nvmlDeviceGetPowerManagementDefaultLimit (amdsmi: default_power_cap)"))
    if limits:
        default = f"default {defaults[-1]:g} W" if defaults else \
            f"default unknown: {missing.get('power_limit_default_w', 'not read')}"
        out.append(Metric("power_limit_w", min(limits), stat="value", n_samples=len(limits),
                          detail=f"enforced, lowest read in the window; {default}; {state.text()}"))
    return out


def validity_markdown() -> str:
    """The validity model as Markdown (part of `aifbench schema`)."""
    lines = ["## telemetry validity", "",
             "Every telemetry window records the power state of the rank's GPU: power_limit_w (the enforced "
             "limit), power_limit_default_w, power_capped_pct (share of samples with SwPowerCap) and "
             "sm_clock_mean_mhz; the state token is in the detail of power_capped_pct and power_limit_w as "
             "`state=NAME (evidence)`. A state is shown beside the figures and never invalidates them. The "
             "metrics `flags` column holds invalidating flags only; `aifbench validate` excludes flagged rows "
             "(--flags fail: fails them), and a reference left with no row to judge makes the verdict INCOMPLETE.",
             "", "| power state | meaning |", "|---|---|"]
    lines += [f"| {name} | {meaning} |" for name, meaning in F.STATES.items()]
    lines += ["", "| invalidating flag | meaning |", "|---|---|"]
    lines += [f"| {name} | {meaning} |" for name, meaning in F.FLAGS.items()]
    lines += ["", "| note (in flags, not invalidating) | meaning |", "|---|---|"]
    lines += [f"| {name} | {meaning} |" for name, meaning in F.NOTE_FLAGS.items()]
    lines += ["", f"Rule: {LOW_CLOCK_RULE}. Limits within {LIMIT_TOLERANCE_W:g} W of each other are equal. "
              "Runs recorded before this model carry the old flag power_throttle (SwPowerCap or power brake, "
              "not told apart); validate reads it as power_capped_legacy (a note) where the reasons seen were SwPowerCap "
              "alone at a recorded limit >= the datasheet TDP, and otherwise still excludes those rows."]
    return "\n".join(lines) + "\n"
