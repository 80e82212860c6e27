"""Choose the telemetry backend of a rank: NVML, amdsmi, CPU, a replayed trace, or none (with why).

    sampler_for("cuda:0", plan.telemetry)            the run's settings (aifbench.telemetry.config)
    open_sampler("cuda:0", 0.1)                      NVML sampler of the GPU behind cuda:0 (UUID match);
                                                     on a ROCm build, amdsmi (PCI address match)
    open_sampler("cpu", 0.1)                         psutil + RAPL
    open_sampler(dev, 0.1, trace_path="t.jsonl")     replay a recorded trace (no GPU needed)
    open_sampler("cuda:0", 0.1, record_path="t.jsonl")  sample the GPU and record the session
    open_sampler("cuda:0", 0.1, gpus="visible")      also the other visible GPUs (rows only)

Nothing here reads the environment: the AIFBENCH_TELEMETRY* variables are read once, where the
run is planned (TelemetryConfig.from_env), and reach every rank inside the plan.
A GPU without NVML/amdsmi, or with a call it does not support, never stops a benchmark: the
sampler becomes a NullSampler carrying the reason, or the field stays empty.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aifbench.errors import ConfigError
from aifbench.telemetry.base import NullSampler, Sampler
from aifbench.telemetry.config import DEFAULT_INTERVAL_S, DEFAULT_MIN_CLOCK_FRACTION, TelemetryConfig, check_interval, \
    check_policy
from aifbench.telemetry.gpus import resolve_policy

log = logging.getLogger(__name__)


def open_sampler(device: str, interval_s: float = DEFAULT_INTERVAL_S, *, trace_path: str | Path | None = None,
                 record_path: str | Path | None = None, min_clock_fraction: float | None = None,
                 gpus: str | None = None, record: bool = True) -> Sampler:
    """The sampler for torch device `device` polling every `interval_s` seconds, with these
    settings and the defaults for the rest (see module doc); record=False: never a trace."""
    config = TelemetryConfig(interval_s=check_interval(interval_s, "open_sampler", off=False), replay=str(trace_path) if trace_path else None,
                             record=str(record_path) if record_path else None,
                             gpus=check_policy(gpus) if gpus is not None else "auto",
                             min_clock_fraction=DEFAULT_MIN_CLOCK_FRACTION if min_clock_fraction is None
                             else min_clock_fraction)
    return sampler_for(device, config, record=record)


def sampler_for(device: str, config: TelemetryConfig, *, record: bool = True) -> Sampler:
    """The sampler of torch device `device` under a run's settings (plan.telemetry): a NullSampler
    with the reason when they turn telemetry off; record=False ignores config.record (a sampler
    that must not write the rank's trace)."""
    if not config.enabled:
        return NullSampler(config.off_reason)
    interval_s, fraction = config.interval_s, config.min_clock_fraction
    if config.replay:
        from aifbench.telemetry.nvml import NvmlSampler
        from aifbench.telemetry.trace import ReplayDevice

        return NvmlSampler(ReplayDevice(config.replay), interval_s, min_clock_fraction=fraction)
    dev = str(device)
    if dev.startswith("cuda"):
        record_path = config.record if record else None
        return _open_gpu(dev, interval_s, fraction, record_path, resolve_policy(config.gpus))
    if dev.startswith("cpu"):
        try:
            from aifbench.telemetry.cpu import CpuSampler

            return CpuSampler(interval_s)
        except Exception as exc:  # psutil missing or broken: the run goes on without
            return NullSampler(f"CPU telemetry unavailable: {exc}")
    return NullSampler(f"no telemetry backend for device {dev!r}")


def open_gpu_access(device: str, gpus: str = "own"):
    """The DeviceAccess of torch device `device` (and, gpus='visible', the other visible GPUs):
    amdsmi on a ROCm build of torch, else NVML. Raises TelemetryUnavailable with the reason."""
    if _is_rocm():
        from aifbench.telemetry.amdsmi_device import open_amdsmi_device

        return open_amdsmi_device(device, gpus)
    from aifbench.telemetry.nvml_device import open_nvml_device

    return open_nvml_device(device, gpus)


def _open_gpu(device: str, interval_s: float, fraction: float, record_path: str | Path | None,
              gpus: str) -> Sampler:
    from aifbench.telemetry.gpus import TelemetryUnavailable
    from aifbench.telemetry.nvml import NvmlSampler

    try:
        access = open_gpu_access(device, gpus)
    except TelemetryUnavailable as exc:
        log.warning("GPU telemetry unavailable: %s", exc)
        return NullSampler(str(exc))
    if record_path:
        from aifbench.telemetry.trace import RecordingDevice, rank_path

        access = RecordingDevice(access, rank_path(record_path), interval_s=interval_s)
    try:
        sampler = NvmlSampler(access, interval_s, min_clock_fraction=fraction)
    except Exception as exc:  # never let telemetry stop a benchmark
        access.close()
        return NullSampler(f"GPU sampler failed to start: {exc}")
    if record_path:
        try:
            access.open()  # after the sampler read the static facts the header carries
        except OSError as exc:
            access.inner.close()
            raise ConfigError(f"cannot write the telemetry trace {access.path}: {exc}") from None
    return sampler


def _is_rocm() -> bool:
    try:
        import torch

        return bool(getattr(torch.version, "hip", None))
    except ImportError:
        return False
