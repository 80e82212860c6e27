"""Typed tables: a frozen dataclass built from a TOML mapping, or a ConfigError of one line.

    @dataclass(frozen=True, kw_only=True)
    class Node:
        gpus: int = spec(min=0)                       # required (no default), an integer >= 0
        device: str = spec("cuda", choices=DEVICES)   # optional, one of DEVICES
    build(Node, raw["node"], "lumi-g.toml", "node")

`build` checks, from the class's type hints and field metadata: unknown keys (listing the
allowed ones), missing required keys, types (int, float, bool, str, Optional, Literal, unions,
tuple[X, ...] and list[X] from arrays, nested dataclasses from tables, arrays of tables,
Mapping[str, X] from tables of any keys), allowed values (`choices`), ranges (`min`, `max`),
allowed keys of a free table (`keys`) and a field's own `check(location, value) -> value`.
An error names the place — file, table path, key — and what is allowed:

    lumi-g.toml: node.gpus must be an integer >= 0, got 'four'
    unknown key in [slurm] of lumi-g.toml 'acount'; allowed: constraint, ...
    gemm.dtype: 'fp4' not allowed; allowed: fp64, fp32, ...

A leaf module: it imports nothing of aifbench but errors. Suites' benchmark configs
(config.build_config), system profiles, job files, the hardware catalog and acceptance
references are all read through it.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import math
import types
import typing
from typing import Any, Callable, Mapping, Sequence

from aifbench.errors import ConfigError, one_of

MISSING = dataclasses.MISSING
Check = Callable[[str, Any], Any]
"""(location, value) -> value: a field's own check (and normalisation) after its type's"""


def spec(default: Any = MISSING, *, default_factory: Any = MISSING, doc: str = "",
         choices: Sequence[Any] | None = None, min: float | None = None, max: float | None = None,
         keys: Sequence[str] | None = None, check: Check | None = None) -> Any:
    """A dataclass field with what `build` checks: allowed values, range, allowed keys of a
    free table, an own check. No default and no default_factory: the key is required."""
    meta = {"doc": doc, "choices": tuple(choices) if choices else None, "min": min, "max": max,
            "keys": tuple(keys) if keys else None, "check": check}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    """typing.get_type_hints of a dataclass, once per class: it evaluates every annotation string
    anew on each call (half the time of a 10,000-case suite's dry run without the cache)."""
    return typing.get_type_hints(cls)


def build(cls: type, raw: Any, where: str = "", path: str = "", *, noun: str = "key",
          skip: Sequence[str] = (), given: Mapping[str, Any] | None = None) -> Any:
    """An instance of dataclass `cls` from the mapping `raw`, every key checked.

    `where` names the file (or other source), `path` the table inside it ('' at the top, 'slurm',
    'slurm.partitions.debug'); `noun` is what a key is called in errors ('parameter');
    `given` are fields the caller fills in itself, never read from `raw`; `skip` are keys of `raw`
    the caller reads itself (allowed, not fields)."""
    given = dict(given or {})
    if not isinstance(raw, Mapping):
        raise _wrong(where, path, "a table", raw)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in given}
    for key in raw:
        if key not in fields and key not in skip:
            raise one_of(f"{noun} {_in_table(where, path)}", key, [*fields, *skip])
    hints = _hints(cls)
    values = given
    for name, f in fields.items():
        loc = _at(where, _join(path, name))
        if name in raw:
            values[name] = _value(raw[name], hints[name], f.metadata, where, _join(path, name))
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(f"{loc} is required")
    return cls(**values)


def nonempty(loc: str, value: str) -> str:
    """A `check` for text that must not be empty (names: a system, a suite, a benchmark)."""
    if not value:
        raise ConfigError(f"{loc} must not be empty")
    return value


def field_names(cls: type) -> list[str]:
    """The keys a table of `cls` may hold."""
    return [f.name for f in dataclasses.fields(cls) if f.init]


# --- one value --------------------------------------------------------------------------------

