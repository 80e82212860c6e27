"""Suites and plans: load a suite TOML, apply --set overrides, validate, expand to cases.

Suite file (benchmarks/<name>.toml):

    [suite]
    name = "smoke"
    description = "every benchmark at tiny sizes"

    [timing]            # optional: warmup, repeats, inner (aifbench.timing.TimingConfig)
    repeats = 5

    [[case]]            # one entry per benchmark block
    benchmark = "gemm"
    params = { m = 64, n = 64, k = 64 }       # fixed parameters
    sweep = { dtype = ["fp32", "bf16"] }      # grid axes: the cartesian product becomes cases

Overrides: `--set timing.repeats=3`, `--set gemm.m=256` (every gemm block; replaces a sweep
axis of that name), `--set 'gemm.dtype=["fp32","bf16"]'` (a list makes it a sweep axis).
Values are TOML literals; anything that is not one is taken as a string.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from aifbench.benchmarks import registry
from aifbench.errors import ConfigError, one_of
from aifbench.files import data_dir, read_toml, tomllib
from aifbench.timing import TimingConfig
from aifbench import typed_toml



# --- finding and reading files -------------------------------------------------------------

def suite_names() -> list[str]:
    d = data_dir("suites")
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


def find_suite(name_or_path: str) -> Path:
    """A suite by file path, or by name among the shipped suites."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise ConfigError(f"suite file not found: {p}")
        return p
    candidate = data_dir("suites") / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    raise one_of("suite", name_or_path, suite_names())


LOG_ENV = "AIFBENCH_LOG"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The workers' log level from AIFBENCH_LOG (default WARNING; case does not matter)."""
    raw = (os.environ if environ is None else environ).get(LOG_ENV, "WARNING")
    if raw.strip().upper() not in LOG_LEVELS:
        raise ConfigError(f"{LOG_ENV}={raw[:40]!r}: not a log level; allowed: {', '.join(LOG_LEVELS)}")
    return raw.strip().upper()


