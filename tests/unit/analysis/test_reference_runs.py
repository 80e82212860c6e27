"""The committed H200 reference runs: seen by compare and report on a fresh clone, and judged by
the H200 targets (benchmarks/targets/h200-sxm-141gb.toml)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aifbench.analysis.data import Selection, load_runs
from aifbench.analysis.references import load_file
from aifbench.analysis.validate import ValidateOptions, validate
from aifbench.cli import main

REPO = Path(__file__).resolve().parents[3]
REFERENCE = REPO / "results" / "reference"
TARGETS = REPO / "benchmarks" / "targets" / "h200-sxm-141gb.toml"
KERNEL_RUNS = ("20261204T182739Z-gpu-kernels-f495fd", "20261204T183449Z-gpu-kernels-14a3a2")
ALL_RUNS = KERNEL_RUNS + ("20261204T182942Z-gpu-telemetry-c79a07", "20261204T183020Z-gpu-train-00985b",
                          "20261204T183224Z-gpu-infer-647434")


def test_every_committed_run_has_a_readme_row():
    runs = sorted(p.name for p in REFERENCE.iterdir() if p.is_dir() and any(p.glob("*.parquet")))  # run stores
    assert runs == sorted(ALL_RUNS)
    readme = (REFERENCE / "README.md").read_text()
    for run in runs:
        row = next(line for line in readme.splitlines() if line.startswith(f"| {run} |"))
        assert "H200" in row and "580.159.04" in row and "2.11.0+cu130" in row and "d035504" in row


@pytest.fixture
def fresh_clone(tmp_path, monkeypatch):
    """A directory laid out as a fresh clone: results/ holds only the committed reference runs."""
    shutil.copytree(REFERENCE, tmp_path / "results" / "reference")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_compare_and_report_show_the_reference_runs_by_default(fresh_clone, capsys):
    assert main(["compare", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "bare_loop_tflops" in out and "link_gbps" in out and "decode_tokens_per_s" in out
    assert main(["report", "-o", "report.html"]) == 0
    html = (fresh_clone / "report.html").read_text()
    assert all(run in html for run in ALL_RUNS)


def _reference_checks(run: str, opts: ValidateOptions):
    report = validate(Selection(load_runs([REFERENCE / run])), load_file(TARGETS), opts)
    return {(c.name.split(" >=")[0].split(" <=")[0]): c for c in report.checks if c.kind == "reference"}


@pytest.mark.parametrize("run", KERNEL_RUNS)
def test_h200_targets_pass_on_the_values_of_the_reference_runs(run):
    """Judged on the value (flags ignored: every GEMM and the triad row carry power_throttle at the
    700 W cap): GEMM bf16 and fp8, triad and pinned h2d pass; the harness targets need the A/B
    interval (stat mean), which these runs predate, so they are not judged."""
    checks = _reference_checks(run, ValidateOptions(flags="ignore"))
    status = {name: c.status for name, c in checks.items()}
    passed = [n for n, s in status.items() if s == "pass"]
    assert len(passed) == 4, status
    assert any("dtype=bf16" in n and "tflops" in n for n in passed)
    assert any("dtype=fp8" in n and "tflops" in n for n in passed)
    assert any("membw" in n for n in passed) and any("hostlink" in n for n in passed)
    harness = [c for n, c in checks.items() if "harness_overhead_pct" in n]
    assert len(harness) == 2 and all(c.status == "skip" for c in harness)
    assert all("recorded before harness_overhead_pct had stat mean: the run stored it as value" in c.message
               for c in harness)  # said so, and not counted against the run


@pytest.mark.parametrize("run", ALL_RUNS)
def test_the_shipped_h200_targets_pass_every_reference_run(run):
    """The README's example: each committed H200 run validates PASS against the shipped targets
    (a reference judges only benchmarks the run planned; the harness targets postdate the runs)."""
    report = validate(Selection(load_runs([REFERENCE / run])), load_file(TARGETS), ValidateOptions())
    assert report.verdict == "PASS", [(c.name, c.status, c.message) for c in report.checks if c.status != "pass"]
    assert "not for this run" in report.summary()


@pytest.mark.parametrize("run", KERNEL_RUNS)
def test_h200_targets_judge_power_capped_gemm_by_default(run):
    """These runs predate the validity model: their power_throttle flag (SwPowerCap alone, limit
    700 W = the H200's TDP) reads as power-capped at the default, so the default flag policy
    judges the GEMM (and the stale-window triad) on their values (aifbench.analysis.legacy)."""
    checks = _reference_checks(run, ValidateOptions())
    gemm = [c for n, c in checks.items() if n.startswith("reference: gemm") and "tflops" in n]
    assert len(gemm) == 2 and all(c.status == "pass" for c in gemm), [c.message for c in gemm]


def test_h200_targets_name_real_things_and_select_acceptance_cases():
    import json

    from aifbench.benchmarks import registry
    from aifbench.analysis.references import check_names
    from aifbench.config import load_suite

    refs = load_file(TARGETS)
    check_names(refs)  # benchmark, parameters, metric and GPU model all exist
    suite = load_suite("acceptance")
    for ref in refs:
        assert ref.gpus == ("h200-sxm-141gb",) and ref.source, ref.describe()
        assert ref.metric in registry.get(ref.benchmark).emits
        assert any(c.benchmark == ref.benchmark and ref.matches_params(json.dumps(c.params)) for c in suite.cases), \
            f"{ref.describe()}: no acceptance case records it"
    harness = [r for r in refs if r.metric == "harness_overhead_pct"]
    assert {r.params["dtype"] for r in harness} == {"bf16", "fp8"}
    assert all((r.stat, r.lower, r.upper) == ("mean", -3.0, 3.0) for r in harness)
