"""The plug-in API's old address: `from aifbench.registry import register` keeps working for
third-party benchmarks; the registry itself is aifbench.benchmarks.registry. A compatibility shim:
it stays until release 0.2.0, then goes."""

from aifbench.benchmarks.registry import BROKEN, ENTRY_POINT_GROUP, get, names, register  # noqa: F401
