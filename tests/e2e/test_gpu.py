"""GPU tests: the kernels, the A/B protocol and the LLM benchmarks on a real CUDA device.

Marked `gpu`: they run only with AIFBENCH_TEST_GPU=1 (scripts/gpu-check.sh) and skip with the
reason elsewhere (tests/conftest.py). Small sizes: the whole file takes about a minute.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA GPU (torch.cuda.is_available() is False)")
    return "cuda:0"


def _ctx(device):
    from aifbench.benchmarks.base import Context
    from aifbench.hardware.catalog import peak_lookup_for
    from aifbench.timing import TimingConfig

    import torch

    name = torch.cuda.get_device_name(device)
    return Context(device=device, device_name=name, peak_lookup=peak_lookup_for(name, None, device=device),
                   timing=TimingConfig(warmup=3, repeats=10))


def _run(bench):
    from aifbench.timing import Timer

    assert bench.skip_reason() is None
    bench.setup()
    bench.check()
    try:
        return bench.measure(Timer(bench.ctx.device, bench.ctx.timing))
    finally:
        bench.teardown()


def _rows(out, metric):
    return {m.stat: m for m in out.metrics if m.metric == metric}


def test_cuda_events_time_a_matmul(cuda):
    import torch

    from aifbench.timing import Timer

    a = torch.randn(2048, 2048, device=cuda, dtype=torch.bfloat16)
    timer = Timer(cuda)
    assert timer.uses_cuda_events
    t = timer.time_once(lambda: a @ a, 10) / 10
    assert 1e-6 < t < 0.1  # 17 GFLOP: microseconds to milliseconds on any data-centre GPU


@pytest.mark.parametrize("dtype", ["bf16", "fp8"])
def test_gemm_sustained_burst_and_harness_interval(cuda, dtype):
    from aifbench.benchmarks.gemm import Gemm, GemmConfig, dtype_skip_reason

    if dtype_skip_reason(dtype, cuda):
        pytest.skip(dtype_skip_reason(dtype, cuda))
    out = _run(Gemm(GemmConfig(shape="square", m=4096, dtype=dtype, bare_loop=True, burst=True, burst_idle_s=0.5,
                               warmup_s=0.5, ab_rounds=6, ab_round_s=0.05), _ctx(cuda)))
    tflops, burst = _rows(out, "tflops")["median"], _rows(out, "burst_tflops")["median"]
    assert tflops.value > 10 and burst.value > 10
    if tflops.peak:
        assert tflops.value < 1.05 * tflops.peak and burst.value < 1.05 * burst.peak
    h = _rows(out, "harness_overhead_pct")
    assert h["ci_low"].value <= h["mean"].value <= h["ci_high"].value
    assert len(out.samples["harness_overhead_pct"]) == 6
    assert abs(h["mean"].value) < 25  # the same kernel both sides: far from a different operation


def test_stream_triad_and_pinned_h2d(cuda):
    from aifbench.benchmarks.hostlink import Hostlink, HostlinkConfig
    from aifbench.benchmarks.membw import Membw, MembwConfig

    triad = _rows(_run(Membw(MembwConfig(op="triad", size_bytes=1 << 28), _ctx(cuda))), "gbps")["median"]
    assert triad.value > 100
    if triad.peak:
        assert triad.value < 1.05 * triad.peak
    h2d = _rows(_run(Hostlink(HostlinkConfig(direction="h2d", memory="pinned", size_bytes=1 << 28), _ctx(cuda))),
                "link_gbps")["median"]
    assert h2d.value > 1


def test_llm_train_and_infer_tiny(cuda):
    from aifbench.benchmarks.llm_infer import LlmInfer, LlmInferConfig
    from aifbench.benchmarks.llm_train import LlmTrain, LlmTrainConfig

    train = _run(LlmTrain(LlmTrainConfig(model="tiny", seq_len=128, dtype="bf16"), _ctx(cuda)))
    assert _rows(train, "tokens_per_s")["median"].value > 0
    assert _rows(train, "peak_memory_bytes")["max"].value > 0
    infer = _run(LlmInfer(LlmInferConfig(model="tiny", prompt_len=32, gen_tokens=8, dtype="bf16"), _ctx(cuda)))
    assert _rows(infer, "decode_tokens_per_s")["median"].value > 0


def test_nvml_sampler_reads_the_gpu(cuda):
    pytest.importorskip("pynvml")
    from aifbench.telemetry.select import open_sampler

    sampler = open_sampler(cuda, 0.05, record=False)
    try:
        assert getattr(sampler, "live", False), sampler.describe()
        with sampler.window("gpu-test"):
            import time

            time.sleep(0.3)
    finally:
        sampler.close()
