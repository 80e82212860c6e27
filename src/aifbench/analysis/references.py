"""Acceptance references: what a metric must reach on a system, per GPU SKU.

A system profile lists them as `[[acceptance.reference]]` tables, a standalone file (validate
--references) as `[[reference]]` tables (ReFrame-style: a value with bounds, keyed by GPU
model):

    [[reference]]
    benchmark = "gemm"                      # registered benchmark name
    metric = "tflops"                       # metric dictionary name
    params = { shape = "square", dtype = "bf16" }   # these case parameters must be equal (others free)
    params_min = { m = 8192 }               # these must be at least this large (sizes)
    gpu = "h100-sxm5-80gb"                  # hardware catalog id, or a list of ids; omitted: any
    stat = "median"                         # statistic checked (default median)
    fraction_of_peak = 0.70                 # value >= 0.70 x the datasheet peak stored with the row
    # min_pct_of_median = 90.0              # no GPU below 90 % of its case's partition median
    # or bounds in the metric's unit (either or both), with an optional nominal value:
    # value = 2970.0
    # lower = 2600.0
    # upper = 3350.0
    source = "cuBLAS BF16 8192^3 reaches 797.8 TFLOP/s (fast.cu README)"
    estimate = false                        # true: no measurement of this SKU behind the threshold

Parameters are matched as the runner stores them (the case's full effective config, JSON): a
gemm of shape "square" is m^3 and keeps n and k at their unused defaults, so match it by m.
A reference needs `fraction_of_peak`, `lower`, `upper` or `min_pct_of_median`; `value` alone is
not a check. `min_pct_of_median` judges uniformity rather than speed: every GPU (rank) must reach
that % of the median of all ranks of its case (outliers.below_median).
`params` and `params_min` may also name the layout of the case in the run (LAYOUT_KEYS):
`nodes` (distinct hosts), `ranks_per_node` (fewest ranks on one host) and `world_size`, so
that, e.g., an intra-node collective reference (nodes = 1, ranks_per_node = 4) is kept apart
from a multi-node one (nodes >= 2). Names are checked against the benchmark registry and the
metric dictionary (`check_names`): a typo is an error, not a reference that never matches.
Generic references per GPU SKU ship in acceptance.toml beside this module. A system profile
adds its own; a profile reference replaces the generic one for the same benchmark, metric,
stat and `params` (its `key`), and `[acceptance] defaults = false` drops the generic ones.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from aifbench.files import read_toml
from aifbench.errors import ConfigError, one_of
from aifbench.typed_toml import build, nonempty, spec

if TYPE_CHECKING:
    from aifbench.systems import System

log = logging.getLogger(__name__)


KINDS = ("", "datasheet", "measurement", "estimate")
"""Reference.kind: a datasheet value, a published measurement, or an estimate"""


@dataclass(frozen=True, kw_only=True, slots=True)
class Reference:
    """One acceptance criterion for one metric of one benchmark (see the module docstring)."""

    benchmark: str = spec(check=nonempty)
    metric: str = spec(check=nonempty)
    params: Mapping[str, Any] = field(default_factory=dict)
    params_min: Mapping[str, int | float] = field(default_factory=dict)
    gpu: str | tuple[str, ...] | None = None
    """a hardware catalog id or a list of them; None: any device"""
    stat: str = "median"
    value: float | None = None
    lower: float | None = None
    upper: float | None = None
    fraction_of_peak: float | None = None
    min_pct_of_median: float | None = None
    """no GPU below this % of the partition median of its case (above 200 - this % for latencies)"""
    source: str = ""
    estimate: bool = False
    kind: str = spec("", choices=KINDS)
    """what the threshold rests on: datasheet, measurement (published), estimate; '' when not said"""

    def __post_init__(self) -> None:
        if self.kind == "estimate" and not self.estimate:
            raise ConfigError(f"reference {self.describe()}: kind = \"estimate\" needs estimate = true")
        if self.fraction_of_peak is None and self.lower is None and self.upper is None \
                and self.min_pct_of_median is None:
            raise ConfigError(f"reference {self.describe()}: needs fraction_of_peak, lower, upper or min_pct_of_median")
        if self.min_pct_of_median is not None and not 0 < self.min_pct_of_median < 100:
            raise ConfigError(f"reference {self.describe()}: min_pct_of_median must be in (0, 100), "
                              f"got {self.min_pct_of_median}")
        if self.fraction_of_peak is not None and not 0 < self.fraction_of_peak <= 2:
            raise ConfigError(f"reference {self.describe()}: fraction_of_peak must be in (0, 2], "
                              f"got {self.fraction_of_peak}")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ConfigError(f"reference {self.describe()}: lower {self.lower} > upper {self.upper}")

    @property
    def gpus(self) -> tuple[str, ...]:
        """Catalog ids this reference applies to; () = any device."""
        if self.gpu is None:
            return ()
        return (self.gpu,) if isinstance(self.gpu, str) else tuple(self.gpu)

    def applies_to(self, sku: str | None) -> bool:
        return not self.gpus or sku in self.gpus

    @property
    def key(self) -> tuple[str, str, str, tuple[tuple[str, str], ...]]:
        """What a reference checks, regardless of threshold: a profile's replaces a generic one."""
        return (self.benchmark, self.metric, self.stat, tuple(sorted((k, repr(v)) for k, v in self.params.items())))

    def describe(self) -> str:
        """'gemm shape=square m=8192 dtype=bf16 tflops on h200-sxm-141gb': the case label rule
        (analysis.data.param_text: the Config's order, true/false), bounds after the equalities."""
        from aifbench.analysis.data import benchmark_defaults, param_value

        order = list(benchmark_defaults(self.benchmark))
        rank = {k: (order.index(k) if k in order else len(order), k) for k in (*self.params, *self.params_min)}
        p = " ".join([f"{k}={param_value(v)}" for k, v in sorted(self.params.items(), key=lambda kv: rank[kv[0]])]
                     + [f"{k}>={int(v) if float(v).is_integer() else v}"
                        for k, v in sorted(self.params_min.items(), key=lambda kv: rank[kv[0]])])
        gpu = f" on {'/'.join(self.gpus)}" if self.gpus else ""
        return f"{self.benchmark} {p} {self.metric}{gpu}".replace("  ", " ")

    def criterion(self) -> str:
        parts = []
        if self.fraction_of_peak is not None:
            parts.append(f">= {self.fraction_of_peak:g} x peak")
        if self.lower is not None:
            parts.append(f">= {self.lower:g}")
        if self.upper is not None:
            parts.append(f"<= {self.upper:g}")
        if self.min_pct_of_median is not None:
            parts.append(f"every GPU >= {self.min_pct_of_median:g} % of the partition median")
        return " and ".join(parts) + (" (estimate)" if self.estimate else "")

    def matches_params(self, params_json: str, layout: Mapping[str, int] | None = None) -> bool:
        """Whether a case (its stored parameters JSON, and its layout in the run) is judged."""
        params = {**(layout or {}), **json.loads(params_json)}
        if not all(k in params and params[k] == v for k, v in self.params.items()):
            return False
        return all(isinstance(params.get(k), (int, float)) and params[k] >= v for k, v in self.params_min.items())


