"""GEMM and STREAM kernels at tiny sizes on CPU: shapes, rotation, checks, metrics, skips."""

from __future__ import annotations

import pytest
import torch

from aifbench.benchmarks import gemm as gemm_mod
from aifbench.benchmarks import membw as membw_mod
from aifbench.benchmarks.base import Context
from aifbench.benchmarks.configs import STREAM_OPS
from aifbench.benchmarks.gemm import Gemm, GemmConfig, auto_buffers, dims
from aifbench.benchmarks.membw import Membw, MembwConfig
from aifbench.cli import main
from aifbench.errors import CorrectnessError
from aifbench.hardware.catalog import peak_lookup_for
from aifbench.results.store import load
from aifbench.timing import Timer, TimingConfig
from tests.conftest import write

CPU = Context(device="cpu", device_name="test cpu", peak_lookup=peak_lookup_for("test cpu", None, device="cpu"))
FAST = TimingConfig(warmup=1, repeats=3)


def run(bench):
    assert bench.skip_reason() is None
    bench.setup()
    bench.check()
    return bench.measure(Timer("cpu", FAST))


def rows(measurement, metric):
    return {m.stat: m for m in measurement.metrics if m.metric == metric}


@pytest.mark.parametrize("shape, expected", [
    ("mnk", (3, 5, 7)), ("square", (3, 3, 3)), ("qkv", (32, 48, 16)),
    ("attn_out", (32, 16, 16)), ("mlp_up", (32, 64, 16)), ("mlp_down", (32, 16, 64)),
])
def test_gemm_shapes(shape, expected):
    c = GemmConfig(shape=shape, m=3, n=5, k=7, tokens=32, hidden=16)
    assert dims(c) == expected
    assert dims(GemmConfig(shape="mlp_up", tokens=8, hidden=16, ffn_hidden=40)) == (8, 40, 16)


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp64"])
def test_gemm_cpu_rotates_buffers_and_reports_tflops(dtype):
    bench = Gemm(GemmConfig(shape="mlp_up", tokens=32, hidden=16, dtype=dtype, buffers=3, bare_loop=True,
                            ab_rounds=4, ab_round_s=0.002), CPU)
    out = run(bench)
    assert len(bench.sets) == 3 and len({s.a.data_ptr() for s in bench.sets}) == 3
    for s in bench.sets:  # every set was used by the timed loop: each C holds its own A @ B
        ref = s.a.double() @ s.b.double()
        assert torch.allclose(s.c.double(), ref, rtol=gemm_mod.TOLERANCE[dtype] * 10, atol=1e-2)
    t, tf = rows(out, "time_s"), rows(out, "tflops")
    assert set(t) >= {"median", "iqr", "min"} and len(out.samples["time_s"]) == FAST.repeats
    assert tf["median"].value == pytest.approx(2 * 32 * 64 * 16 / t["median"].value * 1e-12)
    assert tf["median"].detail.startswith("m=32 n=64 k=16 buffers=3 inner=")
    assert tf["median"].peak is None and "generic CPU" in tf["median"].peak_source
    bare = rows(out, "bare_loop_tflops")["median"]
    assert bare.value > 0 and bare.peak_source == tf["median"].peak_source
    assert set(rows(out, "harness_overhead_pct")) == {"mean", "ci_low", "ci_high"}


def test_bare_loop_times_torch_called_directly_and_reports_the_difference():
    bench = Gemm(GemmConfig(shape="square", m=48, dtype="fp32", buffers=2, bare_loop=True, ab_rounds=4,
                            ab_round_s=0.002), CPU)
    out = run(bench)
    o = bench.sets[0]
    direct = bench.direct(o)  # torch.matmul(a, b): a fresh result, not the harness's C buffer
    assert direct.data_ptr() != o.c.data_ptr() and torch.equal(direct, o.c)
    bare = rows(out, "bare_loop_tflops")["median"]
    overhead = rows(out, "harness_overhead_pct")
    per_round = out.samples["harness_overhead_pct"]
    assert len(per_round) == 4 and len(out.samples["bare_loop_tflops"]) == 4
    assert overhead["mean"].value == pytest.approx(sum(per_round) / 4)
    assert overhead["ci_low"].value < overhead["mean"].value < overhead["ci_high"].value
    assert bare.n_samples == 4 and "torch.matmul" in bare.detail and "ABBA" in overhead["mean"].detail
    # noisy: the interval is wider than the ±3 % band it is judged against
    wide = overhead["ci_high"].value - overhead["ci_low"].value > 2 * gemm_mod.HARNESS_TOL_PCT
    assert overhead["mean"].noisy is wide


