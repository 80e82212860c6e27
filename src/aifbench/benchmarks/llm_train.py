"""LLM training step: forward, backward and AdamW update of a Llama-3-style decoder.

One timed repeat = one optimizer step = `grad_accum` micro-batches of `micro_batch` x `seq_len`
synthetic tokens (the same global batch every step, so the loss must fall), then AdamW.
Precision: dtype bf16 = fp32 master weights with bf16 autocast on one device, or FSDP2's
MixedPrecisionPolicy(param bf16, reduce fp32) across ranks; fp32 = no autocast; fp8 (one device,
extra [fp8]) = bf16 with the block linears as torchao Float8Linear (aifbench.models.fp8), its
check losses within fp8.LOSS_TOLERANCE of a bf16 run of the same steps (_llm_fp8), MFU against
the bf16 dense peak; skipped with the reason without torchao or below compute capability 8.9.
With world_size > 1 every rank runs the case together and the model is sharded with FSDP2
(`fully_shard` per block, then the root); the global batch is world_size x the local one.

Metrics (definitions in aifbench.metrics):
  step_time_s           timing stats over the timed steps (warm-up steps excluded)
  tokens_per_s          global tokens per step / step time; _per_device = that / world_size
  model_tflops_per_device
                        F * tokens_per_s_per_device / 1e12, with F the model FLOPs per token
                        F = 6 * N + 12 * L * d_attn * T            (PaLM appendix B, flops.py)
                        its peak is the bf16 dense peak, so its pct_of_peak column is the MFU
  mfu_pct               100 * F * tokens_per_s_per_device / peak_bf16_flops
                        (emitted only when the device's bf16 peak is known; otherwise the
                        model_tflops_per_device rows carry an empty pct_of_peak and the catalog's
                        reason in peak_source, and no mfu_pct row is invented)
  peak_memory_bytes     stat max over the timed steps
  loss                  stat value: loss at the last timed step; raw samples: loss of every step
                        (check, warm-up, timed); detail: the sanity verdict (finite, falling)
With reference = "transformers" (one device), the same case then times Hugging Face
transformers' LlamaForCausalLM (attn_implementation sdpa) built with the SAME synthetic weights
(aifbench.models.hf_reference), on the same batch, autocast, AdamW, activation checkpointing and
compile backend (torch.compile of its forward + loss as one function), beside aifbench's own
model. Its first loss must equal aifbench's first loss (LOSS_MATCH[dtype]) and fall. Then both
are timed in `ab_rounds` A/B rounds (aifbench.ab: ABBA order, each side about `ab_round_s` of
steps per round), so drift in clocks and power hits both alike. Both models and optimizers stay
resident for the rounds (about twice the memory of the case without reference; running out of
memory there skips the case with the estimate):
  ref_step_time_s, ref_tokens_per_s, ref_mfu_pct   as above, from the reference's A/B segments
  (telemetry: aifbench's timed steps, its A/B segments included, are region "main", the
  reference's segments region "ref", so energy_j/tokens_per_j and ref_energy_j/ref_tokens_per_j
  each cover only that model's steps)
  ref_peak_memory_bytes  over the reference's check steps, minus what aifbench's model held
  speedup_vs_ref        per round: ref s/step / aifbench s/step (= tokens_per_s / ref_tokens_per_s);
                        stats mean, ci_low, ci_high (95 % paired t interval; >= 1: aifbench faster)
Without transformers the case is skipped with the reason (cases without reference still run).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math

import torch

from aifbench.ab import ABResult, interval_metrics, speedup_vs_ref
from aifbench.benchmarks import _llm
from aifbench.benchmarks._collective_ops import ranks_flagging
from aifbench.benchmarks.configs import LLM_TRAIN
from aifbench.benchmarks.configs import LlmTrainConfig
from aifbench.benchmarks._llm_step import CHECK_STEPS, adamw, train_step
from aifbench.benchmarks.base import Benchmark, Measurement, Metric, rate_metrics, time_metrics
from aifbench.errors import CorrectnessError
from aifbench.models import flops
from aifbench.benchmarks.registry import register
from aifbench.timing import Timer, TimingStats, summarize

log = logging.getLogger(__name__)
MFU_FORMULA = "mfu = (6*N + 12*L*d_attn*T) * tokens_per_s_per_device / peak_bf16_flops"
# |first reference loss - first aifbench loss| / first aifbench loss allowed: the same weights and
# batch through two implementations (measured on CPU, tiny: fp32 ~1e-7, bf16 autocast ~1e-3).
LOSS_MATCH = {"fp32": 1e-4, "bf16": 2e-2}
SPEEDUP_TOL = 0.05  # speedup_vs_ref's interval is noisy when its half-width exceeds 0.05 (5 % of parity)


@register
class LlmTrain(Benchmark):
    declaration = LLM_TRAIN
    description = "Llama training step (fwd, bwd, AdamW): tokens/s, MFU, memory; FSDP2 across ranks"
    multi_rank = True

    def __init__(self, config: LlmTrainConfig, ctx):
        super().__init__(config, ctx)
        self.shape = config.shape()
        self.fsdp = ctx.world_size > 1
        self.losses: list[torch.Tensor] = []
        self.check_losses: list[float] = []

    @property
    def tokens_per_step(self) -> int:
        """global tokens in one optimizer step"""
        c = self.config
        return c.micro_batch * c.seq_len * c.grad_accum * self.ctx.world_size

    def skip_reason(self) -> str | None:
        """This rank's reason, or (FSDP) the fact that another rank has one: all ranks skip together."""
        reason = self._local_skip_reason()
        if not self.fsdp or not self.ctx.distributed:
            return reason
        bad = ranks_flagging(reason is not None, self.ctx)
        if reason is None and bad:
            reason = f"rank(s) {bad} cannot run this case (their rows give the reason)"
        return reason

    def _local_skip_reason(self) -> str | None:
        c = self.config
        if self.fsdp and not self.ctx.distributed:
            return f"world_size {self.ctx.world_size} but torch.distributed is not initialised"
        if c.reference != "none":
            if self.fsdp:
                return f"reference {c.reference} is timed on one device; run it without --nproc/FSDP"
            from aifbench.models import hf_reference

            reason = hf_reference.unavailable_reason()
            if reason:
                return reason
        if c.dtype == "fp8":
            reason = _fp8_skip_reason(self.fsdp, self.ctx.device)
            if reason:
                return reason
        reason = _llm.dtype_skip_reason("fp32" if c.dtype == "fp32" else "bf16", self.ctx.device)
        if reason:
            return reason
        return _llm.fit_reason(self.memory_estimate_bytes, self.ctx, f"{self.shape.name} training")

    @property
    def memory_estimate_bytes(self) -> int:
        c = self.config
        return flops.train_memory_bytes(self.shape, micro_batch=c.micro_batch, seq_len=c.seq_len,
                                        world_size=self.ctx.world_size, checkpointing=c.activation_checkpointing,
                                        mixed_precision=c.dtype != "fp32")

    def _oom_as_skip(self):
        """One device: out of memory = skipped with the estimate. FSDP: other ranks would wait in a
        collective, so there it stays an error (setup's rank agreement still applies)."""
        if self.fsdp:
            return contextlib.nullcontext()
        return _llm.oom_as_skip(f"{self.shape.name} training", self.memory_estimate_bytes)

    def _agree(self, problem: str | None, what: str) -> None:
        """Raise on every rank when any rank has a problem (FSDP ranks must not wait on a dead one)."""
        bad = ranks_flagging(problem is not None, self.ctx) if self.fsdp else []
        if bad and problem is None:
            problem = f"{what} failed on rank(s) {bad} (their rows give the reason)"
        if problem is not None:
            raise CorrectnessError(problem) if what == "check" else RuntimeError(problem)

    # --- setup ----------------------------------------------------------------------------
    def setup(self) -> None:
        problem = None
        try:
            with self._oom_as_skip():
                self._setup()
        except Exception as exc:  # e.g. out of memory on this rank only
            if not self.fsdp:
                raise
            problem = f"{type(exc).__name__}: {exc}"
        self._agree(problem, "setup")

    def _setup(self) -> None:
        from aifbench.models.llama import Llama, build_model

        c, dev = self.config, self.ctx.device
        self.batches = self._make_batches()
        if c.dtype == "fp8":  # the bf16 run it must agree with, before the fp8 model exists
            from aifbench.benchmarks._llm_fp8 import bf16_losses

            self.bf16_losses = bf16_losses(self)
        if self.fsdp:  # meta -> shard -> materialise only this rank's shards -> fill them
            with torch.device("meta"):
                model = Llama(self.shape, max_seq_len=c.seq_len)
        else:
            model = build_model(self.shape, device=dev, max_seq_len=c.seq_len, seed=c.seed)
        model.activation_checkpointing = c.activation_checkpointing
        if c.dtype == "fp8":
            from aifbench.models import fp8

            self.fp8_layers = fp8.convert(model)
        if c.compile:
            model.compile_parts(backend=c.compile_backend)
        if self.fsdp:
            _shard(model, mixed_bf16=c.dtype == "bf16")
            model.to_empty(device=dev)
            model.init_weights(c.seed + self.ctx.rank)
        model.train()
        self.model = model
        self.optimizer = adamw(model, c.lr, self.ctx.is_cuda)

    def _make_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        c = self.config
        gen = torch.Generator(device="cpu").manual_seed(c.seed + 1000 + self.ctx.rank)
        data = torch.randint(self.shape.vocab_size, (c.grad_accum, c.micro_batch, c.seq_len + 1), generator=gen)
        data = data.to(self.ctx.device)
        return [(data[i, :, :-1], data[i, :, 1:]) for i in range(c.grad_accum)]

    def _autocast(self):
        if self.config.dtype == "fp32" or self.fsdp:  # FSDP2 casts parameters itself
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda" if self.ctx.is_cuda else "cpu", dtype=torch.bfloat16)

    def step(self) -> None:
        """One optimizer step over the global batch; appends the mean micro-batch loss (on device)."""
        last = len(self.batches) - 1
        sync = (lambda i: self.model.set_requires_gradient_sync(i == last)) if self.fsdp else None
        self.losses.append(train_step(self.model, self.batches, self.optimizer, self._autocast, sync))

    # --- check and measure ------------------------------------------------------------------
    def check(self) -> None:
        """Loss finite and falling over CHECK_STEPS steps on the repeated batch (also compiles)."""
        with self._oom_as_skip():
            for _ in range(CHECK_STEPS):
                self.step()
        self.check_losses = [v.item() for v in self.losses]
        problem = _loss_problem(self.check_losses, "training")
        if problem is None and self.config.dtype == "fp8":
            from aifbench.models import fp8

            problem = fp8.loss_problem(self.check_losses, self.bf16_losses)
        self._agree(problem, "check")

    def measure(self, timer: Timer) -> Measurement:
        with self._oom_as_skip():
            return self._measure(timer)

    def _measure(self, timer: Timer) -> Measurement:
        self.losses = []
        with _llm.PeakMemory(self.ctx.device) as mem:
            stats = timer.time(self.step)
        losses = self.check_losses + [v.item() for v in self.losses]
        if not all(math.isfinite(v) for v in losses):
            raise CorrectnessError(f"training loss became non-finite: {_llm.fmt_seq(losses)}")
        out = time_metrics(stats, "step_time_s")
        out.metrics += self._throughput(stats)
        out.metrics.append(Metric("peak_memory_bytes", mem.peak_bytes, stat="max", n_samples=stats.n,
                                  detail=mem.detail))
        verdict = "falling" if losses[-1] < losses[0] else "NOT falling"
        detail = f"sanity: finite, {verdict} on a repeated batch over {len(losses)} steps ({losses[0]:.4g} -> " \
                 f"{losses[-1]:.4g})"
        if self.config.dtype == "fp8":
            from aifbench.models import fp8

            detail += f"; {len(self.fp8_layers)} Float8Linear layers; " + \
                fp8.comparison(self.check_losses, self.bf16_losses) + "; mfu_pct against the bf16 dense peak"
        out.metrics.append(Metric("loss", losses[-1], stat="value", n_samples=len(losses), detail=detail))
        out.samples["loss"] = losses
        if self.config.reference != "none":
            with _llm.oom_as_skip(f"the {self.config.reference} reference of {self.shape.name} training",
                                  self.memory_estimate_bytes):
                out.extend(self._reference(timer, stats))
        return out

    def _throughput(self, stats: TimingStats) -> list[Metric]:
        per_device = self.tokens_per_step / self.ctx.world_size
        flops_per_token = flops.train_flops_per_token(self.shape, self.config.seq_len)
        peak = self.ctx.peak("tflops:bf16")
        rows = rate_metrics("tokens_per_s", self.tokens_per_step, stats, 1.0)
        rows += rate_metrics("tokens_per_s_per_device", per_device, stats, 1.0)
        model_rows = rate_metrics("model_tflops_per_device", flops_per_token * per_device, stats, 1e-12, peak,
                                  f"F = {flops_per_token:.6g} FLOP/token (6*N + 12*L*d_attn*T)")
        rows += model_rows
        return rows + _mfu_rows("mfu_pct", model_rows, peak)

    # --- reference implementation -------------------------------------------------------------
    def _reference(self, timer: Timer, own: TimingStats) -> Measurement:
        """Build the reference on the same weights and batch beside aifbench's model, check it,
        then time both in aifbench.ab rounds (ABBA) for speedup_vs_ref."""
        from aifbench.models import hf_reference

        c, dev = self.config, self.ctx.device
        resident = torch.cuda.memory_allocated(dev) if self.ctx.is_cuda else 0  # aifbench's model, kept
        hf = hf_reference.build(self.shape, device=dev, seed=c.seed, max_seq_len=c.seq_len)
        if c.activation_checkpointing:
            hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        hf.train()
        loss_fn = hf_reference.loss_fn(hf)
        if c.compile:
            loss_fn = torch.compile(loss_fn, backend=c.compile_backend)
        optimizer = adamw(hf, c.lr, self.ctx.is_cuda)
        losses: list[torch.Tensor] = []

        def step() -> None:
            losses.append(train_step(loss_fn, self.batches, optimizer, self._autocast))  # noqa: F821 (del'd after its last call)

        with _llm.PeakMemory(dev) as mem:
            for _ in range(CHECK_STEPS):
                step()
        first = [v.item() for v in losses]
        what = f"transformers {hf_reference.version()} LlamaForCausalLM (sdpa)"
        self._check_reference(first, what)
        calls = max(1, math.ceil(c.ab_round_s / own.median_s))
        ab = speedup_vs_ref(timer, self.step, step, rounds=c.ab_rounds, calls=calls)
        del hf, optimizer, loss_fn
        self._free_model()
        detail = (f"{what}; same weights, batch, AdamW; compile={c.compile} ({c.compile_backend}, forward+loss); "
                  f"first loss {first[0]:.6g} (aifbench {self.check_losses[0]:.6g})")
        return self._reference_rows(ab, max(0, mem.peak_bytes - resident), mem.detail, detail)

    def _check_reference(self, losses: list[float], what: str) -> None:
        problem = _loss_problem(losses, f"reference {what}")
        own = self.check_losses[0]
        rel = abs(losses[0] - own) / abs(own)
        if problem is None and not rel <= LOSS_MATCH[self.config.dtype]:
            problem = (f"reference {what} first loss {losses[0]:.6g} differs from aifbench's {own:.6g} by "
                       f"{rel:.3g} > {LOSS_MATCH[self.config.dtype]:g}: not the same model")
        if problem:
            raise CorrectnessError(problem)

    def _reference_rows(self, ab: ABResult, peak_bytes: int, mem_detail: str, detail: str) -> Measurement:
        """ref_* rows from the reference side of the A/B rounds; speedup_vs_ref their paired mean
        with its 95 % interval (noisy when wider than ±SPEEDUP_TOL)."""
        stats = summarize(ab.b_s)
        out = time_metrics(stats, "ref_step_time_s")
        flops_per_token = flops.train_flops_per_token(self.shape, self.config.seq_len)
        out.metrics += rate_metrics("ref_tokens_per_s", self.tokens_per_step, stats, 1.0, detail=detail)
        model_rows = rate_metrics("model_tflops_per_device", flops_per_token * self.tokens_per_step, stats, 1e-12,
                                  self.ctx.peak("tflops:bf16"))
        out.metrics += _mfu_rows("ref_mfu_pct", model_rows, self.ctx.peak("tflops:bf16"))
        out.metrics.append(Metric("ref_peak_memory_bytes", peak_bytes, stat="max", n_samples=CHECK_STEPS,
                                  detail=f"{mem_detail}, over the reference's first {CHECK_STEPS} steps, minus "
                                         "what aifbench's model held (both stay resident for the A/B rounds)"))
        out.extend(interval_metrics("speedup_vs_ref", ab, SPEEDUP_TOL,
                                    "per round: reference s/step / aifbench s/step (= tokens_per_s / "
                                    "ref_tokens_per_s)"))
        return out

    def _free_model(self) -> None:
        self.model = self.optimizer = None
        gc.collect()
        if self.ctx.is_cuda:
            torch.cuda.empty_cache()

    def teardown(self) -> None:
        self.model = self.optimizer = self.batches = None
        self.losses = []


