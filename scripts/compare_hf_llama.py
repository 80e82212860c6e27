#!/usr/bin/env python3
"""Side by side in one process: aifbench's llm_train step vs Hugging Face transformers'
LlamaForCausalLM (attn_implementation="sdpa") on the same shape, batch, precision and optimizer.

The performance check of issue 4: on one H100, llama3-1b (or -3b), bf16, seq 4096, torch.compile,
aifbench must reach MFU >= 45 % and tokens/s >= the transformers step's.

    python scripts/compare_hf_llama.py --model llama3-1b --seq-len 4096 --out cmp.json
    python scripts/compare_hf_llama.py --model tiny --seq-len 64 --device cpu --dtype fp32 \
        --compile-backend eager --steps 3          # a CPU dry run of the script itself

Both sides: fp32 master weights, bf16 autocast (dtype bf16), AdamW (lr 3e-4, betas 0.9/0.95,
weight decay 0.1, fused on CUDA), synthetic tokens, the same warm-up and timed steps, timed with
aifbench.timing (CUDA events). MFU for both uses aifbench's FLOPs per token (6*N + 12*L*d_attn*T,
PaLM appendix B) and the catalog's bf16 peak. transformers is imported here only (lazily); it is
not an aifbench dependency. Prints a table; --out writes the figures, versions and command as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from typing import Any

import torch

from aifbench.benchmarks.base import Context
from aifbench.benchmarks.llm_train import LlmTrain, LlmTrainConfig, _adamw
from aifbench.config import build_config
from aifbench.models import flops
from aifbench.models.shapes import LlamaShape
from aifbench.timing import Timer, TimingConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="llama3-1b", help="shape name or path to a config.json")
    p.add_argument("--layers", type=int, default=0, help="first N layers only (0 = all)")
    p.add_argument("--seq-len", type=int, default=4096)
    p.add_argument("--micro-batch", type=int, default=1)
    p.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="eager on both sides")
    p.add_argument("--compile-backend", default="inductor", choices=("inductor", "aot_eager", "eager"))
    p.add_argument("--warmup", type=int, default=3, help="untimed steps after the first compiled ones")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", help="write the results as JSON here")
    return p.parse_args(argv)


def context(device: str) -> Context:
    """A Context with the catalog's peaks for this device (what the runner would build)."""
    from aifbench.hardware.catalog import peak_lookup_for

    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    return Context(device=device, device_name=name, peak_lookup=peak_lookup_for(name, None, device))


def run_aifbench(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    cfg = build_config(LlmTrainConfig, dict(model=args.model, layers=args.layers, seq_len=args.seq_len,
                                            micro_batch=args.micro_batch, dtype=args.dtype, compile=args.compile,
                                            compile_backend=args.compile_backend), "llm_train")
    bench = LlmTrain(cfg, ctx)
    reason = bench.skip_reason()
    if reason:
        return {"skipped": reason}
    bench.setup()
    bench.check()
    out = bench.measure(Timer(ctx.device, TimingConfig(warmup=args.warmup, repeats=args.steps)))
    rows = {(m.metric, m.stat): m.value for m in out.metrics}
    result = {"tokens_per_s": rows["tokens_per_s", "median"], "step_time_s": rows["step_time_s", "median"],
              "step_time_iqr_s": rows["step_time_s", "iqr"], "peak_memory_bytes": rows["peak_memory_bytes", "max"],
              "loss_first_last": [out.samples["loss"][0], out.samples["loss"][-1]],
              "mfu_pct": rows.get(("mfu_pct", "median"))}
    bench.teardown()
    return result


def hf_config(shape: LlamaShape):
    from transformers import LlamaConfig

    rope = None
    if shape.rope_scaling is not None:
        s = shape.rope_scaling
        rope = {"rope_type": "llama3", "factor": s.factor, "low_freq_factor": s.low_freq_factor,
                "high_freq_factor": s.high_freq_factor,
                "original_max_position_embeddings": s.original_max_position_embeddings}
    return LlamaConfig(vocab_size=shape.vocab_size, hidden_size=shape.hidden_size,
                       intermediate_size=shape.intermediate_size, num_hidden_layers=shape.num_layers,
                       num_attention_heads=shape.num_heads, num_key_value_heads=shape.num_kv_heads,
                       head_dim=shape.head_dim, max_position_embeddings=shape.max_position_embeddings,
                       rope_theta=shape.rope_theta, rope_scaling=rope, rms_norm_eps=shape.rms_norm_eps,
                       tie_word_embeddings=shape.tie_word_embeddings, attn_implementation="sdpa",
                       use_cache=False)


def run_transformers(args: argparse.Namespace, shape: LlamaShape, ctx: Context) -> dict[str, Any]:
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    with torch.device(ctx.device):
        model = LlamaForCausalLM(hf_config(shape))
    model.train()
    if args.compile:
        model = torch.compile(model, backend=args.compile_backend)
    opt = _adamw(model, 3e-4, ctx.is_cuda)
    gen = torch.Generator(device="cpu").manual_seed(1000)
    tokens = torch.randint(shape.vocab_size, (args.micro_batch, args.seq_len), generator=gen).to(ctx.device)
    autocast = torch.autocast(device_type="cuda" if ctx.is_cuda else "cpu", dtype=torch.bfloat16,
                              enabled=args.dtype == "bf16")
    losses: list[torch.Tensor] = []

    def step() -> None:
        with autocast:
            loss = model(input_ids=tokens, labels=tokens).loss  # HF shifts labels itself
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())

    for _ in range(3):  # as aifbench's check(): the first steps compile
        step()
    if ctx.is_cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)
    stats = Timer(ctx.device, TimingConfig(warmup=args.warmup, repeats=args.steps)).time(step)
    values = [v.item() for v in losses]
    tokens_per_step = args.micro_batch * args.seq_len
    result = {"tokens_per_s": tokens_per_step / stats.median_s, "step_time_s": stats.median_s,
              "step_time_iqr_s": stats.iqr_s, "loss_first_last": [values[0], values[-1]],
              "peak_memory_bytes": torch.cuda.max_memory_allocated(ctx.device) if ctx.is_cuda else None}
    del model, opt
    return result


