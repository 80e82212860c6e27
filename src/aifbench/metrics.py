"""The metric dictionary: one definition, one unit per metric name (shared/DESIGN.md §4).

Every row a benchmark emits names a metric from here; the store refuses unknown names, so a
figure can never appear without its definition. `aifbench schema` prints this table.
Benchmarks with metrics of their own call `define()` at import time.
"""

from __future__ import annotations

from dataclasses import dataclass

from aifbench.errors import one_of


@dataclass(frozen=True, slots=True)
class MetricDef:
    name: str
    unit: str
    higher_is_better: bool
    definition: str


METRICS: dict[str, MetricDef] = {}


def define(name: str, unit: str, higher_is_better: bool, definition: str) -> MetricDef:
    """Register a metric; re-defining a name with a different unit is a programming error."""
    new = MetricDef(name, unit, higher_is_better, definition)
    old = METRICS.get(name)
    assert old is None or old == new, f"metric {name!r} defined twice differently"
    METRICS[name] = new
    return new


def get(name: str) -> MetricDef:
    try:
        return METRICS[name]
    except KeyError:
        raise one_of("metric", name, METRICS) from None


# --- time -----------------------------------------------------------------------------------
define("time_s", "s", False, "wall time of one repeat of the timed operation (CUDA events on GPU, perf_counter_ns on CPU)")
define("step_time_s", "s", False, "time of one optimizer step (forward, backward, update), warm-up steps excluded")
define("ttft_s", "s", False, "time to first token: prefill of the prompt until the first generated token is available")
define("itl_s", "s", False, "inter-token latency: time between consecutive generated tokens (stat p50/p90/p99)")
# --- throughput -----------------------------------------------------------------------------
define("tflops", "TFLOP/s", True, "useful FLOPs of the operation / median time, in 1e12 FLOP/s (GEMM: 2*M*N*K)")
define("gbps", "GB/s", True, "bytes read + bytes written / median time, in 1e9 B/s")
define("algbw_gbps", "GB/s", True, "nccl-tests algorithm bandwidth: message size S / median time, in 1e9 B/s")
define("busbw_gbps", "GB/s", True, "nccl-tests bus bandwidth: algbw * 2(n-1)/n (all_reduce), *(n-1)/n (all_gather, reduce_scatter, all_to_all), *1 (broadcast, reduce, send/recv)")
define("tokens_per_s", "1/s", True, "tokens processed per second of the timed region (training: global batch tokens / step time)")
define("tokens_per_s_per_device", "1/s", True, "tokens_per_s divided by the number of devices")
define("prefill_tokens_per_s", "1/s", True, "prompt tokens (batch x prompt length) / prefill time")
define("decode_tokens_per_s", "1/s", True, "generated tokens across the batch / decode time")
define("decode_tokens_per_s_per_seq", "1/s", True, "decode_tokens_per_s / batch size")
define("model_tflops_per_device", "TFLOP/s", True, "model FLOPs per token x tokens/s per device, in 1e12 FLOP/s")
define("mfu_pct", "%", True, "model FLOPs utilisation: model FLOPs per token x tokens/s per device / bf16 dense peak; FLOPs per token = 6*N(non-embedding) + 12*L*d_attn*T (PaLM appendix B); recomputation not counted")
define("hbm_gbps", "GB/s", True, "achieved HBM bandwidth during decode: (weight bytes + KV-cache bytes read per step) / step time")
# --- memory, model sanity -------------------------------------------------------------------
define("peak_memory_bytes", "B", False, "peak device memory allocated during the timed region (torch.cuda.max_memory_allocated; CPU: peak RSS growth)")
define("loss", "1", False, "training loss (cross entropy) at the last timed step")
# --- telemetry (filled by the sampler) ------------------------------------------------------
define("energy_j", "J", False, "NVML total-energy counter delta (window >= 1 s), else integrated power samples; method and scope stored in the detail column")
define("power_mean_w", "W", False, "mean instantaneous power over the timed window")
define("power_peak_w", "W", False, "highest instantaneous power sample in the timed window")
define("sm_clock_mean_mhz", "MHz", True, "mean SM clock over the timed window")
define("temperature_max_c", "C", False, "highest GPU temperature in the timed window")
define("tflops_per_w", "TFLOP/s/W", True, "tflops / power_mean_w")
define("gbps_per_w", "GB/s/W", True, "gbps / power_mean_w")
define("tokens_per_j", "1/J", True, "tokens per second of this device (tokens_per_s_per_device where emitted) / power_mean_w of its window: tokens per joule")
