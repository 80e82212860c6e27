"""Third-party benchmarks register through the `aifbench.benchmarks` entry-point group."""

import os
import subprocess
import sys
import textwrap

PLUGIN = '''
from dataclasses import dataclass
from aifbench.benchmarks.base import Benchmark, Measurement, param, time_metrics
from aifbench.registry import register  # the plug-in API (aifbench/registry.py)


@dataclass(frozen=True, kw_only=True, slots=True)
class SpinConfig:
    loops: int = param(1000, "python loop iterations per call", min=1)


class Spin(Benchmark):
    name = "spin"
    description = "a plug-in benchmark: a python loop"
    Config = SpinConfig
    emits = ("time_s",)

    def check(self):
        assert sum(range(self.config.loops)) == self.config.loops * (self.config.loops - 1) // 2

    def measure(self, timer):
        return time_metrics(timer.time(lambda: sum(range(self.config.loops))))
'''


def make_plugin(root, body=PLUGIN):
    (root / "spinplugin").mkdir()
    (root / "spinplugin" / "__init__.py").write_text(body)
    info = root / "spinplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: spinplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[aifbench.benchmarks]\nspin = spinplugin:Spin\n")


def cli(tmp_path, *args):
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "aifbench", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_entry_point_benchmark_is_listed_and_runs(tmp_path):
    (tmp_path / "site").mkdir()
    make_plugin(tmp_path / "site")
    suite = tmp_path / "spin.toml"
    suite.write_text(textwrap.dedent('''
        [suite]
        name = "spin"
        [[case]]
        benchmark = "spin"
        sweep = { loops = [10, 100] }
    '''))
    listing = cli(tmp_path, "list")
    assert "spin" in listing.stdout and "a plug-in benchmark" in listing.stdout
    run = cli(tmp_path, "run", str(suite), "--results", "res", "--telemetry-hz", "0")
    assert run.returncode == 0, run.stderr
    assert "loops=100" in run.stdout


def test_a_broken_plug_in_is_listed_with_its_error_and_others_still_work(tmp_path):
    (tmp_path / "site").mkdir()
    make_plugin(tmp_path / "site", body="raise ImportError('needs libfoo')\n")
    listing = cli(tmp_path, "list")
    assert listing.returncode == 0
    assert "gemm" in listing.stdout and "cannot load: ImportError: needs libfoo" in listing.stdout