def _fp8_skip_reason(fsdp: bool, device: str) -> str | None:
    if fsdp:
        return "dtype fp8 is timed on one device; run it without --nproc/FSDP"
    from aifbench.models import fp8

    return fp8.unavailable_reason(device)


def _loss_problem(losses: list[float], what: str) -> str | None:
    """Why `losses` (consecutive steps on one repeated batch) fail the sanity check, or None."""
    if not all(math.isfinite(v) for v in losses):
        return f"{what} loss not finite: {_llm.fmt_seq(losses)}"
    if not losses[-1] < losses[0]:
        return f"{what} loss not falling on a repeated batch: {_llm.fmt_seq(losses)}"
    return None


def _mfu_rows(name: str, model_rows: list[Metric], peak: tuple[float | None, str]) -> list[Metric]:
    """MFU in % of the bf16 dense peak from model TFLOP/s rows; none (and a log line) without a peak."""
    peak_tflops, source = peak
    if not peak_tflops:
        log.info("%s not reported: %s", name, source)
        return []
    return [Metric(name, 100.0 * m.value / peak_tflops, stat=m.stat, n_samples=m.n_samples, noisy=m.noisy,
                   peak_source=source, detail=MFU_FORMULA)
            for m in model_rows]



def _shard(model, mixed_bf16: bool) -> None:
    """FSDP2: fully_shard every block, then the root (embedding, norm, lm_head)."""
    try:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    except ImportError:  # torch < 2.6
        from torch.distributed._composable.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if mixed_bf16 \
        else MixedPrecisionPolicy()
    for layer in model.layers:
        fully_shard(layer, mp_policy=mp)
    fully_shard(model, mp_policy=mp)