def test_a_wrong_direct_call_fails_the_check_before_timing():
    bench = Gemm(GemmConfig(shape="square", m=32, dtype="fp32", buffers=1, bare_loop=True), CPU)
    bench.setup()
    bench.direct = lambda o: torch.zeros_like(o.c)
    with pytest.raises(CorrectnessError, match="relative error"):
        bench.check()


def test_samples_hold_enough_calls_to_amortise_the_launch():
    import time

    slow = lambda: time.sleep(0.002)  # noqa: E731  (2 ms per call: one call fills a 1 ms sample)
    assert Timer().calls_lasting(slow, 1e-3, floor=1, cap=10000) == 1
    assert Timer().calls_lasting(slow, 1e-3, floor=5, cap=10000) == 5  # never below timing.inner
    assert Timer().calls_lasting(slow, 0.0, floor=3, cap=10000) == 3  # 0: timing.inner as it is
    assert 2 <= Timer().calls_lasting(slow, 0.01, floor=1, cap=10000) <= 5
    assert Timer().calls_lasting(lambda: None, 10.0, floor=1, cap=10000) == 10000  # capped


def test_warmup_s_settles_before_timing():
    bench = Gemm(GemmConfig(shape="square", m=16, dtype="fp32", buffers=1, warmup_s=0.05), CPU)
    detail = rows(run(bench), "tflops")["median"].detail
    calls = int(detail.split("settled=")[1].split()[0])
    assert calls >= 8 and calls % 8 == 0 and detail.endswith("in 0.05s")
    assert gemm_mod.settle(Timer(), lambda: None, 0.0) == 0


@pytest.mark.parametrize("bench", [Gemm(GemmConfig(shape="square", m=8192, gpu_only=True), CPU),
                                   Membw(MembwConfig(size_bytes=1 << 32, gpu_only=True), CPU)])
def test_gpu_only_cases_are_skipped_on_cpu_with_the_reason(bench):
    reason = bench.skip_reason()
    assert reason.startswith("gpu_only: this case is sized for a GPU") and "device is cpu" in reason


def test_gemm_too_big_for_host_memory_is_skipped():
    reason = Gemm(GemmConfig(shape="square", m=1 << 20, dtype="fp64"), CPU).skip_reason()
    assert reason.startswith("needs ") and "GiB" in reason and "1048576x1048576x1048576 fp64" in reason


def test_auto_buffers_exceed_four_times_the_cache():
    assert auto_buffers(set_bytes=1 << 20, cache_bytes=32 << 20) == 16  # capped
    assert auto_buffers(set_bytes=10 << 20, cache_bytes=32 << 20) == 13
    assert auto_buffers(set_bytes=1 << 30, cache_bytes=50 << 20) == 1
    bench = Gemm(GemmConfig(m=64, n=64, k=64, dtype="fp32"), CPU)
    assert bench._n_buffers() >= 2


def test_gemm_check_catches_a_wrong_result():
    o = gemm_mod.make_operands(32, 32, 32, "fp32", "cpu", seed=0)
    with pytest.raises(CorrectnessError, match="relative error"):
        gemm_mod.check_operands(o, lambda ops: ops.c.zero_(), "fp32")
    assert gemm_mod.check_operands(o, gemm_mod.matmul_fn("fp32"), "fp32") < 1e-6


@pytest.mark.parametrize("dtype, words", [("fp8", "CPU has no fp8"), ("tf32", "CUDA tensor-core mode")])
def test_dtypes_the_cpu_lacks_are_skipped_with_the_reason(dtype, words):
    reason = Gemm(GemmConfig(dtype=dtype), CPU).skip_reason()
    assert reason and words in reason


