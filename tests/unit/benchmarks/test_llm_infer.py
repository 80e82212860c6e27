"""llm_infer on CPU: metrics and their arithmetic, the correctness check (and that it catches
real bugs), per-token timing with an injected clock, sweeps, skips and bad input."""

import pytest
import torch

from aifbench.benchmarks._llm import token_times
from aifbench.benchmarks.base import Context
from aifbench.benchmarks.llm_infer import LlmInfer, LlmInferConfig
from aifbench.cli import main
from aifbench.config import build_config
from aifbench.errors import CorrectnessError
from aifbench.models import flops
from aifbench.models.shapes import SHAPES
from aifbench.results.store import load
from aifbench.timing import Timer, TimingConfig
from tests.conftest import write

SMALL = dict(model="tiny", prompt_len=16, gen_tokens=8, batch_size=2, dtype="fp32")


def _bench(ctx: Context | None = None, **params) -> LlmInfer:
    b = LlmInfer(build_config(LlmInferConfig, {**SMALL, **params}, "llm_infer"), ctx or Context())
    b.setup()
    return b


def _suite(tmp_path, params: str, sweep: str = "") -> str:
    body = f'[suite]\nname = "t"\n[timing]\nwarmup = 1\nrepeats = 3\n[[case]]\nbenchmark = "llm_infer"\n' \
           f'params = {{ {params} }}\n' + (f"sweep = {{ {sweep} }}\n" if sweep else "")
    return str(write(tmp_path / "t.toml", body))


def test_sweep_records_prefill_decode_latency_and_bandwidth(tmp_path):
    suite = _suite(tmp_path, 'model = "tiny", prompt_len = 16, gen_tokens = 8, dtype = "fp32"',
                   "batch_size = [1, 3]")
    assert main(["run", suite, "--results", str(tmp_path / "res"), "--telemetry-hz", "0"]) == 0
    res = load([tmp_path / "res"])
    assert res.metrics["case_id"].nunique() == 2 and set(res.metrics["status"]) == {"ok"}
    for case_id, rows in res.metrics.groupby("case_id"):
        batch = int(rows["params"].iloc[0].split('"batch_size": ')[1].split(",")[0])
        v = rows.set_index(["metric", "stat"])["value"]
        assert v["prefill_tokens_per_s", "median"] == pytest.approx(batch * 16 / v["ttft_s", "median"])
        assert v["decode_tokens_per_s", "median"] == pytest.approx(batch * v["decode_tokens_per_s_per_seq", "median"])
        assert v["itl_s", "p50"] <= v["itl_s", "p90"] <= v["itl_s", "p99"]
        samples = res.samples[res.samples["case_id"] == case_id]
        itl = samples[samples["metric"] == "itl_s"].sort_values("sample_index")["value"]
        assert len(itl) == 8 * 3  # gen_tokens x timed generations, warm-up excluded
        decode_s = v["decode_tokens_per_s_per_seq", "median"] ** -1 * 8  # median generation time
        moved = sum(flops.decode_bytes_per_step(SHAPES["tiny"], batch=batch, context_len=16 + i + 1, dtype_bytes=4)
                    for i in range(8))
        assert v["hbm_gbps", "median"] == pytest.approx(moved / decode_s / 1e9)
        assert len(samples[samples["metric"] == "ttft_s"]) == 3
        decode_times = samples[samples["metric"] == "decode_time_s"].sort_values("sample_index")["value"].tolist()
        per_generation = [sum(itl.tolist()[i:i + 8]) for i in range(0, 24, 8)]  # samples in the order taken
        assert decode_times == pytest.approx(per_generation)
        assert v["decode_time_s", "median"] == pytest.approx(decode_s)


