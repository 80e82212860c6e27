"""Dense GEMM throughput: C = A @ B, TFLOP/s = 2*M*N*K / median time.

Shapes: explicit (m, n, k), square (m³: N = K = m), or LLM-shaped from a token count and model width
(y = x W^T with x of tokens × hidden): qkv (N = 3·hidden), attn_out (N = hidden), mlp_up
(K = hidden, N = ffn_hidden, default 4·hidden), mlp_down (K = ffn_hidden, N = hidden).
dtypes: fp64, fp32 (TF32 off), tf32 (fp32 storage, TF32 tensor-core math, CUDA only), bf16,
fp16, and fp8 (e4m3 inputs with per-tensor scales through torch._scaled_mm, bf16 output; CUDA
compute capability >= 8.9 or ROCm gfx942/gfx950, skipped with the reason elsewhere).
Inputs rotate among several buffer sets (enough to exceed 4x the last-level cache by default)
so a small GEMM cannot be served from L2. Correctness is checked before timing, against float64
on the same rounded inputs, at a small square size and on a corner block of the real buffers.
`bare_loop` also times the operation called directly, as a user would write it
(`torch.matmul(a, b)`, or `torch._scaled_mm(...)` for fp8, on the same rotated inputs), against
the harness's own timed call through aifbench.ab's A/B protocol: `ab_rounds` rounds in ABBA order,
each side one segment of the same number of back-to-back calls (about `ab_round_s` long) under
one event pair; harness_overhead_pct is the mean of the per-round (1 - bare/harness) x 100 with
its 95 % paired t interval (stats mean, ci_low, ci_high; noisy when the half-width exceeds the
±3 % band the partition acceptance judges it against). `warmup_s` adds untimed
calls for that many seconds first, so GPU clocks and power draw settle before anything is timed.
Sustained and burst: `tflops` is the sustained figure (after `warmup_s` of settling, at the
clocks and power the device then holds: a power-capped GPU runs below its boost clock). With
`burst`, the case first idles `burst_idle_s`, makes 3 untimed calls, then times every call of a
`burst_s` window alone (at least 10) in telemetry region "burst": burst_tflops (median and max
over the calls, raw per-call samples kept), the figure vendor and blog peaks are comparable to.
`gpu_only` skips a case on a CPU device (cases sized for GPUs, such as the acceptance suite's).
A timed sample holds enough back-to-back calls to last `min_sample_s` (1 ms), so a small GEMM is
not timed as one kernel launch on an idle GPU; the count is in the detail column (inner=).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from aifbench.ab import ABResult, interval_metrics, region_of, run_ab
from aifbench.benchmarks.configs import GEMM
from aifbench.benchmarks._gemm_shape import MAX_BUFFERS, GemmConfig, bytes_moved, dims, out_dtype  # noqa: F401 (GemmConfig re-exported)
from aifbench.benchmarks._shared import gpu_only_reason, torch_dtype
from aifbench.benchmarks.base import Benchmark, Measurement, Metric, rate_metrics, time_metrics
from aifbench.errors import CorrectnessError
from aifbench.benchmarks.registry import register
from aifbench.timing import Timer, TimingStats, summarize, summarize_figures
from aifbench.units import DTYPE_BYTES, MiB

# relative Frobenius error allowed against float64 on the same rounded inputs
TOLERANCE = {"fp64": 1e-12, "fp32": 1e-4, "tf32": 5e-3, "bf16": 2e-2, "fp16": 5e-3, "fp8": 2e-2}
BURST_MIN_CALLS, BURST_MAX_CALLS = 10, 100000  # calls timed in a burst window
HARNESS_TOL_PCT = 3.0  # the acceptance band of harness_overhead_pct is ±3 %: wider intervals are noisy
FP8_MAX = {"float8_e4m3fn": 448.0, "float8_e4m3fnuz": 240.0}


def fp8_dtype(device: str) -> tuple[torch.dtype | None, str]:
    """The fp8 e4m3 dtype torch._scaled_mm takes on `device`, or None and why not."""
    if not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn") or torch.__version__ < "2.4":
        # before 2.4, _scaled_mm returned (out, amax) and its out= variant needed out_amax too
        return None, f"fp8 GEMM needs torch >= 2.4 (torch._scaled_mm returning one tensor); this is {torch.__version__}"
    if not device.startswith("cuda"):
        return None, "fp8 GEMM is measured on GPUs only: a CPU has no fp8 matrix units"
    if getattr(torch.version, "hip", None):
        arch = getattr(torch.cuda.get_device_properties(device), "gcnArchName", "")
        if arch.startswith("gfx942"):
            return torch.float8_e4m3fnuz, ""
        if arch.startswith("gfx950"):
            return torch.float8_e4m3fn, ""
        return None, f"fp8 matrix math needs MI300 (gfx942) or newer; this GPU is {arch or 'unknown'}"
    cc = torch.cuda.get_device_capability(device)
    if cc < (8, 9):
        return None, f"fp8 tensor cores need compute capability 8.9 or newer; this GPU has {cc[0]}.{cc[1]}"
    return torch.float8_e4m3fn, ""


def dtype_skip_reason(dtype: str, device: str) -> str | None:
    """Why `dtype` matmul cannot be measured on `device`, or None."""
    if dtype == "fp8":
        return fp8_dtype(device)[1] or None
    if device.startswith("cuda"):
        if dtype == "bf16" and not torch.cuda.is_bf16_supported():
            return "bf16 needs compute capability 8.0 or newer"
        if dtype == "tf32" and getattr(torch.version, "hip", None):
            return "tf32 on ROCm (xf32) is not switched by torch.backends.cuda.matmul.allow_tf32; measure fp32"
        if dtype == "tf32" and torch.cuda.get_device_capability(device)[0] < 8:
            return "tf32 needs compute capability 8.0 or newer"
        return None
    if dtype == "tf32":
        return "tf32 is a CUDA tensor-core mode; on CPU use fp32"
    return None


class Tf32:
    """Context manager that allows TF32 matmul math only for dtype 'tf32' (restored on exit)."""

    def __init__(self, dtype: str):
        self.allow = dtype == "tf32"

    def __enter__(self):
        self.saved = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = self.allow

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32 = self.saved


# --- operands ---------------------------------------------------------------------------------

@dataclass
class Operands:
    """One buffer set: A (M×K), B (K×N; fp8: a column-major view), C (M×N), fp8 scales."""

    a: torch.Tensor
    b: torch.Tensor
    c: torch.Tensor
    scale_a: torch.Tensor | None = None
    scale_b: torch.Tensor | None = None

    def reference(self, rows: int, cols: int) -> torch.Tensor:
        """float64 A[:rows] @ B[:, :cols] on the rounded (and, for fp8, dequantised) inputs."""
        a, b = self.a[:rows].double(), self.b[:, :cols].double()
        if self.scale_a is not None:
            a, b = a * self.scale_a.double(), b * self.scale_b.double()
        return a @ b


def quantize_fp8(x: torch.Tensor, fp8: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor scaled e4m3: x ≈ q * scale, |q| <= the format's largest finite value."""
    scale = (x.abs().max().float() / FP8_MAX[str(fp8).split(".")[-1]]).clamp(min=1e-12)
    return (x / scale).to(fp8), scale.reshape(())


