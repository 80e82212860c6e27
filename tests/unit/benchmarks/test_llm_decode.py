"""Issue 14's decode levers change no result: fused projections, the filled-cache window, the
greedy step, compiler options and SDPA's math backend all give today's logits (tiny, fp32).

"Today's" model is a plain reference forward written here from the UNFUSED layout (separate
q/k/v and gate/up matrices, taken from the fused weights by the documented row order), with
explicit head repetition and a dense causal mask: nothing of llama.py's attention or fusion."""

import math

import pytest
import torch
import torch.nn.functional as F

from aifbench.benchmarks import _llm_decode
from aifbench.benchmarks._llm_decode import DecodeSettings, build_step, compile_options
from aifbench.models.llama import build_model, decode_window, rope_tables
from aifbench.models.shapes import SHAPES

TINY = SHAPES["tiny"]


def _unfused(model):
    """Per layer: q, k, v, o, gate, up, down weights and the two norm weights (unfused layout)."""
    s = model.shape
    out = []
    for layer in model.layers:
        q, k, v = layer.attention.wqkv.weight.split([s.q_dim, s.kv_dim, s.kv_dim])
        gate, up = layer.feed_forward.w13.weight.chunk(2)
        out.append(dict(q=q, k=k, v=v, o=layer.attention.wo.weight, gate=gate, up=up,
                        down=layer.feed_forward.w2.weight, n1=layer.attention_norm.weight,
                        n2=layer.ffn_norm.weight))
    return out


def _norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _rope(x, cos, sin):  # x (B, H, T, hd)
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin


def reference_logits(model, tokens):
    """Today's maths from the unfused weights: a dense causal forward, logits (B, T, V)."""
    s, (b, t) = model.shape, tokens.shape
    cos, sin = rope_tables(s, t)
    x = model.tok_embeddings.weight[tokens]
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    rep = s.num_heads // s.num_kv_heads
    for w in _unfused(model):
        h = _norm(x, w["n1"], s.rms_norm_eps)
        q = (h @ w["q"].T).view(b, t, s.num_heads, s.head_dim).transpose(1, 2)
        k = (h @ w["k"].T).view(b, t, s.num_kv_heads, s.head_dim).transpose(1, 2)
        v = (h @ w["v"].T).view(b, t, s.num_kv_heads, s.head_dim).transpose(1, 2)
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(s.head_dim)
        attn = F.softmax(scores.masked_fill(~causal, float("-inf")), -1) @ v
        x = x + attn.transpose(1, 2).reshape(b, t, -1) @ w["o"].T
        h = _norm(x, w["n2"], s.rms_norm_eps)
        x = x + (F.silu(h @ w["gate"].T) * (h @ w["up"].T)) @ w["down"].T
    return _norm(x, model.norm.weight, s.rms_norm_eps) @ model.lm_head.weight.T


@pytest.fixture(scope="module")
def setup():
    model = build_model(TINY, max_seq_len=200, seed=7).eval()
    tokens = torch.randint(TINY.vocab_size, (2, 150), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = reference_logits(model, tokens)
    return model, tokens, expected


def test_fused_model_equals_the_unfused_reference_forward(setup):
    model, tokens, expected = setup
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), expected, rtol=1e-4, atol=1e-4)
        loss = F.cross_entropy(expected.flatten(0, 1), torch.roll(tokens, -1, 1).flatten())
        torch.testing.assert_close(model(tokens, torch.roll(tokens, -1, 1)), loss)


def _decode_all(model, tokens, prompt, step):
    """Prefill `prompt` tokens, then step(token, i) teacher-forced over the rest: logits (B, n, V)."""
    got = [model.prefill(tokens[:, :prompt])]
    for i in range(tokens.shape[1] - prompt):
        nxt, logits = step(tokens[:, prompt + i:prompt + i + 1], i)
        torch.testing.assert_close(nxt, logits.argmax(-1, keepdim=True), rtol=0, atol=0)
        got.append(logits.clone())
    return torch.stack(got[:-1], 1)


