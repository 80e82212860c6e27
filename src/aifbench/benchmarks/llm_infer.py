"""LLM inference: prefill a synthetic prompt, then greedy decode with the KV cache.

One case = `batch_size` sequences of `prompt_len` prompt tokens, then `gen_tokens` decode steps
(one token per sequence each). Weights are in `dtype` (no autocast). Sweeps over batch size and
context length come from the suite (`sweep = { batch_size = [...], prompt_len = [...] }`).

Before timing, check(): the logits of the cached path (prefill, then the decode step exactly as
it will be timed: eager, compiled or CUDA-graphed) must match a full causal forward over the same
tokens within _llm.DECODE_TOLERANCE[dtype] (||diff|| / ||reference||, Frobenius norm over the first rows of
the batch and every checked position). Synthetic weights use unit-variance init (llama.py) so a
wrong position, mask or cache entry moves the logits by 10-30 %, far above the tolerances.

Metrics (definitions in aifbench.metrics):
  ttft_s                 prefill of the prompt + argmax of the first token; stats over repeats
  prefill_tokens_per_s   batch_size * prompt_len / TTFT
  decode_time_s          gen_tokens decode steps of one generation; stats and raw samples per repeat
  decode_tokens_per_s    batch_size * gen_tokens / decode_time_s (per-seq: / batch)
  itl_s                  p50/p90/p99 of the time between consecutive decode steps, all repeats;
                         raw samples kept. GPU: CUDA events between steps, no host sync per token
  hbm_gbps               sum over steps of (weights + useful KV bytes) / decode time; per step:
                         every weight once (input embedding: only B rows), K and V of positions
                         0..p for the step at position p (flops.decode_bytes_per_step). The static
                         cache actually reads its full length; the surplus is not credited.
                         pct_of_peak against ctx.peak('hbm_gbps')
  decode_roofline_pct    the figure to read for "% of the HBM roofline": 100 * roofline
                         step time / measured step time, roofline step time = weight bytes of one
                         step (flops.decode_weight_bytes) / HBM datasheet peak. KV bytes are not
                         in it, so it stays <= hbm_gbps's % of peak; emitted only where the
                         catalog knows the HBM peak; the detail names the roofline in ms/step and
                         tokens/s per sequence. llama3-8b bf16, batch 1, H100 SXM (3350 GB/s): 15.01 GB
                         -> 4.48 ms, 223 tokens/s (80 % = 179 tokens/s). The untied input table
                         (1.05 GB) is not counted: a step reads only B of its rows. Counting all
                         16.06 GB of weights would give 209 tokens/s ("about 165" would be 79 %).
  peak_memory_bytes      over the timed prefills and generations
With reference = "transformers": ref_ttft_s, ref_decode_tokens_per_s, speedup_vs_ref from Hugging Face
generation on the same weights and prompt after this model is freed (_llm_ref). The timed step and its
levers (decode_attention, decode_window, compile_mode, greedy argmax inside the step) are built in
_llm_decode; python -m aifbench.llm_profile shows its kernels per step.
Telemetry: the timed prefills are region "prefill" (its warm-up outside), the timed decode steps
of every generation region "decode" (one segment per generation; its prefill outside): the
case has prefill_energy_j, prefill_power_mean_w, prefill_tokens_per_j, decode_energy_j,
decode_power_mean_w, decode_tokens_per_j, decode_gbps_per_w, ... and no region "main".
"""

from __future__ import annotations

import logging

import torch

from aifbench.benchmarks import _llm, _llm_decode, _llm_ref
from aifbench.benchmarks._shared import torch_dtype
from aifbench.benchmarks.configs import LLM_INFER
from aifbench.benchmarks.configs import LlmInferConfig
from aifbench.benchmarks.base import Benchmark, Measurement, Metric, rate_metrics, time_metrics
from aifbench.errors import CorrectnessError
from aifbench.models import flops
from aifbench.benchmarks.registry import register
from aifbench.timing import Timer, TimingStats, quantile, summarize
from aifbench.units import DTYPE_BYTES

log = logging.getLogger(__name__)
CHECK_ROWS = 2  # sequences of the batch compared against the full forward


