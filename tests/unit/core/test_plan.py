"""The plan: typed, frozen, one JSON form (and the earlier one still read); the telemetry
settings read from the environment once, where the run is planned, and carried to every rank."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aifbench.cli import build_parser, main
from aifbench.cli.jobs import build_submission
from aifbench.config import Case, load_suite
from aifbench.errors import ConfigError
from aifbench.plan import Plan, build_plan
from aifbench.results.store import load
from aifbench.telemetry.config import DEFAULT_INTERVAL_S, TelemetryConfig
from aifbench.timing import TimingConfig
from tests.conftest import write

TRACE = Path(__file__).parents[2] / "data" / "telemetry" / "h100_node_4gpu.jsonl"
SUITE = """
[suite]
name = "two"
[timing]
warmup = 1
repeats = 2
[[case]]
benchmark = "gemm"
params = { m = 64, n = 64, k = 64, dtype = "fp32" }
sweep = { m = [64, 96] }
"""


@pytest.fixture
def suite(tmp_path):
    return load_suite(str(write(tmp_path / "two.toml", SUITE)), ["timing.repeats=3"])


def test_plan_is_typed_and_round_trips(suite, tmp_path):
    env = {"AIFBENCH_TELEMETRY_GPUS": "own", "AIFBENCH_TELEMETRY_RECORD": "t{rank}.jsonl"}
    telemetry = TelemetryConfig.from_env(env, interval_s=0.05)
    plan = build_plan(suite, device="cpu", results_root=tmp_path / "res", telemetry=telemetry, system="local")
    assert plan.run_id.startswith("20") and "-two-" in plan.run_id
    assert all(isinstance(c, Case) for c in plan.cases) and [c.index for c in plan.cases] == [0, 1]
    assert plan.timing == TimingConfig(warmup=1, repeats=3)
    assert (plan.telemetry.gpus, plan.telemetry.record, plan.telemetry.interval_s) == ("own", "t{rank}.jsonl", 0.05)
    assert plan.config_dict() == suite.config_dict() and plan.config_hash == suite.config_hash
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.device = "cuda"  # type: ignore[misc]
    for p in (plan, plan.replace(case_indices=(1,), part="a1")):
        text = p.to_json()
        assert Plan.from_json(text) == p and Plan.from_json(text).to_json() == text
    task = Plan.from_json(plan.replace(case_indices=(1,)).to_json())
    assert [c.case_id for c in task.cases] == [suite.cases[1].case_id]  # its share; the suite stays whole
    assert task.config_dict() == suite.config_dict()


def test_plan_json_of_the_earlier_form_still_loads(suite, tmp_path):
    """plan.json written before the typed plan: suite_config (Suite.config_dict()) and an interval."""
    old = {"run_id": "r0", "suite": "two", "suite_config": suite.config_dict(), "config_hash": suite.config_hash,
           "device": "cpu", "results_root": str(tmp_path), "system": "local", "partition": "", "launcher": "local",
           "telemetry_interval_s": 0.25, "case_indices": [0], "part": "a0", "dist_timeout_s": 300.0}
    plan = Plan.from_json(json.dumps(old))
    assert [c.case_id for c in plan.suite_cases] == [c.case_id for c in suite.cases]
    assert plan.timing == suite.timing and plan.case_indices == (0,) and len(plan.cases) == 1
    assert plan.telemetry == TelemetryConfig(interval_s=0.25) and plan.config_dict() == suite.config_dict()
    assert plan.world_size == 1  # not in plans of that form


def test_the_plan_carries_the_world_size_submit_launches(suite, tmp_path, monkeypatch):
    plan = build_plan(suite, device="cpu", results_root=tmp_path, telemetry=TelemetryConfig(), world_size=4)
    assert Plan.from_json(plan.to_json()).world_size == 4
    for bad in (0, 1.5, True):
        with pytest.raises(ConfigError, match="world_size must be an integer >= 1"):
            plan.replace(world_size=bad)
    monkeypatch.chdir(tmp_path)
    args = ["submit", "smoke", "--system", "local", "--only", "membw", "--tasks-per-node", "3"]
    submitted, req = build_submission(build_parser().parse_args(args))
    assert submitted.world_size == req.nodes * req.tasks_per_node == 3


def test_telemetry_defaults_and_validation_once():
    assert TelemetryConfig().interval_s == DEFAULT_INTERVAL_S and TelemetryConfig().enabled
    assert TelemetryConfig.from_env({"AIFBENCH_TELEMETRY": "bogus"}, interval_s=0).off_reason == \
        "telemetry disabled (interval 0)"  # off: the environment is not read
    assert TelemetryConfig.from_env({"AIFBENCH_TELEMETRY": "off"}).off_reason == "disabled by AIFBENCH_TELEMETRY=off"
    with pytest.raises(Exception, match="min clock fraction must be in 0..1"):
        TelemetryConfig(min_clock_fraction=2.0)
    with pytest.raises(Exception, match="choose one of auto, own, visible"):
        TelemetryConfig.from_dict({"gpus": "all"})
    with pytest.raises(Exception, match="unknown field 'hz'"):
        TelemetryConfig.from_dict({"hz": 10})


def test_a_rank_uses_the_plans_settings_not_its_environment(suite, tmp_path):
    """Made with AIFBENCH_TELEMETRY_GPUS=own and a replayed trace; the rank starts with those
    variables removed and AIFBENCH_TELEMETRY=off set, and still samples the trace."""
    env = {"AIFBENCH_TELEMETRY_GPUS": "own", "AIFBENCH_TELEMETRY_REPLAY": str(TRACE)}
    plan = build_plan(suite, device="cpu", results_root=tmp_path / "res", telemetry=TelemetryConfig.from_env(env))
    plan_file = plan.save(tmp_path / "plan.json")
    assert Plan.load(plan_file).telemetry.gpus == "own"
    rank_env = {k: v for k, v in os.environ.items() if not k.startswith("AIFBENCH_TELEMETRY")}
    proc = subprocess.run([sys.executable, "-m", "aifbench.worker", str(plan_file)],
                          env=dict(rank_env, AIFBENCH_TELEMETRY="off"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    runs = load([plan.run_dir]).runs
    assert runs["telemetry"].iloc[0].startswith("replay: h100_node_4gpu.jsonl"), runs["telemetry"].iloc[0]
    assert json.loads(runs["config"].iloc[0]) == suite.config_dict()


@pytest.mark.parametrize("env, message", [
    ({"AIFBENCH_TELEMETRY_GPUS": "all"}, "AIFBENCH_TELEMETRY_GPUS='all': choose one of auto, own, visible"),
    ({"AIFBENCH_TELEMETRY_MIN_CLOCK_FRACTION": "x"}, "AIFBENCH_TELEMETRY_MIN_CLOCK_FRACTION must be a number in 0..1"),
    ({"AIFBENCH_TELEMETRY": "maybe"}, "AIFBENCH_TELEMETRY='maybe': choose on or off"),
    ({"AIFBENCH_TELEMETRY_REPLAY": "gone.jsonl"}, "gone.jsonl"),
])
def test_bad_settings_are_one_line_exit_2_before_anything(monkeypatch, tmp_path, capsys, env, message):
    monkeypatch.chdir(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["run", "smoke", "--only", "membw", "--device", "cpu", "--results", "res"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "res").exists()


def test_run_and_submit_share_their_plan_options(monkeypatch, tmp_path):
    """--set, --only, --telemetry-hz declared once: both commands parse them to the same plan settings."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIFBENCH_TELEMETRY_GPUS", "visible")
    common = ["--set", "timing.repeats=2", "--only", "membw", "--telemetry-hz", "4"]
    run = build_parser().parse_args(["run", "smoke", *common])
    submit = build_parser().parse_args(["submit", "smoke", "--system", "local", *common])
    assert (run.overrides, run.only, run.telemetry_hz) == (submit.overrides, submit.only, submit.telemetry_hz)
    plan, _ = build_submission(submit)
    assert plan.telemetry == TelemetryConfig(interval_s=0.25, gpus="visible")
    assert plan.timing.repeats == 2 and {c.benchmark for c in plan.cases} == {"membw"}
