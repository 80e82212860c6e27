"""The Llama model: shapes, HF config.json parsing, RoPE, GQA, KV cache, and the analytic FLOPs
cross-checked against torch's FlopCounterMode."""

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from aifbench.errors import ConfigError
from aifbench.models import flops
from aifbench.models.llama import Llama, apply_rope, build_model, causal_attention, rope_inv_freq
from aifbench.models.shapes import SHAPES, resolve_shape, shape_from_hf_config

TINY = SHAPES["tiny"]
TIED = dataclasses.replace(TINY, name="tiny-tied", tie_word_embeddings=True)

# totals of the published checkpoints (safetensors metadata on the HF hub model pages)
PUBLISHED_PARAMS = {"llama3-1b": 1_235_814_400, "llama3-3b": 3_212_749_824, "llama3-8b": 8_030_261_248,
                    "llama3-70b": 70_553_706_496, "llama3-405b": 405_853_388_800}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_named_shapes_have_the_published_parameter_counts(name):
    assert flops.param_count(SHAPES[name]).stored == PUBLISHED_PARAMS[name]


@pytest.mark.parametrize("shape", [TINY, TIED], ids=["untied", "tied"])
def test_param_count_matches_the_module(shape):
    model = Llama(shape, max_seq_len=16)
    assert sum(p.numel() for p in model.parameters()) == flops.param_count(shape).stored


# --- HF config.json -----------------------------------------------------------------------------

HF_1B = {"architectures": ["LlamaForCausalLM"], "hidden_act": "silu", "hidden_size": 2048,
         "intermediate_size": 8192, "max_position_embeddings": 131072, "num_attention_heads": 32,
         "num_hidden_layers": 16, "num_key_value_heads": 8, "head_dim": 64, "rms_norm_eps": 1e-05,
         "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                          "original_max_position_embeddings": 8192, "rope_type": "llama3"},
         "rope_theta": 500000.0, "tie_word_embeddings": True, "vocab_size": 128256}


def _numbers(shape):
    return {k: v for k, v in dataclasses.asdict(shape).items() if k not in ("name", "source")}


def test_hf_config_json_gives_the_same_shape_as_the_named_one(tmp_path):
    folder = tmp_path / "Llama-3.2-1B"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(HF_1B))
    by_file = resolve_shape(str(folder / "config.json"))
    by_dir = resolve_shape(str(folder))
    assert _numbers(by_file) == _numbers(SHAPES["llama3-1b"]) == _numbers(by_dir)
    assert by_file.name == "Llama-3.2-1B"


def test_transformers_5_rope_parameters_are_read(tmp_path):
    v5 = {k: v for k, v in HF_1B.items() if k not in ("rope_scaling", "rope_theta")}
    v5["rope_parameters"] = dict(HF_1B["rope_scaling"], rope_theta=500000.0)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(v5))
    assert _numbers(shape_from_hf_config(path)) == _numbers(SHAPES["llama3-1b"])


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({k: v for k, v in HF_1B.items() if k != "hidden_size"}), "missing field(s) hidden_size"),
    (json.dumps(dict(HF_1B, num_hidden_layers="16")), "num_hidden_layers must be an integer"),
    (json.dumps(dict(HF_1B, num_attention_heads=30, head_dim=None)), "does not divide hidden_size"),
    (json.dumps(dict(HF_1B, num_key_value_heads=5)), "does not divide num_heads"),
    (json.dumps(dict(HF_1B, rope_scaling={"rope_type": "yarn", "factor": 4.0})), "allowed: llama3, default"),
    (json.dumps(dict(HF_1B, hidden_act="gelu")), "allowed: silu"),
    (json.dumps(dict(HF_1B, rope_scaling=dict(HF_1B["rope_scaling"], low_freq_factor=4.0))),
     "low_freq_factor < high_freq_factor"),
    (json.dumps(dict(HF_1B, rope_scaling=dict(HF_1B["rope_scaling"], factor=0))), "factor must be >= 1"),
])
def test_malformed_config_json_is_a_config_error(tmp_path, text, message):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        shape_from_hf_config(path)
    assert message in str(err.value)


def test_missing_config_json_and_unknown_name_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read model config"):
        resolve_shape(str(tmp_path / "nope" / "config.json"))
    for name in ("llama3-7b", "", " "):
        with pytest.raises(ConfigError) as err:
            resolve_shape(name)
        assert "allowed: llama3-1b, llama3-3b, llama3-405b, llama3-70b, llama3-8b, tiny" in str(err.value)


def test_positions_over_the_maximum_are_refused():
    with pytest.raises(ConfigError, match="exceeds tiny's max_position_embeddings 512"):
        Llama(TINY, max_seq_len=513)


# --- components ----------------------------------------------------------------------------------

