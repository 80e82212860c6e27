"""Energy, power and efficiency pinned by hand: a window whose power varies (exact trapezoid,
not a left or right Riemann sum), the NVML energy-counter delta, the RAPL counter wrap, and
throughput per watt. The device is a hand-written double answering only what the numbers need."""

from __future__ import annotations

import pytest

from aifbench.benchmarks.base import Metric
from aifbench.telemetry.cpu import Rapl
from aifbench.telemetry.efficiency import efficiency_metrics
from aifbench.telemetry.nvml import NvmlSampler
from aifbench.telemetry.nvml_device import NvmlCallError
from aifbench.telemetry.sampling import integrate, time_mean

NOT_SUPPORTED = 3


class HandDevice:
    """One GPU, one window of polls (t in s, power in W, energy counter in mJ or None[, module power in W])."""

    live, source, slots = False, "nvml", 1

    def __init__(self, polls: list[tuple[float, float, int | None]]):
        self.polls, self.i, self.cur = polls, 0, polls[0]

    def begin_window(self, case_id):
        self.i = 0

    def end_window(self, case_id):
        pass

    def close(self):
        pass

    def poll_start(self):
        if self.i >= len(self.polls):
            return None
        self.cur = self.polls[self.i]
        self.i += 1
        return self.cur[0]

    def read(self, query, *args, slot=0):
        static = {"name": "hand GPU", "uuid": "GPU-hand", "index": 0, "pid": 1, "power_limit": 700_000}
        if query in static:
            return static[query]
        if query == "fields":
            got = {"186@0": [0, round(self.cur[1] * 1000)]}  # NVML_FI_DEV_POWER_INSTANT, scope GPU, mW
            if len(self.cur) > 3:
                got["186@1"] = [0, round(self.cur[3] * 1000)]  # scope module (GH200)
            return got
        if query == "energy" and self.cur[2] is not None:
            return self.cur[2]
        raise NvmlCallError(NOT_SUPPORTED)


def window_metrics(polls) -> dict[str, Metric]:
    with NvmlSampler(HandDevice(polls)).window("case") as win:
        pass
    return {m.metric: m for m in win.metrics}


def test_short_window_integrates_varying_power_by_trapezoid():
    # 100 W at 0 s, 300 W at 0.2 s, 200 W at 0.5 s (window < 1 s: the counter is not used)
    # the counter moved 118 J: not used, the window is too short for its update rate
    m = window_metrics([(10.0, 100.0, 5_000_000), (10.2, 300.0, 5_040_000), (10.5, 200.0, 5_118_000)])
    # 0.2 * (100 + 300) / 2 + 0.3 * (300 + 200) / 2 = 40 + 75 = 115 J
    # (left Riemann: 20 + 90 = 110 J; right: 60 + 60 = 120 J)
    assert m["energy_j"].value == pytest.approx(115.0)
    assert "method=integrated" in m["energy_j"].detail and "window < 1 s" in m["energy_j"].detail
    assert m["power_mean_w"].value == pytest.approx(115.0 / 0.5)  # time-weighted 230 W; the plain mean is 200
    assert m["power_peak_w"].value == 300.0


def test_long_window_uses_the_counter_delta():
    # 1.5 s; the samples integrate to 0.5 * 300 + 1.0 * 350 = 500 J; the counter moved 480 000 mJ
    polls = [(20.0, 200.0, 7_000_000), (20.5, 400.0, 7_160_000), (21.5, 300.0, 7_480_000)]
    e = window_metrics(polls)["energy_j"]
    assert e.value == pytest.approx(480.0) and "method=counter" in e.detail and "window_s=1.500" in e.detail


def test_a_counter_that_disagrees_more_than_3x_falls_back_to_the_samples():
    polls = [(20.0, 200.0, 7_000_000), (20.5, 400.0, 7_000_100), (21.5, 300.0, 7_000_100)]  # 0.1 J: stalled
    e = window_metrics(polls)["energy_j"]
    assert e.value == pytest.approx(500.0) and "method=integrated" in e.detail and "disagrees" in e.detail


def test_module_power_and_energy_by_trapezoid():
    # module (GH200: GPU + Grace + memory): 400 W, 800 W, 600 W at 0, 0.5, 1.5 s
    m = window_metrics([(1.0, 100.0, None, 400.0), (1.5, 300.0, None, 800.0), (2.5, 200.0, None, 600.0)])
    # 0.5 * (400 + 800) / 2 + 1.0 * (800 + 600) / 2 = 300 + 700 = 1000 J over 1.5 s
    assert m["module_energy_j"].value == pytest.approx(1000.0) and "scope=module" in m["module_energy_j"].detail
    assert m["module_power_mean_w"].value == pytest.approx(1000.0 / 1.5)
    assert m["module_power_peak_w"].value == 800.0
    # the GPU's own figures stay apart: 0.5 * 200 + 1.0 * 250 = 350 J, no energy counter
    assert m["energy_j"].value == pytest.approx(350.0) and "no energy counter" in m["energy_j"].detail


def test_integrate_and_time_mean_by_hand():
    assert integrate([0.0, 1.0, 3.0], [10.0, 20.0, 0.0]) == pytest.approx(15.0 + 20.0)
    assert time_mean([0.0, 1.0, 3.0], [10.0, 20.0, 0.0]) == pytest.approx(35.0 / 3.0)
    assert time_mean([5.0], [42.0]) == 42.0  # no time span: the one reading


def test_rapl_counter_delta_with_wrap(tmp_path):
    rapl = Rapl([("package-0", tmp_path / "a", 1_000_000), ("package-1", tmp_path / "b", 1_000_000)])
    # package 0: 900 000 -> 100 000 uJ wrapped at 1 000 000: 200 000 uJ; package 1: 10 -> 300 010: 300 000 uJ
    assert rapl.delta_j([900_000, 10], [100_000, 300_010]) == pytest.approx(0.5)


def _m(name, value, stat="median", detail=""):
    return Metric(name, value, stat=stat, n_samples=5, noisy=False, detail=detail)


def test_efficiency_is_throughput_over_mean_power():
    power = [_m("power_mean_w", 250.0, "mean", "scope=gpu source=instant")]
    got = {m.metric: m for m in efficiency_metrics([_m("tflops", 500.0), _m("tflops", 600.0, "max")], power)}
    assert got["tflops_per_w"].value == pytest.approx(2.0) and "scope=gpu" in got["tflops_per_w"].detail
    got = {m.metric: m.value for m in efficiency_metrics([_m("gbps", 3000.0)], power)}
    assert got == {"gbps_per_w": pytest.approx(12.0)}
    # training: this device's tokens (per device) over this device's power, not the global count
    tokens = [_m("tokens_per_s", 8000.0), _m("tokens_per_s_per_device", 1000.0)]
    assert {m.metric: m.value for m in efficiency_metrics(tokens, power)} == {"tokens_per_j": pytest.approx(4.0)}
    assert efficiency_metrics([_m("tflops", 500.0)], []) == []
