"""llm_train on CPU: metrics and their arithmetic, sanity, options that must not change the maths,
FSDP2 across two gloo ranks, and every bad-input path."""

import json
import sys

import pandas as pd
import pytest

from aifbench.benchmarks.base import Context
from aifbench.benchmarks.llm_train import LlmTrain, LlmTrainConfig
from aifbench.cli import main
from aifbench.config import build_config
from aifbench.errors import ConfigError, CorrectnessError
from aifbench.models import flops
from aifbench.models.shapes import SHAPES
from aifbench.results.store import load
from aifbench.timing import Timer, TimingConfig
from tests.conftest import REPO, write

FAST = TimingConfig(warmup=1, repeats=3)
SMALL = dict(model="tiny", seq_len=32, micro_batch=2, dtype="fp32")
TIED_TINY = {"vocab_size": 256, "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
             "rope_theta": 500000.0, "tie_word_embeddings": True}  # config.json of a tied tiny shape


def _bench(ctx: Context | None = None, **params) -> LlmTrain:
    cfg = build_config(LlmTrainConfig, {**SMALL, **params}, "llm_train")
    return LlmTrain(cfg, ctx or Context())


def _losses(**params) -> list[float]:
    b = _bench(**params)
    b.setup()
    for _ in range(3):
        b.step()
    return [v.item() for v in b.losses]


def _suite(tmp_path, params: str, sweep: str = "") -> str:
    body = f'[suite]\nname = "t"\n[timing]\nwarmup = 1\nrepeats = 3\n[[case]]\nbenchmark = "llm_train"\n' \
           f'params = {{ {params} }}\n' + (f"sweep = {{ {sweep} }}\n" if sweep else "")
    return str(write(tmp_path / "t.toml", body))


def test_run_records_throughput_memory_and_a_falling_loss(tmp_path):
    suite = _suite(tmp_path, 'model = "tiny", seq_len = 32, micro_batch = 2, dtype = "fp32"')
    assert main(["run", suite, "--results", str(tmp_path / "res"), "--telemetry-hz", "0"]) == 0
    res = load([tmp_path / "res"])
    m = res.metrics.set_index(["metric", "stat"])["value"]
    assert m["tokens_per_s", "median"] == pytest.approx(64 / m["step_time_s", "median"])
    assert m["tokens_per_s_per_device", "median"] == m["tokens_per_s", "median"]
    f = flops.train_flops_per_token(SHAPES["tiny"], 32)
    assert m["model_tflops_per_device", "median"] == pytest.approx(f * m["tokens_per_s", "median"] / 1e12)
    assert m["peak_memory_bytes", "max"] >= 0
    # no bf16 peak on a CPU: no invented MFU, and the reason sits next to the TFLOP/s
    assert "mfu_pct" not in set(res.metrics["metric"])
    tf = res.metrics[res.metrics["metric"] == "model_tflops_per_device"].iloc[0]
    assert tf["peak_source"] and pd.isna(tf["pct_of_peak"])
    losses = res.samples[res.samples["metric"] == "loss"].sort_values("sample_index")["value"].tolist()
    assert len(losses) == 3 + 1 + 3  # check steps, warm-up, timed steps
    assert losses[-1] < losses[0] and m["loss", "value"] == losses[-1]
    loss_row = res.metrics[res.metrics["metric"] == "loss"].iloc[0]
    assert "finite, falling" in loss_row["detail"]
    assert len(res.samples[res.samples["metric"] == "step_time_s"]) == 3  # warm-up excluded


def test_mfu_uses_the_bf16_peak_of_the_context():
    ctx = Context(peak_lookup=lambda kind: (2.0, "test catalog") if kind == "tflops:bf16" else (None, "none"))
    b = _bench(ctx)
    b.setup()
    b.check()
    out = b.measure(Timer("cpu", FAST))
    rows = {(r.metric, r.stat): r for r in out.metrics}
    tflops = rows["model_tflops_per_device", "median"]
    assert tflops.peak == 2.0 and tflops.pct_of_peak == pytest.approx(100 * tflops.value / 2.0)
    mfu = rows["mfu_pct", "median"]
    expected = flops.train_flops_per_token(b.shape, 32) * rows["tokens_per_s_per_device", "median"].value / 2e12
    assert mfu.value == pytest.approx(100 * expected)
    assert "test catalog" in mfu.peak_source and "6*N + 12*L*d_attn*T" in mfu.detail


def test_activation_checkpointing_and_compile_do_not_change_the_losses():
    base = _losses()
    assert _losses(activation_checkpointing=True) == pytest.approx(base, rel=1e-5)
    assert _losses(compile=True, compile_backend="eager", activation_checkpointing=True) == pytest.approx(base, rel=1e-5)