@pytest.mark.skipif(not hasattr(torch, "float8_e4m3fn"), reason="torch without float8")
def test_fp8_scaled_mm_path_numerics_on_cpu():
    """The fp8 quantisation, column-major B and check run on CPU where torch._scaled_mm exists."""
    o = gemm_mod.make_operands(32, 48, 64, "fp8", "cpu", seed=0, fp8=torch.float8_e4m3fn)
    assert o.a.dtype == torch.float8_e4m3fn and o.b.stride() == (1, 64)  # B column-major
    assert o.a.float().abs().max().item() == pytest.approx(448.0)  # scaled to the format's range
    try:
        err = gemm_mod.check_operands(o, gemm_mod.matmul_fn("fp8"), "fp8", rows=32, cols=48)
    except RuntimeError as exc:  # a torch build without CPU _scaled_mm
        pytest.skip(f"torch._scaled_mm not available on CPU: {exc}")
    assert err < 1e-2


@pytest.mark.parametrize("op", STREAM_OPS)
def test_stream_kernels_on_cpu(op):
    bench = Membw(MembwConfig(size_bytes=1 << 20, op=op), CPU)
    out = run(bench)
    g, t = rows(out, "gbps")["median"], rows(out, "time_s")["median"]
    moved = membw_mod.ARRAYS_MOVED[op] * (1 << 20)
    assert g.value == pytest.approx(moved / t.value * 1e-9)
    assert f"moved={moved} B" in g.detail and "last-level cache" in g.detail  # 3 MiB is cache-sized
    assert g.peak is None and g.peak_source


def test_stream_check_catches_a_wrong_element():
    bench = Membw(MembwConfig(size_bytes=1 << 16, op="triad"), CPU)
    bench.setup()
    bench.check()
    bench.arrays["a"][123] = 0.0
    with pytest.raises(CorrectnessError, match="triad"):
        membw_mod.check_result("triad", bench.arrays)


def test_stream_too_big_for_memory_is_skipped():
    reason = Membw(MembwConfig(size_bytes=1 << 50), CPU).skip_reason()
    assert reason and "needs" in reason and "GiB" in reason


SUITE = """
[suite]
name = "kernels"
[timing]
warmup = 1
repeats = 3
[[case]]
benchmark = "gemm"
params = { shape = "square", m = 32 }
sweep = { dtype = ["fp32", "fp8"] }
[[case]]
benchmark = "membw"
params = { size_bytes = 65536 }
sweep = { op = ["copy", "triad"] }
"""


def test_suite_through_the_runner_records_skips_and_peak_reasons(tmp_path):
    suite = write(tmp_path / "k.toml", SUITE)
    assert main(["run", str(suite), "--results", str(tmp_path / "res"), "--telemetry-hz", "0", "--device", "cpu"]) == 0
    df = load([tmp_path / "res"]).metrics
    fp8 = df[df["params"].str.contains('"dtype": "fp8"')]
    assert set(fp8["status"]) == {"skipped"} and "CPU" in fp8["reason"].iloc[0]
    ok = df[(df["status"] == "ok") & df["metric"].isin(["tflops", "gbps"])]
    assert len(ok) == 6 and ok["pct_of_peak"].isna().all() and ok["peak_source"].str.contains("generic CPU").all()


SHAPES_SUITE = """
[suite]
name = "shapes"
[timing]
warmup = 1
repeats = 3
[[case]]
benchmark = "gemm"
params = { shape = "mnk", m = 16, n = 24, k = 8, dtype = "fp32", buffers = 1 }
[[case]]
benchmark = "gemm"
params = { shape = "mlp_up", tokens = 16, dtype = "fp32", buffers = 1 }
"""


