"""Telemetry sampled during every timed window: NVML on NVIDIA GPUs, CPU fallback, replay for tests."""

from aifbench.telemetry import fields as _fields  # noqa: F401  (defines the telemetry metrics)