def test_llama3_rope_scaling_follows_the_three_bands():
    shape = SHAPES["llama3-8b"]
    scaled = rope_inv_freq(shape).double()
    plain = rope_inv_freq(dataclasses.replace(shape, rope_scaling=None)).double()
    wavelen = 2 * math.pi / plain
    s = shape.rope_scaling
    high = wavelen < s.original_max_position_embeddings / s.high_freq_factor
    low = wavelen > s.original_max_position_embeddings / s.low_freq_factor
    assert high.any() and low.any() and (~high & ~low).any()
    torch.testing.assert_close(scaled[high], plain[high])
    torch.testing.assert_close(scaled[low], plain[low] / s.factor)
    mid = ~high & ~low
    assert bool(((scaled[mid] < plain[mid]) & (scaled[mid] > plain[mid] / s.factor)).all())


def test_rope_scores_depend_only_on_relative_position():
    from aifbench.models.llama import rope_tables

    cos, sin = rope_tables(TINY, 64)
    q, k = torch.randn(1, 1, 1, TINY.head_dim), torch.randn(1, 1, 1, TINY.head_dim)

    def score(m, n):
        return (apply_rope(q, cos[m:m + 1], sin[m:m + 1]) * apply_rope(k, cos[n:n + 1], sin[n:n + 1])).sum()

    torch.testing.assert_close(score(10, 3), score(40, 33), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(score(10, 3), score(10, 4))
    torch.testing.assert_close(apply_rope(q, cos[7:8], sin[7:8]).norm(), q.norm())


def test_gqa_attention_equals_explicit_head_repetition():
    q = torch.randn(2, 8, 10, 16)
    k, v = torch.randn(2, 2, 10, 16), torch.randn(2, 2, 10, 16)
    kr, vr = k.repeat_interleave(4, 1), v.repeat_interleave(4, 1)
    scores = (q @ kr.transpose(-1, -2)) / 4.0
    scores = scores.masked_fill(torch.ones(10, 10, dtype=torch.bool).triu(1), float("-inf"))
    reference = F.softmax(scores, -1) @ vr
    torch.testing.assert_close(causal_attention(q, k, v), reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [TINY, TIED], ids=["untied", "tied"])
def test_prefill_then_decode_matches_the_full_forward(shape):
    model = build_model(shape, max_seq_len=40, seed=3)
    tokens = torch.randint(shape.vocab_size, (3, 30), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        full = model(tokens)
        model.setup_cache(3, 30)
        got = [model.prefill(tokens[:, :24])]
        got += [model.decode(tokens[:, i:i + 1], torch.tensor([i])) for i in range(24, 30)]
    torch.testing.assert_close(torch.stack(got, 1), full[:, 23:], rtol=1e-4, atol=1e-4)
    # decode must use the position it is given: a wrong one changes the logits
    with torch.inference_mode():
        model.prefill(tokens[:, :24])
        wrong = model.decode(tokens[:, 24:25], torch.tensor([25]))
    assert (wrong - full[:, 24]).abs().max() > 1e-2


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_config_json_round_trips_every_named_shape(name):
    from aifbench.models.hf_reference import config_json
    from aifbench.models.shapes import shape_from_dict

    assert _numbers(shape_from_dict(config_json(SHAPES[name]), name="x", source="x")) == _numbers(SHAPES[name])


@pytest.mark.parametrize("shape", [TINY, TIED], ids=["untied", "tied"])
def test_logits_equal_transformers_llama_with_the_same_weights(shape):
    """aifbench's decoder is Llama: transformers' LlamaForCausalLM (sdpa) holding the same weights
    gives the same logits, past the 64 original positions of tiny's llama3 RoPE scaling."""
    pytest.importorskip("transformers")
    from aifbench.models import hf_reference

    ours, hf = build_model(shape, seed=5), hf_reference.build(shape, seed=5)
    tokens = torch.randint(shape.vocab_size, (2, 100), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(input_ids=tokens).logits
        torch.testing.assert_close(ours(tokens), expected, rtol=1e-4, atol=1e-4)
        targets = torch.roll(tokens, -1, 1)
        torch.testing.assert_close(hf_reference.loss_fn(hf)(tokens, targets), ours(tokens, targets))


def test_init_is_seeded_and_builds_in_the_requested_dtype():
    a, b = build_model(TINY, seed=1), build_model(TINY, seed=1)
    c = build_model(TINY, seed=2, dtype=torch.bfloat16)
    assert torch.equal(a.layers[0].attention.wqkv.weight, b.layers[0].attention.wqkv.weight)
    assert c.layers[0].attention.wqkv.weight.dtype == torch.bfloat16 and c.rope_cos.dtype == torch.float32
    assert not torch.equal(a.layers[0].attention.wqkv.weight, c.layers[0].attention.wqkv.weight.float())


# --- FLOPs ---------------------------------------------------------------------------------------

def _count(fn) -> tuple[int, dict]:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops(), {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}


def test_training_flops_match_flop_counter_mode():
    """FlopCounterMode counts the matmuls; SDPA counts 0 on CPU (DESIGN §5), so attention is
    analytic. Forcing the MATH backend decomposes SDPA into bmm, which the counter does see:
    then the counter must equal the PaLM formula minus only the norm weights (not matmuls)."""
    b, t = 2, 32
    model = build_model(TINY, max_seq_len=t)
    x, y = torch.randint(256, (b, t)), torch.randint(256, (b, t))
    p = flops.param_count(TINY)

    total, by_op = _count(lambda: model(x, y).backward())
    assert total == 6 * p.matmul * b * t  # every linear, forward + 2x backward, nothing else
    with sdpa_kernel(SDPBackend.MATH):
        total_math, by_op = _count(lambda: model(x, y).backward())
    attention = 3 * flops.attention_flops_per_token(TINY, t) * b * t
    assert by_op["aten.bmm"] == attention
    assert total_math == (flops.train_flops_per_token(TINY, t) - 6 * p.norms) * b * t


def test_forward_flops_match_flop_counter_mode():
    b, t = 2, 24
    model = build_model(TINY, max_seq_len=t)
    x = torch.randint(256, (b, t))
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        total, _ = _count(lambda: model(x))
    assert total == (flops.forward_flops_per_token(TINY, t) - 2 * flops.param_count(TINY).norms) * b * t


def test_decode_bytes_count_every_weight_once_and_the_kv_of_the_context():
    s = SHAPES["llama3-8b"]
    p = flops.param_count(s)
    got = flops.decode_bytes_per_step(s, batch=1, context_len=1000)
    kv = 2 * s.num_layers * s.kv_dim * 1000 * 2
    assert got == 2 * (p.stored - p.embedding + s.hidden_size) + kv
    tied = SHAPES["llama3-1b"]  # tied: the embedding table is the lm_head and is read in full
    assert flops.decode_bytes_per_step(tied, batch=1, context_len=0) == 2 * (flops.param_count(tied).stored
                                                                             + tied.hidden_size)


def test_decode_roofline_of_llama3_8b_on_h100():
    """The figure operators compare with: 15.01 GB of weights per step, 4.48 ms at 3350 GB/s."""
    weights = flops.decode_weight_bytes(SHAPES["llama3-8b"], batch=1)
    assert weights == 15_009_857_536
    assert 3350e9 / weights == pytest.approx(223.19, abs=0.01)


def test_memory_estimates_shrink_with_sharding_and_checkpointing():
    s = SHAPES["llama3-8b"]
    one = flops.train_memory_bytes(s, micro_batch=1, seq_len=4096)
    assert one > 16 * flops.param_count(s).stored
    sharded = flops.train_memory_bytes(s, micro_batch=1, seq_len=4096, world_size=8)
    assert one - sharded == 16 * flops.param_count(s).stored - 16 * flops.param_count(s).stored // 8
    assert flops.train_memory_bytes(s, micro_batch=1, seq_len=4096, checkpointing=True) < one
    assert flops.infer_memory_bytes(s, batch=1, prompt_len=128, gen_tokens=128) > 2 * flops.param_count(s).stored


@pytest.mark.parametrize("shape", [TINY, TIED], ids=["untied", "tied"])
def test_weights_load_from_the_unfused_transformers_layout(shape):
    """load_from_hf fuses q/k/v and gate/up rows back: a model filled from transformers' layout
    holds exactly the weights it came from and gives the same logits."""
    pytest.importorskip("transformers")
    from aifbench.models import hf_reference

    source, hf = build_model(shape, seed=5), hf_reference.build(shape, seed=5)
    target = build_model(shape, seed=6)
    hf_reference.load_from_hf(hf, target)
    for (name, a), (_, b) in zip(source.named_parameters(), target.named_parameters()):
        assert torch.equal(a, b), name
    tokens = torch.randint(shape.vocab_size, (1, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(target(tokens), hf(input_ids=tokens).logits, rtol=1e-4, atol=1e-4)


def test_transformers_reference_builds_in_the_requested_dtype():
    pytest.importorskip("transformers")
    from aifbench.models import hf_reference

    hf = hf_reference.build(TINY, seed=5, dtype=torch.bfloat16)
    ours = build_model(TINY, seed=5, dtype=torch.bfloat16)
    assert hf.model.embed_tokens.weight.dtype == torch.bfloat16
    q = ours.layers[0].attention.wqkv.weight[:TINY.q_dim]
    assert torch.equal(hf.model.layers[0].self_attn.q_proj.weight, q)
