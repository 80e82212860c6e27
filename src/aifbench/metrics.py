"""The metric dictionary: each metric's definition, unit and traits, declared once.

Every row a benchmark emits names a metric from here; the store refuses unknown names, so a
figure can never appear without its definition. `aifbench schema` prints this table.
Every metric is defined here, none at import time of a benchmark, so analysis (compare,
validate) knows every unit and direction without importing torch or the benchmarks.

What a metric IS is declared in its `define(...)` and nowhere else (MetricDef's traits: role,
scope, additive, derivation, per_power, over_segments, plots, label, region); compare, samples, the
telemetry report, efficiency, region merging and the report's plots read them through `names()`
and `is_merit()` instead of keeping lists of names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from aifbench.errors import one_of

if TYPE_CHECKING:
    import pandas as pd

Role = Literal["throughput", "score", "latency", "efficiency", "time_base", "time", "reading", "diagnostic"]
"""throughput: work per second; score: a higher-is-better ratio or % (MFU, speedup); latency: the
time a user waits (lower is better); efficiency: work per watt or joule; time_base: the timer
samples rates are work / median of (time_s, step_time_s); time: another raw time; reading: a
telemetry window's reading (power, clocks, energy ...); diagnostic: memory, loss, overheads"""
MERIT_ROLES: frozenset[str] = frozenset({"throughput", "score", "latency", "efficiency"})
"""figures of merit: shown by compare, validate, report by default; the others only on request"""
Scope = Literal["device", "job"]
"""device: one rank's own device's figure; job: covers every rank of the job (divide by world_size per GPU)"""
Derivation = Literal["measured", "from_time", "window", "per_power"]
"""measured: timed or read directly (own samples, or one value); from_time: work / median time,
so each repeat's value is value * median(t) / t_i (aifbench.analysis.samples); window: from a
telemetry window of one timed region (aifbench.telemetry.regions); per_power: a throughput /
power_mean_w of the same region (aifbench.telemetry.efficiency)"""
OverSegments = Literal["by_stat", "sum", "lowest"]
"""how a window metric of a region timed in several segments is merged: by its stat (max: highest,
min: lowest, mean: duration-weighted, else sample-weighted), summed (energy), the lowest (the limit in force)"""
RATE_UNITS = ("TFLOP/s", "GB/s", "tokens/s", "1/s")
"""units of work per second: what an additive metric is measured in"""
POWER = "power_mean_w"
"""the power an efficiency divides by (per region: R_power_mean_w)"""
MAIN = "main"
"""the region of a benchmark's own timed work: its metrics keep their names"""


@dataclass(frozen=True, slots=True)
class PerPower:
    """An efficiency: the first of `of` the rank emitted / power_mean_w of the same region."""

    of: tuple[str, ...]
    """throughput metrics to divide, first present wins (per device before job-wide)"""
    recomputed_from: str | None = None
    """the report's energy plot divides this metric by power_mean_w for results stored without the efficiency"""


@dataclass(frozen=True, slots=True)
class MetricDef:
    name: str
    unit: str
    higher_is_better: bool
    definition: str
    role: Role
    scope: Scope = "device"
    additive: bool = False
    """summing over GPUs and nodes means something (per_gpu, per_node, per_w in compare)"""
    derivation: Derivation = "measured"
    per_power: PerPower | None = None
    """per_power metrics: what they divide"""
    over_segments: OverSegments = "by_stat"
    """window metrics: how a region's segments merge"""
    plots: tuple[str, ...] = ()
    """the report plots (aifbench.analysis.plots.PLOTS names) that draw this metric: a plot draws
    every metric whose trait names it, a panel or line each, and names no metric itself"""
    label: str = ""
    """plain words for the plots' axes and titles (default: the name, underscores as spaces)"""
    region: str = MAIN
    """window and per_power metrics: the timed region whose window they come from"""
    base: str = ""
    """the name without the region prefix (the name itself in region main)"""
    signed: bool = False
    """a value may be negative (an overhead that can be a gain); otherwise the store refuses one below 0"""

    def __post_init__(self) -> None:
        for value, allowed in ((self.role, Role), (self.scope, Scope), (self.derivation, Derivation),
                               (self.over_segments, OverSegments)):
            assert value in get_args(allowed), f"metric {self.name!r}: {value!r} not one of {get_args(allowed)}"
        if not self.base:
            object.__setattr__(self, "base", self.name)
        if not self.label:
            object.__setattr__(self, "label", self.name.replace("_", " "))

    @property
    def merit(self) -> bool:
        """A figure of merit (MERIT_ROLES): shown by default; raw times, readings, memory, loss only on request."""
        return self.role in MERIT_ROLES


