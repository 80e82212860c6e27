"""Record a real GPU telemetry trace on a GPU node, for replay in tests or for a bug report.

    python -m aifbench.telemetry.record --device cuda:0 -o h100.jsonl [--windows 3] [--seconds 2]
        [--interval 0.1] [--load gemm|idle] [--size 8192] [--gpus own|visible]

Each window is sampled exactly as a benchmark's would be (NVML; amdsmi on a ROCm build of
torch); with --load gemm a bf16 matmul loop keeps the device busy during the window (power,
clocks and perhaps throttling worth recording); --gpus visible also records the other GPUs
this process sees; each window's line shows its invalidating flags and power state
(aifbench.telemetry.validity). The trace format is described in aifbench.telemetry.trace. Exit codes:
0 written, 2 bad input, no NVML/amdsmi here, or an unwritable output.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from aifbench.errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m aifbench.telemetry.record", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda:0", help="torch CUDA device (default cuda:0)")
    p.add_argument("-o", "--output", type=Path, required=True, help="trace file to write (.jsonl)")
    p.add_argument("--windows", type=int, default=3, help="number of windows (default 3)")
    p.add_argument("--seconds", type=float, default=2.0, help="length of each window in s (default 2)")
    p.add_argument("--interval", type=float, default=0.1, help="sampling interval in s (default 0.1)")
    p.add_argument("--load", choices=("gemm", "idle"), default="gemm", help="what runs during each window")
    p.add_argument("--size", type=int, default=8192, help="matmul edge for --load gemm (default 8192)")
    p.add_argument("--gpus", choices=("own", "visible"), default="own",
                   help="record only --device's GPU, or every visible GPU (default own)")
    return p


def _load(kind: str, device: str, size: int):
    """A callable that keeps the GPU busy for a while, or sleeps."""
    if kind == "idle":
        return lambda seconds: time.sleep(seconds)
    import torch

    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)

    def run(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for _ in range(8):
                torch.matmul(a, b)
            torch.cuda.synchronize(device)

    run(0.2)  # library start-up and clock ramp outside the first window
    return run


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from aifbench.telemetry.gpus import TelemetryUnavailable
    from aifbench.telemetry.nvml import NvmlSampler
    from aifbench.telemetry.config import check_interval
    from aifbench.telemetry.select import open_gpu_access
    from aifbench.telemetry.trace import RecordingDevice

    try:
        if args.windows < 1 or args.seconds <= 0 or args.size < 1:
            raise ConfigError("--windows and --size must be >= 1 and --seconds > 0")
        interval = check_interval(args.interval, f"--interval {args.interval:g}", off=False)
        access = open_gpu_access(args.device, args.gpus)
    except (ConfigError, TelemetryUnavailable) as exc:
        print(f"aifbench-record: error: {exc}", file=sys.stderr)
        return 2
    recorder = RecordingDevice(access, args.output, interval_s=interval)
    sampler = NvmlSampler(recorder, interval)  # reads the static facts into the trace header
    try:
        recorder.open()  # an unwritable path fails now, before any work
    except OSError as exc:
        access.close()
        print(f"aifbench-record: error: cannot write {args.output}: {exc}", file=sys.stderr)
        return 2
    return _record(args, sampler)


def _record(args: argparse.Namespace, sampler) -> int:
    work = _load(args.load, args.device, args.size)
    try:
        for i in range(args.windows):
            with sampler.window(f"{args.load}-{i}") as win:
                work(args.seconds)
            state = next((m.detail for m in win.metrics if m.metric in ("power_capped_pct", "power_limit_w")), "")
            print(f"window {i}: flags={','.join(win.flags) or '-'} {state.split(' (')[0] or 'state=?'} "
                  + " ".join(f"{m.metric}={m.value:.4g}" for m in win.metrics))
    finally:
        sampler.close()
    print(f"trace: {args.output} ({sampler.describe()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
