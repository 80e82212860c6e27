"""Which GPUs a rank samples; several GPUs in one window (replayed); the amdsmi backend."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from aifbench.errors import ConfigError
from aifbench.telemetry import amdsmi_device
from aifbench.telemetry.amdsmi_device import AmdSmiDevice, open_amdsmi_device
from aifbench.telemetry.config import TelemetryConfig, check_policy
from aifbench.telemetry.gpus import TelemetryUnavailable, ranks_on_node, resolve_policy
from aifbench.telemetry.nvml_device import NvmlCallError
from aifbench.telemetry.select import open_sampler
from aifbench.telemetry.trace import TraceError

from tests import telemetry_scripted as scripted

DATA = Path(__file__).parents[2] / "data" / "telemetry"


def replay(name: str) -> tuple[object, dict]:
    return scripted.replay_shipped(name)


def metric(win, name):
    return next((m for m in win.metrics if m.metric == name), None)


# --- the policy ------------------------------------------------------------------------------

@pytest.mark.parametrize("env, ranks", [
    ({}, 1),
    ({"RANK": "0", "WORLD_SIZE": "4"}, 4),                                   # aifbench --nproc 4: all here
    ({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"}, 4),          # torchrun / submitit
    ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "1"}, 1),          # one rank per node
    ({"SLURM_PROCID": "4", "SLURM_NTASKS": "6", "SLURM_STEP_TASKS_PER_NODE": "4,1(x2)", "SLURM_NODEID": "2"}, 1),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_TASKS_PER_NODE": "4(x2)", "SLURM_NODEID": "1"}, 4),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "3", "SLURM_TASKS_PER_NODE": "garbage", "SLURM_NODEID": "0"}, 3),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, 1),
])
def test_ranks_on_this_node(env, ranks):
    assert ranks_on_node(env) == ranks
    assert resolve_policy("auto", env) == ("visible" if ranks == 1 else "own")
    assert resolve_policy("own", env) == "own" and resolve_policy("visible", env) == "visible"


def test_policy_from_argument_or_environment():
    assert TelemetryConfig.from_env({}).gpus == "auto"
    assert TelemetryConfig.from_env({"AIFBENCH_TELEMETRY_GPUS": "Visible"}).gpus == "visible"
    assert check_policy("Own") == "own"
    with pytest.raises(ConfigError, match="AIFBENCH_TELEMETRY_GPUS='all': choose one of auto, own, visible"):
        TelemetryConfig.from_env({"AIFBENCH_TELEMETRY_GPUS": "all"})
    with pytest.raises(ConfigError, match="choose one of auto, own, visible"):
        open_sampler("cpu", 0.1, gpus="every")


# --- several GPUs in one window ----------------------------------------------------------------

def test_four_gpus_sampled_metrics_and_flags_of_the_own_one():
    sampler, wins = replay("h100_node_4gpu")
    win = wins["gemm-bf16-8192"]
    # GPU 1 runs another job and throttles thermally: neither flags this rank's clean window
    assert win.flags == []
    by_gpu = collections.defaultdict(dict)
    for r in win.rows:
        by_gpu[r["gpu_index"]].setdefault(r["field"], []).append(r["value"])
    assert list(by_gpu) == [2, 0, 1, 3]  # the own GPU's rows first
    assert len({r["gpu_uuid"] for r in win.rows}) == 4
    assert max(by_gpu[1]["clocks_event_reasons"]) == 0x60 and max(by_gpu[1]["temperature_c"]) == 88
    assert set(by_gpu[1]["processes"]) == {1.0} and "other_processes" not in by_gpu[1]  # once a second
    assert set(by_gpu[2]["other_processes"]) == {0.0}
    own_power = [v for v in by_gpu[2]["power_w"] if v is not None]
    assert 540 < metric(win, "power_mean_w").value < 580 and max(own_power) == metric(win, "power_peak_w").value
    assert metric(win, "temperature_max_c").value == 58  # not GPU 1's 88
    assert wins["gemm-bf16-16384-powercap"].flags == []  # capped at the default limit: a state, no flag
    capped = metric(wins["gemm-bf16-16384-powercap"], "power_capped_pct")
    assert capped.detail.startswith("state=capped_at_default")
    assert "also sampled: index 0" in sampler.describe() and "index 3" in sampler.describe()


def test_version_1_trace_reads_as_one_gpu(tmp_path):
    """Traces recorded before several GPUs per trace (version 1: single objects) still replay."""
    lines = [json.loads(x) for x in (DATA / "gh200_module_power.jsonl").read_text().splitlines()]
    lines[0].update(version=1, static=lines[0]["static"][0])
    for obj in lines[1:]:
        if "reads" in obj:
            obj["reads"] = obj["reads"][0]
    (tmp_path / "v1.jsonl").write_text("".join(json.dumps(o) + "\n" for o in lines))
    old = replay_file(tmp_path / "v1.jsonl")
    new = replay_file(DATA / "gh200_module_power.jsonl")
    assert [(m.metric, m.value, m.detail) for m in old.metrics] == [(m.metric, m.value, m.detail) for m in new.metrics]


def replay_file(path: Path):
    sampler = open_sampler("cpu", 0.1, trace_path=path)
    with sampler.window("w") as win:
        pass
    return win


@pytest.mark.parametrize("static, reads, message", [
    ([{}, {}], [{"temperature": [0, 50]}], r"line 3: \"reads\" must hold one object per GPU \(2"),
    ([], [{}], r"line 1: \"static\" must be a non-empty list"),
    ({"name": [0, "x"]}, [{}], r"line 1: \"static\" must be a non-empty list"),
    ([{}], {"temperature": [0, 50]}, "line 3: a poll needs a numeric \"t\" and a list \"reads\""),
])
def test_bad_version_2_traces(tmp_path, static, reads, message):
    objs = [{"format": "aifbench-nvml-trace", "version": 2, "static": static}, {"window": "w", "event": "start"},
            {"t": 0.0, "reads": reads}, {"window": "w", "event": "end"}]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    with pytest.raises(TraceError, match=message) as exc:
        open_sampler("cuda:0", 0.1, trace_path=path)
    assert str(path) in str(exc.value)


def test_energy_counter_that_disagrees_with_power_is_not_trusted(tmp_path):
    def trace(counter_mj: int) -> Path:
        polls = [{"t": t, "reads": [{"fields": [0, {"186@0": [0, 500_000]}], "energy": [0, e]}]}
                 for t, e in ((0.0, 1_000_000), (1.5, 1_000_000 + counter_mj))]
        objs = [{"format": "aifbench-nvml-trace", "version": 2, "static": [{}]}, {"window": "w", "event": "start"},
                *polls, {"window": "w", "event": "end"}]
        path = tmp_path / f"c{counter_mj}.jsonl"
        path.write_text("".join(json.dumps(o) + "\n" for o in objs))
        return path

    good = metric(replay_file(trace(740_000)), "energy_j")  # 500 W x 1.5 s = 750 J
    assert good.value == pytest.approx(740.0) and "method=counter" in good.detail
    stuck = metric(replay_file(trace(10_000)), "energy_j")  # a counter that barely moved
    assert stuck.value == pytest.approx(750.0) and "method=integrated" in stuck.detail
    assert "counter delta 10 J disagrees" in stuck.detail


# --- AMD through amdsmi ------------------------------------------------------------------------

def test_mi250x_replay_flags_units_and_the_gcd_without_power():
    sampler, wins = replay("mi250x_amdsmi")
    clean, slow = wins["gemm-bf16-mi250x"], wins["gemm-bf16-mi250x-lowclock"]
    assert clean.flags == [] and sorted(slow.flags) == ["ecc_errors", "low_sm_clock"]
    power = metric(clean, "power_mean_w")
    assert 400 < power.value < 440 and "source=average_1s" in power.detail  # MI200: no instant power
    energy = metric(clean, "energy_j")
    assert "method=counter" in energy.detail and energy.value == pytest.approx(power.value * 2.0, rel=0.02)
    assert metric(clean, "throttle_pct") is None  # amdsmi gives no decodable reasons
    rows = [r for r in clean.rows if r["gpu_index"] == 0]
    assert {"clocks_event_reasons", "power_w"} <= {r["field"] for r in rows if r["value"] is None}
    sibling = {r["field"] for r in clean.rows if r["gpu_index"] == 1 and r["value"] is not None}
    assert "sm_clock_mhz" in sibling and not sibling & {"power_avg_1s_w", "power_w", "energy_counter_j"}
    assert sampler.describe().startswith("replay: mi250x_amdsmi.jsonl: AMD Instinct MI250X")
    assert "power limit 560 W" in sampler.describe()


def fake_smi(**state):
    gcds = [{"bdf": "0000:c1:00.0", "uuid": "u0", "max_gfx": 1700, "max_mem": 1600},
            {"bdf": "0000:c6:00.0", "uuid": "u1", "max_gfx": 1700, "max_mem": 1600}]
    s = {"t": 0.0, "power_w": 300, "sm": 1700, "mem": 1600, "temp": 60, "util": 99, "mem_util": 50,
         "mem_used": 1 << 30, "ecc_c": 3, "pids": [7, 9]}
    return scripted.FakeAmdSmi(gcds, [dict(s, **state), dict(s, power_w=0)])


def test_amdsmi_answers_in_nvml_units():
    smi = fake_smi()
    dev = AmdSmiDevice(smi, smi.handles, [0, 1])
    assert dev.read("power_usage") == 300_000                      # W -> mW
    assert dev.read("power_limit") == 560_000                      # uW -> mW
    assert dev.read("energy") == int(int(4.2e12 / smi.RESOLUTION_UJ) * smi.RESOLUTION_UJ / 1e3)  # uJ -> mJ
    assert dev.read("clock", 1) == 1700 and dev.read("max_clock", 2) == 1600
    assert dev.read("temperature") == 60 and dev.read("utilization") == [99, 50]
    assert dev.read("processes") == [7, 9] and dev.read("index", slot=1) == 1
    assert dev.read("fields", ("186@0", "3@0", "4@0", "197@0")) == \
        {"186@0": [3, None], "3@0": [0, 3], "4@0": [0, 0], "197@0": [3, None]}  # current_socket_power "N/A"
    with pytest.raises(NvmlCallError) as exc:
        dev.read("clocks_event_reasons")
    assert exc.value.code == 3
    for query in ("energy", "power_usage"):  # the GCD whose pair's power is reported on the other one
        with pytest.raises(NvmlCallError, match="the pair's power is on the other GCD"):
            dev.read(query, slot=1)
    assert "no power reading on amdsmi index [1]" in dev.note


@pytest.mark.parametrize("patch, code", [
    (lambda smi: setattr(smi, "amdsmi_get_energy_count",
                         lambda h: {"power": 1000, "counter_resolution": 15.0, "timestamp": 0}), None),  # before 6.2.1
    (lambda smi: setattr(smi, "amdsmi_get_energy_count",
                         lambda h: (_ for _ in ()).throw(smi.AmdSmiLibraryException(2))), 3),   # NOT_SUPPORTED
    (lambda smi: setattr(smi, "amdsmi_get_energy_count",
                         lambda h: (_ for _ in ()).throw(smi.AmdSmiLibraryException(10))), 4),  # NO_PERM
    (lambda smi: setattr(smi, "amdsmi_get_energy_count",
                         lambda h: (_ for _ in ()).throw(smi.AmdSmiLibraryException(8))), 999),  # TIMEOUT: retried
    (lambda smi: setattr(smi, "amdsmi_get_energy_count", lambda h: {"energy_accumulator": "N/A"}), 3),
])
def test_amdsmi_versions_and_errors(patch, code):
    smi = fake_smi()
    patch(smi)
    dev = AmdSmiDevice(smi, smi.handles, [0, 1])
    if code is None:
        assert dev.read("energy") == 15  # 1000 counts x 15 uJ
        return
    with pytest.raises(NvmlCallError) as exc:
        dev.read("energy")
    assert exc.value.code == code


def test_amdsmi_temperature_in_millidegrees_is_scaled():
    smi = fake_smi(temp=61_000)
    assert AmdSmiDevice(smi, smi.handles, [0, 1]).read("temperature") == 61


def test_open_amdsmi_device_matches_by_pci_address(monkeypatch):
    """torch's cuda:0 is amdsmi's second device: HIP and amdsmi orders differ."""
    torch_view = {0: (0, 0xC6, 0), 1: (0, 0xC1, 0)}
    monkeypatch.setattr(amdsmi_device, "pci_location", torch_view.get)
    monkeypatch.setattr(amdsmi_device, "visible_indices", lambda own: [own] + [i for i in torch_view if i != own])
    own = open_amdsmi_device("cuda:0", "own", smi=fake_smi())
    assert own.slots == 1 and own.read("uuid") == "u1" and own.read("index") == 1
    assert "PCI address 0000:c6:00.0" in own.note
    both = open_amdsmi_device("cuda:0", "visible", smi=fake_smi())
    assert [both.read("uuid", slot=k) for k in range(both.slots)] == ["u1", "u0"]
    with pytest.raises(TelemetryUnavailable, match="cannot match cuda:2 .* to an amdsmi device"):
        open_amdsmi_device("cuda:2", "own", smi=fake_smi())


def test_amdsmi_not_importable_here_is_a_reason_not_a_crash():
    try:
        import amdsmi  # noqa: F401
        pytest.skip("amdsmi is importable here")
    except Exception:
        pass
    with pytest.raises(TelemetryUnavailable, match="amdsmi is not importable"):
        open_amdsmi_device("cuda:0")


def test_trace_path_per_rank_follows_rank_info(monkeypatch):
    from aifbench.telemetry.trace import rank_path

    for var in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    assert rank_path("t.{rank}.jsonl").name == "t.0.jsonl"
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert rank_path("t.{rank}.jsonl").name == "t.3.jsonl"
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")  # the launcher's rank comes before Slurm's
    assert rank_path("t.{rank}.jsonl").name == "t.1.jsonl"
