#!/usr/bin/env python3
"""A side by side in one command: aifbench's llm_train step and Hugging Face transformers'
LlamaForCausalLM (sdpa) on the same shape, weights, batch, precision and optimizer, recorded as one
aifbench case (llm_train reference = "transformers") in the results store.

    python scripts/dev/compare_hf_llama.py --model llama3-1b --seq-len 4096          # one H100
    python scripts/dev/compare_hf_llama.py --model tiny --seq-len 64 --dtype fp32 \\
        --compile-backend eager --steps 3 --device cpu                          # CPU dry run

It is `aifbench run` on a generated one-case suite (stored with the run's config), then a short
verdict: tokens/s and MFU of both, speedup_vs_ref (>= 1: aifbench at least as fast) and MFU >= 45 %.
--out also writes those figures, the run id and the command as JSON. The same case as a suite
entry: `[[case]] benchmark = "llm_train"  params = { ..., reference = "transformers" }`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

MFU_TARGET_PCT = 45.0
SHOWN = ("tokens_per_s", "ref_tokens_per_s", "mfu_pct", "ref_mfu_pct", "speedup_vs_ref",
         "peak_memory_bytes", "ref_peak_memory_bytes")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="llama3-1b", help="shape name or path to a config.json")
    p.add_argument("--layers", type=int, default=0, help="first N layers only (0 = all)")
    p.add_argument("--seq-len", type=int, default=4096)
    p.add_argument("--micro-batch", type=int, default=1)
    p.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="eager on both sides")
    p.add_argument("--compile-backend", default="inductor", choices=("inductor", "aot_eager", "eager"))
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps after the 3 checked (compiling) ones")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--results", default="results", help="results store")
    p.add_argument("--out", help="also write the figures as JSON here")
    return p.parse_args(argv)


def suite_text(args: argparse.Namespace) -> str:
    """A one-case suite; values through json.dumps, which TOML reads for strings, ints, booleans."""
    params = {"model": args.model, "layers": args.layers, "seq_len": args.seq_len,
              "micro_batch": args.micro_batch, "dtype": args.dtype, "compile": args.compile,
              "compile_backend": args.compile_backend, "activation_checkpointing": args.activation_checkpointing,
              "reference": "transformers"}
    inline = ", ".join(f"{k} = {json.dumps(v)}" for k, v in params.items())
    return (f'[suite]\nname = "compare-hf-llama"\ndescription = "aifbench llm_train vs transformers '
            f'LlamaForCausalLM (sdpa), same case"\n\n[timing]\nwarmup = {args.warmup}\nrepeats = {args.steps}\n\n'
            f'[[case]]\nbenchmark = "llm_train"\nparams = {{ {inline} }}\n')


def headline(rows) -> dict[str, float]:
    """metric -> its median row (peak memory: its max row; speedup_vs_ref: its A/B mean, with
    speedup_vs_ref_ci_low / _ci_high) for the metrics in SHOWN."""
    out = {}
    for (metric, stat), value in rows.set_index(["metric", "stat"])["value"].items():
        if metric == "speedup_vs_ref" and stat in ("ci_low", "ci_high"):
            out[f"{metric}_{stat}"] = float(value)
        elif metric in SHOWN and (stat == "median" or (stat == "max" and metric.endswith("_bytes"))
                                  or (metric == "speedup_vs_ref" and stat == "mean")):
            out[metric] = float(value)
    return out


def faster_verdict(figures: dict[str, float]) -> bool | str:
    """aifbench at least as fast: judged on speedup_vs_ref's 95 % interval (True: all of it >= 1,
    False: all of it < 1, else 'inconclusive')."""
    low, high = figures.get("speedup_vs_ref_ci_low"), figures.get("speedup_vs_ref_ci_high")
    if low is None or high is None:
        return "inconclusive"
    return True if low >= 1.0 else False if high < 1.0 else "inconclusive"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from aifbench.cli import main as aifbench
    from aifbench.results.store import load, resolve_run

    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "compare-hf-llama.toml"
        suite.write_text(suite_text(args))
        code = aifbench(["run", str(suite), "--results", args.results, "--device", args.device])
    if code != 0:
        return code
    run = resolve_run(Path(args.results), None)
    rows = load([run]).metrics
    status, reason = rows["status"].iloc[0], rows["reason"].iloc[0]
    if status != "ok":
        print(f"{run.name}: case {status}: {reason}")
        return 1
    figures = headline(rows)
    mfu = figures.get("mfu_pct")
    verdict = {"aifbench_at_least_as_fast": faster_verdict(figures),
               "mfu_at_least_45_pct": None if mfu is None else mfu >= MFU_TARGET_PCT}
    ci = f"[{figures.get('speedup_vs_ref_ci_low', math.nan):.3f}, {figures.get('speedup_vs_ref_ci_high', math.nan):.3f}]"
    print(f"{run.name}: speedup_vs_ref {figures['speedup_vs_ref']:.3f}, 95 % interval {ci} (>= 1: aifbench faster); "
          f"MFU {'-' if mfu is None else f'{mfu:.1f} %'} (target >= {MFU_TARGET_PCT:g} %)")
    if args.out:
        doc = {"command": " ".join([sys.executable] + sys.argv), "run_id": run.name, "results": str(run),
               "device_name": rows["device_name"].iloc[0], "median": figures, "verdict": verdict,
               "detail": rows[rows["metric"] == "ref_tokens_per_s"]["detail"].iloc[0]}
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
