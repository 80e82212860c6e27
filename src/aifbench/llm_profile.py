"""Where a decode step's time goes: kernel count and device time per step (torch.profiler).

Builds the llm_infer case from key=value params exactly as a suite would (the same timed step:
levers, compile, CUDA graphs), runs its correctness check, one warm-up generation, then profiles
`--steps` decode steps and prints, per step: kernels launched, summed kernel time, wall time,
and the kernels taking the most time. On GPU the kernels are CUDA kernels (also inside CUDA
graph replays); on CPU the "kernels" are aten operators, which is enough to test the procedure.

    python -m aifbench.llm_profile model=llama3-8b prompt_len=2048 gen_tokens=64 \\
        dtype=bf16 compile=true cuda_graphs=true --device cuda:0 --steps 32 --trace decode.json

Bytes moved per kernel are not in torch.profiler; for those, run the same command under Nsight
Compute (`ncu --metrics dram__bytes_read.sum,gpu__time_duration.sum -k regex:. python -m ...`).
A step at the HBM roofline has summed kernel time ~= weight bytes / HBM bandwidth and little
else: gaps between kernels (wall >> kernel time) mean launch overhead; many small kernels
per layer mean missing fusion.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from typing import Any

import torch


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """['model=tiny', 'compile=true', 'prompt_len=16'] -> values parsed as JSON where they parse."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise SystemExit(f"aifbench: error: expected key=value, got {pair!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _device_events(prof: Any, cuda: bool) -> list[tuple[str, float]]:  # prof: a torch.profiler.profile
    """Kernel events (CUDA) or top-level aten operators (CPU), with their device/CPU time in us."""
    from torch.autograd import DeviceType

    events: list[tuple[str, float]] = []
    for e in prof.events():
        if cuda and e.device_type == DeviceType.CUDA:
            events.append((e.name, getattr(e, "device_time", 0.0) or getattr(e, "cuda_time", 0.0)))
        elif not cuda and e.name.startswith("aten::") and e.cpu_parent is None:
            events.append((e.name, e.cpu_time_total))
    return events


def profile_decode(params: dict[str, Any], device: str = "cpu", steps: int = 16, top: int = 15,
                   trace: str | None = None) -> dict[str, Any]:
    """Profile `steps` decode steps of the llm_infer case `params` on `device`; the summary."""
    from aifbench.benchmarks.base import Context
    from aifbench.benchmarks.llm_infer import LlmInfer, LlmInferConfig
    from aifbench.config import build_config

    bench = LlmInfer(build_config(LlmInferConfig, params, "llm_infer"), Context(device=device))
    steps = min(steps, bench.config.gen_tokens)
    cuda = device.startswith("cuda")
    bench.setup()
    with torch.no_grad():
        bench.check()
        bench.decode_steps(bench.first_token(), bench.config.gen_tokens)  # warm-up (compiles, captures)
        token = bench.first_token()
        if cuda:
            torch.profiler._utils._init_for_cuda_graphs()  # kernels inside graph replays (as gpt-fast does)
            torch.cuda.synchronize(device)
        activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
        with torch.profiler.profile(activities=activities) as prof:
            start = time.perf_counter()
            bench.decode_steps(token, steps)
            if cuda:
                torch.cuda.synchronize(device)
            wall = time.perf_counter() - start
    bench.teardown()
    if trace:
        prof.export_chrome_trace(trace)
    return _summary(_device_events(prof, cuda), steps, wall, top, bench.config, cuda)


def _summary(events: list[tuple[str, float]], steps: int, wall_s: float, top: int, config: object,
             cuda: bool) -> dict[str, Any]:
    by_name: dict[str, list[float]] = defaultdict(list)
    for name, us in events:
        by_name[name].append(us)
    total_us = sum(us for _, us in events)
    ranked = sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:top]
    return {"what": "CUDA kernels" if cuda else "top-level aten operators (CPU)", "steps": steps,
            "kernels_per_step": len(events) / steps, "kernel_time_per_step_ms": total_us / steps / 1e3,
            "wall_per_step_ms": wall_s / steps * 1e3, "distinct_kernels": len(by_name),
            "top": [{"name": n[:120], "calls_per_step": len(v) / steps, "ms_per_step": sum(v) / steps / 1e3,
                     "mean_us": sum(v) / len(v)} for n, v in ranked],
            "params": {k: getattr(config, k) for k in ("model", "batch_size", "prompt_len", "dtype", "compile",
                                                       "compile_mode", "cuda_graphs", "decode_attention",
                                                       "decode_window")}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aifbench.llm_profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("params", nargs="*", help="llm_infer params as key=value (JSON values)")
    parser.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=16, help="decode steps profiled")
    parser.add_argument("--top", type=int, default=15, help="kernels listed")
    parser.add_argument("--trace", help="also write a Chrome trace (open in Perfetto)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    out = profile_decode(parse_params(args.params), args.device, args.steps, args.top, args.trace)
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"{out['params']}\n{out['what']}: {out['kernels_per_step']:.1f} per step, "
          f"{out['kernel_time_per_step_ms']:.3f} ms summed per step, wall {out['wall_per_step_ms']:.3f} ms per step")
    for row in out["top"]:
        print(f"  {row['ms_per_step']:8.3f} ms/step  {row['calls_per_step']:6.1f} calls/step  {row['name']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