@pytest.mark.parametrize("settings", [
    DecodeSettings(),
    DecodeSettings(window=16),
    DecodeSettings(window=1),
    DecodeSettings(window=64, attention="math"),
    DecodeSettings(compile=True, backend="eager", window=32),
    DecodeSettings(compile=True, backend="aot_eager", attention="math", window=16),
], ids=["whole-cache", "window16", "window1", "window64-math", "compiled-eager-window32", "aot-eager-math-window16"])
def test_every_decode_lever_gives_the_reference_logits(setup, settings):
    """Prompt 100, then 50 steps crossing several window buckets (and the 128-position padding)."""
    model, tokens, expected = setup
    prompt = 100
    positions = [torch.tensor([p]) for p in range(prompt, tokens.shape[1])]
    model.setup_cache(tokens.shape[0], tokens.shape[1])
    with torch.no_grad():
        step = build_step(model, settings, positions, prompt, tokens[:, :1])
        got = _decode_all(model, tokens, prompt, step)
    torch.testing.assert_close(got, expected[:, prompt - 1:-1], rtol=1e-4, atol=1e-4)


def test_a_window_too_short_for_the_position_changes_the_logits(setup):
    """The window really limits what attention reads: one position short hides the newest keys."""
    model, tokens, _ = setup
    with torch.no_grad():
        model.setup_cache(2, 120)
        model.prefill(tokens[:, :100])
        right = model.decode(tokens[:, 100:101], torch.tensor([100]), kv_len=101)
        model.prefill(tokens[:, :100])
        short = model.decode(tokens[:, 100:101], torch.tensor([100]), kv_len=100)
    assert (right - short).abs().max() > 1e-2


def test_decode_window_buckets():
    assert decode_window(0, 0, 128) is None
    assert [decode_window(p, 64, 192) for p in (0, 62, 63, 64, 127, 128, 191)] == [64, 64, 64, 128, 128, 192, 192]
    assert decode_window(190, 256, 192) == 192  # never past the cache
    assert decode_window(5, 1, 192) == 6


def test_the_decode_step_has_no_host_synchronisation_or_graph_break(setup):
    """fullgraph=True fails on a graph break (.item(), .tolist(), data-dependent Python control flow):
    the greedy step with the window compiles as ONE graph, what CUDA graphs need."""
    model, tokens, _ = setup
    model.setup_cache(2, 150)
    compiled = torch.compile(model.decode_greedy, fullgraph=True, backend="eager", dynamic=False)
    with torch.no_grad():
        model.prefill(tokens[:, :100])
        nxt, _ = compiled(tokens[:, 100:101], torch.tensor([100]), 128)
    assert nxt.shape == (2, 1)


def test_compile_options_are_gpt_fast_settings_and_valid_inductor_config():
    import torch._inductor.config as inductor_config

    plain = compile_options("default", cuda_graphs=False)
    assert plain == {"coordinate_descent_tuning": True, "triton.unique_kernel_names": True, "fx_graph_cache": True}
    tuned = compile_options("max-autotune", cuda_graphs=True)
    assert tuned["max_autotune"] and tuned["triton.cudagraphs"]
    for key in tuned:  # every key is an inductor config entry torch.compile(options=) accepts
        inductor_config.get_config_copy()[key]
    assert not inductor_config.coordinate_descent_tuning  # per-call options: no global change


def test_settings_describe_the_step():
    text = DecodeSettings(compile=True, window=64, attention="math").describe()
    assert "compile=True (inductor, default)" in text and "decode_window=64" in text and "math" in text
    assert _llm_decode.COMPILE_MODES == ("default", "max-autotune")


def test_profile_helper_counts_operators_per_step_and_shows_the_fused_projections(capsys):
    """The documented profiling procedure runs (CPU: aten operators stand in for kernels), and a
    step reads each layer's weights in 4 GEMMs (wqkv, wo, w13, w2; unfused would be 7) + lm_head."""
    from aifbench.llm_profile import main, profile_decode

    out = profile_decode(dict(model="tiny", prompt_len=16, gen_tokens=8, dtype="fp32", decode_window=8), steps=4)
    assert out["steps"] == 4 and out["kernels_per_step"] > 0 and out["wall_per_step_ms"] > 0
    calls = {row["name"]: row["calls_per_step"] for row in out["top"]}
    assert calls["aten::linear"] == 4 * TINY.num_layers + 1
    assert out["params"]["decode_window"] == 8
    assert main(["model=tiny", "prompt_len=8", "gen_tokens=2", "dtype=fp32", "--steps", "2", "--device", "cpu"]) == 0
    assert "per step" in capsys.readouterr().out