METRICS: dict[str, MetricDef] = {}


def define(name: str, unit: str, higher_is_better: bool, definition: str, **traits: Any) -> MetricDef:
    """Register a metric with its traits (MetricDef's fields); re-defining a name differently is a programming error."""
    new = MetricDef(name, unit, higher_is_better, definition, **traits)
    old = METRICS.get(name)
    assert old is None or old == new, f"metric {name!r} defined twice differently"
    METRICS[name] = new
    return new


def get(name: str) -> MetricDef:
    try:
        return METRICS[name]
    except KeyError:
        raise one_of("metric", name, METRICS) from None


def names(**traits: Any) -> tuple[str, ...]:
    """Metric names whose traits equal every given one, in definition order: names(role="time_base")."""
    return tuple(d.name for d in METRICS.values() if all(getattr(d, k) == v for k, v in traits.items()))


RENAMED_UNITS = {"1/s": "tokens/s", "1/J": "tokens/J"}
"""units runs recorded before a token rate said what it counts (read as today's unit)"""


def current_units(df: pd.DataFrame) -> pd.DataFrame:
    """`df` (a metrics frame) with the units of runs recorded as '1/s' / '1/J' for token rates read
    as the dictionary's 'tokens/s' / 'tokens/J' (the same figure; only the label changed)."""
    if not len(df) or "unit" not in df.columns or "metric" not in df.columns:
        return df
    unit = df["unit"].astype(str)
    old = unit.isin(list(RENAMED_UNITS))
    if not old.any():
        return df
    now = [METRICS[m].unit if m in METRICS and METRICS[m].unit == RENAMED_UNITS.get(u) else u
           for m, u in zip(df.loc[old, "metric"].astype(str), unit[old])]
    df = df.copy()
    df["unit"] = unit
    df.loc[old, "unit"] = now
    return df


def is_merit(name: str) -> bool:
    """A figure of merit (MetricDef.merit); False for a name not defined here."""
    d = METRICS.get(name)
    return d is not None and d.merit


# --- time -----------------------------------------------------------------------------------
define("time_s", "s", False, "wall time of one repeat of the timed operation (CUDA events on GPU, perf_counter_ns on CPU)",
       role="time_base")
define("step_time_s", "s", False, "time of one optimizer step (forward, backward, update), warm-up steps excluded",
       role="time_base")
define("ttft_s", "s", False, "time to first token: prefill of the prompt until the first generated token is available",
       role="latency")
define("itl_s", "s", False, "inter-token latency: time between consecutive generated tokens (stat p50/p90/p99)",
       role="latency")
# --- throughput -----------------------------------------------------------------------------
define("tflops", "TFLOP/s", True, "useful FLOPs of the operation / median time, in 1e12 FLOP/s (GEMM: 2*M*N*K); "
       "GEMM: the sustained figure, timed after warmup_s of settling at the clocks and power the device holds "
       "(its clocks and power: sm_clock_mean_mhz, power_mean_w); a burst from idle is burst_tflops",
       role="throughput", derivation="from_time", additive=True, plots=("gemm", "roofline"),
       label="GEMM throughput")
define("gbps", "GB/s", True, "bytes read + bytes written / median time, in 1e9 B/s",
       role="throughput", derivation="from_time", additive=True, plots=("bandwidth", "roofline"),
       label="memory bandwidth")
define("algbw_gbps", "GB/s", True, "nccl-tests algorithm bandwidth: message size S / median time, in 1e9 B/s",
       role="throughput", derivation="from_time")
define("busbw_gbps", "GB/s", True, "nccl-tests bus bandwidth: algbw * 2(n-1)/n (all_reduce), *(n-1)/n (all_gather, reduce_scatter, all_to_all), *1 (broadcast, reduce, send/recv)",
       role="throughput", derivation="from_time", plots=("busbw",), label="bus bandwidth")
define("tokens_per_s", "tokens/s", True, "tokens processed per second of the timed region (training: global batch tokens / step time)",
       role="throughput", derivation="from_time", additive=True, scope="job", plots=("training",),
       label="training throughput")
define("tokens_per_s_per_device", "tokens/s", True, "tokens_per_s divided by the number of devices",
       role="throughput", derivation="from_time", additive=True, plots=("training",),
       label="training throughput per GPU")
define("prefill_tokens_per_s", "tokens/s", True, "prompt tokens (batch x prompt length) / prefill time",
       role="throughput", derivation="from_time", additive=True, scope="job")
define("decode_tokens_per_s", "tokens/s", True, "generated tokens across the batch / decode time",
       role="throughput", derivation="from_time", additive=True, scope="job", plots=("decode",),
       label="decode throughput")