def test_hbm_percent_and_the_weight_roofline_use_the_catalog_peak():
    b = _bench(Context(peak_lookup=lambda kind: (0.5, "test catalog") if kind == "hbm_gbps" else (None, "")))
    b.check()
    out = b.measure(Timer("cpu", TimingConfig(warmup=1, repeats=2)))
    rows = {(m.metric, m.stat): m for m in out.metrics}
    hbm = rows["hbm_gbps", "median"]
    assert hbm.peak == 0.5 and hbm.peak_source == "test catalog"
    assert hbm.pct_of_peak == pytest.approx(200 * hbm.value)
    # roofline: weight bytes per step / 0.5 GB/s, against the median step time of a generation
    weights = flops.decode_weight_bytes(SHAPES["tiny"], batch=2, dtype_bytes=4)
    step_s = 2 / rows["decode_tokens_per_s", "median"].value  # batch 2, one token per sequence per step
    roof = rows["decode_roofline_pct", "median"]
    assert roof.value == pytest.approx(100 * weights / 0.5e9 / step_s)
    assert roof.value < hbm.pct_of_peak  # the KV bytes are only in hbm_gbps
    assert roof.peak_source == "test catalog" and f"{weights / 1e9:.4g} GB weights / 0.5 GB/s" in roof.detail
    assert rows["decode_roofline_pct", "max"].value >= roof.value
    assert f"||diff||/||ref|| = {b.check_error:.3g} (tolerance 0.0001, fp32)" in rows["decode_tokens_per_s", "median"].detail


def test_no_roofline_row_without_an_hbm_peak():
    b = _bench()
    b.check()
    out = b.measure(Timer("cpu", TimingConfig(warmup=0, repeats=1)))
    assert "decode_roofline_pct" not in {m.metric for m in out.metrics}
    assert any(m.metric == "hbm_gbps" for m in out.metrics)


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_check_passes_for_the_cached_path_in_every_dtype(dtype):
    b = _bench(dtype=dtype)
    b.check()
    assert b.check_error < {"fp32": 1e-5, "bf16": 2e-2, "fp16": 5e-3}[dtype]


def test_check_passes_for_the_compiled_decode_step():
    b = _bench(compile=True, compile_backend="eager", dtype="bf16")
    b.check()
    assert b.check_error < 2e-2


def _shift_position(b):
    step = b.decode_fn
    b.decode_fn = lambda tokens, i: step(tokens, i + 1)  # the next position's tensor and window


def _drop_cache_layer(b):
    prefill = b.model.prefill

    def broken(tokens):
        out = prefill(tokens)
        b.model.layers[1].attention.cache_v.zero_()
        return out

    b.model.prefill = broken


def _mask_own_token(b):
    b.model.cache_positions += 1  # the decode mask then hides the token being decoded


@pytest.mark.parametrize("bug", [_shift_position, _drop_cache_layer, _mask_own_token])
@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_check_catches_a_broken_cache_or_position(bug, dtype):
    b = _bench(dtype=dtype)
    bug(b)
    with pytest.raises(CorrectnessError, match="cached decode logits differ from a full forward"):
        b.check()


def test_token_times_with_an_injected_clock():
    ticks = iter([0, 1_000_000, 3_000_000, 6_000_000])
    timer = Timer("cpu", clock=lambda: next(ticks))
    calls = []
    assert token_times(calls.append, 3, timer) == [0.001, 0.002, 0.003]
    assert calls == [0, 1, 2]


def _only_case_skipped(tmp_path, capsys, params: str) -> str:
    """Run a one-case suite whose case is skipped: the skip reason the run prints (nothing stored)."""
    suite = _suite(tmp_path, params)
    assert main(["run", suite, "--results", str(tmp_path / "res"), "--telemetry-hz", "0"]) == 0
    err = capsys.readouterr().err
    assert "would be skipped" in err and not (tmp_path / "res").exists()
    return err.split("first reason: ", 1)[1].strip()


def test_cuda_graphs_without_cuda_are_skipped_with_the_reason(tmp_path, capsys):
    reason = _only_case_skipped(tmp_path, capsys, 'model = "tiny", prompt_len = 16, gen_tokens = 4, cuda_graphs = true')
    assert reason == "cuda_graphs needs a CUDA device"


def test_shape_that_does_not_fit_is_skipped_with_the_estimate(tmp_path, capsys):
    reason = _only_case_skipped(tmp_path, capsys, 'model = "llama3-405b", prompt_len = 128, gen_tokens = 16')
    assert "does not fit: llama3-405b inference needs " in reason and "GiB free on cpu" in reason