def _value(value: Any, hint: Any, meta: Mapping[str, Any], where: str, path: str) -> Any:
    loc = _at(where, path)
    value = _typed(value, hint, meta, where, path)
    choices = meta.get("choices")
    if choices and value is not None and value not in choices:
        raise ConfigError(f"{loc}: {value!r} not allowed; allowed: {', '.join(map(str, choices))}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value is not None and value < lo:
        raise ConfigError(f"{loc}: {value!r} is below the minimum {lo}")
    if hi is not None and value is not None and value > hi:
        raise ConfigError(f"{loc}: {value!r} is above the maximum {hi}")
    check = meta.get("check")
    return check(loc, value) if check and value is not None else value


def _typed(value: Any, hint: Any, meta: Mapping[str, Any], where: str, path: str) -> Any:
    """`value` as `hint` (arrays -> tuple/list, tables -> dataclass/dict), or a ConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options:
            try:
                return _typed(value, option, meta, where, path)
            except ConfigError:
                if len(options) == 1:
                    raise
        raise _wrong(where, path, " or ".join(_want(o, {}) for o in options), value)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{_at(where, path)}: {value!r} not allowed; allowed: {', '.join(map(str, args))}")
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build(hint, value, where, path)
    if origin in (tuple, list) and (len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis)):
        if not isinstance(value, (list, tuple)):
            raise _wrong(where, path, _want(hint, meta), value)
        items = [_typed(v, args[0], {}, where, _item(path, args[0], i)) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, collections.abc.Mapping) or hint in (dict, Mapping, collections.abc.Mapping):
        return _table(value, args[1] if args else Any, meta, where, path)
    return _scalar(value, hint, meta, where, path)


def _table(value: Any, item: Any, meta: Mapping[str, Any], where: str, path: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _wrong(where, path, "a table", value)
    allowed = meta.get("keys")
    for key in value:
        if allowed and key not in allowed:
            raise one_of(f"key {_in_table(where, path)}", key, allowed)
    return {k: _typed(v, item, {}, where, _join(path, str(k))) for k, v in value.items()}


def _scalar(value: Any, hint: Any, meta: Mapping[str, Any], where: str, path: str) -> Any:
    if hint is Any or hint is object:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float) and isinstance(value, bool):
        raise _wrong(where, path, _want(hint, meta), value)
    if isinstance(hint, type) and not isinstance(value, hint):
        raise _wrong(where, path, _want(hint, meta), value)
    if hint is float and not math.isfinite(value):  # nan compares false with every bound: never let it by
        raise _wrong(where, path, "a finite " + _want(hint, meta).removeprefix("a "), value)
    return value


_WANT = {int: "an integer", float: "a number", bool: "true or false", str: "text"}


def _want(hint: Any, meta: Mapping[str, Any]) -> str:
    """What a value of `hint` is called in an error, with its range."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (tuple, list):
        if dataclasses.is_dataclass(args[0]):
            return "an array of tables"
        return f"a list of {_want(args[0], {}).removeprefix('an ').removeprefix('a ')}"
    if dataclasses.is_dataclass(hint) or origin in (dict, collections.abc.Mapping):
        return "a table"
    text = _WANT.get(hint, getattr(hint, "__name__", str(hint)))
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None:
        return f"{text} in [{lo}, {hi}]"
    return text + (f" >= {lo}" if lo is not None else "") + (f" <= {hi}" if hi is not None else "")


def _wrong(where: str, path: str, want: str, value: Any) -> ConfigError:
    shown = repr(value)
    return ConfigError(f"{_at(where, path)} must be {want}, got {shown if len(shown) <= 80 else shown[:77] + '...'}")


# --- naming places ----------------------------------------------------------------------------

def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _item(path: str, hint: Any, i: int) -> str:
    """An array entry: 'device #2' (an array of tables, counted from 1) or 'srun_args[1]'."""
    return f"{path} #{i + 1}" if dataclasses.is_dataclass(hint) else f"{path}[{i}]"


def _at(where: str, path: str) -> str:
    """A key's place: 'file.toml: slurm.time_min', or the dotted path alone ('gemm.m')."""
    return f"{where}: {path}" if where and path else (where or path or "(top level)")


def _in_table(where: str, path: str) -> str:
    """A table's place in an 'unknown key' error: 'in [slurm] of x.toml', 'for gemm'."""
    if where and path:
        return f"in [{path}] of {where}"
    return f"in {where}" if where else f"for {path}"

