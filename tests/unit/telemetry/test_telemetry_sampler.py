"""Sampler machinery, CPU backend, RAPL, NVML without a driver, selection, efficiency metrics."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from aifbench import metrics as metric_dict
from aifbench.benchmarks.base import Metric
from aifbench.errors import ConfigError
from aifbench.results import schema
from aifbench.telemetry import fields as F
from aifbench.telemetry.base import NullSampler
from aifbench.telemetry.cpu import CpuSampler, Rapl
from aifbench.telemetry.efficiency import efficiency_metrics
from aifbench.telemetry.nvml import NvmlSampler
from aifbench.telemetry.nvml_device import NvmlCallError, PynvmlDevice, TelemetryUnavailable, cuda_index, open_nvml_device
from aifbench.telemetry.sampling import suspended
from aifbench.telemetry.config import TelemetryConfig
from aifbench.telemetry.select import open_sampler, sampler_for


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(1000))


def test_cpu_window_polls_in_a_thread_and_fits_the_schema(tmp_path):
    sampler = CpuSampler(0.02, powercap_root=tmp_path / "absent")
    with sampler.window("c") as win:  # 0.6 s: the thread polls at least every ~0.1 s (the least
        busy(0.6)                      # span of a CPU reading), so 6 distinct times even on a loaded machine
    times = sorted({r["t_s"] for r in win.rows})
    assert len(times) >= 6 and times[0] == 0.0 and times[-1] >= 0.59  # opening, thread, closing polls
    names = {m.metric for m in win.metrics}
    assert {"process_cpu_util_mean_pct", "system_cpu_util_mean_pct", "process_rss_max_bytes"} <= names
    assert "energy_j" not in names and "energy unavailable" in sampler.describe()
    util = next(m for m in win.metrics if m.metric == "process_cpu_util_mean_pct")
    assert util.value > 10  # this process was busy (shared cores: far from 100 % guaranteed)
    for m in win.metrics:
        metric_dict.get(m.metric)  # every emitted metric is in the dictionary
    df = pd.DataFrame([dict(r, schema_version=1, run_id="r", case_id="c", rank=0) for r in win.rows])
    assert set(schema.validate("telemetry", df)["scope"]) == {"process", "system"}


def test_cpu_utilisation_is_absent_for_a_short_window_and_bounded_for_a_busy_one(tmp_path):
    """Real psutil counters (10 ms ticks) while every usable CPU is busy in this process: an 8 ms
    window once gave 496 % on 2 CPUs. A window shorter than MIN_SPAN_S has no utilisation; a
    longer one, and each per-sample value, stays within [0, 100 x usable CPUs]."""
    import hashlib
    import threading

    from aifbench.telemetry.cpu import MIN_SPAN_S, usable_cpus

    cpus = usable_cpus()
    bound = {"process_cpu_util_mean_pct": 100.0 * cpus, "system_cpu_util_mean_pct": 100.0}
    stop, data = threading.Event(), bytes(1 << 20)

    def hash_loop():  # hashlib releases the GIL on large buffers: these threads use real cores
        while not stop.is_set():
            hashlib.sha256(data).digest()

    threads = [threading.Thread(target=hash_loop) for _ in range(cpus)]
    for t in threads:
        t.start()
    sampler = CpuSampler(0.002, powercap_root=tmp_path)
    try:
        for _ in range(20):  # short windows of a multi-threaded process, straddling tick boundaries
            with sampler.window("short") as win:
                busy(0.008)
            if win.rows[-1]["t_s"] < MIN_SPAN_S:  # a descheduled main thread can stretch a window
                names = {m.metric for m in win.metrics}
                assert not names & set(bound) and "process_rss_max_bytes" in names
                assert not {r["field"] for r in win.rows} & {"process_cpu_pct", "system_cpu_pct"}
        with sampler.window("busy") as win:
            busy(0.4)
    finally:
        stop.set()
        for t in threads:
            t.join()
    got = {m.metric: m for m in win.metrics if m.metric in bound}
    assert set(got) == set(bound)
    for name, m in got.items():
        assert 0.0 <= m.value <= bound[name], m
        assert "method=counter" in m.detail and "window_s=" in m.detail
    process = got["process_cpu_util_mean_pct"]
    assert process.value > 10 and f"usable_cpus={cpus}" in process.detail  # shared cores: far from 100 x cpus guaranteed
    samples = [r for r in win.rows if r["field"] in ("process_cpu_pct", "system_cpu_pct")]
    assert samples and all(0.0 <= r["value"] <= bound[r["field"].replace("_pct", "_util_mean_pct")] for r in samples)
    times = sorted({r["t_s"] for r in samples if r["field"] == "process_cpu_pct"})
    assert all(b - a >= MIN_SPAN_S - 1e-6 for a, b in zip(times, times[1:]))  # each value spans >= MIN_SPAN_S


def test_short_window_still_has_first_and_last_sample(tmp_path):
    sampler = CpuSampler(1.0, powercap_root=tmp_path)
    with sampler.window("c") as win:
        pass
    assert len({r["t_s"] for r in win.rows}) == 2 and sampler.polls == 2


def test_suspension_pauses_existing_samplers_only(tmp_path):
    outer = CpuSampler(0.01, powercap_root=tmp_path)
    with outer.window("outer") as win:
        with suspended():
            inner = CpuSampler(0.01, powercap_root=tmp_path)
            with inner.window("inner") as inner_win:
                time.sleep(0.3)  # sleeping, not spinning: the poll threads need no GIL share to run
    # ~30 polls each if both ran; the outer may squeeze one in before the suspension starts
    assert "telemetry_suspended" in win.flags and outer.polls <= 5
    assert "telemetry_suspended" not in inner_win.flags and inner.polls >= 12


def make_rapl(root, packages: list[tuple[int, int]]):
    """A powercap tree (package energy_uj, max_energy_range_uj) plus a sub-zone that must be ignored."""
    for i, (energy, max_range) in enumerate(packages):
        d = root / f"intel-rapl:{i}"
        d.mkdir(parents=True)
        (d / "name").write_text(f"package-{i}\n")
        (d / "energy_uj").write_text(f"{energy}\n")
        (d / "max_energy_range_uj").write_text(f"{max_range}\n")
        sub = root / f"intel-rapl:{i}:0"
        sub.mkdir()
        (sub / "name").write_text("dram\n")
        (sub / "energy_uj").write_text("5\n")


def test_rapl_sums_packages_and_handles_wrap(tmp_path):
    make_rapl(tmp_path, [(1_000, 10_000_000), (9_900_000, 10_000_000)])
    rapl, why = Rapl.open(tmp_path)
    assert why == "" and [z[0] for z in rapl.zones] == ["package-0", "package-1"]
    before = rapl.read_uj()
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("2001000\n")   # +2 J
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("400000\n")    # wrapped: +0.5 J
    assert rapl.delta_j(before, rapl.read_uj()) == pytest.approx(2.5)


def test_cpu_sampler_energy_from_rapl(tmp_path):
    make_rapl(tmp_path, [(0, 2**40)])
    sampler = CpuSampler(0.05, powercap_root=tmp_path)
    energy_file = tmp_path / "intel-rapl:0" / "energy_uj"
    with sampler.window("c") as win:
        for k in range(1, 5):
            time.sleep(0.05)
            energy_file.write_text(f"{k * 3_000_000}\n")  # 3 J per step
    energy = next(m for m in win.metrics if m.metric == "energy_j")
    assert energy.value == pytest.approx(12.0) and "scope=cpu-package" in energy.detail
    mean = next(m for m in win.metrics if m.metric == "power_mean_w")
    duration = max(r["t_s"] for r in win.rows)
    assert mean.value == pytest.approx(12.0 / duration, rel=1e-4)  # row times are rounded to 1 µs
    assert "RAPL energy of 1 package" in sampler.describe()


def test_rapl_absent_or_unreadable(tmp_path):
    assert "not present" in Rapl.open(tmp_path / "none")[1]
    d = tmp_path / "intel-rapl:0"
    d.mkdir()
    (d / "name").write_text("package-0")
    (d / "energy_uj").mkdir()  # not a readable file
    rapl, why = Rapl.open(tmp_path)
    assert rapl is None and "unreadable RAPL zone" in why


@pytest.fixture(scope="module")
def no_nvml_driver():
    """pynvml, on a machine where NVML cannot initialise (no NVIDIA driver); else the test skips."""
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return pynvml
    pynvml.nvmlShutdown()
    pytest.skip("an NVIDIA driver is present here")


def test_nvml_without_a_driver_is_unavailable_not_fatal(no_nvml_driver):
    with pytest.raises(TelemetryUnavailable, match="NVML init failed"):
        open_nvml_device("cuda:0")
    sampler = open_sampler("cuda:0", 0.1)
    assert isinstance(sampler, NullSampler) and sampler.describe().startswith("unavailable: NVML init failed")
    with sampler.window("c") as win:
        pass
    assert (win.metrics, win.rows, win.flags) == ([], [], [])


def test_recorder_without_nvml_exits_2(no_nvml_driver, tmp_path, capsys):
    from aifbench.telemetry.record import main

    assert main(["-o", str(tmp_path / "t.jsonl")]) == 2
    assert "NVML init failed" in capsys.readouterr().err and not (tmp_path / "t.jsonl").exists()
    assert main(["-o", str(tmp_path / "t.jsonl"), "--size", "0"]) == 2
    assert "--windows and --size must be >= 1" in capsys.readouterr().err


def test_every_failing_nvml_call_leaves_its_field_empty():
    """The real pynvml with no library loaded: every call fails with an NVML error code."""
    pynvml = pytest.importorskip("pynvml")
    device = PynvmlDevice(pynvml, [None])
    with pytest.raises(NvmlCallError) as exc:
        device.read("temperature")
    assert exc.value.code != 0
    sampler = NvmlSampler(device, 0.01)
    with sampler.window("c") as win:
        time.sleep(0.05)
    assert win.metrics == [] and win.flags == [] and win.rows == []
    assert sampler.describe().startswith("nvml: ? ?")


def test_reason_bits_match_pynvml_constants():
    pynvml = pytest.importorskip("pynvml")
    for name, bit in F.REASON_BITS.items():
        assert getattr(pynvml, f"nvmlClocksEventReason{name}") == bit
    assert F.decode_reasons(0x44) == ["SwPowerCap", "HwThermalSlowdown"]
    assert F.reason_flags(0x1 | 0x10) == []  # idle and sync boost are not throttling
    assert sorted(F.reason_flags(0x8 | 0x80)) == ["hw_slowdown", "power_brake"]
    assert F.reason_flags(0x4) == []  # SwPowerCap is a power state, never an invalidating flag


def test_field_value_decoding_uses_the_value_type():
    pynvml = pytest.importorskip("pynvml")
    from aifbench.telemetry.nvml_device import _field_value

    v = pynvml.c_nvmlFieldValue_t()
    v.valueType, v.value.uiVal = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, 412345
    assert _field_value(v) == 412345
    v.value.uiVal = 0xFFFFFFFF  # NVML_VALUE_NOT_AVAILABLE
    assert _field_value(v) is None
    v.valueType, v.value.ullVal = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, 2**40
    assert _field_value(v) == 2**40
    v.valueType, v.value.dVal = pynvml.NVML_VALUE_TYPE_DOUBLE, 1.5
    assert _field_value(v) == 1.5


def test_cuda_index_parsing():
    assert cuda_index("cuda") == 0 and cuda_index("cuda:3") == 3
    with pytest.raises(TelemetryUnavailable):
        cuda_index("cuda:x")


def test_open_sampler_choices():
    assert isinstance(open_sampler("cpu", 0.1), CpuSampler)
    assert "no telemetry backend for device 'mps'" in open_sampler("mps", 0.1).describe()
    off = TelemetryConfig.from_env({"AIFBENCH_TELEMETRY": "off"})
    assert sampler_for("cpu", off).describe() == "unavailable: disabled by AIFBENCH_TELEMETRY=off"
    assert sampler_for("cpu", TelemetryConfig(interval_s=0)).describe() == "unavailable: telemetry disabled (interval 0)"


@pytest.mark.parametrize("kwargs, message", [
    ({"interval_s": 0}, "telemetry interval must be"),
    ({"interval_s": 1e6}, "telemetry interval must be"),
    ({"interval_s": 0.1, "min_clock_fraction": 1.5}, "min clock fraction must be in 0..1"),
])
def test_open_sampler_rejects_bad_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        open_sampler("cpu", **kwargs)


def test_min_clock_fraction_from_environment():
    from pathlib import Path

    trace = Path(__file__).parents[2] / "data" / "telemetry" / "h100_sxm_throttle.jsonl"
    env = {"AIFBENCH_TELEMETRY_MIN_CLOCK_FRACTION": "0.9"}  # 1732 MHz < 0.9 x 1980
    sampler = sampler_for("cuda:0", TelemetryConfig.from_env(env).replace(replay=str(trace)))
    with sampler.window("a"):
        pass
    with sampler.window("b") as win:
        pass
    assert "low_sm_clock" in win.flags
    with pytest.raises(ConfigError, match="AIFBENCH_TELEMETRY_MIN_CLOCK_FRACTION"):
        TelemetryConfig.from_env({"AIFBENCH_TELEMETRY_MIN_CLOCK_FRACTION": "lots"})


def test_efficiency_metrics():
    measured = [Metric("tflops", 500.0, stat="median"), Metric("tflops", 520.0, stat="max"), Metric("time_s", 0.01)]
    window = [Metric("power_mean_w", 625.0, stat="mean", detail="scope=gpu source=instant"), Metric("energy_j", 1000.0, stat="value")]
    (eff,) = efficiency_metrics(measured, window)
    assert (eff.metric, eff.value) == ("tflops_per_w", pytest.approx(0.8))
    assert "tflops(median)" in eff.detail and "scope=gpu" in eff.detail
    tokens = efficiency_metrics([Metric("tokens_per_s", 3000.0, stat="median"), Metric("gbps", 1500.0, stat="median")], window)
    assert {m.metric: m.value for m in tokens} == {"gbps_per_w": pytest.approx(2.4), "tokens_per_j": pytest.approx(4.8)}
    assert efficiency_metrics(measured, []) == []  # no power, no efficiency
    assert efficiency_metrics([Metric("time_s", 1.0)], window) == []


def test_nested_cpu_samplers_keep_their_own_counters(tmp_path):
    """psutil.cpu_percent(None) has module-wide state; each sampler must measure on its own."""
    outer, inner = CpuSampler(1.0, powercap_root=tmp_path), CpuSampler(0.01, powercap_root=tmp_path)
    with outer.window("outer") as win:  # only its opening and closing polls: one interval
        with inner.window("inner"):
            busy(0.2)
    system = next(m for m in win.metrics if m.metric == "system_cpu_util_mean_pct")
    assert system.value > 20  # at least this process's busy loop on one of the cores


class _FakeClock:
    """Seconds that move only when a poll takes time or the poll loop waits (no real time)."""

    def __init__(self, end_s: float):
        self.t, self.end_s = 0.0, end_s

    def __call__(self) -> float:
        return self.t

    def wait(self, timeout: float) -> bool:  # the stop event: waits out the timeout, stops at end_s
        self.t += timeout
        return self.t >= self.end_s


def _poll_times(interval_s: float, poll_s: float, end_s: float) -> list[float]:
    """The fake times at which the poll loop polls, each poll taking poll_s of fake time."""
    from aifbench.telemetry.sampling import PollingSampler, Sample

    clock = _FakeClock(end_s)
    times = []

    class Slow(PollingSampler):
        def _poll(self):
            times.append(clock.t)
            clock.t += poll_s
            return Sample(clock.t, {})

    sampler = Slow(interval_s, clock=clock)
    sampler._loop(clock, [], {"paused": False})
    return times


def test_poll_thread_keeps_its_rate_when_a_poll_takes_time():
    """Polls on a grid start + k x interval: a poll of 1/64 s at a 1/32 s interval (binary
    fractions: exact) still polls at k/32 s. Before the stop at 31/64 s: k = 1 .. 15, 15 polls;
    a sleep-after-poll loop would poll every 1/32 + 1/64 = 3/64 s: at 2/64, 5/64, .. 29/64, 10 polls."""
    times = _poll_times(1 / 32, 1 / 64, 31 / 64)
    assert times == [k / 32 for k in range(1, 16)]


def test_a_poll_that_overruns_skips_the_grid_points_it_missed():
    """A poll of 5/64 s at a 1/32 s interval: after the poll at 1/32 the clock is 7/64; the grid
    points 2/32 and 3/32 have passed, the next is 4/32. So polls at 1/32, 4/32, 7/32, .. (every
    3/32 s): before 1 s, k = 1, 4, .., 31 -> 11 polls."""
    times = _poll_times(1 / 32, 5 / 64, 1.0)
    assert times == [k / 32 for k in range(1, 32, 3)]


def test_a_trace_that_cannot_be_written_costs_the_recording_not_the_sampling(tmp_path, caplog):
    from aifbench.telemetry.trace import RecordingDevice

    from tests import telemetry_scripted as scripted

    (tmp_path / "file").write_text("not a directory")
    device, windows, _ = scripted.gh200_module()
    sampler = NvmlSampler(RecordingDevice(device, tmp_path / "file" / "t.jsonl"), 0.1)
    with sampler.window(windows[0][0]) as win:  # the recorder cannot create its file
        pass
    sampler.close()
    assert win.flags == [] and "method=counter" in next(m.detail for m in win.metrics if m.metric == "energy_j")
    assert "recording stopped" in caplog.text and caplog.text.count("recording stopped") == 1


def test_tokens_per_joule_uses_the_per_device_rate():
    """llm_train's tokens_per_s counts every rank's tokens; the power is this rank's GPU's."""
    window = [Metric("power_mean_w", 500.0, stat="mean", detail="scope=gpu")]
    measured = [Metric("tokens_per_s", 8000.0, stat="median"), Metric("tokens_per_s_per_device", 2000.0, stat="median")]
    (eff,) = efficiency_metrics(measured, window)
    assert eff.value == pytest.approx(4.0) and "tokens_per_s_per_device(median)" in eff.detail


def test_settings_checked_where_the_run_is_planned(tmp_path):
    def check_settings(interval_s, **env):
        return TelemetryConfig.from_env(env, interval_s=interval_s)

    check_settings(0.1)
    check_settings(0.0, AIFBENCH_TELEMETRY_GPUS="some")  # telemetry off: nothing to check
    with pytest.raises(ConfigError, match=r"0.001..60 s \(0.0167..1000 Hz\), got 0.0002 s \(5000 Hz\)"):
        check_settings(0.0002)
    with pytest.raises(ConfigError, match="cannot read telemetry trace .*gone.jsonl"):
        check_settings(0.1, AIFBENCH_TELEMETRY_REPLAY=str(tmp_path / "gone.jsonl"))
    with pytest.raises(ConfigError, match="choose one of auto, own, visible"):
        check_settings(0.1, AIFBENCH_TELEMETRY_GPUS="some")
    with pytest.raises(ConfigError, match="AIFBENCH_TELEMETRY='of': choose on or off"):
        check_settings(0.1, AIFBENCH_TELEMETRY="of")


def test_nvml_fields_refused_for_good_are_not_requested_again():
    """A field NVML refuses with a permanent error leaves the request; it still answers its error."""
    pynvml = pytest.importorskip("pynvml")
    from types import SimpleNamespace

    requests = []

    def get_field_values(handle, ids):
        requests.append(list(ids))
        out = []
        for fid, _ in ids:
            v = pynvml.c_nvmlFieldValue_t()
            v.nvmlReturn = 3 if fid == 186 else 0  # NOT_SUPPORTED
            v.valueType, v.value.uiVal = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, 7
            out.append(v)
        return out

    nv = SimpleNamespace(nvmlDeviceGetFieldValues=get_field_values, NVMLError=pynvml.NVMLError)
    device = PynvmlDevice(nv, ["gpu0", "gpu1"])
    keys = ("186@0", "3@0")
    for _ in range(2):
        assert device.read("fields", keys) == {"186@0": [3, None], "3@0": [0, 7]}
    assert requests == [[(186, 0), (3, 0)], [(3, 0)]]
    device.read("fields", keys, slot=1)  # refusals are per GPU
    assert requests[-1] == [(186, 0), (3, 0)]
