"""Every built-in benchmark's config dataclass and allowed values, torch-free.

The benchmark modules (gemm.py, membw.py, ...) import torch; these configs do not, so `aifbench
validate`, `compare`, `report` and `list` check parameter names and values (references,
suites) without importing torch. Each built-in benchmark is declared here once (a Declaration:
name, Config, the metrics it emits, its telemetry regions); its class refers to that declaration.
"""

from __future__ import annotations

from dataclasses import dataclass

from aifbench.benchmarks._gemm_shape import GemmConfig
from aifbench.benchmarks.base import Declaration, param
from aifbench.errors import ConfigError
from aifbench.models.shapes import LlamaShape, resolve_shape, with_layers
from aifbench.telemetry.config import interval_from_hz
from aifbench.units import GiB, MiB

# --- allowed values ------------------------------------------------------------------------
STREAM_OPS = ("copy", "scale", "add", "triad")
STREAM_DTYPES = ("fp32", "fp64")
DIRECTIONS = ("h2d", "d2h", "bidir")
MEMORY = ("pinned", "pageable")
COLLECTIVE_OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "send_recv")
COLLECTIVE_DTYPES = ("fp32", "bf16", "fp16")
OVERHEAD_DTYPES = ("fp32", "tf32", "bf16", "fp16")  # gemm's dtypes that need no scaling (fp8) or fp64 units
COMPILE_MODES = ("default", "max-autotune")
DECODE_ATTENTION = ("sdpa", "math")
TRAIN_REFERENCES = ("none", "transformers")
INFER_REFERENCES = ("none", "transformers")

# --- partition kernels -----------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True, slots=True)
class MembwConfig:
    size_bytes: int = param(1 * GiB, "bytes of each of the three arrays a, b, c", min=4096)
    op: str = param("triad", "STREAM kernel: copy (c=a), scale (b=q*c), add (c=a+b), triad (a=b+q*c)", choices=STREAM_OPS)
    dtype: str = param("fp32", "element type (STREAM's reference uses fp64; bandwidth is the same)",
                       choices=STREAM_DTYPES)
    gpu_only: bool = param(False, "skip this case on a CPU device, with the reason (cases sized for a GPU)")


@dataclass(frozen=True, kw_only=True, slots=True)
class HostlinkConfig:
    direction: str = param("h2d", "h2d (host to GPU), d2h (GPU to host), bidir (both at once)", choices=DIRECTIONS)
    memory: str = param("pinned", "host buffer: pinned (page-locked) or pageable", choices=MEMORY)
    size_bytes: int = param(256 * MiB, "bytes per copy (per direction)", min=1)


@dataclass(frozen=True, kw_only=True, slots=True)
class CollectivesConfig:
    op: str = param("all_reduce", "collective: all_reduce, all_gather, reduce_scatter, all_to_all, broadcast "
                    "(from rank 0), send_recv (ring: to rank+1, from rank-1)", choices=COLLECTIVE_OPS)
    size_bytes: int = param(64 * MiB, "message size S in nccl-tests' sense (see module docs); rounded down to "
                            "whole elements, and to a multiple of ranks for all_gather/reduce_scatter/all_to_all", min=1)
    dtype: str = param("fp32", "element type", choices=COLLECTIVE_DTYPES)
    inner: int = param(0, "calls per timed sample; 0 = the suite's timing.inner", min=0)
    gpu_only: bool = param(False, "skip this case on CPU devices, with the reason (gloo sweeps sized for NCCL)")


@dataclass(frozen=True, kw_only=True, slots=True)
class TelemetryOverheadConfig:
    size: int = param(4096, "edge of the square GEMM, M = N = K", min=16)
    dtype: str = param("bf16", "matmul precision", choices=OVERHEAD_DTYPES)
    rounds: int = param(6, "A/B rounds of each comparison (off vs low, off vs high), ABBA order", min=2, max=100)
    round_s: float = param(1.0, "target length of one timed segment in s", min=0.01, max=60)
    low_hz: float = param(10.0, "the low sampling rate in Hz (aifbench's default; a telemetry interval's range)")
    high_hz: float = param(100.0, "the high sampling rate in Hz (a telemetry interval's range)")
    check_size: int = param(64, "edge of the correctness check against float64", min=1, max=4096)

    def __post_init__(self) -> None:
        for name in ("low_hz", "high_hz"):  # the one check of a sampling rate, wherever it is given
            interval_from_hz(getattr(self, name), f"telemetry_overhead.{name}", off=False)


