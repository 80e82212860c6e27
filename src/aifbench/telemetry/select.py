"""Choose the telemetry backend of a rank: NVML, amdsmi, CPU, a replayed trace, or none (with why).

    open_sampler("cuda:0", 0.1)                      NVML sampler of the GPU behind cuda:0 (UUID match);
                                                     on a ROCm build, amdsmi (PCI address match)
    open_sampler("cpu", 0.1)                         psutil + RAPL
    open_sampler(dev, 0.1, trace_path="t.jsonl")     replay a recorded trace (no GPU needed)
    open_sampler("cuda:0", 0.1, record_path="t.jsonl")  sample the GPU and record the session
    open_sampler("cuda:0", 0.1, gpus="visible")      also the other visible GPUs (rows only)

Environment (for runs whose runner passes only device and interval):
    AIFBENCH_TELEMETRY=off                 no telemetry (runs.telemetry says why)
    AIFBENCH_TELEMETRY_REPLAY=PATH         replay PATH instead of sampling hardware
    AIFBENCH_TELEMETRY_RECORD=PATH         record the GPU session; '{rank}' in PATH -> the rank
    AIFBENCH_TELEMETRY_GPUS=auto|own|visible  which GPUs a rank samples (aifbench.telemetry.gpus)
    AIFBENCH_TELEMETRY_MIN_CLOCK_FRACTION  low_sm_clock threshold (default 0.6 of the max SM clock)
A GPU without NVML/amdsmi, or with a call it does not support, never stops a benchmark: the
sampler becomes a NullSampler carrying the reason, or the field stays empty.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from aifbench.errors import ConfigError
from aifbench.telemetry.base import NullSampler, Sampler
from aifbench.telemetry.gpus import check_policy, resolve_policy
from aifbench.telemetry.sampling import DEFAULT_INTERVAL_S, check_interval

log = logging.getLogger(__name__)


def _min_clock_fraction(value: float | None) -> float:
    from aifbench.telemetry.nvml import DEFAULT_MIN_CLOCK_FRACTION

    if value is None:
        text = os.environ.get("AIFBENCH_TELEMETRY_MIN_CLOCK_FRACTION")
        try:
            value = float(text) if text else DEFAULT_MIN_CLOCK_FRACTION
        except ValueError:
            raise ConfigError(f"AIFBENCH_TELEMETRY_MIN_CLOCK_FRACTION must be a number in 0..1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"min clock fraction must be in 0..1, got {value}")
    return value


_OFF, _ON = ("off", "0", "none", "false", "no"), ("", "on", "1", "true", "yes", "auto")


def telemetry_enabled() -> bool:
    """AIFBENCH_TELEMETRY: unset/on/1/true/yes/auto, or off/0/none/false/no; anything else is an error."""
    text = os.environ.get("AIFBENCH_TELEMETRY", "")
    value = text.strip().lower()
    if value not in _OFF + _ON:
        raise ConfigError(f"AIFBENCH_TELEMETRY={text!r}: choose on or off")
    return value in _ON


def open_sampler(device: str, interval_s: float = DEFAULT_INTERVAL_S, *, trace_path: str | Path | None = None,
                 record_path: str | Path | None = None, min_clock_fraction: float | None = None,
                 gpus: str | None = None, record: bool = True) -> Sampler:
    """The sampler for torch device `device` polling every `interval_s` seconds (see module doc);
    record=False ignores AIFBENCH_TELEMETRY_RECORD (a sampler that must not write the rank's trace)."""
    interval_s = check_interval(interval_s)
    fraction = _min_clock_fraction(min_clock_fraction)
    policy = check_policy(gpus)
    if not telemetry_enabled():
        return NullSampler("disabled by AIFBENCH_TELEMETRY=off")
    trace_path = trace_path or os.environ.get("AIFBENCH_TELEMETRY_REPLAY") or None
    if trace_path:
        from aifbench.telemetry.nvml import NvmlSampler
        from aifbench.telemetry.trace import ReplayDevice

        return NvmlSampler(ReplayDevice(trace_path), interval_s, min_clock_fraction=fraction)
    dev = str(device)
    if dev.startswith("cuda"):
        record_path = record_path or (os.environ.get("AIFBENCH_TELEMETRY_RECORD") if record else None)
        return _open_gpu(dev, interval_s, fraction, record_path, resolve_policy(policy))
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


def interval_from_hz(hz: float) -> float:
    """--telemetry-hz -> sampling interval in s (0 Hz = disabled), every telemetry setting checked.

    Called where a run is planned (run, submit), so a bad value is one error there, exit 2."""
    if hz < 0:
        raise ConfigError(f"--telemetry-hz must be >= 0 (0 disables telemetry), got {hz}")
    interval_s = 1.0 / hz if hz else 0.0
    check_settings(interval_s)
    return interval_s


def check_settings(interval_s: float) -> None:
    """Validate the telemetry settings (interval and environment) where a run is planned, so a
    bad value is one clear error (exit 2) there and not a failure in every rank's process."""
    if interval_s <= 0:
        return  # telemetry disabled
    check_interval(interval_s)
    _min_clock_fraction(None)
    check_policy(None)
    trace_path = os.environ.get("AIFBENCH_TELEMETRY_REPLAY")
    if trace_path:
        from aifbench.telemetry.trace import read_trace

        read_trace(Path(trace_path))


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