def test_out_of_memory_at_run_time_is_a_skip_with_the_estimate(tmp_path, monkeypatch):
    """The estimate said it fits, the GPU disagreed: skipped with the reason, not failed.
    (No GPU here: the allocator's error is raised where the model is built.)"""
    from aifbench.models import llama

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has ...")

    monkeypatch.setattr(llama, "build_model", oom)
    suite = _suite(tmp_path, 'model = "tiny", prompt_len = 16, gen_tokens = 4')
    assert main(["run", suite, "--results", str(tmp_path / "res"), "--telemetry-hz", "0"]) == 0
    row = load([tmp_path / "res"]).metrics.iloc[0]
    assert row["status"] == "skipped"
    assert row["reason"].startswith("does not fit: tiny inference ran out of device memory at run time "
                                    "(CUDA out of memory)") and "estimate 0.0 GiB" in row["reason"]


@pytest.mark.parametrize("params, message", [
    ('model = "gpt2"', "unknown model shape (or a path to a config.json) 'gpt2'; allowed: llama3-1b"),
    ('model = "tiny", prompt_len = 500, gen_tokens = 13', "prompt_len + gen_tokens 513 exceeds tiny's"),
    ('model = "tiny", dtype = "fp8"', "llm_infer.dtype: 'fp8' not allowed; allowed: bf16, fp16, fp32"),
])
def test_bad_input_is_a_config_error_before_anything_runs(tmp_path, capsys, params, message):
    code = main(["run", _suite(tmp_path, params), "--results", str(tmp_path / "res")])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


def test_teardown_releases_the_cache():
    b = _bench()
    attn = b.model.layers[0].attention
    assert attn.cache_k is not None and attn.cache_k.shape == (2, 2, 64, 16)  # 24 positions padded to 64
    b.teardown()
    assert attn.cache_k is None and b.model is None
    assert torch.is_tensor(attn.wqkv.weight)


# --- issue 14: decode levers through the benchmark, and the transformers peer ------------------------

@pytest.mark.parametrize("levers", [dict(decode_window=16), dict(decode_attention="math", decode_window=8),
                                    dict(compile=True, compile_backend="eager", decode_window=16)],
                         ids=["window", "math-window", "compiled-window"])
def test_check_passes_with_the_decode_levers(levers):
    b = _bench(**levers)
    b.check()
    assert b.check_error < 1e-5


def test_reference_transformers_generates_the_same_tokens_in_the_same_case(tmp_path):
    """Issue 14's inference peer: transformers (StaticCache + torch.compile) on the same weights
    and prompt; the same greedy tokens, and speedup_vs_ref by the A/B protocol: the mean of the
    per-round ratios (kept as its samples) inside its 95 % interval."""
    pytest.importorskip("transformers")
    suite = _suite(tmp_path, 'model = "tiny", prompt_len = 16, gen_tokens = 8, batch_size = 2, dtype = "fp32", '
                             'compile_backend = "eager", reference = "transformers"')
    assert main(["run", suite, "--results", str(tmp_path / "res"), "--telemetry-hz", "0"]) == 0
    res = load([tmp_path / "res"])
    assert set(res.metrics["status"]) == {"ok"}
    m = res.metrics.set_index(["metric", "stat"])
    ref_decode = m.loc[("ref_decode_tokens_per_s", "median"), "value"]
    assert ref_decode > 0
    rounds = res.samples[res.samples["metric"] == "speedup_vs_ref"]["value"]
    assert len(rounds) == 6  # ab_rounds default: one paired ratio per round
    mean = m.loc[("speedup_vs_ref", "mean"), "value"]
    assert mean == pytest.approx(rounds.mean())
    assert m.loc[("speedup_vs_ref", "ci_low"), "value"] < mean < m.loc[("speedup_vs_ref", "ci_high"), "value"]
    assert "A/B: 6 rounds in ABBA order" in m.loc[("speedup_vs_ref", "mean"), "detail"]
    assert m.loc[("ref_ttft_s", "median"), "value"] > 0
    detail = m.loc[("ref_decode_tokens_per_s", "median"), "detail"]
    assert "StaticCache" in detail and "torch.compile eager" in detail
    assert "first 5 of 5 greedy tokens equal" in detail  # check_tokens 4 decode steps + the first token
    samples = res.samples
    assert len(samples[samples["metric"] == "ref_ttft_s"]) == 3


