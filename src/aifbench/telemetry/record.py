"""Record a real NVML trace on a GPU node, for replay in tests or for a bug report.

    python -m aifbench.telemetry.record --device cuda:0 -o h100.jsonl [--windows 3] [--seconds 2]
        [--interval 0.1] [--load gemm|idle] [--size 8192]

Each window is sampled exactly as a benchmark's would be; with --load gemm a bf16 matmul loop
keeps the GPU busy during the window (power, clocks and perhaps throttling worth recording).
The trace format is described in aifbench.telemetry.trace. Exit codes: 0 written, 2 bad input
or no NVML here.
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

    return run


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from aifbench.telemetry.nvml import NvmlSampler
    from aifbench.telemetry.nvml_device import TelemetryUnavailable, open_nvml_device
    from aifbench.telemetry.sampling import check_interval
    from aifbench.telemetry.trace import RecordingDevice

    try:
        if args.windows < 1 or args.seconds <= 0:
            raise ConfigError("--windows must be >= 1 and --seconds > 0")
        interval = check_interval(args.interval)
        access = open_nvml_device(args.device)
    except (ConfigError, TelemetryUnavailable) as exc:
        print(f"aifbench-record: error: {exc}", file=sys.stderr)
        return 2
    work = _load(args.load, args.device, args.size)
    sampler = NvmlSampler(RecordingDevice(access, args.output, interval_s=interval), interval)
    try:
        for i in range(args.windows):
            with sampler.window(f"{args.load}-{i}") as win:
                work(args.seconds)
            print(f"window {i}: flags={','.join(win.flags) or '-'} "
                  + " ".join(f"{m.metric}={m.value:.4g}" for m in win.metrics))
    finally:
        sampler.close()
    print(f"trace: {args.output} ({sampler.describe()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
