"""The NVML sampler fed by the shipped traces: metrics, energy methods, validity flags, formats."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from aifbench.errors import ConfigError
from aifbench.results import schema
from aifbench.telemetry.nvml import NvmlSampler
from aifbench.telemetry.select import open_sampler
from aifbench.telemetry.trace import RecordingDevice, ReplayDevice, TraceError

from tests import telemetry_scripted as scripted

DATA = Path(__file__).parents[2] / "data" / "telemetry"


def replay_all(name: str) -> dict:
    """case id -> Window for every window of a shipped trace."""
    return scripted.replay_shipped(name)[1]


def metric(win, name: str):
    found = [m for m in win.metrics if m.metric == name]
    assert len(found) <= 1, name
    return found[0] if found else None


@pytest.mark.parametrize("trace, case_id, flags", [
    ("h100_sxm_throttle", "gemm-bf16-4096-clean", []),
    ("h100_sxm_throttle", "gemm-bf16-16384-powercap", []),  # capped at the default limit: a state, no flag
    ("h100_sxm_throttle", "gemm-bf16-16384-thermal", ["thermal_throttle"]),
    ("h100_sxm_throttle", "gemm-app-clocks-1005", ["low_sm_clock", "sw_slowdown"]),
    ("h100_sxm_throttle", "allreduce-short", []),
    ("h100_pcie_ecc", "membw-clean", []),
    ("h100_pcie_ecc", "membw-ecc", ["ecc_errors"]),
    ("h100_pcie_ecc", "membw-shared-gpu", ["other_processes"]),
    ("a100_no_instant_power", "gemm-fp16-clean", []),
    ("gh200_module_power", "gemm-bf16-module", []),
])
def test_flags_of_each_window(trace, case_id, flags):
    assert sorted(replay_all(trace)[case_id].flags) == sorted(flags)


def test_power_capped_window_metrics():
    win = replay_all("h100_sxm_throttle")["gemm-bf16-16384-powercap"]
    assert 680 < metric(win, "power_mean_w").value < 700
    assert metric(win, "power_peak_w").value <= 700.0  # the 700 W limit of an H100 SXM5
    assert 1650 < metric(win, "sm_clock_mean_mhz").value < 1800
    assert metric(win, "temperature_max_c").value == 71
    throttle = metric(win, "throttle_pct")  # SwPowerCap is no throttling reason: 0 %, but it is named
    assert throttle.value == 0.0 and "SwPowerCap" in throttle.detail
    # 3.0 s window at 0.1 s: 31 polls, SwPowerCap from t = 0.4 s on (polls 4..30) -> 27 of 31
    capped = metric(win, "power_capped_pct")
    assert capped.value == pytest.approx(100 * 27 / 31) and capped.n_samples == 31
    assert capped.detail == "state=capped_at_default (SwPowerCap in 27 of 31 samples at the 700 W limit = default)"
    assert metric(win, "power_limit_w").value == 700.0 and metric(win, "power_limit_default_w").value == 700.0


def test_energy_counter_for_long_windows_integration_for_short():
    wins = replay_all("h100_sxm_throttle")
    long, short = metric(wins["gemm-bf16-4096-clean"], "energy_j"), metric(wins["allreduce-short"], "energy_j")
    assert "method=counter" in long.detail and "scope=gpu" in long.detail
    assert "method=integrated" in short.detail and "window < 1 s" in short.detail
    # the counter delta agrees with the integral of the same power samples (trapezoid both)
    mean = metric(wins["gemm-bf16-4096-clean"], "power_mean_w").value
    assert long.value == pytest.approx(mean * 2.0, rel=0.01)
    assert short.value == pytest.approx(metric(wins["allreduce-short"], "power_mean_w").value * 0.35, rel=1e-6)


def test_module_power_kept_apart_from_gpu_power():
    win = replay_all("gh200_module_power")["gemm-bf16-module"]
    gpu, module = metric(win, "power_mean_w"), metric(win, "module_power_mean_w")
    assert "scope=gpu" in gpu.detail and "scope=module" in module.detail
    assert module.value > gpu.value + 100
    assert "scope=module" in metric(win, "module_energy_j").detail
    scopes = {r["field"]: r["scope"] for r in win.rows}
    assert scopes["module_power_w"] == "module" and scopes["power_w"] == "gpu"


def test_unsupported_calls_leave_fields_empty():
    sampler = open_sampler("cpu", 0.1, trace_path=DATA / "a100_no_instant_power.jsonl")
    with sampler.window("x") as win:
        pass
    power = metric(win, "power_mean_w")
    assert "source=average_1s" in power.detail  # no NVML_FI_DEV_POWER_INSTANT: 1 s average fallback
    empty = {r["field"] for r in win.rows if r["value"] is None}
    assert {"power_w", "module_power_w", "pcie_tx_gbps", "processes"} <= empty
    assert not any(r["field"] == "power_w" and r["value"] is not None for r in win.rows)
    assert "unsupported:" in sampler.describe() and "processes" in sampler.describe()
    assert "other_processes" not in win.flags


def test_link_rates_from_counters():
    win = replay_all("h100_sxm_throttle")["allreduce-short"]
    nvl = [r["value"] for r in win.rows if r["field"] == "nvlink_tx_gbps"]
    assert nvl and all(v == pytest.approx(310.0, rel=0.01) for v in nvl)
    pcie = [r["value"] for r in win.rows if r["field"] == "pcie_tx_gbps"]
    assert pcie and all(v == pytest.approx(1.2, rel=0.01) for v in pcie)


def test_rows_fit_the_telemetry_table():
    win = replay_all("h100_pcie_ecc")["membw-ecc"]
    df = pd.DataFrame([dict(r, schema_version=1, run_id="r", case_id="c", rank=0) for r in win.rows])
    out = schema.validate("telemetry", df)
    assert set(out["source"]) == {"replay"} and out["t_s"].min() == 0.0
    assert set(out["gpu_uuid"]) == {"GPU-0e7d1f55-3c2b-4a19-b6d0-77e8f9a0b1c2"}


def test_windows_cycle_when_more_are_asked():
    sampler = open_sampler("cpu", 0.1, trace_path=DATA / "gh200_module_power.jsonl")
    energies = []
    for i in range(2):
        with sampler.window(f"case-{i}") as win:
            pass
        energies.append(metric(win, "energy_j").value)
    assert energies[0] == energies[1]


def test_shipped_traces_are_what_the_generator_writes(tmp_path):
    for name in scripted.SCENARIOS:
        written = scripted.write_trace(name, tmp_path)
        assert written.read_text() == (DATA / f"{name}.jsonl").read_text(), f"regenerate {name}: see tests/telemetry_scripted.py"


@pytest.mark.parametrize("name", list(scripted.SCENARIOS))
def test_record_then_replay_gives_the_same_windows(tmp_path, name):
    """Every scenario, one GPU or several, NVML or amdsmi: the replay of a recording is the session."""
    device, windows, _ = scripted.SCENARIOS[name]()
    direct = NvmlSampler(device, 0.1)
    recorded = NvmlSampler(RecordingDevice(scripted.SCENARIOS[name]()[0], tmp_path / "t.jsonl"), 0.1)
    first = []
    for case_id, _ in windows:
        for s in (direct, recorded):
            with s.window(case_id) as win:
                pass
            first.append(win)
    recorded.close()
    replay = NvmlSampler(ReplayDevice(tmp_path / "t.jsonl"), 0.1)
    assert len(replay.gpus) == device.slots
    for i, (case_id, _) in enumerate(windows):
        with replay.window(case_id) as win:
            pass
        a = first[2 * i]
        assert win.flags == a.flags
        assert [(m.metric, m.stat, m.n_samples, m.detail) for m in win.metrics] == \
            [(m.metric, m.stat, m.n_samples, m.detail) for m in a.metrics]
        # times are rebased to the recording's first poll and rounded to 1 µs: values agree to that
        assert [m.value for m in win.metrics] == pytest.approx([m.value for m in a.metrics], rel=1e-9)
        assert len(win.rows) == len(a.rows)
        for got, want in zip(win.rows, a.rows):
            assert {k: got[k] for k in ("field", "unit", "scope", "gpu_uuid", "gpu_index")} == \
                {k: want[k] for k in ("field", "unit", "scope", "gpu_uuid", "gpu_index")}
            assert got["t_s"] == pytest.approx(want["t_s"], abs=2e-6)
            assert got["value"] == (None if want["value"] is None else pytest.approx(want["value"], rel=1e-9))


# --- bad trace files -------------------------------------------------------------------------

def _lines(*objs) -> str:
    return "\n".join(o if isinstance(o, str) else json.dumps(o) for o in objs) + "\n"


HEADER = {"format": "aifbench-nvml-trace", "version": 1, "static": {}}
START, END = {"window": "w", "event": "start"}, {"window": "w", "event": "end"}
POLL = {"t": 0.0, "reads": {"temperature": [0, 50]}}


@pytest.mark.parametrize("text, message", [
    (_lines(HEADER, START, '{"t": 0.0, "reads": {"temp'), "line 3: not JSON"),
    (_lines({"hello": 1}, START, POLL, END), "is not an aifbench NVML trace"),
    (_lines(dict(HEADER, version=99), START, POLL, END), "version 99 unsupported"),
    (_lines(HEADER, START, POLL), "never ends (truncated file?)"),
    (_lines(HEADER, POLL), "line 2: a poll outside any window"),
    (_lines(HEADER, START, {"t": 0.0, "reads": {"temperature": 50}}, END), "line 3: every read must be"),
    (_lines(HEADER, START, {"t": 1.0, "reads": {}}, {"t": 0.5, "reads": {}}, END), "line 4: time goes backwards"),
    (_lines(HEADER), "has no complete window"),
    ("\x00\xff garbage", "not JSON"),
])
def test_corrupt_trace_is_a_clear_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    with pytest.raises(TraceError) as exc:
        open_sampler("cuda:0", 0.1, trace_path=path)
    assert str(path) in str(exc.value) and message in str(exc.value)
    assert isinstance(exc.value, ConfigError)  # exit code 2 in the CLI


def test_missing_or_unreadable_trace(tmp_path):
    with pytest.raises(TraceError, match="cannot read telemetry trace .*nope.jsonl"):
        ReplayDevice(tmp_path / "nope.jsonl")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(TraceError, match="bin.jsonl"):
        ReplayDevice(tmp_path / "bin.jsonl")


def test_replay_through_environment():
    from aifbench.telemetry.config import TelemetryConfig
    from aifbench.telemetry.select import sampler_for

    config = TelemetryConfig.from_env({"AIFBENCH_TELEMETRY_REPLAY": str(DATA / "h100_pcie_ecc.jsonl")})
    sampler = sampler_for("cpu", config)
    assert sampler.describe().startswith("replay: h100_pcie_ecc.jsonl: NVIDIA H100 PCIe")
