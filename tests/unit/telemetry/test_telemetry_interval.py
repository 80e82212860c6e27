"""The telemetry sampling interval is checked once (telemetry.config.check_interval): every way a
run gets one (the command line, the run's settings read with the environment, a plan.json, a
suite's rates, the trace recorder, a sampler made in code) refuses a bad one with the same one
line, exit 2, before anything runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aifbench.cli import main
from aifbench.errors import ConfigError
from aifbench.telemetry.config import TelemetryConfig, check_interval, interval_from_hz

LINE = re.compile(r"^(\S+\.toml: )?telemetry interval must be (0 \(off\) or )?0\.001\.\.60 s \(0\.0167\.\.1000 Hz\), got .+ from \S.*$")
"""the one error: the allowed range in s and Hz, what was given, and where it came from"""


def _one_line(text: str, prefix: str = "aifbench: error: ") -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith(prefix), text
    line = lines[0][len(prefix):]
    assert LINE.match(line), line
    return line


@pytest.mark.parametrize("hz,got", [("-1", "got -1 s (-1 Hz)"), ("5000", "got 0.0002 s (5000 Hz)"),
                                    ("0.001", "got 1000 s (0.001 Hz)"), ("abc", "got 'abc'"), ("nan", "got nan s")])
def test_command_line_rate(capsys, tmp_path, hz, got):
    assert main(["run", "smoke", "--telemetry-hz", hz, "--dry-run", "--results", str(tmp_path / "r")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert got in line and line.endswith(f"from --telemetry-hz {hz}") and "0 (off) or" in line
    assert not (tmp_path / "r").exists()


def test_command_line_rate_0_turns_telemetry_off_and_the_default_passes():
    assert interval_from_hz("0", "--telemetry-hz 0") == 0.0
    assert interval_from_hz(10.0) == pytest.approx(0.1)


def test_run_settings_read_with_the_environment():
    """TelemetryConfig.from_env: the interval is checked before any AIFBENCH_TELEMETRY* variable."""
    with pytest.raises(ConfigError) as exc:
        TelemetryConfig.from_env({"AIFBENCH_TELEMETRY_GPUS": "nonsense"}, interval_s=1e6)
    assert LINE.match(str(exc.value)) and "from telemetry settings interval_s" in str(exc.value)
    assert TelemetryConfig.from_env({}, interval_s=0).interval_s == 0.0


@pytest.mark.parametrize("bad", [1e6, -0.5, "0.1 s", True, None])
def test_plan_json_of_either_form(tmp_path, bad):
    """A plan's telemetry settings (and the earlier form's telemetry_interval_s) meet the same check."""
    with pytest.raises(ConfigError) as exc:
        TelemetryConfig.from_dict({"interval_s": bad})
    assert LINE.match(str(exc.value)), exc.value
    from aifbench.config import load_suite
    from aifbench.plan import Plan

    suite = load_suite("smoke", [])
    old = {"run_id": "r0", "suite": "smoke", "suite_config": suite.config_dict(), "config_hash": suite.config_hash,
           "device": "cpu", "results_root": str(tmp_path), "system": "local", "partition": "", "launcher": "local",
           "telemetry_interval_s": bad}
    with pytest.raises(ConfigError) as exc:
        Plan.from_json(json.dumps(old))
    assert LINE.match(str(exc.value)), exc.value


def test_a_worker_given_a_plan_with_a_bad_interval_exits_2(tmp_path, capsys):
    from aifbench.worker import main as worker

    from aifbench.config import load_suite
    from aifbench.plan import build_plan

    plan = build_plan(load_suite("smoke", []), device="cpu", results_root=tmp_path / "r",
                      telemetry=TelemetryConfig(), system="local")
    data = json.loads(plan.to_json())
    data["telemetry"]["interval_s"] = 0.0002
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    assert worker([str(path)]) == 2
    _one_line(capsys.readouterr().err, "aifbench worker: error: ")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("param,value,got", [("high_hz", "5000", "got 0.0002 s (5000 Hz)"),
                                             ("low_hz", "0", "got 0 s (off)"), ("low_hz", "-2", "got -0.5 s")])
def test_suite_rates(capsys, tmp_path, param, value, got):
    """telemetry_overhead's low_hz / high_hz: the rates a suite (or --set) gives its samplers."""
    assert main(["run", "telemetry_overhead", "--set", f"telemetry_overhead.{param}={value}", "--dry-run",
                 "--results", str(tmp_path / "r")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert got in line and line.endswith(f"from telemetry_overhead.{param}") and "0 (off)" not in line


def test_suite_file_rates(capsys, tmp_path):
    suite = tmp_path / "o.toml"
    suite.write_text('[suite]\nname = "o"\n[[case]]\nbenchmark = "telemetry_overhead"\n'
                     "params = { size = 64, dtype = \"fp32\", high_hz = 2000.0 }\n")
    assert main(["run", str(suite), "--dry-run", "--results", str(tmp_path / "r")]) == 2
    assert "got 0.0005 s (2000 Hz) from telemetry_overhead.high_hz" in _one_line(capsys.readouterr().err)


def test_trace_recorder(capsys, tmp_path):
    from aifbench.telemetry.record import main as record

    assert record(["--interval", "0", "-o", str(tmp_path / "t.jsonl")]) == 2
    line = _one_line(capsys.readouterr().err, "aifbench-record: error: ")
    assert line.endswith("got 0 s (off) from --interval 0") and "0 (off) or" not in line
    assert not (tmp_path / "t.jsonl").exists()


def test_samplers_made_in_code_need_an_interval_above_0():
    from aifbench.telemetry.cpu import CpuSampler
    from aifbench.telemetry.select import open_sampler

    for make, source in ((lambda: CpuSampler(0), "from a CpuSampler"), (lambda: open_sampler("cpu", 0), "open_sampler"),
                         (lambda: CpuSampler(61.0), "from a CpuSampler")):
        with pytest.raises(ConfigError) as exc:
            make()
        assert LINE.match(str(exc.value)) and source in str(exc.value)
    assert CpuSampler(0.5).interval_s == 0.5 and check_interval("0.25", "a file") == 0.25


def test_the_range_is_written_once():
    """No second range check can creep in: the bounds are named only where check_interval is."""
    src = Path(__file__).resolve().parents[3] / "src" / "aifbench"
    users = {p.relative_to(src).as_posix() for p in src.rglob("*.py")
             if re.search(r"\b(MIN|MAX)_INTERVAL_S\b", p.read_text())}
    assert users == {"telemetry/config.py"}