def parse_value(text: str) -> Any:
    """A --set value: a TOML literal (3, 2.5, true, "x", [1, 2]) or else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    except ValueError as exc:  # an integer of more digits than Python converts (4300)
        shown = text if len(text) <= 40 else f"{text[:20]}...{text[-10:]} ({len(text)} characters)"
        raise ConfigError(f"--set value {shown}: not a number this can read ({exc}); allowed: a TOML "
                          "value (3, 2.5, true, \"x\", [1, 2])") from None


# --- config dataclasses from dictionaries -------------------------------------------------

def build_config(cls: type, params: Mapping[str, Any], where: str) -> Any:
    """Instantiate a frozen config dataclass from user values, checking names, types, ranges
    (aifbench.typed_toml: errors name `where`.<parameter> and what is allowed)."""
    return typed_toml.build(cls, params, "", where, noun="parameter")


# --- suites, cases, plans ------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True, slots=True)
class Case:
    index: int
    benchmark: str
    params: dict[str, Any]
    """the full effective config of the benchmark (defaults filled in)"""

    @property
    def case_id(self) -> str:
        digest = hashlib.sha256(_canonical({"b": self.benchmark, "p": self.params}).encode()).hexdigest()
        return f"{self.index:04d}-{self.benchmark}-{digest[:8]}"


@dataclass(frozen=True, kw_only=True)
class Suite:
    name: str
    path: str
    description: str
    timing: TimingConfig
    cases: tuple[Case, ...]
    overrides: tuple[str, ...] = ()

    def config_dict(self) -> dict[str, Any]:
        return suite_config(self.name, self.path, self.overrides, self.timing, self.cases)

    @property
    def config_hash(self) -> str:
        body = self.config_dict()
        body.pop("path")
        return hashlib.sha256(_canonical(body).encode()).hexdigest()[:16]


def suite_config(name: str, path: str, overrides: tuple[str, ...], timing: TimingConfig,
                 cases: tuple[Case, ...]) -> dict[str, Any]:
    """A suite's config as stored in runs.config (Suite.config_dict, Plan.config_dict); config_hash
    hashes it without its path."""
    return {"suite": name, "path": path, "overrides": list(overrides), "timing": dataclasses.asdict(timing),
            "cases": [{"case_id": c.case_id, "benchmark": c.benchmark, "params": c.params} for c in cases]}


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def load_suite(name_or_path: str, overrides: list[str] | tuple[str, ...] = (),
               only: list[str] | None = None) -> Suite:
    """Read, override, validate and expand a suite. Raises ConfigError on any bad input."""
    path = find_suite(name_or_path)
    where = path.name
    data = typed_toml.build(SuiteFile, read_toml(path), where)
    if not data.case:
        raise ConfigError(f"{where}: needs at least one [[case]] block")
    meta, timing_raw = data.suite, dict(data.timing)
    blocks = [{"benchmark": b.benchmark, "params": dict(b.params), "sweep": dict(b.sweep)} for b in data.case]
    file_timing = dict(timing_raw)
    for text in overrides:
        _apply_override(text, timing_raw, blocks)
    set_by = {k for k in timing_raw if k not in file_timing or timing_raw[k] != file_timing[k]}
    if only:
        present = {b["benchmark"] for b in blocks}
        for name in only:
            if name not in present:
                raise one_of("benchmark for --only", name, present)
        blocks = [b for b in blocks if b["benchmark"] in only]
    timing = _timing(timing_raw, set_by, where)
    cases = []
    for block in blocks:
        cls = registry.get(block["benchmark"])
        axes = block["sweep"]
        for combo in itertools.product(*axes.values()) if axes else [()]:
            params = {**block["params"], **dict(zip(axes, combo))}
            cfg = build_config(cls.Config, params, block["benchmark"])
            cases.append(Case(index=len(cases), benchmark=block["benchmark"], params=dataclasses.asdict(cfg)))
    return Suite(name=path.stem if meta.name is None else meta.name, path=str(path), description=meta.description,
                 timing=timing, cases=tuple(cases), overrides=tuple(overrides))


def _timing(raw: dict[str, Any], set_by: set[str], where: str) -> TimingConfig:
    """The [timing] table; a bad value is blamed on where it came from (--set or the suite file)."""
    def source(field: str) -> str:
        return f"--set timing.{field}={raw[field]}" if field in set_by else f"{where}: [timing]"

    for name in set_by:  # a type error in an override names --set
        build_config(TimingConfig, {name: raw[name]}, "--set timing")
    timing = build_config(TimingConfig, raw, f"{where}: [timing]")
    for name, low in (("repeats", 1), ("inner", 1), ("warmup", 0)):
        if getattr(timing, name) < low:
            raise ConfigError(f"{source(name)}: {name} must be >= {low}, got {getattr(timing, name)}")
    return timing


def _axes(loc: str, sweep: Mapping[str, Any]) -> Mapping[str, Any]:
    for axis, values in sweep.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{loc}.{axis} must be a non-empty list (one case per value), got {values!r}")
    return sweep


def _benchmark(loc: str, name: str) -> str:
    registry.get(name)  # unknown benchmark -> error listing known ones
    return name


@dataclass(frozen=True, kw_only=True, slots=True)
class SuiteMeta:
    name: str | None = None
    """default: the file's stem"""
    description: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class CaseBlock:
    """One [[case]] block: fixed parameters and grid axes of one benchmark."""

    benchmark: str = typed_toml.spec(check=_benchmark)
    params: Mapping[str, Any] = field(default_factory=dict)
    sweep: Mapping[str, Any] = typed_toml.spec(default_factory=dict, check=_axes)


@dataclass(frozen=True, kw_only=True, slots=True)
class SuiteFile:
    """A suite file (typed_toml); [timing] is checked as TimingConfig once --set is applied."""

    suite: SuiteMeta = field(default_factory=SuiteMeta)
    timing: Mapping[str, Any] = field(default_factory=dict)
    case: tuple[CaseBlock, ...] = ()


def _apply_override(text: str, timing: dict[str, Any], blocks: list[dict[str, Any]]) -> None:
    key, sep, value_text = text.partition("=")
    if not sep or "." not in key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with KEY 'timing.<field>' or '<benchmark>.<param>'")
    scope, name = key.strip().split(".", 1)
    value = parse_value(value_text.strip())
    if scope == "timing":
        allowed = [f.name for f in dataclasses.fields(TimingConfig)]
        if name not in allowed:
            raise one_of("timing field", name, allowed)
        timing[name] = value
        return
    targets = [b for b in blocks if b["benchmark"] == scope]
    if not targets:
        raise one_of("benchmark in --set", scope, sorted({b["benchmark"] for b in blocks} | {"timing"}))
    allowed = [f.name for f in dataclasses.fields(registry.get(scope).Config)]
    if name not in allowed:
        raise one_of(f"parameter of {scope}", name, allowed)
    for b in targets:
        b["sweep"].pop(name, None)
        b["params"].pop(name, None)
        if isinstance(value, list):
            if not value:
                raise ConfigError(f"--set {key}: an empty list sweeps nothing")
            b["sweep"][name] = value
        else:
            b["params"][name] = value
