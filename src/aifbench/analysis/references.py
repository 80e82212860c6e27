"""Acceptance references: what a metric must reach on a system, per GPU SKU.

A system profile (aifbench.systems) or a standalone TOML file lists them as `[[reference]]`
tables (ReFrame-style: a value with bounds, keyed by GPU model; DESIGN.md §3):

    [[reference]]
    benchmark = "gemm"                      # registered benchmark name
    metric = "tflops"                       # metric dictionary name
    params = { dtype = "bf16", m = 8192 }   # these case parameters must be equal (others free)
    gpu = "h100-sxm5-80gb"                  # hardware catalog id; omitted: any device
    stat = "median"                         # statistic checked (default median)
    fraction_of_peak = 0.70                 # value >= 0.70 x the datasheet peak stored with the row
    # or bounds in the metric's unit (either or both), with an optional nominal value:
    # value = 2970.0
    # lower = 2600.0
    # upper = 3350.0
    source = "cuBLAS BF16 8192^3 reaches 797.8 TFLOP/s (fast.cu README)"

A reference needs `fraction_of_peak`, `lower` or `upper`; `value` alone is not a check.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from aifbench.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class Reference:
    """One acceptance criterion for one metric of one benchmark (see the module docstring)."""

    benchmark: str
    metric: str
    params: Mapping[str, Any] = field(default_factory=dict)
    gpu: str | None = None
    stat: str = "median"
    value: float | None = None
    lower: float | None = None
    upper: float | None = None
    fraction_of_peak: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.fraction_of_peak is None and self.lower is None and self.upper is None:
            raise ConfigError(f"reference {self.describe()}: needs fraction_of_peak, lower or upper")
        if self.fraction_of_peak is not None and not 0 < self.fraction_of_peak <= 2:
            raise ConfigError(f"reference {self.describe()}: fraction_of_peak must be in (0, 2], "
                              f"got {self.fraction_of_peak}")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ConfigError(f"reference {self.describe()}: lower {self.lower} > upper {self.upper}")

    def describe(self) -> str:
        p = " ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        gpu = f" on {self.gpu}" if self.gpu else ""
        return f"{self.benchmark} {p} {self.metric}{gpu}".replace("  ", " ")

    def criterion(self) -> str:
        parts = []
        if self.fraction_of_peak is not None:
            parts.append(f">= {self.fraction_of_peak:g} x peak")
        if self.lower is not None:
            parts.append(f">= {self.lower:g}")
        if self.upper is not None:
            parts.append(f"<= {self.upper:g}")
        return " and ".join(parts)

    def matches_params(self, params_json: str) -> bool:
        params = json.loads(params_json)
        return all(k in params and params[k] == v for k, v in self.params.items())


_FIELDS = {f.name for f in fields(Reference)}
_NUMBERS = ("value", "lower", "upper", "fraction_of_peak")


def from_mapping(raw: Mapping[str, Any], where: str) -> Reference:
    """A Reference from a TOML table, with errors that name the place and the allowed keys."""
    if isinstance(raw, Reference):
        return raw
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: a reference must be a table, got {type(raw).__name__}")
    unknown = set(raw) - _FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_FIELDS))}")
    for key in ("benchmark", "metric"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigError(f"{where}: '{key}' (a name) is required")
    for key in _NUMBERS:
        v = raw.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ConfigError(f"{where}: '{key}' must be a number, got {v!r}")
    if not isinstance(raw.get("params", {}), Mapping):
        raise ConfigError(f"{where}: 'params' must be a table of parameter = value")
    kw = dict(raw)
    kw["params"] = dict(raw.get("params", {}))
    for key in _NUMBERS:
        if kw.get(key) is not None:
            kw[key] = float(kw[key])
    return Reference(**kw)


def parse(items: Iterable[Any], where: str) -> list[Reference]:
    return [from_mapping(item, f"{where} reference #{i + 1}") for i, item in enumerate(items)]


def load_file(path: Path) -> list[Reference]:
    """`[[reference]]` tables of a TOML file."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read references {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"references {path}: TOML syntax error: {exc}") from None
    items = data.get("reference", [])
    if not isinstance(items, list) or not items:
        raise ConfigError(f"references {path}: no [[reference]] tables")
    return parse(items, str(path))


def for_system(name: str) -> list[Reference]:
    """References of a shipped or site system profile (aifbench.systems.load_system)."""
    try:
        from aifbench.systems import load_system
    except ImportError:
        raise ConfigError("system profiles are not available in this aifbench (aifbench.systems.load_system); "
                          "pass --references FILE.toml") from None
    profile = load_system(name)
    items = _profile_items(profile)
    if not items:
        raise ConfigError(f"system profile {name!r} lists no [[reference]] entries; pass --references FILE.toml")
    return parse(items, f"system {name}")


def _profile_items(profile: Any) -> list[Any]:
    for attr in ("references", "reference"):
        items = getattr(profile, attr, None)
        if items is None and isinstance(profile, Mapping):
            items = profile.get(attr)
        if items:
            return list(items)
    return []