# --- LLM ---------------------------------------------------------------------------------------
LLM_DTYPES = ("bf16", "fp16", "fp32")
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")


def shape_of(model: str, layers: int) -> LlamaShape:
    """The shape named (or read from a config.json), cut to `layers` layers when layers > 0."""
    shape = resolve_shape(model)
    if layers > shape.num_layers:
        raise ConfigError(f"layers {layers} > the {shape.num_layers} layers of {shape.name}")
    return with_layers(shape, layers) if layers else shape


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelConfig:
    """The config fields both LLM benchmarks start with: which shape, and how much of it."""

    model: str = param("tiny", "shape name (tiny, llama3-1b, llama3-3b, llama3-8b, llama3-70b, "
                               "llama3-405b) or path to a Hugging Face config.json (no weights)")
    layers: int = param(0, "use only the first N layers of the shape (0 = all)", min=0)

    def shape(self) -> LlamaShape:
        """ConfigError for an unknown name, an unreadable or malformed config.json, bad heads."""
        return shape_of(self.model, self.layers)

    def check_positions(self, positions: int, what: str) -> None:
        """ConfigError when `positions` exceed the shape's max_position_embeddings."""
        self.shape().check_positions(positions, what)


@dataclass(frozen=True, kw_only=True, slots=True)
class LlmTrainConfig(ModelConfig):
    micro_batch: int = param(1, "sequences per micro-batch per device", min=1)
    seq_len: int = param(2048, "tokens per sequence", min=2)
    grad_accum: int = param(1, "micro-batches per optimizer step", min=1)
    dtype: str = param("bf16", "bf16 mixed precision (fp32 master weights), fp32, or fp8 (torchao float8 linear "
                               "layers + bf16 autocast, one device, extra [fp8])", choices=("bf16", "fp32", "fp8"))
    compile: bool = param(False, "torch.compile every block and the head+loss")
    compile_backend: str = param("inductor", "torch.compile backend (eager: tests)", choices=COMPILE_BACKENDS)
    activation_checkpointing: bool = param(False, "recompute each block in backward (not counted in MFU)")
    lr: float = param(3e-4, "AdamW learning rate (betas 0.9, 0.95; weight decay 0.1)", min=0.0)
    reference: str = param("none", "also time this implementation in the same case on the same weights and "
                                   "batch (transformers: LlamaForCausalLM, sdpa; one device)", choices=TRAIN_REFERENCES)
    seed: int = param(0, "seed of the synthetic weights and tokens", min=0)
    ab_rounds: int = param(6, "reference only: A/B rounds (aifbench, reference; ABBA order) behind speedup_vs_ref",
                           min=2, max=100)
    ab_round_s: float = param(1.0, "reference only: length of one side's timed steps in an A/B round (s; at least "
                              "one step)", min=0.0, max=600.0)

    def __post_init__(self) -> None:
        self.check_positions(self.seq_len, "seq_len")
        if self.dtype == "fp8" and self.reference != "none":
            raise ConfigError(f"llm_train.reference: '{self.reference}' is compared in bf16 or fp32; "
                              f"with dtype fp8 allowed: none")