def test_grad_accumulation_equals_the_bigger_micro_batch():
    # same token stream (seeded), same global batch: 2 x 1 accumulated == 1 x 2 at once
    assert _losses(micro_batch=1, grad_accum=2) == pytest.approx(_losses(micro_batch=2), rel=1e-5)


def test_bf16_autocast_trains_on_cpu():
    b = _bench(dtype="bf16")
    b.setup()
    b.check()
    assert b.check_losses[-1] < b.check_losses[0]


def test_loss_that_does_not_fall_fails_the_check():
    b = _bench(lr=0.0)
    b.setup()
    with pytest.raises(CorrectnessError, match="not falling on a repeated batch"):
        b.check()


def test_shape_that_does_not_fit_is_skipped_with_the_estimate(tmp_path, capsys):
    """The only case is skipped with the memory estimate; a run whose every case is skipped says
    so (with the first reason) and stores nothing."""
    suite = _suite(tmp_path, 'model = "llama3-405b", seq_len = 4096')
    assert main(["run", suite, "--results", str(tmp_path / "res"), "--telemetry-hz", "0"]) == 0
    err = capsys.readouterr().err
    assert "would be skipped" in err and "does not fit: llama3-405b training needs " in err and "GiB" in err
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").rglob("*.parquet"))


@pytest.mark.parametrize("params, message", [
    ('model = "llama3-7b"', "allowed: llama3-1b, llama3-3b, llama3-405b, llama3-70b, llama3-8b, tiny"),
    ('model = "tiny", seq_len = 600', "seq_len 600 exceeds tiny's max_position_embeddings 512"),
    ('model = "bad/config.json"', "not valid JSON"),
    ('model = "heads/config.json"', "num_heads 3 does not divide hidden_size 64"),
    ('model = "tiny", layers = 3', "layers 3 > the 2 layers of tiny"),
])
def test_bad_input_is_a_config_error_before_anything_runs(tmp_path, capsys, params, message):
    write(tmp_path / "bad" / "config.json", '{"hidden_size": 64,')
    write(tmp_path / "heads" / "config.json", json.dumps({
        "vocab_size": 256, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 3}))
    params = params.replace('"bad/', f'"{tmp_path}/bad/').replace('"heads/', f'"{tmp_path}/heads/')
    code = main(["run", _suite(tmp_path, params), "--results", str(tmp_path / "res")])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert not (tmp_path / "res").exists()


def test_reference_transformers_is_timed_in_the_same_case(tmp_path):
    """The side by side of issue 4 lands in the results: transformers' LlamaForCausalLM with the
    same weights must start from the same loss, and speedup_vs_ref is the mean of the A/B rounds'
    ratios (reference s/step / aifbench s/step) with its interval."""
    pytest.importorskip("transformers")
    suite = _suite(tmp_path, 'model = "tiny", seq_len = 32, micro_batch = 2, grad_accum = 2, dtype = "fp32", '
                             'reference = "transformers", ab_rounds = 4, ab_round_s = 0.0')
    assert main(["run", suite, "--results", str(tmp_path / "res"), "--telemetry-hz", "0"]) == 0
    res = load([tmp_path / "res"])
    assert set(res.metrics["status"]) == {"ok"}
    m = res.metrics.set_index(["metric", "stat"])
    ref_time = m.loc[("ref_step_time_s", "median"), "value"]
    assert m.loc[("ref_tokens_per_s", "median"), "value"] == pytest.approx(128 / ref_time)
    s = res.samples
    rounds = {k: s[s["metric"] == k]["value"].tolist() for k in ("speedup_vs_ref", "ref_step_time_s")}
    assert len(rounds["speedup_vs_ref"]) == len(rounds["ref_step_time_s"]) == 4  # one step per side per round
    assert m.loc[("speedup_vs_ref", "mean"), "value"] == pytest.approx(sum(rounds["speedup_vs_ref"]) / 4)
    assert m.loc[("speedup_vs_ref", "ci_low"), "value"] < m.loc[("speedup_vs_ref", "ci_high"), "value"]
    assert "ABBA" in m.loc[("speedup_vs_ref", "mean"), "detail"]
    detail = m.loc[("ref_tokens_per_s", "median"), "detail"]
    assert "LlamaForCausalLM (sdpa)" in detail
    first_ref, first_own = (float(x) for x in detail.split("first loss ")[1].rstrip(")").split(" (aifbench "))
    assert first_ref == pytest.approx(first_own, rel=1e-5)
    assert "ref_mfu_pct" not in m.index.get_level_values(0)  # no bf16 peak on a CPU


