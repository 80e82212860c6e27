"""The plug-in API's old address: `from aifbench.registry import register` keeps working for
third-party benchmarks; the registry itself is aifbench.benchmarks.registry."""

from aifbench.benchmarks.registry import BROKEN, ENTRY_POINT_GROUP, get, names, register  # noqa: F401