LAYOUT_KEYS = ("nodes", "ranks_per_node", "world_size")
"""match keys describing where a case ran, computed by validate from the run's rows"""


@dataclass(frozen=True, kw_only=True, slots=True)
class Acceptance:
    """A system profile's [acceptance] table."""

    defaults: bool = True
    """false: the generic references (acceptance.toml) are left out"""
    reference: tuple[Reference, ...] = ()
    targets: str = ""
    """a reference pack of the shipped suites folder (benchmarks/): 'targets/gh200-96gb.toml';
    its references join the profile's own, which replace a pack's of the same key"""


def from_mapping(raw: Mapping[str, Any], where: str) -> Reference:
    """A Reference from a TOML table (aifbench.typed_toml: errors name the place and what is allowed)."""
    return raw if isinstance(raw, Reference) else build(Reference, raw, where)


def parse(items: Iterable[Any], where: str) -> list[Reference]:
    return [from_mapping(item, f"{where} reference #{i + 1}") for i, item in enumerate(items)]


def load_file(path: Path) -> list[Reference]:
    """`[[reference]]` tables of a TOML file."""
    items = read_toml(path).get("reference", [])
    if not isinstance(items, list) or not items:
        raise ConfigError(f"references {path}: no [[reference]] tables")
    return parse(items, str(path))


