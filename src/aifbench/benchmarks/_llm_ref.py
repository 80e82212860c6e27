"""llm_infer's same-run inference peer: Hugging Face transformers generating on the same weights.

With `reference = "transformers"`, beside aifbench's own model, LlamaForCausalLM
(attn_implementation sdpa) is built in the case's dtype with the SAME synthetic weights
(hf_reference.build), and greedy generation runs on the same prompt for the same number of
tokens: prefill into a transformers StaticCache, then gen_tokens decode steps through
torch.compile of the forward (fullgraph, static shapes; on CUDA with inductor in mode
"reduce-overhead", the CUDA-graph setup transformers documents for a static cache; otherwise
the case's compile_backend). Timed as aifbench's own generation is (bench._decode_repeats' protocol):

  ref_ttft_s               prefill + argmax of the first token (emptying the cache before is untimed)
                           (no telemetry region; the timed decode steps are region "ref")
  ref_decode_tokens_per_s  batch_size * gen_tokens / decode time of one generation
  speedup_vs_ref           decode_tokens_per_s / ref_decode_tokens_per_s by the A/B protocol (decode_ab):
                           stats mean, ci_low, ci_high; per-round values in the samples table

Correctness before timing: the reference's first-token logits must match aifbench's within
_llm.DECODE_TOLERANCE[dtype] (||diff|| / ||ours||), and its greedy tokens must equal aifbench's
first check_tokens + 1 generated tokens in fp32. In bf16/fp16 a near-tie may flip an argmax,
so there the count of equal leading tokens is reported in the detail, not judged.
"""

from __future__ import annotations

import contextlib
import gc
import inspect

import torch

from aifbench.benchmarks._llm import DECODE_TOLERANCE
from aifbench.benchmarks.base import Measurement, rate_metrics, time_metrics
from aifbench.ab import interval_metrics
from aifbench.errors import CorrectnessError
from aifbench.timing import Timer, TimingStats, summarize

SPEEDUP_TOL = 0.05
"""speedup_vs_ref's interval is noisy when its half-width exceeds 0.05 (as llm_train's)"""




def skip_reason(reference: str) -> str | None:
    if reference == "none":
        return None
    from aifbench.models import hf_reference

    return hf_reference.unavailable_reason()


def release_memory(cuda: bool) -> None:
    """Drop compiled graphs (their guards and CUDA-graph pools can keep a freed model's tensors
    alive), collect, and return cached device memory."""
    torch._dynamo.reset()
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()


class HfGreedy:
    """Greedy generation with transformers on a StaticCache: prefill(prompt) and decode(token, pos)
    each return (next tokens (B, 1), logits (B, V))."""

    def __init__(self, bench):
        from aifbench.models import hf_reference
        from aifbench.benchmarks._shared import torch_dtype

        c, dev = bench.config, bench.ctx.device
        total = c.prompt_len + c.gen_tokens
        self.what = f"transformers {hf_reference.version()} LlamaForCausalLM (sdpa, StaticCache)"
        self.hf = hf_reference.build(bench.shape, device=dev, seed=c.seed, max_seq_len=total,
                                     dtype=torch_dtype(c.dtype)).eval()
        self.cache = _static_cache(self.hf, c.batch_size, total, dev, torch_dtype(c.dtype))
        self.prompt_pos = torch.arange(c.prompt_len, device=dev)
        params = inspect.signature(self.hf.forward).parameters
        self.keep = {k: 1 for k in ("logits_to_keep", "num_logits_to_keep") if k in params}
        self.cache_kw = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.2x
        if bench.ctx.is_cuda and c.compile_backend == "inductor":
            self.compiled = torch.compile(self._decode, mode="reduce-overhead", fullgraph=True)
            self.how = "torch.compile inductor reduce-overhead (CUDA graphs)"
        else:
            self.compiled = torch.compile(self._decode, backend=c.compile_backend, fullgraph=True)
            self.how = f"torch.compile {c.compile_backend}"

    def _forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        out = self.hf(input_ids=tokens, cache_position=positions, use_cache=True,
                      **{self.cache_kw: self.cache}, **self.keep)
        return out.logits[:, -1]

    def _decode(self, tokens: torch.Tensor, position: torch.Tensor):
        logits = self._forward(tokens, position)
        return logits.argmax(-1, keepdim=True), logits

    def reset(self) -> None:
        """Empty the static cache (transformers 5 also tracks its fill level in the cache)."""
        self.cache.reset()

    def prefill(self, prompt: torch.Tensor):
        """Prompt into an empty cache (reset it first: reset())."""
        logits = self._forward(prompt, self.prompt_pos)
        return logits.argmax(-1, keepdim=True), logits

    def decode(self, tokens: torch.Tensor, position: torch.Tensor):
        return self.compiled(tokens, position)


def _static_cache(hf, batch: int, max_len: int, device: str, dtype: torch.dtype):
    """A StaticCache for transformers 5.x (lazily sized) or 4.x (batch, device and dtype given)."""
    from transformers import StaticCache

    params = inspect.signature(StaticCache.__init__).parameters
    kwargs = {"config": hf.config, "max_cache_len": max_len}
    if "max_batch_size" in params:
        kwargs.update(max_batch_size=batch, device=device, dtype=dtype)
    return StaticCache(**kwargs)


