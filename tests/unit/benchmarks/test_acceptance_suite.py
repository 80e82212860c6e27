"""The shipped acceptance suite and the H100 targets: valid, and selecting rows the suite records."""

from __future__ import annotations

import json

import pytest

from aifbench.benchmarks import registry
from aifbench.analysis.references import LAYOUT_KEYS, load_file
from aifbench.benchmarks.base import Context
from aifbench.benchmarks.gemm import Gemm, GemmConfig, dims
from aifbench.config import build_config, load_suite
from aifbench.files import REPO_ROOT
from aifbench.hardware.catalog import load as load_catalog
from aifbench.timing import Timer, TimingConfig

TARGETS = REPO_ROOT / "benchmarks" / "targets" / "h100-sxm5-80gb.toml"


def test_acceptance_suite_has_the_partition_checks():
    suite = load_suite("acceptance")
    cases = [(c.benchmark, c.params) for c in suite.cases]
    gemm_8192 = {p["dtype"] for b, p in cases if b == "gemm" and dims(GemmConfig(**p)) == (8192, 8192, 8192)}
    assert {"bf16", "fp8"} <= gemm_8192
    assert any(b == "gemm" and p["shape"] == "mlp_up" for b, p in cases)
    assert any(b == "membw" and p["op"] == "triad" and p["size_bytes"] >= 2**30 for b, p in cases)
    links = {(p["direction"], p["memory"]) for b, p in cases if b == "hostlink"}
    assert links == {(d, m) for d in ("h2d", "d2h", "bidir") for m in ("pinned", "pageable")}
    for op in ("all_reduce", "all_gather"):
        sizes = sorted(p["size_bytes"] for b, p in cases if b == "collectives" and p["op"] == op)
        assert sizes[0] <= 8 and sizes[-1] >= 2**30


def test_gpu_sized_cases_settle_and_skip_on_cpu():
    suite = load_suite("acceptance")
    cpu = Context(device="cpu")
    for case in suite.cases:
        cls = registry.get(case.benchmark)
        if case.benchmark == "gemm":
            assert case.params["warmup_s"] >= 1.0 and case.params["gpu_only"]
        if case.benchmark in ("gemm", "membw"):
            reason = cls(build_config(cls.Config, case.params, case.benchmark), cpu).skip_reason()
            assert reason and reason.startswith("gpu_only"), case.case_id
    bare = [c.params for c in suite.cases if c.benchmark == "gemm" and c.params["bare_loop"]]
    assert {p["dtype"] for p in bare} >= {"bf16", "fp8"} and all(p["m"] == 8192 for p in bare)


def test_h100_targets_are_the_issue_figures():
    refs = {(r.benchmark, r.metric): r for r in load_file(TARGETS)}
    assert refs["gemm", "tflops"].lower == 760 and refs["gemm", "tflops"].stat == "median"
    overhead = refs["gemm", "harness_overhead_pct"]
    assert (overhead.lower, overhead.upper, overhead.stat) == (-3, 3, "mean")
    triad = refs["membw", "gbps"]
    assert triad.fraction_of_peak == 0.88 and triad.params == {"op": "triad"}
    assert load_catalog().get("h100-sxm5-80gb").peak("hbm_gbps")[0] == triad.value == 3350
    h2d = refs["hostlink", "link_gbps"]
    assert h2d.lower == 50 and h2d.params == {"direction": "h2d", "memory": "pinned"}
    assert all(r.gpus == ("h100-sxm5-80gb",) for r in refs.values())


def test_every_target_selects_cases_of_the_acceptance_suite():
    suite = load_suite("acceptance")
    for ref in load_file(TARGETS):
        cls = registry.get(ref.benchmark)
        assert ref.metric in cls.emits, ref.describe()
        # where a case runs (nodes, ranks per node) is the job's choice, not the suite's: the job that
        # accepts a node runs the suite at the reference's layout
        layout = {k: ref.params.get(k, ref.params_min.get(k)) for k in LAYOUT_KEYS
                  if k in ref.params or k in ref.params_min}
        hits = [c for c in suite.cases
                if c.benchmark == ref.benchmark and ref.matches_params(json.dumps(c.params), layout)]
        assert hits, f"{ref.describe()}: no acceptance case records it"
        if ref.benchmark == "hostlink":
            assert {c.params["size_bytes"] for c in hits} == {2**28, 2**30}


@pytest.mark.parametrize("metric, stat", [("tflops", "median"), ("harness_overhead_pct", "mean"),
                                          ("harness_overhead_pct", "ci_low"), ("harness_overhead_pct", "ci_high")])
def test_gemm_records_the_rows_the_targets_select(metric, stat):
    """The same case at a CPU size: the (metric, stat) rows a target reads are emitted."""
    bench = Gemm(GemmConfig(shape="square", m=32, dtype="fp32", bare_loop=True, buffers=1, ab_rounds=3,
                            ab_round_s=0.002), Context(device="cpu"))
    bench.setup()
    bench.check()
    out = bench.measure(Timer("cpu", TimingConfig(warmup=1, repeats=3)))
    assert [(m.metric, m.stat) for m in out.metrics].count((metric, stat)) == 1
