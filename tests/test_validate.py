"""validate: references per GPU SKU, slow GPU / node named, telemetry flags, drift, JUnit, exit codes."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

from aifbench.analysis import references
from aifbench.analysis.data import Selection, load_runs
from aifbench.analysis.references import Reference
from aifbench.analysis.validate import ValidateOptions, to_junit, to_markdown, validate
from aifbench.cli import main
from aifbench.errors import ConfigError
from tests._analysis_data import A100, RunSpec, gemm, membw, write_run

REFS = """
[[reference]]
benchmark = "gemm"
metric = "tflops"
params = { dtype = "bf16" }
gpu = "h100-sxm5-80gb"
fraction_of_peak = 0.65
source = "test: cuBLAS reaches ~80 % of 989"

[[reference]]
benchmark = "membw"
metric = "gbps"
lower = 2500.0
upper = 3350.0
value = 3000.0

[[reference]]
benchmark = "gemm"
metric = "tflops"
gpu = "a100-sxm4-80gb"
lower = 250.0
"""


def _refs(tmp_path: Path, text: str = REFS) -> Path:
    path = tmp_path / "refs.toml"
    path.write_text(text)
    return path


def _run(tmp_path: Path, **kw) -> tuple[Path, Selection]:
    spec = RunSpec(**{"run_id": "20260105T120000Z-acc-00000a", "nodes": ("n1", "n2"), "gpus_per_node": 4, **kw})
    run_dir = write_run(tmp_path / "results", spec)
    return run_dir, Selection(load_runs([run_dir]))


@pytest.fixture(scope="module")
def healthy(tmp_path_factory) -> tuple[Path, Path]:
    """(run directory, references file) of a healthy 2 x 4 GPU run; tests must not change it."""
    tmp = tmp_path_factory.mktemp("healthy")
    run_dir, _ = _run(tmp)
    return run_dir, _refs(tmp)


def _by_kind(report, kind):
    return [c for c in report.checks if c.kind == kind]


def test_healthy_partition_passes(healthy):
    run_dir, refs = healthy
    report = validate(Selection(load_runs([run_dir])), references.load_file(refs), ValidateOptions())
    status = {c.name: c.status for c in report.checks}
    assert report.exit_code == 0, to_markdown(report)
    ref = _by_kind(report, "reference")
    assert [c.status for c in ref] == ["pass", "pass", "skip"]  # the A100 reference does not apply to H100s
    assert "not measured in this run on a100-sxm4-80gb" in ref[2].message
    assert "8 rank(s) pass" in ref[1].message and "% of nominal 3000" in ref[1].message
    assert sum(s == "pass" for k, s in status.items() if k.startswith("outliers per GPU")) == 2  # tflops, gbps
    assert not _by_kind(report, "outliers-node")  # two nodes are too few for a robust z-score


def test_reference_failure_names_every_failing_rank(tmp_path):
    _, sel = _run(tmp_path, factor={6: 1.3})
    strict = references.parse([{"benchmark": "gemm", "metric": "tflops", "fraction_of_peak": 0.6}], "test")
    report = validate(sel, strict, ValidateOptions())
    (check,) = _by_kind(report, "reference")
    assert check.status == "fail" and report.exit_code == 1
    assert "1 of 8 failed" in check.message
    assert "rank 6 (n2 cuda:2 GPU-000a-n2-2)" in check.message and "% of peak 989" in check.message


def test_slow_gpu_and_slow_node_are_named(tmp_path):
    slow = {4: 1.25, **{r: 1.2 for r in range(12, 15)}}  # one GPU of n1, and every GPU of n4
    _, sel = _run(tmp_path, nodes=tuple(f"n{i}" for i in range(5)), gpus_per_node=3, factor=slow)
    report = validate(sel, [], ValidateOptions())
    gpu = [c for c in _by_kind(report, "outliers-gpu") if c.name.endswith("tflops")][0]
    assert gpu.status == "fail"
    assert re.search(r"slow rank 4 \(n1 cuda:1 GPU-000a-n1-1\): \d+\.\d TFLOP/s, -(19|20)\.\d % vs median", gpu.message)
    assert gpu.message.count("slow rank") == 4 and "robust z" in gpu.message
    node = [c for c in _by_kind(report, "outliers-node") if c.name.endswith("tflops")][0]
    assert node.status == "fail" and "slow node n4" in node.message and "node n1" not in node.message
    assert report.exit_code == 1


def test_small_spread_is_not_an_outlier(tmp_path):
    _, sel = _run(tmp_path, factor={3: 1.03})  # 3 % slower: robust z is large, but below --min-deviation 5 %
    report = validate(sel, [], ValidateOptions())
    assert all(c.status == "pass" for c in _by_kind(report, "outliers-gpu"))
    assert validate(sel, [], ValidateOptions(min_deviation_pct=1.0)).exit_code == 1


def test_telemetry_flags_exclude_or_fail(tmp_path):
    _, sel = _run(tmp_path, factor={2: 1.5}, flags={2: "power_throttle"})
    refs = references.load_file(_refs(tmp_path))
    excluded = validate(sel, refs, ValidateOptions())
    assert excluded.exit_code == 0, to_markdown(excluded)  # the throttled GPU is left out, not counted as slow
    assert "1 flagged row(s) excluded" in _by_kind(excluded, "reference")[0].message
    failed = validate(sel, refs, ValidateOptions(flags="fail"))
    msg = _by_kind(failed, "reference")[0].message
    assert failed.exit_code == 1 and "telemetry flags" in msg and "rank 2" in msg and "power_throttle" in msg
    ignored = validate(sel, refs, ValidateOptions(flags="ignore"))
    assert any(c.status == "fail" and "slow rank 2" in c.message for c in _by_kind(ignored, "outliers-gpu"))


def test_failed_case_fails_validation(tmp_path):
    _, sel = _run(tmp_path, status={3: "failed"})
    report = validate(sel, [], ValidateOptions())
    ran = [c for c in _by_kind(report, "ran") if c.status == "fail"]
    assert len(ran) == 2 and "rank 3 (n1): RuntimeError" in ran[0].message


def test_junit_xml_is_valid_and_counts(tmp_path):
    _, sel = _run(tmp_path, factor={5: 1.3})
    report = validate(sel, references.load_file(_refs(tmp_path)), ValidateOptions())
    root = ET.fromstring(to_junit(report))
    cases = root.findall(".//testcase")
    assert len(cases) == len(report.checks) == int(root.get("tests"))
    failures = root.findall(".//failure")
    assert len(failures) == len(report.failed) == int(root.get("failures")) > 0
    assert any("rank 5" in (f.text or "") for f in failures)
    assert len(root.findall(".//skipped")) == sum(c.status == "skip" for c in report.checks)


def test_reference_format_errors():
    with pytest.raises(ConfigError, match="needs fraction_of_peak, lower or upper"):
        references.parse([{"benchmark": "gemm", "metric": "tflops", "value": 1.0}], "t")
    with pytest.raises(ConfigError, match="unknown key.*tolerance.*allowed: benchmark"):
        references.parse([{"benchmark": "gemm", "metric": "tflops", "lower": 1, "tolerance": 0.1}], "t")
    with pytest.raises(ConfigError, match="'lower' must be a number"):
        references.parse([{"benchmark": "gemm", "metric": "tflops", "lower": "fast"}], "t")
    with pytest.raises(ConfigError, match="lower 5.0 > upper 1.0"):
        Reference(benchmark="gemm", metric="tflops", lower=5.0, upper=1.0)
    assert Reference(benchmark="gemm", metric="tflops", params={"dtype": "bf16"}, lower=1).matches_params(
        '{"dtype": "bf16", "m": 8}')


def test_generic_references_from_a_system_profile(tmp_path):
    jupiter = references.for_system("jupiter-booster")  # shipped profile: no own references yet
    assert jupiter == references.defaults() and len(jupiter) >= 4
    gemm_ref = next(r for r in jupiter if r.benchmark == "gemm" and r.applies_to("h100-sxm5-80gb"))
    assert gemm_ref.fraction_of_peak == 0.60 and gemm_ref.source
    assert not gemm_ref.matches_params('{"dtype": "bf16", "m": 128, "n": 128, "k": 128}')  # too small to judge
    assert gemm_ref.matches_params('{"dtype": "bf16", "m": 8192, "n": 8192, "k": 8192}')
    # a site profile adds its own [[acceptance.reference]] and may drop the generic ones
    profile = (Path(__file__).parents[1] / "src/aifbench/systems/local.toml").read_text()
    site = tmp_path / "site.toml"
    site.write_text(profile.replace("[acceptance]", """[acceptance]