def measure_reference(bench, timer: Timer) -> Measurement:
    """Build, check and time the transformers peer beside aifbench's model (both resident: the
    A/B rounds of speedup_vs_ref alternate them)."""
    c = bench.config
    with torch.no_grad():
        ref = HfGreedy(bench)
        agree = _check(bench, ref)
        ttft = _time_prefill(ref, bench.prompt, timer)
        gen = summarize(_decode_repeats(bench, ref, timer))
        paired = decode_ab(bench, ref, timer)
    del ref
    release_memory(bench.ctx.is_cuda)
    out = time_metrics(ttft, "ref_ttft_s")
    detail = f"{agree}; same weights, prompt, {c.gen_tokens} greedy tokens"
    out.metrics += rate_metrics("ref_decode_tokens_per_s", c.batch_size * c.gen_tokens, gen, 1.0, detail=detail)
    ab_detail = ("per round: ref decode time / aifbench decode time of one generation each "
                 "(= decode_tokens_per_s / ref_decode_tokens_per_s)")
    return out.extend(interval_metrics("speedup_vs_ref", paired, SPEEDUP_TOL, ab_detail))


def _time_prefill(ref: HfGreedy, prompt: torch.Tensor, timer: Timer) -> TimingStats:
    """ref_ttft_s samples (warm-up first, cache emptied before each, untimed), in no telemetry region."""
    for _ in range(timer.config.warmup):
        ref.reset()
        ref.prefill(prompt)
    return summarize([timer.time_once(lambda: ref.prefill(prompt)[0], 1, ref.reset)
                      for _ in range(timer.config.repeats)])


def _generate(bench, ref: HfGreedy, n: int, timer: Timer | None = None):
    """Prefill, then n decode steps: the tokens (B, n + 1) and first logits, or per-step seconds."""
    from aifbench.benchmarks._llm import token_times

    ref.reset()
    token, first_logits = ref.prefill(bench.prompt)
    tokens = [token]

    def step(i: int) -> None:
        tokens.append(ref.decode(tokens[-1], bench.decode_pos[i])[0].clone())

    if timer is not None:
        timer.synchronize()
        with timer.region("ref"):  # telemetry region "ref": the reference's timed decode steps
            return token_times(step, n, timer)
    for i in range(n):
        step(i)
    return torch.cat(tokens, dim=1), first_logits.float()


def _decode_repeats(bench, ref: HfGreedy, timer: Timer) -> list[float]:
    """Warm-up generations (they also compile), then per-generation decode times."""
    for _ in range(max(timer.config.warmup, 1)):
        _generate(bench, ref, bench.config.gen_tokens)
    return [sum(_generate(bench, ref, bench.config.gen_tokens, timer)) for _ in range(timer.config.repeats)]


def _check(bench, ref: HfGreedy) -> str:
    """CorrectnessError unless the peer computes what aifbench computed in check(); the verdict line."""
    c = bench.config
    ours = getattr(bench, "generated", None)
    if ours is None:
        raise CorrectnessError("reference needs aifbench's own generated tokens: run check() first")
    tokens, logits = _generate(bench, ref, ours.shape[1] - 1)
    err = (torch.linalg.vector_norm(logits - bench.first_logits)
           / torch.linalg.vector_norm(bench.first_logits).clamp_min(1e-30)).item()
    same = (tokens == ours).all(dim=0).long()
    equal = int(same.cumprod(0).sum().item())  # leading positions equal in every sequence
    verdict = (f"{ref.what}, {ref.how}: first-token logits ||diff||/||ours|| = {err:.3g} "
               f"(tolerance {DECODE_TOLERANCE[c.dtype]:g}); first {equal} of {ours.shape[1]} greedy tokens equal")
    if not err <= DECODE_TOLERANCE[c.dtype]:
        raise CorrectnessError(f"reference differs from aifbench: {verdict}")
    if c.dtype == "fp32" and equal < ours.shape[1]:
        raise CorrectnessError(f"reference greedy tokens differ from aifbench's (fp32): {verdict}")
    return verdict


def decode_ab(bench, ref: HfGreedy, timer: Timer):
    """speedup_vs_ref by the A/B protocol (aifbench.ab): rounds of one decode generation of each
    side (gen_tokens greedy steps after a fresh prefill of the prompt, which runs untimed before
    each segment), ABBA order, regions decode / ref; the per-round value is ref decode time /
    aifbench decode time."""
    from aifbench import ab

    n, start = bench.config.gen_tokens, {}

    @contextlib.contextmanager
    def own_prefill():
        start["own"] = bench.first_token()
        yield

    @contextlib.contextmanager
    def ref_prefill():
        ref.reset()
        start["ref"] = ref.prefill(bench.prompt)[0]
        yield

    def own() -> object:
        return bench.decode_steps(start["own"], n)

    def theirs() -> object:
        token = start["ref"]
        for i in range(n):
            token = ref.decode(token, bench.decode_pos[i])[0]
        return token

    return ab.run_ab(timer, own, theirs, rounds=bench.config.ab_rounds, calls_a=1,
                     paired=lambda own_s, ref_s: ref_s / own_s, regions=("decode", "ref"),
                     around=(own_prefill, ref_prefill))
