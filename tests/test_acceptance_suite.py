"""The shipped acceptance suite: valid, and holding the cases the partition check needs."""

from __future__ import annotations

from aifbench.benchmarks.gemm import GemmConfig, dims
from aifbench.config import load_suite


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
