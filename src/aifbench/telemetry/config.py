"""The telemetry settings of a run: one frozen value, defaults and validation in one place.

A run's TelemetryConfig is made once, where the run is planned (`run`, `submit`), from
--telemetry-hz and the environment; it then travels inside the plan (plan.json) to every rank,
local process and Slurm task, which never read these variables themselves:

    AIFBENCH_TELEMETRY=on|off              off: no telemetry (runs.telemetry says why)
    AIFBENCH_TELEMETRY_REPLAY=PATH         replay PATH instead of sampling hardware
    AIFBENCH_TELEMETRY_RECORD=PATH         record the GPU session; '{rank}' in PATH -> the rank
    AIFBENCH_TELEMETRY_GPUS=auto|own|visible  which GPUs a rank samples (aifbench.telemetry.gpus)
    AIFBENCH_TELEMETRY_MIN_CLOCK_FRACTION  low_sm_clock threshold (default 0.6 of the max SM clock)

A bad value is a ConfigError (one line, exit 2) before anything runs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from aifbench.errors import ConfigError

DEFAULT_INTERVAL_S = 0.1  # 10 Hz: NVML calls serialise in the driver; stay at <= 10-20 Hz
DEFAULT_HZ = 1.0 / DEFAULT_INTERVAL_S
MIN_INTERVAL_S = 0.001
MAX_INTERVAL_S = 60.0
DEFAULT_MIN_CLOCK_FRACTION = 0.6
"""low_sm_clock below this fraction of the max SM clock (aifbench.telemetry.validity.LOW_CLOCK_RULE)"""
POLICIES = ("auto", "own", "visible")
"""which GPUs a rank samples (aifbench.telemetry.gpus)"""

ENV_ENABLED = "AIFBENCH_TELEMETRY"
ENV_REPLAY = "AIFBENCH_TELEMETRY_REPLAY"
ENV_RECORD = "AIFBENCH_TELEMETRY_RECORD"
ENV_GPUS = "AIFBENCH_TELEMETRY_GPUS"
ENV_MIN_CLOCK_FRACTION = "AIFBENCH_TELEMETRY_MIN_CLOCK_FRACTION"

_OFF, _ON = ("off", "0", "none", "false", "no"), ("", "on", "1", "true", "yes", "auto")
OFF_BY_INTERVAL = "telemetry disabled (interval 0)"
OFF_BY_ENV = f"disabled by {ENV_ENABLED}=off"


def check_interval(interval_s: object, source: str = "", *, off: bool = True) -> float:
    """The sampling interval in s: the one check of every way an interval is given (--telemetry-hz,
    a plan's telemetry settings, aifbench-record --interval, telemetry_overhead's rates, a
    sampler made in code). 0 is telemetry off where `off` allows it; anything else outside
    MIN_INTERVAL_S..MAX_INTERVAL_S, or not a number, is a ConfigError of one line naming the
    allowed range in s and in Hz and, when given, where the value came from (`source`)."""
    number = isinstance(interval_s, (int, float, str)) and not isinstance(interval_s, bool)
    try:
        value = float(interval_s) if number else math.nan  # type: ignore[arg-type]
    except ValueError:  # a str that is no number
        value, number = math.nan, False
    if value == 0 and off:
        return 0.0
    if not (MIN_INTERVAL_S <= value <= MAX_INTERVAL_S):  # also rejects NaN
        shown = (f"{value:g} s" + (f" ({1 / value:g} Hz)" if value else " (off)")) if number else repr(interval_s)
        raise ConfigError(f"telemetry interval must be {'0 (off) or ' if off else ''}{MIN_INTERVAL_S:g}..{MAX_INTERVAL_S:g} s "
                          f"({1 / MAX_INTERVAL_S:.3g}..{1 / MIN_INTERVAL_S:g} Hz), got {shown}"
                          + (f" from {source}" if source else ""))
    return value


def interval_from_hz(hz: object, source: str = "", *, off: bool = True) -> float:
    """A sampling rate in Hz as check_interval's interval in s (0 Hz: 0 s, telemetry off where `off`
    allows it); a bad rate gets check_interval's error, `source` e.g. '--telemetry-hz 5000'."""
    try:
        rate = math.nan if isinstance(hz, bool) else float(hz)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return check_interval(hz, source, off=off)  # its error names the value as given
    return check_interval(1.0 / rate if rate else 0.0, source, off=off)


