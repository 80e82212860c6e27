"""validate judges an A/B metric on its 95 % interval: pass inside, fail outside, else inconclusive."""

from __future__ import annotations

import json

import pytest

from aifbench.ab import interval_metrics, run_ab
from aifbench.analysis import intervals
from aifbench.analysis.data import Selection, load_runs
from aifbench.analysis.references import load_file
from aifbench.analysis.validate import ValidateOptions, to_junit, to_markdown, validate
from aifbench.cli import main
from aifbench.results.store import load
from aifbench.timing import Timer
from tests.conftest import write
from tests.unit.core.test_ab import SideClock, pct


@pytest.mark.parametrize("low, high, status", [
    (-1.0, 2.5, "pass"), (-3.0, 3.0, "pass"), (3.5, 6.0, "fail"), (-9.0, -3.1, "fail"),
    (1.0, 4.0, "inconclusive"), (-4.0, 4.0, "inconclusive"),
])
def test_judge_against_a_band(low, high, status):
    assert intervals.judge(low, high, -3.0, 3.0) == status


def test_one_sided_band_and_fraction_of_peak():
    assert intervals.judge(0.995, 1.2, 0.99, None) == "pass"
    assert intervals.judge(0.98, 1.2, 0.99, None) == "inconclusive"
    assert intervals.band(600.0, None, 0.7, 989.0) == pytest.approx((692.3, None))  # 0.7 x peak is stricter
    assert intervals.band(None, 3.0, None, None) == (None, 3.0)


@pytest.mark.parametrize("bare_ns, interval, status", [
    # per-round overhead 1, 2, 1, 4 %: mean 2, sd 1.41421, half-width 3.18245 x 0.70711 = 2.25033
    ([990_000, 980_000, 990_000, 960_000], (-0.25033, 4.25033), "inconclusive"),
    # 1.0, 1.2, 0.8, 1.0 %: mean 1, sd 0.16330, half-width 3.18245 x 0.08165 = 0.25985
    ([990_000, 988_000, 992_000, 990_000], (0.74015, 1.25985), "pass"),
    # 6, 5, 7, 6 %: mean 6, sd 0.81650, half-width 3.18245 x 0.40825 = 1.29925
    ([940_000, 950_000, 930_000, 940_000], (4.70075, 7.29925), "fail"),
])
def test_injected_clock_interval_and_verdict(bare_ns, interval, status):
    """The harness at 1 ms per call vs a bare loop on a fake clock, through the A/B protocol and
    the ±3 % band of the harness target: the stored bounds and the verdict, by hand."""
    clock = SideClock([1_000_000] * 4, bare_ns)
    ab = run_ab(Timer("cpu", clock=clock), clock.op("A"), clock.op("B"), rounds=4, calls_a=1, paired=pct)
    rows = {m.stat: m.value for m in interval_metrics("harness_overhead_pct", ab, 3.0).metrics}
    assert (rows["ci_low"], rows["ci_high"]) == pytest.approx(interval, abs=1e-4)
    assert intervals.judge(rows["ci_low"], rows["ci_high"], -3.0, 3.0) == status


def _suite(tmp_path):
    return write(tmp_path / "s.toml", """
[suite]
name = "ab"
[timing]
warmup = 1
repeats = 3
[[case]]
benchmark = "gemm"
params = { shape = "square", m = 32, dtype = "fp32", buffers = 1, bare_loop = true, ab_rounds = 4, ab_round_s = 0.002 }
""")


def _refs(tmp_path, lower, upper):
    return write(tmp_path / f"refs{lower}.toml", f"""
[[reference]]
benchmark = "gemm"
metric = "harness_overhead_pct"
stat = "mean"
params = {{ bare_loop = true }}
lower = {lower}
upper = {upper}
source = "test band"
""")


def test_validate_judges_the_stored_interval(tmp_path):
    """A real CPU run stores mean, ci_low, ci_high; bands placed around, beside and across the
    stored interval give pass, fail and inconclusive (validate exits 0, 1, 1)."""
    assert main(["run", str(_suite(tmp_path)), "--results", str(tmp_path / "res"), "--telemetry-hz", "0"]) == 0
    m = load([tmp_path / "res"]).metrics
    rows = m[m["metric"] == "harness_overhead_pct"].set_index("stat")["value"]
    lo, hi = float(rows["ci_low"]), float(rows["ci_high"])
    assert lo < float(rows["mean"]) < hi
    run = load_runs([next((tmp_path / "res").iterdir())])
    width = hi - lo
    cases = {"pass": (lo - 1, hi + 1), "fail": (hi + 1, hi + 2), "inconclusive": (lo + width / 2, hi + 1)}
    for expected, (lower, upper) in cases.items():
        report = validate(Selection(run), load_file(_refs(tmp_path, lower, upper)), ValidateOptions())
        ref = [c for c in report.checks if c.kind == "reference"][0]
        assert ref.status == expected, ref.message
        assert "95 % interval" in ref.message and "source: test band" in ref.message
        assert report.verdict == {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}[expected]
        assert report.exit_code == (0 if expected == "pass" else 1)
    assert "references: 0 of 1 judged" in report.summary() and "1 inconclusive" in report.summary()
    assert "INCONCLUSIVE" in to_markdown(report) and 'type="inconclusive"' in to_junit(report)
    refs = _refs(tmp_path, lo + width / 2, hi + 1)
    assert main(["validate", "--results", str(tmp_path / "res"), "--references", str(refs)]) == 1


def test_rows_without_an_interval_are_judged_on_their_value(tmp_path):
    """Runs stored before the A/B protocol (no ci rows): the point is judged, as before."""
    from tests._analysis_data import RunSpec, gemm, write_run

    run_dir = write_run(tmp_path / "results", RunSpec(run_id="20260105T120000Z-acc-00000a", nodes=("n1",),
                                                      gpus_per_node=1, cases=[gemm(8192)]))
    sel = Selection(load_runs([run_dir]))
    assert intervals.bounds_of(sel.metrics[sel.metrics["metric"] == "tflops"], sel.metrics) is None
    ref = write(tmp_path / "r.toml", '[[reference]]\nbenchmark = "gemm"\nmetric = "tflops"\nlower = 100.0\n')
    check = [c for c in validate(sel, load_file(ref), ValidateOptions()).checks if c.kind == "reference"][0]
    assert check.status == "pass" and "interval" not in check.message
    assert json.dumps(check.value)  # a plain float