defaults = false

[[acceptance.reference]]
benchmark = "membw"
metric = "gbps"
lower = 2800.0
"""))
    (own,) = references.for_system(str(site))
    assert own.lower == 2800.0
    site.write_text(profile.replace("[acceptance]", "[acceptance]\nthreshold = 1"))
    with pytest.raises(ConfigError, match="unknown key.*threshold.*allowed: defaults, reference"):
        references.for_system(str(site))


def test_generic_references_judge_a_slow_h100(tmp_path):
    _, sel = _run(tmp_path, cases=[gemm(8192, tflops=500), gemm(1024, tflops=100), membw(1 << 30, gbps=3000)])
    report = validate(sel, references.defaults(), ValidateOptions())
    status = {c.name: c.status for c in _by_kind(report, "reference")}
    gemm_check = next(c for c in _by_kind(report, "reference") if "gemm" in c.name and "h100-sxm5-80gb" in c.name)
    assert gemm_check.status == "fail" and "8 of 8 failed" in gemm_check.message  # 500 / 989 = 51 % < 60 %
    assert "m=1024" not in gemm_check.message  # the small GEMM is not judged
    assert sum(s == "pass" for n, s in status.items() if "membw" in n) == 1


# --- command line ---------------------------------------------------------------------------

def test_cli_exit_codes_and_outputs(tmp_path, capsys):
    run_dir, _ = _run(tmp_path)
    root, refs = str(run_dir.parent), str(_refs(tmp_path))
    junit = tmp_path / "out" / "junit.xml"
    assert main(["validate", "--results", root, "--references", refs, "--junit", str(junit)]) == 0
    assert ET.parse(junit).getroot().get("failures") == "0"
    assert "PASS" in capsys.readouterr().err
    assert main(["validate", run_dir.name[:20], "--results", root, "--references", refs, "--format", "markdown"]) == 0
    assert "| pass | reference: gemm dtype=bf16 tflops on h100-sxm5-80gb >= 0.65 x peak |" in capsys.readouterr().out
    # a slower partition fails, with exit 1
    write_run(Path(root), RunSpec(run_id="20260106T000000Z-acc-00000b", nodes=("n1", "n2"), gpus_per_node=4,
                                  factor={0: 2.0}))
    assert main(["validate", "--results", root, "--references", refs, "--format", "junit"]) == 1
    out = capsys.readouterr()
    assert ET.fromstring(out.out).get("failures") != "0" and "FAIL" in out.err


@pytest.mark.parametrize("argv,needle", [
    (["--flags", "drop"], "allowed: exclude, fail, ignore"),
    (["--format", "html"], "allowed: table, markdown, junit"),
    (["nope"], "no run 'nope'"),
])
def test_cli_bad_input(healthy, capsys, argv, needle):
    run_dir, refs = healthy
    assert main(["validate", "--results", str(run_dir.parent), "--references", str(refs), *argv]) == 2
    assert needle in capsys.readouterr().err


def test_baseline_save_list_and_drift(tmp_path, capsys):
    run_dir, _ = _run(tmp_path, seed=1)
    root = str(run_dir.parent)
    assert main(["baseline", "save", run_dir.name, "--name", "booster-2026", "--results", root, "--note", "accepted"]) == 0
    assert (run_dir.parent / "baselines" / "booster-2026" / run_dir.name / "metrics.rank00000.main.parquet").is_file()
    assert main(["baseline", "save", run_dir.name, "--name", "booster-2026", "--results", root]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["baseline", "list", "--results", root]) == 0
    assert "booster-2026" in capsys.readouterr().out
    # a later run, 15 % slower in GEMM everywhere: drift fails in validate and baseline check
    later = write_run(run_dir.parent, RunSpec(run_id="20260201T000000Z-acc-00000c", nodes=("n1", "n2"),
                                              gpus_per_node=4, seed=2, factor={r: 1.15 for r in range(8)}))
    assert main(["baseline", "check", later.name, "--name", "booster-2026", "--results", root, "--format", "csv"]) == 1
    drift = pd.read_csv(io.StringIO(capsys.readouterr().out)).set_index("metric")
    assert drift.loc["tflops", "verdict"] == "worse" and drift.loc["gbps", "verdict"] == "worse"
    assert drift.loc["tflops", "vs_baseline_pct"] == pytest.approx(-13.0, abs=1.5)  # 1/1.15 - 1
    refs = str(_refs(tmp_path))
    assert main(["validate", later.name, "--results", root, "--references", refs, "--baseline", "booster-2026",
                 "--format", "markdown"]) == 1
    md = capsys.readouterr().out
    assert "| fail | drift vs baseline booster-2026" in md and "Mann-Whitney p" in md
    # the same partition measured again is not drift
    again = write_run(run_dir.parent, RunSpec(run_id="20260202T000000Z-acc-00000d", nodes=("n1", "n2"),
                                              gpus_per_node=4, seed=3))
    assert main(["baseline", "check", again.name, "--name", "booster-2026", "--results", root]) == 0


def test_a100_reference_applies_to_a100(tmp_path):
    _, sel = _run(tmp_path, device=A100, cases=[gemm(4096, tflops=240, peak=312.0), membw(1 << 30, 1800, 2039.0)])
    report = validate(sel, references.load_file(_refs(tmp_path)), ValidateOptions())
    ref = _by_kind(report, "reference")
    assert [c.status for c in ref] == ["skip", "fail", "fail"]  # H100 ref skipped; 1800 < 2500; 240 < 250
    assert "< lower 250" in ref[2].message