define("decode_tokens_per_s_per_seq", "tokens/s", True, "decode_tokens_per_s / batch size",
       role="throughput", derivation="from_time")
define("model_tflops_per_device", "TFLOP/s", True, "model FLOPs per token x tokens/s per device, in 1e12 FLOP/s",
       role="throughput", derivation="from_time", additive=True)
define("mfu_pct", "%", True, "model FLOPs utilisation: model FLOPs per token x tokens/s per device / bf16 dense peak; FLOPs per token = 6*N(non-embedding) + 12*L*d_attn*T (PaLM appendix B); recomputation not counted",
       role="score", derivation="from_time", plots=("training",), label="model FLOPs utilisation")
define("hbm_gbps", "GB/s", True, "achieved HBM bandwidth during decode: (weight bytes + KV-cache bytes read per step) / step time",
       role="throughput", derivation="from_time")
# --- memory, model sanity -------------------------------------------------------------------
define("peak_memory_bytes", "B", False, "peak device memory allocated during the timed region (torch.cuda.max_memory_allocated; CPU: peak RSS growth)",
       role="diagnostic")
define("loss", "1", False, "training loss (cross entropy) at the last timed step",
       role="diagnostic")
# --- telemetry (filled by the sampler) ------------------------------------------------------
# Each figure covers one timed region's window(s) only (main: the benchmark's own timed repeats,
# no warm-up or compilation); a region timed in several stretches sums energy over them and
# weights means by each stretch's duration (aifbench.telemetry.regions).
define("energy_j", "J", False, "NVML total-energy counter delta (window >= 1 s), else integrated power samples; method and scope stored in the detail column; summed over a region's segments",
       role="reading", derivation="window", over_segments="sum")
define("power_mean_w", "W", False, "mean instantaneous power over the timed window (time-weighted; over several segments weighted by their durations, i.e. integrated energy / sampled time)",
       role="reading", derivation="window")
define("power_peak_w", "W", False, "highest instantaneous power sample in the timed window",
       role="reading", derivation="window")
define("sm_clock_mean_mhz", "MHz", True, "mean SM clock over the timed window",
       role="reading", derivation="window")
define("temperature_max_c", "C", False, "highest GPU temperature in the timed window",
       role="reading", derivation="window")
define("tflops_per_w", "TFLOP/s/W", True, "tflops / power_mean_w",
       role="efficiency", derivation="per_power", per_power=PerPower(("tflops", "model_tflops_per_device"), recomputed_from="tflops"), plots=("energy",),
       label="GEMM energy efficiency")
define("gbps_per_w", "GB/s/W", True, "gbps / power_mean_w",
       role="efficiency", derivation="per_power", per_power=PerPower(("gbps", "busbw_gbps"), recomputed_from="gbps"), plots=("energy",),
       label="bandwidth per watt")
define("tokens_per_j", "tokens/J", True, "tokens per second of this device (tokens_per_s_per_device where emitted) / power_mean_w of its own region's window: tokens per joule",
       # per device first: llm_train's tokens_per_s counts every rank's tokens, the power is one GPU's
       role="efficiency", derivation="per_power", per_power=PerPower(("tokens_per_s_per_device", "tokens_per_s")),
       plots=("energy",), label="tokens per joule")
# --- partition kernels ----------------------------------------------------------------------
define("bare_loop_tflops", "TFLOP/s", True,
       "GEMM FLOPs / time per call of the operation called directly (torch.matmul(a, b); fp8: "
       "torch._scaled_mm) on the same inputs in a bare loop, one timer pair around each A/B segment of calls, "
       "no harness; stat median over the A/B rounds",
       role="throughput", derivation="from_time", additive=True)
define("burst_tflops", "TFLOP/s", True,
       "GEMM FLOPs / time per call over a short burst from an idle GPU (gemm burst = true: burst_idle_s of idling, "
       "3 untimed calls, then every call of a burst_s window timed alone; stat median over the calls, max the "
       "fastest): boost clocks before the power limit acts, the figure vendor and blog peaks are made of; "
       "`tflops` is the sustained figure at settled clocks and power. Clocks and power of the window: region "
       "burst (burst_sm_clock_mean_mhz, burst_power_mean_w)",
       role="throughput", derivation="from_time", additive=True)
define("harness_overhead_pct", "%", False,
       "how much slower the harness's timed calls are than torch called directly on the same inputs (negative: "
       "faster), by the A/B protocol (aifbench.ab): per round (1 - bare s/call / harness s/call) x 100 of two "
       "segments of equal call counts in ABBA order; stat mean over rounds, ci_low/ci_high its 95 % paired t "
       "interval; noisy when the interval's half-width exceeds 3 (the acceptance band is +-3 %)", signed=True,
       role="diagnostic")