def mfu(tokens_per_s: float, shape: LlamaShape, seq_len: int, ctx: Context) -> float | None:
    peak, _ = ctx.peak("tflops:bf16")
    if not peak:
        return None
    return 100.0 * flops.train_flops_per_token(shape, seq_len) * tokens_per_s / (peak * 1e12)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ctx = context(args.device)
    from aifbench.benchmarks._llm import shape_of

    shape = shape_of(args.model, args.layers)
    results: dict[str, Any] = {"aifbench": run_aifbench(args, ctx)}
    if ctx.is_cuda:
        torch.cuda.empty_cache()
    results["transformers"] = run_transformers(args, shape, ctx)
    for side in results.values():
        if "tokens_per_s" in side:
            side["mfu_pct"] = mfu(side["tokens_per_s"], shape, args.seq_len, ctx)
    report(args, shape, ctx, results)
    return 0


def report(args, shape: LlamaShape, ctx: Context, results: dict[str, Any]) -> None:
    import transformers

    a, h = results["aifbench"], results["transformers"]
    print(f"{shape.name}  seq {args.seq_len}  micro-batch {args.micro_batch}  {args.dtype}  "
          f"compile={args.compile} ({args.compile_backend})  on {ctx.device_name}")
    print(f"{'':14}{'tokens/s':>12}{'step ms':>10}{'MFU %':>8}{'peak GiB':>10}  loss first -> last")
    for name, r in results.items():
        if "skipped" in r:
            print(f"{name:14}skipped: {r['skipped']}")
            continue
        mfu_txt = f"{r['mfu_pct']:.1f}" if r.get("mfu_pct") is not None else "-"
        mem = f"{r['peak_memory_bytes'] / 2**30:.1f}" if r.get("peak_memory_bytes") else "-"
        print(f"{name:14}{r['tokens_per_s']:12.1f}{r['step_time_s'] * 1e3:10.2f}{mfu_txt:>8}{mem:>10}  "
              f"{r['loss_first_last'][0]:.4g} -> {r['loss_first_last'][1]:.4g}")
    verdict = {}
    if "tokens_per_s" in a:
        verdict["aifbench_over_transformers"] = a["tokens_per_s"] / h["tokens_per_s"]
        verdict["aifbench_faster"] = a["tokens_per_s"] >= h["tokens_per_s"]
        verdict["mfu_at_least_45_pct"] = a.get("mfu_pct") is not None and a["mfu_pct"] >= 45.0
        print(f"aifbench / transformers tokens/s = {verdict['aifbench_over_transformers']:.3f}; "
              f"MFU >= 45 %: {verdict['mfu_at_least_45_pct']}")
    if args.out:
        doc = {"command": " ".join([sys.executable] + sys.argv), "args": vars(args), "device_name": ctx.device_name,
               "peak_tflops_bf16": ctx.peak("tflops:bf16"), "flops_per_token": flops.train_flops_per_token(
                   shape, args.seq_len), "torch": torch.__version__, "transformers": transformers.__version__,
               "python": platform.python_version(), "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "results": results, "verdict": verdict}
        with open(args.out, "w") as fh:
            json.dump(doc, fh, indent=1, default=lambda x: None if isinstance(x, float) and math.isnan(x) else str(x))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
