"""End to end: a real run whose telemetry is a replayed trace, then `aifbench telemetry`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aifbench.results.store import load

TRACE = Path(__file__).parents[1] / "data" / "telemetry" / "h100_node_4gpu.jsonl"  # 4 GPUs, own = NVML index 2


SUITE = """
[suite]
name = "two"
description = "two tiny GEMM cases"
[timing]
warmup = 1
repeats = 3
[[case]]
benchmark = "gemm"
params = { m = 64, n = 64, k = 64, dtype = "fp32" }
sweep = { m = [64, 96] }
"""


def cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aifbench", *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, COLUMNS="200", **env), timeout=300)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """One real run (two GEMM cases) whose telemetry replays a single process on a 4-GPU node."""
    cwd = tmp_path_factory.mktemp("telemetry_cli")
    (cwd / "two.toml").write_text(SUITE)
    proc = cli(cwd, "run", "two.toml", "--device", "cpu", "--results", "res", AIFBENCH_TELEMETRY_REPLAY=str(TRACE))
    assert proc.returncode == 0, proc.stderr
    return cwd


@pytest.fixture(scope="module")
def replayed_run(workdir) -> Path:
    (run_dir,) = (workdir / "res").iterdir()
    return run_dir


def test_run_stores_window_metrics_flags_and_series(replayed_run):
    res = load([replayed_run])
    m = res.metrics
    assert res.runs["telemetry"].iloc[0].startswith("replay: h100_node_4gpu.jsonl")
    flags = m.drop_duplicates("case_id").set_index("case_id")["flags"].fillna("")
    assert sorted(flags) == ["", ""]  # the trace's 1st window is clean, the 2nd power-capped at the default limit
    capped = m[m["metric"] == "power_capped_pct"].set_index("case_id").sort_index()
    # 2nd window: 1.5 s at 0.1 s = 16 polls, SwPowerCap from t = 0.4 s on: 12 of 16
    assert capped["value"].tolist() == [0.0, 75.0]
    assert capped["detail"].str.startswith("state=").all() and "state=capped_at_default" in capped["detail"].iloc[1]
    energy = m[m["metric"] == "energy_j"]
    assert len(energy) == 2 and energy["detail"].str.contains("method=counter scope=gpu").all()
    eff = m[m["metric"] == "tflops_per_w"]
    assert len(eff) == 2 and (eff["value"] > 0).all()  # the runner adds efficiency metrics
    t = res.telemetry
    assert set(t["source"]) == {"replay"} and {"power_w", "sm_clock_mhz", "temperature_c"} <= set(t["field"])
    assert t.groupby("case_id")["gpu_uuid"].nunique().tolist() == [4, 4]  # every GPU's series, per case
    assert (t.groupby("case_id")["gpu_index"].first() == 2).all()  # the own GPU's rows come first


def test_telemetry_command_prints_summary_and_writes_png(workdir, replayed_run):
    (workdir / "out").mkdir(exist_ok=True)  # -o writes into a directory that exists (a missing one is refused)
    proc = cli(workdir, "telemetry", "--results", "res", "-o", "out/plot.png")
    assert proc.returncode == 0, proc.stderr
    assert "method=counter" in proc.stdout
    header = next(line for line in proc.stdout.splitlines() if "samples" in line)
    row = next(line for line in proc.stdout.splitlines() if "0001-gemm" in line)  # the power-capped case
    cells = dict(zip([c.strip() for c in header.split("┃")], [c.strip() for c in row.split("│")]))
    assert (cells["gpu_index"], cells["gpus"]) == ("2", "4")  # headers are the JSON field names
    assert float(cells["power_capped_pct"]) == 75.0 and float(cells["power_limit_w"]) == 700.0
    assert cells.get("flags", "") == ""
    png = workdir / "out" / "plot.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    proc = cli(workdir, "telemetry", replayed_run.name[:18], "--results", "res", "--no-plot")
    assert proc.returncode == 0 and "telemetry of" in proc.stdout


def test_telemetry_command_bad_input(workdir):
    proc = cli(workdir, "telemetry", "--results", "res", "-o", "plot.svg")
    assert proc.returncode == 2 and "ending in .png" in proc.stderr
    proc = cli(workdir, "telemetry", "nosuchrun", "--results", "res")
    assert proc.returncode == 2 and "no run 'nosuchrun'" in proc.stderr


def test_run_without_telemetry_says_why(tmp_path):
    (tmp_path / "two.toml").write_text(SUITE)
    proc = cli(tmp_path, "run", "two.toml", "--device", "cpu", "--results", "res", AIFBENCH_TELEMETRY="off")
    assert proc.returncode == 0, proc.stderr
    proc = cli(tmp_path, "telemetry", "--results", "res")
    assert proc.returncode == 2 and "no telemetry rows" in proc.stderr and "AIFBENCH_TELEMETRY=off" in proc.stderr


def test_a_misspelt_telemetry_switch_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "two.toml").write_text(SUITE)
    proc = cli(tmp_path, "run", "two.toml", "--device", "cpu", "--results", "res", AIFBENCH_TELEMETRY="of")
    assert proc.returncode == 2 and "AIFBENCH_TELEMETRY='of': choose on or off" in proc.stderr
    assert not (tmp_path / "res").exists()


def test_a_cpu_run_too_short_for_utilisation_still_plots_its_memory(tmp_path):
    """Cases shorter than the CPU sampler's least span carry no utilisation, only memory series:
    the plot draws those (the README's `aifbench telemetry` on a fast machine)."""
    (tmp_path / "two.toml").write_text(SUITE)
    proc = cli(tmp_path, "run", "two.toml", "--device", "cpu", "--results", "res")
    assert proc.returncode == 0, proc.stderr
    proc = cli(tmp_path, "telemetry", "--results", "res")
    assert proc.returncode == 0, proc.stderr
    assert "plot: " in proc.stderr and list((tmp_path / "res").glob("*/telemetry.png"))


def test_telemetry_with_no_plottable_series_shows_the_summary_and_says_why(tmp_path):
    """A trace with only counters no panel draws: the summary, a note naming what was recorded,
    exit 0; asked for a plot by name (-o), exit 2 with that one line."""
    lines = TRACE.read_text().splitlines()
    kept = []
    for line in lines:
        if '"reads"' in line:  # keep only the clock-event bitmask and the energy counter of every GPU
            import json

            row = json.loads(line)
            row["reads"] = [{k: v for k, v in r.items() if k in ("clocks_event_reasons", "energy")}
                            for r in row["reads"]]
            line = json.dumps(row)
        kept.append(line)
    trace = tmp_path / "counters_only.jsonl"
    trace.write_text("\n".join(kept) + "\n")
    (tmp_path / "two.toml").write_text(SUITE)
    proc = cli(tmp_path, "run", "two.toml", "--device", "cpu", "--results", "res", AIFBENCH_TELEMETRY_REPLAY=str(trace))
    assert proc.returncode == 0, proc.stderr
    proc = cli(tmp_path, "telemetry", "--results", "res")
    assert proc.returncode == 0, proc.stderr
    assert "telemetry of" in proc.stdout and "no plot: " in proc.stderr and "it recorded: " in proc.stderr
    assert not list((tmp_path / "res").glob("*/telemetry.png"))
    proc = cli(tmp_path, "telemetry", "--results", "res", "-o", "plot.png")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("aifbench: error: no plot: ")
    assert not (tmp_path / "plot.png").exists()
