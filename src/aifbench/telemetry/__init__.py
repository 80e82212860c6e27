"""Telemetry sampled during every timed window: NVML on NVIDIA GPUs, CPU fallback, replay for tests."""