DEFAULTS = Path(__file__).with_name("acceptance.toml")


def defaults() -> list[Reference]:
    """The generic references shipped with aifbench (acceptance.toml)."""
    return load_file(DEFAULTS)


def for_system(system: str | System) -> list[Reference]:
    """A system profile's `[[acceptance.reference]]` entries, then the generic ones for its GPU
    model that it does not replace (same `key`), unless it sets `[acceptance] defaults = false`.
    `system`: a loaded profile, or a name or path to load."""
    profile = _profile(system)
    name = system if isinstance(system, str) else profile.name
    acceptance = build(Acceptance, getattr(profile, "acceptance", None) or {}, f"system {name}", "acceptance")
    refs = list(acceptance.reference)
    sku = profile_gpu(profile)
    if acceptance.targets:
        own = {r.key for r in refs}
        refs += [r for r in pack(profile) if r.key not in own and (sku is None or r.applies_to(sku))]
    if acceptance.defaults:
        own = {r.key for r in refs}
        refs += [r for r in defaults() if r.key not in own and (sku is None or r.applies_to(sku))]
    return refs


def pack(system: str | System) -> list[Reference]:
    """The references of the pack a profile names in `[acceptance] targets` (none: [])."""
    profile = _profile(system)
    name = system if isinstance(system, str) else profile.name
    acceptance = build(Acceptance, getattr(profile, "acceptance", None) or {}, f"system {name}", "acceptance")
    return load_file(_targets_path(acceptance.targets, name)) if acceptance.targets else []


def _targets_path(targets: str, system: str) -> Path:
    from aifbench.files import data_dir

    path = data_dir("suites") / targets
    if not path.is_file():
        raise ConfigError(f"system {system}: [acceptance] targets = {targets!r}: no such file in {data_dir('suites')}")
    return path


def profile_gpu(system: str | System) -> str | None:
    """The hardware catalog id a system profile's nodes carry; None where the profile does not
    fix one (device "auto": whatever this machine has)."""
    node = _profile(system).node
    return None if node.device == "auto" else node.gpu_sku


def _profile(system: str | System) -> System:
    from aifbench.systems import load_system

    return load_system(system) if isinstance(system, str) else system


def check_names(refs: Iterable[Reference]) -> None:
    """Refuse references naming an unknown benchmark, parameter, parameter value, metric or GPU
    model (each error lists what is allowed): such a reference would silently never match."""
    from aifbench import metrics
    from aifbench.benchmarks import registry
    from aifbench.hardware import catalog

    skus = catalog.load().ids()
    for ref in refs:
        for sku in ref.gpus:
            if sku not in skus:
                raise one_of(f"gpu (hardware catalog id) in reference {ref.describe()}", sku, skus)
        fields_ = {f.name: f for f in fields(registry.config_of(ref.benchmark))}
        for key in list(ref.params) + list(ref.params_min):
            if key not in fields_ and key not in LAYOUT_KEYS:
                raise one_of(f"parameter of {ref.benchmark} in reference {ref.describe()}", key,
                             sorted(fields_) + list(LAYOUT_KEYS))
        for key, value in ref.params.items():
            choices = fields_[key].metadata.get("choices") if key in fields_ else None
            if choices and value not in choices:
                raise one_of(f"{ref.benchmark}.{key} in reference {ref.describe()}", value, choices)
        if ref.metric not in metrics.METRICS:
            raise one_of(f"metric in reference {ref.describe()}", ref.metric,
                         registry.emits_of(ref.benchmark) or sorted(metrics.METRICS))