@dataclass(frozen=True, kw_only=True, slots=True)
class LlmInferConfig(ModelConfig):
    batch_size: int = param(1, "sequences decoded together", min=1)
    prompt_len: int = param(128, "prompt tokens per sequence (prefill length)", min=1)
    gen_tokens: int = param(64, "decode steps per generation (tokens per sequence after the first)", min=1)
    dtype: str = param("bf16", "weight and activation precision", choices=LLM_DTYPES)
    compile: bool = param(False, "torch.compile the decode step (with cuda_graphs: inductor's CUDA graphs)")
    compile_backend: str = param("inductor", "torch.compile backend (eager: tests)", choices=COMPILE_BACKENDS)
    compile_mode: str = param("default", "inductor mode of the decode step (max-autotune: GEMM autotuning)",
                              choices=COMPILE_MODES)
    cuda_graphs: bool = param(False, "capture the decode step in a CUDA graph (CUDA only)")
    decode_attention: str = param("sdpa", "SDPA backend of decode attention (math: inductor generates it, as "
                                          "gpt-fast)", choices=DECODE_ATTENTION)
    decode_window: int = param(0, "attend over the filled cache rounded up to a multiple of this (0 = whole cache)",
                               min=0)
    reference: str = param("none", "also time this implementation in the same case on the same weights and prompt "
                                   "(transformers: static cache + torch.compile)", choices=INFER_REFERENCES)
    check_tokens: int = param(4, "decode steps compared against a full forward before timing", min=1)
    ab_rounds: int = param(6, "reference only: A/B rounds (one decode generation of each, ABBA order) behind "
                              "speedup_vs_ref", min=2, max=100)
    seed: int = param(0, "seed of the synthetic weights and prompt", min=0)

    def __post_init__(self) -> None:
        self.check_positions(self.prompt_len + self.gen_tokens, "prompt_len + gen_tokens")


# --- each built-in benchmark, declared once: name, config, metrics, telemetry regions ----------
MEMBW = Declaration("membw", MembwConfig, emits=("gbps", "time_s"))
HOSTLINK = Declaration("hostlink", HostlinkConfig, emits=("link_gbps", "time_s"))
COLLECTIVES = Declaration("collectives", CollectivesConfig, emits=("busbw_gbps", "algbw_gbps", "time_s"))
TELEMETRY_OVERHEAD = Declaration("telemetry_overhead", TelemetryOverheadConfig, emits=(
    "overhead_ratio_low", "overhead_ratio_high", "overhead_loss_pct_low", "overhead_loss_pct_high",
    "overhead_off_tflops", "overhead_low_tflops", "overhead_high_tflops", "overhead_polls_per_s_low",
    "overhead_polls_per_s_high"))
LLM_TRAIN = Declaration("llm_train", LlmTrainConfig, emits=(
    "tokens_per_s", "tokens_per_s_per_device", "step_time_s", "model_tflops_per_device", "mfu_pct",
    "peak_memory_bytes", "loss", "ref_step_time_s", "ref_tokens_per_s", "ref_mfu_pct", "ref_peak_memory_bytes",
    "speedup_vs_ref"), regions=("ref",))
INFER_REF_EMITS = ("ref_decode_tokens_per_s", "ref_ttft_s", "speedup_vs_ref")
LLM_INFER = Declaration("llm_infer", LlmInferConfig, emits=(
    "decode_tokens_per_s", "decode_tokens_per_s_per_seq", "prefill_tokens_per_s", "ttft_s", "itl_s",
    "decode_time_s", "hbm_gbps", "decode_roofline_pct", "peak_memory_bytes") + INFER_REF_EMITS,
    regions=("ref", "prefill", "decode"))
GEMM = Declaration("gemm", GemmConfig, emits=(
    "tflops", "time_s", "bare_loop_tflops", "harness_overhead_pct", "burst_tflops"), regions=("bare", "burst"))

DECLARATIONS: dict[str, Declaration] = {d.name: d for d in (
    GEMM, MEMBW, HOSTLINK, COLLECTIVES, TELEMETRY_OVERHEAD, LLM_TRAIN, LLM_INFER)}
"""built-in benchmark name -> its declaration (registry reads it without importing torch)"""
EMITS: dict[str, tuple[str, ...]] = {n: d.emits for n, d in DECLARATIONS.items()}
"""benchmark name -> metric names it reports (all in aifbench.metrics)"""
CONFIGS: dict[str, type] = {n: d.config for n, d in DECLARATIONS.items()}
"""built-in benchmark name -> its Config class"""
