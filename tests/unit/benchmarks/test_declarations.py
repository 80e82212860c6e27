"""Each built-in benchmark is declared once (benchmarks.configs): name, config, metrics, regions."""

from __future__ import annotations

import subprocess
import sys

from aifbench import metrics as M
from aifbench.benchmarks import configs, registry
from aifbench.benchmarks.base import Benchmark, Declaration


def test_every_builtin_class_takes_name_config_and_emits_from_its_declaration():
    for name, decl in configs.DECLARATIONS.items():
        cls = registry.get(name)
        assert cls.declaration is decl
        assert (cls.name, cls.Config, cls.emits) == (decl.name, decl.config, decl.emits)
        assert registry.config_of(name) is decl.config and registry.emits_of(name) == decl.emits


def test_declared_metrics_and_regions_are_in_the_metric_dictionary():
    declared_regions: set[str] = set()
    for decl in configs.DECLARATIONS.values():
        assert set(decl.emits) <= set(M.METRICS), decl.name
        assert set(decl.regions) <= set(M.REGIONS), decl.name
        declared_regions |= set(decl.regions)
    # every telemetry region of the dictionary belongs to a benchmark that declares it
    assert declared_regions == set(M.REGIONS)


def test_a_toy_benchmark_is_one_declaration_and_one_class():
    toy = Declaration("toy_decl", configs.MembwConfig, emits=("gbps",))

    class Toy(Benchmark):
        declaration = toy
        description = "a toy"

        def check(self) -> None: ...

        def measure(self, timer):  # pragma: no cover - never run
            raise NotImplementedError

    assert (Toy.name, Toy.Config, Toy.emits) == ("toy_decl", configs.MembwConfig, ("gbps",))


def test_declarations_import_without_torch():
    code = ("import sys; import aifbench.benchmarks.configs as c; "
            "assert 'torch' not in sys.modules, 'torch imported'; print(len(c.DECLARATIONS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "7"