def test_stored_gemm_params_hold_only_what_the_shape_used(tmp_path):
    """--set gemm.hidden reaches both blocks: the mnk case ignores it and stores no tokens/hidden/
    ffn_hidden; the mlp_up case stores its resolved dimensions; stored params rebuild the config."""
    import dataclasses
    import json

    from aifbench.analysis.plots import gemm_dims

    suite = write(tmp_path / "s.toml", SHAPES_SUITE)
    assert main(["run", str(suite), "--results", str(tmp_path / "res"), "--telemetry-hz", "0", "--device", "cpu",
                 "--set", "gemm.hidden=8"]) == 0
    df = load([tmp_path / "res"]).metrics
    stored = {p["shape"]: p for p in map(json.loads, df[df["metric"] == "tflops"]["params"].unique())}
    assert {k: stored["mnk"][k] for k in ("m", "n", "k", "tokens", "hidden", "ffn_hidden")} == \
        {"m": 16, "n": 24, "k": 8, "tokens": None, "hidden": None, "ffn_hidden": None}
    assert {k: stored["mlp_up"][k] for k in ("m", "n", "k", "tokens", "hidden", "ffn_hidden")} == \
        {"m": 16, "n": 32, "k": 8, "tokens": 16, "hidden": 8, "ffn_hidden": 32}
    for params in stored.values():
        c = GemmConfig(**params)
        assert dataclasses.asdict(c) == params and GemmConfig(**dataclasses.asdict(c)) == c
        assert gemm_dims(params) == (params["m"], params["n"], params["k"])


@pytest.mark.parametrize("shape", ["mnk", "square", "qkv", "attn_out", "mlp_up", "mlp_down"])
def test_gemm_config_round_trips_and_resolves_llm_defaults(shape):
    import dataclasses

    c = GemmConfig(shape=shape, m=12, n=20, k=28, tokens=None if shape == "qkv" else 64, hidden=32, ffn_hidden=0)
    assert GemmConfig(**dataclasses.asdict(c)) == c
    if shape in ("mnk", "square"):
        assert (c.tokens, c.hidden, c.ffn_hidden) == (None, None, None)
    else:
        assert c.tokens == (4096 if shape == "qkv" else 64) and c.hidden == 32
        assert c.ffn_hidden == (128 if shape.startswith("mlp") else None)  # 0: rows stored before said 4 x hidden
    assert dataclasses.asdict(GemmConfig(shape="mlp_down"))["ffn_hidden"] == 4 * 4096


def test_older_stored_gemm_rows_still_give_their_dimensions():
    """Rows stored before: integer tokens/hidden/ffn_hidden=0 on every shape, default m/n/k on LLM shapes."""
    from aifbench.analysis.plots import gemm_dims

    old = {"m": 1024, "n": 1024, "k": 1024, "tokens": 4096, "hidden": 4096, "ffn_hidden": 0, "dtype": "bf16"}
    assert gemm_dims(dict(old, shape="square", m=512)) == (512, 512, 512)
    assert gemm_dims(dict(old, shape="mnk", n=256)) == (1024, 256, 1024)
    assert gemm_dims(dict(old, shape="mlp_down", tokens=8192)) == (8192, 4096, 16384)
    assert gemm_dims(dict(old, shape="no-such-shape")) is None


def test_gemm_llm_widths_are_validated_and_none_is_allowed():
    from aifbench.config import build_config
    from aifbench.errors import ConfigError

    assert build_config(GemmConfig, {"shape": "qkv", "hidden": None}, "gemm").hidden == 4096
    with pytest.raises(ConfigError, match="minimum"):
        build_config(GemmConfig, {"shape": "mlp_up", "ffn_hidden": 0}, "gemm")


def test_burst_times_each_call_of_a_short_window_before_settling():
    """burst = true: burst_tflops from per-call times of a window of >= 10 calls (median, and max
    from the fastest call), raw per-call samples kept, beside the sustained tflops."""
    bench = Gemm(GemmConfig(shape="square", m=32, dtype="fp32", buffers=1, burst=True, burst_idle_s=0.0,
                            burst_s=0.0, warmup_s=0.01), CPU)
    out = run(bench)
    burst, sustained = rows(out, "burst_tflops"), rows(out, "tflops")
    per_call = out.samples["burst_tflops"]
    assert set(burst) == {"median", "max"} and len(per_call) == 10 == burst["median"].n_samples
    assert burst["max"].value == pytest.approx(max(per_call))
    times = sorted(2 * 32 ** 3 * 1e-12 / r for r in per_call)  # s per call
    assert burst["median"].value == pytest.approx(2 * 32 ** 3 / ((times[4] + times[5]) / 2) * 1e-12)
    assert "burst: 0 s idle, 3 untimed calls, 10 calls timed one by one" in burst["median"].detail
    assert sustained["median"].value > 0 and "burst_tflops" not in {m.metric for m in run(
        Gemm(GemmConfig(shape="square", m=32, dtype="fp32", buffers=1), CPU)).metrics}