def test_reference_with_a_different_model_fails_the_check(monkeypatch):
    pytest.importorskip("transformers")
    from aifbench.models import hf_reference

    real = hf_reference.build
    monkeypatch.setattr(hf_reference, "build", lambda shape, **kw: real(shape, **dict(kw, seed=kw["seed"] + 1)))
    b = _bench(reference="transformers")
    b.setup()
    b.check()
    with pytest.raises(CorrectnessError, match="differs from aifbench's .* not the same model"):
        b.measure(Timer("cpu", FAST))


def test_reference_without_transformers_is_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # what an environment without it looks like
    suite = _suite(tmp_path, 'model = "tiny", seq_len = 32, dtype = "fp32"', 'reference = ["none", "transformers"]')
    assert main(["run", suite, "--results", str(tmp_path / "res"), "--telemetry-hz", "0"]) == 0
    rows = load([tmp_path / "res"]).metrics
    skipped = rows[rows["status"] == "skipped"]
    assert skipped["params"].str.contains('"reference": "transformers"').all() and len(skipped) == 1
    assert "reference transformers not importable" in skipped["reason"].iloc[0]
    assert "aifbench[reference]" in skipped["reason"].iloc[0]
    assert (rows[rows["status"] == "ok"]["metric"] == "tokens_per_s").any()


def test_compare_script_records_the_side_by_side(tmp_path):
    """scripts/dev/compare_hf_llama.py: a one-case suite run through aifbench, verdict as JSON."""
    pytest.importorskip("transformers")
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_hf_llama", REPO / "scripts" / "dev" / "compare_hf_llama.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    shape = write(tmp_path / "a dir" / "config.json", json.dumps(TIED_TINY))  # a path TOML must quote
    out = tmp_path / "cmp.json"
    assert script.main(["--model", str(shape), "--seq-len", "32", "--dtype", "fp32", "--no-compile", "--steps", "2",
                        "--warmup", "0", "--device", "cpu", "--results", str(tmp_path / "res"), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    rows = load([tmp_path / "res"]).metrics
    assert json.loads(rows["params"].iloc[0])["model"] == str(shape) and set(rows["status"]) == {"ok"}
    fig = doc["median"]
    assert fig["speedup_vs_ref_ci_low"] <= fig["speedup_vs_ref"] <= fig["speedup_vs_ref_ci_high"]
    expected = (True if fig["speedup_vs_ref_ci_low"] >= 1 else False if fig["speedup_vs_ref_ci_high"] < 1
                else "inconclusive")
    assert doc["verdict"]["aifbench_at_least_as_fast"] == expected
    assert doc["verdict"]["mfu_at_least_45_pct"] is None  # no bf16 peak for a CPU


def test_config_is_validated_at_construction():
    with pytest.raises(ConfigError):
        LlmTrainConfig(model="tiny", seq_len=4096)


@pytest.mark.slow
def test_fsdp2_across_two_gloo_ranks(tmp_path):
    """Untied (tiny) and tied (llama3-1b/3b style) embeddings sharded over two gloo ranks, the
    tied one compiled per block with 2 accumulated micro-batches; the reference is refused there."""
    tied = write(tmp_path / "tied" / "config.json", json.dumps(TIED_TINY))
    case = '[[case]]\nbenchmark = "llm_train"\nparams = {{ seq_len = 32, dtype = "bf16", {} }}\n'
    suite = write(tmp_path / "fsdp.toml", '[suite]\nname = "fsdp"\n[timing]\nwarmup = 1\nrepeats = 3\n'
                  + case.format('model = "tiny", micro_batch = 2')
                  + case.format(f'model = "{tied}", micro_batch = 1, grad_accum = 2, compile = true, '
                                'compile_backend = "eager"')
                  + case.format('model = "tiny", reference = "transformers"'))
    code = main(["run", str(suite), "--results", str(tmp_path / "res"), "--nproc", "2", "--device", "cpu",
                 "--telemetry-hz", "0"])
    assert code == 0
    m = load([tmp_path / "res"]).metrics
    skipped = m[m["status"] == "skipped"]
    assert set(skipped["rank"]) == {0, 1} and skipped["reason"].str.contains("timed on one device").all()
    m = m[m["status"] != "skipped"]
    assert set(m["status"]) == {"ok"} and set(m["rank"]) == {0, 1} and set(m["world_size"]) == {2}
    assert m["case_id"].nunique() == 2
    for _, r in m.groupby(["case_id", "rank"]):
        v = r.set_index(["metric", "stat"])["value"]
        assert v["tokens_per_s", "median"] == pytest.approx(2 * 64 / v["step_time_s", "median"])
        assert v["tokens_per_s_per_device", "median"] == pytest.approx(v["tokens_per_s", "median"] / 2)
        assert v["loss", "value"] < 6.5 and "falling" in r[r["metric"] == "loss"]["detail"].iloc[0]
