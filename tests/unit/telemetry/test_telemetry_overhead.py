"""The telemetry_overhead benchmark on CPU (its goal, <= 1 % loss at 10 Hz, needs a GPU)."""

from __future__ import annotations

import pytest

from aifbench.benchmarks import registry
from aifbench.benchmarks.base import Context
from aifbench.config import build_config
from aifbench.errors import ConfigError
from aifbench.telemetry.select import open_sampler
from aifbench.timing import Timer, TimingConfig


@pytest.fixture(autouse=True)
def one_thread():
    """Shared 2-core machines: torch's OpenMP workers spin against other processes and a 64^3
    matmul can take tens of ms; one thread keeps each call to microseconds."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def bench(**params):
    cls = registry.get("telemetry_overhead")
    return cls(build_config(cls.Config, params, cls.name), Context(timing=TimingConfig(warmup=1)))


def test_reports_throughput_ratios_and_achieved_rates():
    b = bench(size=64, dtype="fp32", rounds=3, round_s=0.05, low_hz=10, high_hz=100)
    assert b.skip_reason() is None
    b.setup()
    b.check()
    outer = open_sampler("cpu", 0.01)  # the runner's window around measure() is suspended inside
    with outer.window("case") as win:
        m = b.measure(Timer("cpu"))
    b.teardown()
    values = {(x.metric, x.stat): x for x in m.metrics}
    assert {metric for metric, _ in values} == set(type(b).emits)
    assert len(m.samples["overhead_off_tflops"]) == 6  # the off side of both A/B comparisons
    for s in ("off", "low", "high"):
        assert values[f"overhead_{s}_tflops", "median"].value > 0
    for s in ("low", "high"):
        assert len(m.samples[f"overhead_{s}_tflops"]) == 3
        ratios = m.samples[f"overhead_ratio_{s}"]
        mean, lo, hi = (values[f"overhead_ratio_{s}", k].value for k in ("mean", "ci_low", "ci_high"))
        assert mean == pytest.approx(sum(ratios) / 3) and lo < mean < hi
        loss = [values[f"overhead_loss_pct_{s}", k].value for k in ("mean", "ci_low", "ci_high")]
        assert loss == pytest.approx([(1 - mean) * 100, (1 - hi) * 100, (1 - lo) * 100])
        assert m.samples[f"overhead_loss_pct_{s}"] == pytest.approx([(1 - r) * 100 for r in ratios])
    # 100 Hz really polls more often than 10 Hz (each segment ~50 ms: opening/closing polls dominate at 10 Hz)
    assert values["overhead_polls_per_s_high", "median"].value > values["overhead_polls_per_s_low", "median"].value
    assert "telemetry_suspended" in win.flags


def test_rates_must_be_ordered_and_tf32_is_cuda_only():
    with pytest.raises(ConfigError, match="high_hz"):
        bench(low_hz=100, high_hz=10)
    assert "CUDA" in bench(dtype="tf32").skip_reason()


@pytest.mark.parametrize("env, why", [
    ({"AIFBENCH_TELEMETRY": "off"}, "disabled by AIFBENCH_TELEMETRY=off"),
    ({"AIFBENCH_TELEMETRY_REPLAY": "tests/data/telemetry/gh200_module_power.jsonl"}, "replay: gh200_module_power.jsonl"),
])
def test_skipped_without_a_live_sampler(env, why):
    """Telemetry off or replayed (the run's settings, from its environment): there is no sampler
    thread whose cost could be measured."""
    from aifbench.telemetry.config import TelemetryConfig

    cls = registry.get("telemetry_overhead")
    ctx = Context(timing=TimingConfig(warmup=1), telemetry=TelemetryConfig.from_env(env))
    reason = cls(build_config(cls.Config, {"size": 64, "dtype": "fp32"}, cls.name), ctx).skip_reason()
    assert reason.startswith("no live telemetry sampler to measure here") and why in reason


def test_runs_through_the_runner_with_its_telemetry_regions(tmp_path):
    """End to end: the runner's Timer carries telemetry regions; the A/B rounds open none (the
    runner's telemetry is suspended) and the interval rows land in the store."""
    from aifbench.cli import main
    from aifbench.results.store import load
    from tests.conftest import write

    suite = write(tmp_path / "s.toml", '[suite]\nname = "t"\n[timing]\nwarmup = 1\n[[case]]\n'
                                       'benchmark = "telemetry_overhead"\n'
                                       'params = { size = 64, dtype = "fp32", rounds = 2, round_s = 0.02 }\n')
    assert main(["run", str(suite), "--results", str(tmp_path / "res"), "--device", "cpu"]) == 0
    m = load([tmp_path / "res"]).metrics
    assert set(m["status"]) == {"ok"}
    stats = set(m[m["metric"] == "overhead_loss_pct_low"]["stat"])
    assert stats == {"mean", "ci_low", "ci_high"}