define("link_gbps", "GB/s", True,
       "bytes copied across the host-device link / median time, in 1e9 B/s (bidir: both directions summed)",
       role="throughput", derivation="from_time", additive=True)
# --- imported from other tools (aifbench.importers) ----------------------------------------
define("avg_busbw_gbps", "GB/s", True, "nccl-tests footer 'Avg bus bandwidth': the mean of busbw over every size "
       "and placement of one run (small sizes weigh as much as large ones), in 1e9 B/s",
       role="throughput")
define("diag_pass", "1", True, "DCGM diagnostic verdict of one test on its GPUs (dcgmi diag): 1 Pass, 0 Warn "
       "(the warning in the detail); Fail is a failed row with the error text as its reason, Skip a skipped row",
       role="score")
define("time_to_train_s", "s", False, "MLPerf Training time to train: run_stop - run_start of the result log "
       "(:::MLLOG time_ms), one run; ok only when run_stop's status is success",
       role="latency")
# --- LLM ------------------------------------------------------------------------------------
define("decode_time_s", "s", False, "decode time of one generation: its gen_tokens decode steps after the first "
       "token (the time behind decode_tokens_per_s, hbm_gbps and decode_roofline_pct)",
       role="time")
define("decode_roofline_pct", "%", True, "decode speed as % of the HBM weight-streaming roofline: 100 x (weight "
       "bytes read per decode step / HBM datasheet peak) / median decode step time; KV-cache bytes not counted",
       role="score", derivation="from_time")
define("ref_step_time_s", "s", False, "step_time_s of the reference implementation (llm_train reference=...) "
       "timed in the same case on the same shape, weights, batch and optimizer",
       role="time")
define("ref_tokens_per_s", "tokens/s", True, "tokens_per_s of the reference implementation (llm_train reference=...)",
       role="throughput", derivation="from_time", additive=True)
define("ref_mfu_pct", "%", True, "mfu_pct of the reference implementation: the same FLOPs per token "
       "(6*N + 12*L*d_attn*T) x ref_tokens_per_s / bf16 dense peak",
       role="score", derivation="from_time")
define("ref_peak_memory_bytes", "B", False, "peak_memory_bytes of the reference implementation's timed steps",
       role="diagnostic")
define("speedup_vs_ref", "x", True, "aifbench's throughput / the reference implementation's in the same case "
       "(>= 1: aifbench at least as fast). llm_train: per A/B round (aifbench.ab, ABBA order) ref s/step / aifbench "
       "s/step (= tokens_per_s / ref_tokens_per_s), stat mean over rounds, ci_low/ci_high its 95 % paired t "
       "interval; llm_infer: the same protocol over rounds of one decode generation of each side (prefill untimed "
       "before each), ref decode s / aifbench decode s (= decode_tokens_per_s / ref_decode_tokens_per_s)",
       role="score")
define("ref_ttft_s", "s", False, "ttft_s of the reference implementation (llm_infer reference=...): prefill of the "
       "same prompt with the same weights + argmax of the first token",
       role="time")
define("ref_decode_tokens_per_s", "tokens/s", True, "decode_tokens_per_s of the reference implementation (llm_infer "
       "reference=...): batch_size * gen_tokens / decode time of one greedy generation, same weights and prompt",
       role="throughput", derivation="from_time", additive=True)
# --- telemetry windows ----------------------------------------------------------------------
define("module_power_mean_w", "W", False, "mean instantaneous module power (GH200: GPU + Grace CPU + memory) over the timed window; never added to a CPU reading",
       role="reading", derivation="window")
define("module_power_peak_w", "W", False, "highest instantaneous module power sample in the timed window",
       role="reading", derivation="window")
define("module_energy_j", "J", False, "integrated module power samples over the timed window (trapezoid), scope module",
       role="reading", derivation="window", over_segments="sum")
define("throttle_pct", "%", False, "share of telemetry samples in the window with an invalidating clock-event reason set (thermal, hardware slowdown, power brake, clocks held by a setting; not SwPowerCap); every reason seen is in detail",
       role="reading", derivation="window")
define("power_capped_pct", "%", False, "share of telemetry samples in the window with SwPowerCap set (clocks held by the power limit); the window's power state (state=capped_at_default, uncapped, unknown, ...) is in detail",
       role="reading", derivation="window")
define("power_limit_w", "W", False, "enforced GPU power limit in the window (nvmlDeviceGetEnforcedPowerLimit; the lowest read); the default limit and the power state are in detail",
       role="reading", derivation="window", over_segments="lowest")