def test_reference_with_different_weights_fails_the_check(monkeypatch):
    pytest.importorskip("transformers")
    from aifbench.models import hf_reference

    real = hf_reference.build
    monkeypatch.setattr(hf_reference, "build", lambda shape, **kw: real(shape, **dict(kw, seed=kw["seed"] + 1)))
    b = _bench(reference="transformers", compile_backend="eager")
    b.check()
    with pytest.raises(CorrectnessError, match="reference differs from aifbench: .*first-token logits"):
        b.measure(Timer("cpu", TimingConfig(warmup=0, repeats=1)))


def test_inference_reference_without_transformers_is_skipped_with_the_reason(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)
    b = LlmInfer(build_config(LlmInferConfig, {**SMALL, "reference": "transformers"}, "llm_infer"), Context())
    assert "reference transformers not importable" in b.skip_reason()
    assert LlmInfer(build_config(LlmInferConfig, SMALL, "llm_infer"), Context()).skip_reason() is None


@pytest.mark.parametrize("params, message", [
    ('model = "tiny", decode_window = -1', "llm_infer.decode_window"),
    ('model = "tiny", compile_mode = "turbo"', "allowed: default, max-autotune"),
    ('model = "tiny", decode_attention = "flash"', "allowed: sdpa, math"),
    ('model = "tiny", reference = "vllm"', "allowed: none, transformers"),
])
def test_bad_lever_values_are_config_errors(tmp_path, capsys, params, message):
    assert main(["run", _suite(tmp_path, params), "--results", str(tmp_path / "res")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


def test_inference_reference_decode_has_its_own_telemetry_window(tmp_path, monkeypatch):
    """The peer's timed decode steps are region "ref" (one segment per generation), apart from
    aifbench's prefill and decode; its prefills open no window; ref_tokens_per_j from its decode.
    Windows open in order: prefill, 3 decode generations, 3 reference ones, then 2 A/B rounds
    in ABBA order (decode, ref | ref, decode); the replayed trace gives them in that order."""
    pytest.importorskip("transformers")
    from tests.unit.telemetry.test_telemetry_regions import build_trace

    order = ["p"] + ["d"] * 3 + ["r"] * 3 + ["d", "r", "r", "d"]
    watts = {"p": 150.0, "d": 450.0, "r": 600.0}
    windows = [(f"{w}{i}", 1.0, watts[w], 0) for i, w in enumerate(order)]
    monkeypatch.setenv("AIFBENCH_TELEMETRY_REPLAY", str(build_trace(tmp_path / "trace.jsonl", windows)))
    suite = _suite(tmp_path, 'model = "tiny", prompt_len = 16, gen_tokens = 4, dtype = "fp32", '
                             'compile_backend = "eager", reference = "transformers", ab_rounds = 2')
    assert main(["run", suite, "--results", str(tmp_path / "res"), "--telemetry-hz", "10"]) == 0
    m = load([tmp_path / "res"]).metrics.set_index(["metric", "stat"])["value"]
    assert m["decode_power_mean_w"].iloc[0] == pytest.approx(450.0)
    assert m["ref_power_mean_w"].iloc[0] == pytest.approx(600.0)
    assert m["ref_tokens_per_j"].iloc[0] == pytest.approx(m["ref_decode_tokens_per_s", "median"] / 600.0)


def test_teardown_frees_the_model_and_its_compiled_step():
    """teardown_model leaves nothing holding the model: not the compiled step, not dynamo's
    guards (the peer now runs beside the model, for the A/B rounds; teardown frees both)."""
    import weakref

    b = _bench(compile=True, compile_backend="aot_eager", decode_window=8)
    b.check()
    model = weakref.ref(b.model)
    b.teardown_model()
    assert model() is None and b.prompt is not None and b.decode_pos is not None