def make_operands(m: int, n: int, k: int, dtype: str, device: str, seed: int, fp8: torch.dtype | None = None) -> Operands:
    """Random inputs (standard normal, fixed seed) rounded to `dtype`, and an output buffer."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    a, b_t = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen)
    if dtype == "fp8":
        qa, sa = quantize_fp8(a, fp8)
        qb, sb = quantize_fp8(b_t, fp8)
        # _scaled_mm wants B column-major: B = (N×K row-major).t()
        return Operands(qa.to(device), qb.to(device).t(), torch.empty(m, n, device=device, dtype=torch.bfloat16),
                        sa.to(device), sb.to(device))
    dt = torch_dtype(dtype)
    return Operands(a.to(device, dt), b_t.t().contiguous().to(device, dt), torch.empty(m, n, device=device, dtype=dt))


def matmul_fn(dtype: str, fast_accum: bool = False, into_c: bool = True) -> Callable[[Operands], object]:
    """The call for one buffer set: into its C (the timed call), or allocating its result as
    torch called directly would (`into_c=False`, the bare loop's reference)."""
    if dtype == "fp8":
        def fp8_call(o: Operands) -> object:
            out = {"out": o.c} if into_c else {}
            return torch._scaled_mm(o.a, o.b, scale_a=o.scale_a, scale_b=o.scale_b, out_dtype=torch.bfloat16,
                                    use_fast_accum=fast_accum, **out)
        return fp8_call
    if into_c:
        return lambda o: torch.matmul(o.a, o.b, out=o.c)
    return lambda o: torch.matmul(o.a, o.b)


def relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    return (torch.linalg.norm(got.double().cpu() - ref.cpu()) / torch.linalg.norm(ref.cpu())).item()


def check_operands(o: Operands, call: Callable[[Operands], object], dtype: str, rows: int = 8, cols: int = 64) -> float:
    """Run the call once and compare a corner block of C with float64; returns the relative error."""
    call(o)
    rows, cols = min(rows, o.c.shape[0]), min(cols, o.c.shape[1])
    err = relative_error(o.c[:rows, :cols], o.reference(rows, cols))
    if not err <= TOLERANCE[dtype]:
        raise CorrectnessError(f"{dtype} GEMM relative error {err:.2e} > {TOLERANCE[dtype]:.0e}")
    return err


def auto_buffers(set_bytes: int, cache_bytes: int | None) -> int:
    """Sets needed so the rotated working set exceeds 4x the last-level cache (1..16)."""
    cache = cache_bytes or 64 * MiB
    return max(1, min(MAX_BUFFERS, math.ceil(4 * cache / max(1, set_bytes))))


def harness_overhead_pct(harness_s: float, bare_s: float) -> float:
    """(bare TFLOP/s - harness TFLOP/s) / bare TFLOP/s x 100 of one A/B round = (1 - bare/harness) x 100."""
    return 100.0 * (1.0 - bare_s / harness_s)


def settle(timer: Timer, call: Callable[[], object], seconds: float) -> int:
    """Call `call` untimed for at least `seconds` of timer time, 8 calls per span; returns the calls."""
    calls, spent = 0, 0.0
    while spent < seconds:
        spent += timer.time_once(call, 8)
        calls += 8
    return calls


@register
class Gemm(Benchmark):
    declaration = GEMM
    description = "dense matmul TFLOP/s (fp64, fp32, tf32, bf16, fp16, fp8), square and LLM shapes, checked against float64"

    def _n_buffers(self) -> int:
        if self.config.buffers:
            return self.config.buffers
        from aifbench.hardware.detect import last_level_cache_bytes

        return auto_buffers(bytes_moved(*dims(self.config), self.config.dtype),
                            last_level_cache_bytes(self.ctx.device))

    def skip_reason(self) -> str | None:
        c = self.config
        m, n, k = dims(c)
        reason = gpu_only_reason(c.gpu_only, self.ctx, f"{m}x{n}x{k} {c.dtype}") or dtype_skip_reason(c.dtype, self.ctx.device)
        if reason:
            return reason
        if c.dtype == "fp8" and (m % 16 or n % 16 or k % 16):
            return f"fp8 GEMM (torch._scaled_mm) needs M, N, K divisible by 16; got {m}x{n}x{k}"
        from aifbench.hardware.detect import memory_skip_reason

        # inputs and outputs, plus the results the bare loop allocates (the caching allocator keeps two)
        buffers, out_bytes = self._n_buffers(), m * n * DTYPE_BYTES[out_dtype(c.dtype)]
        need = buffers * bytes_moved(m, n, k, c.dtype) + (2 * out_bytes if c.bare_loop else 0)
        return memory_skip_reason(need, self.ctx.device, self.ctx.world_size,
                                  f" ({m}x{n}x{k} {c.dtype}, {buffers} buffer sets)")

    def setup(self) -> None:
        c, dev = self.config, self.ctx.device
        m, n, k = dims(c)
        fp8 = fp8_dtype(dev)[0] if c.dtype == "fp8" else None
        self.call = matmul_fn(c.dtype, c.fp8_fast_accum)
        self.direct = matmul_fn(c.dtype, c.fp8_fast_accum, into_c=False)
        self.sets = [make_operands(m, n, k, c.dtype, dev, seed=i, fp8=fp8) for i in range(self._n_buffers())]

    def check(self) -> None:
        """The timed call, and the bare loop's direct call, against float64 before any timing."""
        c, dev = self.config, self.ctx.device
        s = -(-c.check_size // 16) * 16  # fp8 needs multiples of 16
        fp8 = fp8_dtype(dev)[0] if c.dtype == "fp8" else None
        with Tf32(c.dtype):
            small = make_operands(s, s, s, c.dtype, dev, seed=1000, fp8=fp8)
            check_operands(small, self.call, c.dtype, rows=s, cols=s)
            check_operands(self.sets[0], self.call, c.dtype)
            if c.bare_loop:
                check_operands(small, lambda o: o.c.copy_(self.direct(o)), c.dtype, rows=s, cols=s)

    def measure(self, timer: Timer) -> Measurement:
        c = self.config
        m, n, k = dims(c)
        order = itertools.cycle(self.sets)
        call = self.call

        def step() -> object:
            return call(next(order))

        with Tf32(c.dtype):
            burst = self._burst(timer, step) if c.burst else None
            settled = settle(timer, step, c.warmup_s)
            inner = (timer.calls_lasting(step, c.min_sample_s, floor=timer.config.inner, cap=10000)
                     if c.min_sample_s > 0 else timer.config.inner)
            detail = f"m={m} n={n} k={k} buffers={len(self.sets)} inner={inner}"
            if c.warmup_s:
                detail += f" settled={settled} calls in {c.warmup_s:g}s"
            stats = timer.time(step, inner=inner)
            ab = self._harness_ab(timer, step, inner) if c.bare_loop else None
        flops = 2.0 * m * n * k
        peak = self.ctx.peak(f"tflops:{c.dtype}")
        out = time_metrics(stats)
        out.metrics += rate_metrics("tflops", flops, stats, 1e-12, peak, detail)
        if ab is not None:
            out.extend(self._harness_rows(ab, flops, peak, detail))
        if burst is not None:
            out.metrics += rate_metrics("burst_tflops", flops, burst, 1e-12, peak,
                                        f"m={m} n={n} k={k}; burst: {c.burst_idle_s:g} s idle, 3 untimed calls, "
                                        f"{burst.n} calls timed one by one over {sum(burst.samples_s):.3g} s")
            out.samples["burst_tflops"] = [flops / t * 1e-12 for t in burst.samples_s]
        return out

    def _burst(self, timer: Timer, step: Callable[[], object]) -> TimingStats:
        """Per-call times of a `burst_s` window (at least BURST_MIN_CALLS calls) from an idle GPU:
        nothing queued for `burst_idle_s`, 3 untimed calls, then each call timed alone in telemetry
        region "burst" (its clocks and power kept apart from the sustained figure's)."""
        c = self.config
        timer.synchronize()
        time.sleep(c.burst_idle_s)
        for _ in range(3):
            step()
        samples: list[float] = []
        with region_of(timer)("burst"):
            while (sum(samples) < c.burst_s or len(samples) < BURST_MIN_CALLS) and len(samples) < BURST_MAX_CALLS:
                samples.append(timer.time_once(step))
        return summarize(samples)

    def _harness_ab(self, timer: Timer, step: Callable[[], object], inner: int) -> ABResult:
        """A/B rounds: the harness's timed call (into C) vs the direct call, same rotated sets and
        the same calls per segment; the direct call warms up first (its first allocation)."""
        c, direct, order = self.config, self.direct, itertools.cycle(self.sets)

        def bare() -> object:
            return direct(next(order))

        for _ in range(max(timer.config.warmup, len(self.sets))):
            bare()
        calls = max(inner, timer.calls_lasting(step, c.ab_round_s, cap=100000)) if c.ab_round_s > 0 else inner
        return run_ab(timer, step, bare, rounds=c.ab_rounds, calls_a=calls, paired=harness_overhead_pct,
                      regions=("main", "bare"))

    def _harness_rows(self, ab: ABResult, flops: float, peak: tuple[float | None, str], detail: str) -> Measurement:
        """bare_loop_tflops (median over rounds) and harness_overhead_pct (mean, ci_low, ci_high)."""
        what = "torch._scaled_mm" if self.config.dtype == "fp8" else "torch.matmul"
        how = f"{detail}; bare loop: {what} called directly"
        bare = [flops / s * 1e-12 for s in ab.b_s]
        st = summarize_figures(bare)
        out = interval_metrics("harness_overhead_pct", ab, HARNESS_TOL_PCT, how)
        out.metrics.append(Metric("bare_loop_tflops", st.median, stat="median", n_samples=st.n, noisy=st.noisy, peak=peak[0],
                                  peak_source=peak[1], detail=how))
        out.samples["bare_loop_tflops"] = bare
        return out

    def teardown(self) -> None:
        self.sets = []