@register
class LlmInfer(Benchmark):
    declaration = LLM_INFER
    description = "Llama prefill + KV-cache decode: prefill tokens/s, decode tokens/s, TTFT, ITL, HBM GB/s"

    def __init__(self, config: LlmInferConfig, ctx):
        super().__init__(config, ctx)
        self.shape = config.shape()
        self.dtype_bytes = DTYPE_BYTES[config.dtype]

    def skip_reason(self) -> str | None:
        c = self.config
        if c.cuda_graphs and not self.ctx.is_cuda:
            return "cuda_graphs needs a CUDA device"
        reason = _llm.dtype_skip_reason(c.dtype, self.ctx.device) or _llm_ref.skip_reason(c.reference)
        if reason:
            return reason
        return _llm.fit_reason(self.memory_estimate_bytes, self.ctx, f"{self.shape.name} inference")

    @property
    def memory_estimate_bytes(self) -> int:
        c = self.config
        return flops.infer_memory_bytes(self.shape, batch=c.batch_size, prompt_len=c.prompt_len,
                                        gen_tokens=c.gen_tokens, dtype_bytes=self.dtype_bytes)

    def _oom_as_skip(self):
        return _llm.oom_as_skip(f"{self.shape.name} inference", self.memory_estimate_bytes)

    def setup(self) -> None:
        with self._oom_as_skip():
            self._setup()

    def _setup(self) -> None:
        from aifbench.models.llama import build_model

        c, dev = self.config, self.ctx.device
        total = c.prompt_len + c.gen_tokens
        self.model = build_model(self.shape, device=dev, dtype=torch_dtype(c.dtype), max_seq_len=total, seed=c.seed)
        self.model.eval()
        self.model.setup_cache(c.batch_size, total)
        gen = torch.Generator(device="cpu").manual_seed(c.seed + 1)
        self.prompt = torch.randint(self.shape.vocab_size, (c.batch_size, c.prompt_len), generator=gen).to(dev)
        # one (1,) tensor per decode position: same shape and storage offset every step (no recompiles)
        self.decode_pos = [torch.tensor([p], device=dev) for p in range(c.prompt_len, total)]
        with torch.no_grad():
            self.decode_fn = self._decode_fn()

    def _decode_fn(self) -> _llm_decode.Step:
        c = self.config
        settings = _llm_decode.DecodeSettings(c.compile, c.compile_backend, c.cuda_graphs, c.compile_mode,
                                              c.decode_attention, c.decode_window)
        return _llm_decode.build_step(self.model, settings, self.decode_pos, c.prompt_len, self.prompt[:, :1])

    # --- one generation ----------------------------------------------------------------------
    def first_token(self) -> torch.Tensor:
        """Prefill the prompt; the greedy first generated token (B, 1) on the device."""
        return self.model.prefill(self.prompt).argmax(-1, keepdim=True)

    def decode_steps(self, token: torch.Tensor, n: int, timer: Timer | None = None,
                     keep_logits: bool = False):
        """n greedy decode steps after the prompt; per-step seconds (with timer) or the logits."""
        logits_out = []
        state = {"token": token}

        def step(i: int) -> None:
            state["token"], logits = self.decode_fn(state["token"], i)
            if keep_logits:
                logits_out.append(logits.float().clone())

        if timer is not None:
            return _llm.token_times(step, n, timer)
        for i in range(n):
            step(i)
        return logits_out

    # --- check and measure -------------------------------------------------------------------
    def check(self) -> None:
        c = self.config
        n = min(c.check_tokens, c.gen_tokens)
        with torch.no_grad(), self._oom_as_skip():
            first_logits = self.model.prefill(self.prompt).float()
            tokens = [self.prompt, first_logits.argmax(-1, keepdim=True)]
            cached = [first_logits] + self.decode_steps(tokens[-1], n, keep_logits=True)
            tokens += [lg.argmax(-1, keepdim=True) for lg in cached[1:-1]]
            rows = min(CHECK_ROWS, c.batch_size)
            seq = torch.cat(tokens, dim=1)[:rows]  # prompt + the n tokens the decode steps consumed
            h = self.model.hidden(seq)[:, c.prompt_len - 1:]
            full = self.model.lm_head(self.model.norm(h)).float()  # (rows, n + 1, V)
        got = torch.stack(cached, dim=1)[:rows]
        self.generated = torch.cat(tokens[1:] + [cached[-1].argmax(-1, keepdim=True)], dim=1)  # (B, n + 1)
        self.first_logits = first_logits
        err = (torch.linalg.vector_norm(got - full) / torch.linalg.vector_norm(full).clamp_min(1e-30)).item()
        self.check_error = err
        if not err <= _llm.DECODE_TOLERANCE[c.dtype]:
            raise CorrectnessError(f"cached decode logits differ from a full forward: ||diff|| / ||ref|| = "
                                   f"{err:.3g} > {_llm.DECODE_TOLERANCE[c.dtype]:g} ({c.dtype}, {n} decode steps)")

    def measure(self, timer: Timer) -> Measurement:
        c = self.config
        with torch.no_grad(), self._oom_as_skip(), _llm.PeakMemory(self.ctx.device) as mem:
            ttft = timer.time(self.first_token, region="prefill")  # prefill_* telemetry; no region "main"
            itl, per_generation = self._decode_repeats(timer)
        out = time_metrics(ttft, "ttft_s")
        out.metrics += rate_metrics("prefill_tokens_per_s", c.batch_size * c.prompt_len, ttft, 1.0)
        gen = summarize(per_generation)
        out.extend(time_metrics(gen, "decode_time_s"))
        checked = (f"checked before timing: cached decode vs full forward ||diff||/||ref|| = "
                   f"{getattr(self, 'check_error', float('nan')):.3g} (tolerance {_llm.DECODE_TOLERANCE[c.dtype]:g}, {c.dtype})")
        out.metrics += rate_metrics("decode_tokens_per_s", c.batch_size * c.gen_tokens, gen, 1.0, detail=checked)
        out.metrics += rate_metrics("decode_tokens_per_s_per_seq", c.gen_tokens, gen, 1.0)
        ordered = sorted(itl)
        for q in (50, 90, 99):
            out.metrics.append(Metric("itl_s", quantile(ordered, q / 100), stat=f"p{q}", n_samples=len(itl),
                                      noisy=gen.noisy))
        out.samples["itl_s"] = itl
        out.metrics += self._bandwidth_rows(gen)
        out.metrics.append(Metric("peak_memory_bytes", mem.peak_bytes, stat="max", n_samples=gen.n,
                                  detail=mem.detail))
        if c.reference != "none":
            with self._oom_as_skip():
                out.extend(_llm_ref.measure_reference(self, timer))
        return out

    def _bandwidth_rows(self, gen: TimingStats) -> list[Metric]:
        """hbm_gbps (weights + KV per step, % of the HBM peak) and decode_roofline_pct (weights only)."""
        c, peak = self.config, self.ctx.peak("hbm_gbps")
        moved = sum(flops.decode_bytes_per_step(self.shape, batch=c.batch_size, context_len=c.prompt_len + i + 1,
                                                dtype_bytes=self.dtype_bytes) for i in range(c.gen_tokens))
        rows = rate_metrics("hbm_gbps", moved, gen, 1e-9, peak, f"{moved / c.gen_tokens / 1e9:.4g} GB per step (weights + KV)")
        peak_gbps, source = peak
        if not peak_gbps:
            log.info("decode_roofline_pct not reported: %s", source)
            return rows
        weights = flops.decode_weight_bytes(self.shape, batch=c.batch_size, dtype_bytes=self.dtype_bytes)
        roofline_s = weights / (peak_gbps * 1e9)
        detail = (f"roofline {roofline_s * 1e3:.4g} ms/step = {weights / 1e9:.4g} GB weights / {peak_gbps:g} GB/s "
                  f"= {1 / roofline_s:.4g} tokens/s per sequence")
        return rows + rate_metrics("decode_roofline_pct", weights * c.gen_tokens, gen, 100.0 / (peak_gbps * 1e9),
                                   (None, source), detail)

    def _decode_repeats(self, timer: Timer) -> tuple[list[float], list[float]]:
        """Warm-up generations, then timed ones: (every inter-token time, decode time per generation)."""
        cfg = timer.config
        for _ in range(max(cfg.warmup, 1)):
            self.decode_steps(self.first_token(), self.config.gen_tokens)
        itl, totals = [], []
        for _ in range(cfg.repeats):
            token = self.first_token()
            timer.synchronize()
            with timer.region("decode"):  # decode_* telemetry, accumulated over the generations
                times = self.decode_steps(token, self.config.gen_tokens, timer=timer)
            itl += times
            totals.append(sum(times))
        return itl, totals

    def teardown_model(self) -> None:
        """Free the model, its cache and the compiled step (the prompt and positions stay)."""
        if getattr(self, "model", None) is not None:
            self.model.clear_cache()
        self.model = self.decode_fn = None
        _llm_ref.release_memory(self.ctx.is_cuda)

    def teardown(self) -> None:
        self.teardown_model()
        self.prompt = self.decode_pos = None

