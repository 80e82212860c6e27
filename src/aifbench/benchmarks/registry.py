"""Benchmark registry: name -> class.

Built-in benchmarks are every module in aifbench.benchmarks (except base); third-party
packages register theirs through the entry-point group `aifbench.benchmarks`
(`name = "package.module:Class"`). Modules import lazily: `import aifbench` stays cheap.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from importlib.metadata import entry_points

from aifbench.benchmarks.base import Benchmark
from aifbench.errors import one_of

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "aifbench.benchmarks"
_REGISTRY: dict[str, type[Benchmark]] = {}
BROKEN: dict[str, str] = {}
"""module or plug-in -> why it could not be loaded (shown by `aifbench list`)"""
_loaded = False


def register(cls: type[Benchmark]) -> type[Benchmark]:
    """Class decorator: make a benchmark available by its `name`."""
    assert issubclass(cls, Benchmark), cls
    existing = _REGISTRY.get(cls.name)
    assert existing is None or existing is cls or existing.__qualname__ == cls.__qualname__, (
        f"benchmark name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import aifbench.benchmarks as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name not in ("base", "registry") and not mod.name.startswith("_"):
            try:
                importlib.import_module(f"{pkg.__name__}.{mod.name}")
            except Exception as exc:  # one broken module must not take the others down
                BROKEN[mod.name] = f"{type(exc).__name__}: {exc}"
                log.warning("cannot load built-in benchmark module %s: %s", mod.name, exc)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plug-in must not break aifbench
            BROKEN[ep.name] = f"{type(exc).__name__}: {exc}"
            log.warning("cannot load benchmark plug-in %s (%s): %s", ep.name, ep.value, exc)
            continue
        register(cls)


def get(name: str) -> type[Benchmark]:
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise one_of("benchmark", name, _REGISTRY) from None


def names() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def config_of(name: str) -> type:
    """The Config class of benchmark `name`: built-ins from benchmarks.configs (no torch),
    plug-ins by loading them."""
    from aifbench.benchmarks.configs import CONFIGS

    return CONFIGS[name] if name in CONFIGS else get(name).Config


def emits_of(name: str) -> tuple[str, ...]:
    """Metric names benchmark `name` reports (built-ins without importing torch)."""
    from aifbench.benchmarks.configs import EMITS

    return EMITS[name] if name in EMITS else tuple(getattr(get(name), "emits", ()))