define("power_limit_default_w", "W", False, "default GPU power limit (nvmlDeviceGetPowerManagementDefaultLimit; amdsmi default_power_cap)",
       role="reading", derivation="window")
define("process_cpu_util_mean_pct", "%", False, "mean CPU utilisation of the measuring process over the window, % of one core (psutil)",
       role="reading", derivation="window")
define("system_cpu_util_mean_pct", "%", False, "mean CPU utilisation of the whole node over the window, % of all cores (psutil)",
       role="reading", derivation="window")
define("process_rss_max_bytes", "B", False, "highest resident set size of the measuring process sampled in the window",
       role="reading", derivation="window")
define("telemetry_window_s", "s", False, "seconds of telemetry sampled in the timed region (first to last poll, "
       "summed over the region's segments); n_samples: polls; the detail names the segments, the region's flags "
       "and, when too short to judge, telemetry_insufficient with the reason (then no power, energy or clock figures)",
       role="reading", derivation="window")
# --- telemetry_overhead benchmark -----------------------------------------------------------
for _s in ("off", "low", "high"):
    define(f"overhead_{_s}_tflops", "TFLOP/s", True,
           f"telemetry_overhead: GEMM 2*N^3 / segment time with the sampler {'off' if _s == 'off' else 'at ' + _s + '_hz'}, median over rounds",
           role="throughput", derivation="from_time", additive=True)
for _s in ("low", "high"):
    define(f"overhead_ratio_{_s}", "1", True,
           f"telemetry_overhead: GEMM throughput with the sampler at {_s}_hz / throughput with it off, per A/B round "
           "(aifbench.ab, ABBA order); stat mean over rounds, ci_low/ci_high its 95 % paired t interval (1 = no loss)",
           role="score")
    define(f"overhead_loss_pct_{_s}", "%", False, f"telemetry_overhead: (1 - overhead_ratio_{_s}) * 100, per round; "
           "stat mean, ci_low/ci_high its 95 % interval (noisy when the half-width exceeds 1 point); negative: a gain",
           role="diagnostic", signed=True)
    define(f"overhead_polls_per_s_{_s}", "1/s", True,
           f"telemetry_overhead: sampler polls achieved per second at {_s}_hz (requested rate vs what the thread managed)",
           role="throughput", derivation="from_time", additive=True)
del _s

# --- per-region variants (aifbench.telemetry.regions) ----------------------------------------
# Region "main" (a benchmark's own timed work) keeps the names above; region R's window metrics
# (derivation "window") and efficiency are stored as R_<name>. aifbench.telemetry.regions takes
# its region names from REGIONS.
REGIONS = {
    "ref": "the reference implementation's timed work (llm_train reference=...; llm_infer's inference peer decode)",
    "prefill": "the timed prefills of llm_infer",
    "decode": "the timed decode steps of llm_infer",
    "bare": "the bare loop of direct calls (gemm bare_loop)",
    "burst": "the burst window of gemm burst = true (from an idle GPU, before settling)",
}
REGION_EFFICIENCY: dict[str, dict[str, tuple[str, ...]]] = {
    "ref": {"tokens_per_j": ("ref_tokens_per_s", "ref_decode_tokens_per_s")},  # llm_train, llm_infer
    "prefill": {"tokens_per_j": ("prefill_tokens_per_s",)},
    "decode": {"tokens_per_j": ("decode_tokens_per_s",), "gbps_per_w": ("hbm_gbps",)},
    "bare": {"tflops_per_w": ("bare_loop_tflops",)},
    "burst": {"tflops_per_w": ("burst_tflops",)},
}
"""region -> its efficiency metric -> the throughputs it divides (first present wins)"""


def _define_region_variants() -> None:
    window = [METRICS[n] for n in names(derivation="window")]
    for region, what in REGIONS.items():
        for base in window:
            define(f"{region}_{base.name}", base.unit, base.higher_is_better,
                   f"{base.name} of the telemetry window(s) of region '{region}' only: {what}. {base.definition}",
                   role=base.role, derivation="window", over_segments=base.over_segments, region=region,
                   base=base.name)
        for target, rates in REGION_EFFICIENCY[region].items():
            base = METRICS[target]
            define(f"{region}_{target}", base.unit, base.higher_is_better,
                   f"{' (else '.join(rates)}{')' * (len(rates) - 1)} / {region}_{POWER}: {what}, at the power "
                   "drawn while it ran", role=base.role, derivation="per_power", per_power=PerPower(rates),
                   region=region, base=target)


_define_region_variants()