def check_policy(text: str, where: str = "") -> str:
    """A GPU policy, lower-cased; ConfigError naming the allowed ones (`where`: e.g. 'ENV=')."""
    policy = str(text).strip().lower()
    if policy not in POLICIES:
        raise ConfigError(f"telemetry GPUs {where}{text!r}: choose one of {', '.join(POLICIES)}")
    return policy


def check_fraction(value: float) -> float:
    """The low_sm_clock threshold as a fraction of the max SM clock, 0..1."""
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"min clock fraction must be in 0..1, got {value}")
    return float(value)


@dataclass(frozen=True, kw_only=True, slots=True)
class TelemetryConfig:
    """How every rank of a run samples telemetry. Construction validates every field."""

    interval_s: float = DEFAULT_INTERVAL_S
    """sampling interval of the poll thread in s; 0 disables telemetry"""
    disabled_by: str = ""
    """why telemetry is off although the interval is not 0 ('' = on)"""
    replay: str | None = None
    """replay this recorded trace instead of sampling hardware"""
    record: str | None = None
    """record each rank's GPU session here ('{rank}' -> the rank)"""
    gpus: str = "auto"
    """which GPUs a rank samples: one of POLICIES"""
    min_clock_fraction: float = DEFAULT_MIN_CLOCK_FRACTION
    """low_sm_clock threshold, fraction of the max SM clock"""

    def __post_init__(self) -> None:
        object.__setattr__(self, "interval_s", check_interval(self.interval_s, "telemetry settings interval_s"))
        if self.gpus not in POLICIES:
            check_policy(self.gpus)
        check_fraction(self.min_clock_fraction)

    @property
    def off_reason(self) -> str:
        """Why there is no telemetry, '' when it is on."""
        return OFF_BY_INTERVAL if self.interval_s == 0 else self.disabled_by

    @property
    def enabled(self) -> bool:
        return not self.off_reason

    def replace(self, **changes: Any) -> "TelemetryConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TelemetryConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ConfigError(f"telemetry settings: unknown field {unknown[0]!r}; allowed: {', '.join(sorted(fields))}")
        return cls(**data)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], interval_s: float = DEFAULT_INTERVAL_S) -> "TelemetryConfig":
        """The run's settings: `interval_s` (0: off, and the environment is not read) and the
        AIFBENCH_TELEMETRY* variables of `environ` (the only place they are read)."""
        interval_s = check_interval(interval_s, "telemetry settings interval_s")
        if interval_s == 0:
            return cls(interval_s=0.0)
        fraction = _env_fraction(environ.get(ENV_MIN_CLOCK_FRACTION))
        gpus = check_policy(environ.get(ENV_GPUS) or "auto", f"{ENV_GPUS}=")
        enabled = _env_enabled(environ.get(ENV_ENABLED, ""))
        replay = environ.get(ENV_REPLAY) or None
        if replay:
            from aifbench.telemetry.trace import read_trace

            read_trace(Path(replay))  # unreadable: ConfigError naming the file, here and not in every rank
        return cls(interval_s=interval_s, disabled_by="" if enabled else OFF_BY_ENV, replay=replay,
                   record=environ.get(ENV_RECORD) or None, gpus=gpus, min_clock_fraction=fraction)


def _env_fraction(text: str | None) -> float:
    try:
        value = float(text) if text else DEFAULT_MIN_CLOCK_FRACTION
    except ValueError:
        raise ConfigError(f"{ENV_MIN_CLOCK_FRACTION} must be a number in 0..1, got {text!r}") from None
    return check_fraction(value)


def _env_enabled(text: str) -> bool:
    """AIFBENCH_TELEMETRY: unset/on/1/true/yes/auto, or off/0/none/false/no; anything else is an error."""
    value = text.strip().lower()
    if value not in _OFF + _ON:
        raise ConfigError(f"{ENV_ENABLED}={text!r}: choose on or off")
    return value in _ON
