"""Hugging Face transformers' LlamaForCausalLM for a LlamaShape, holding aifbench's own weights.

The reference implementation two things lean on:
  - llm_train's `reference = "transformers"` option times the transformers model on the same
    shape, weights, batch, precision and optimizer, in the same case (a side by side);
  - tests/unit/models/test_llama.py proves aifbench.models.llama computes what transformers computes: with
    the weights copied, the logits agree to fp32 rounding (RoPE convention and Llama 3 scaling,
    GQA, RMSNorm, SwiGLU, tied and untied heads).
The transformers config is built the way transformers reads a published config.json
(`LlamaConfig.from_dict`), so the same code works with transformers 4.x (rope_theta,
rope_scaling) and 5.x (rope_parameters). transformers is optional (extra `aifbench[reference]`)
and imported lazily: never by `import aifbench`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from aifbench.models.llama import _unwrap, build_model
from aifbench.models.shapes import LlamaShape

INSTALL_HINT = "pip install 'aifbench[reference]' (transformers)"


def unavailable_reason() -> str | None:
    """Why the transformers reference cannot run in this environment, or None."""
    try:
        from transformers import LlamaConfig, LlamaForCausalLM  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install raising anything else
        return f"reference transformers not importable ({type(exc).__name__}: {exc}); {INSTALL_HINT}"
    return None


def version() -> str:
    import transformers

    return transformers.__version__


def config_json(shape: LlamaShape) -> dict[str, Any]:
    """The shape as the fields of a published Llama config.json (inverse of shapes.shape_from_dict)."""
    rope: dict[str, Any] | None = None
    if shape.rope_scaling is not None:
        s = shape.rope_scaling
        rope = {"rope_type": "llama3", "factor": s.factor, "low_freq_factor": s.low_freq_factor,
                "high_freq_factor": s.high_freq_factor,
                "original_max_position_embeddings": s.original_max_position_embeddings}
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
            "vocab_size": shape.vocab_size, "hidden_size": shape.hidden_size,
            "intermediate_size": shape.intermediate_size, "num_hidden_layers": shape.num_layers,
            "num_attention_heads": shape.num_heads, "num_key_value_heads": shape.num_kv_heads,
            "head_dim": shape.head_dim, "max_position_embeddings": shape.max_position_embeddings,
            "rope_theta": shape.rope_theta, "rope_scaling": rope, "rms_norm_eps": shape.rms_norm_eps,
            "tie_word_embeddings": shape.tie_word_embeddings, "attention_bias": False, "mlp_bias": False,
            "use_cache": False}


def build(shape: LlamaShape, *, device: str | torch.device = "cpu", seed: int = 0,
          max_seq_len: int | None = None, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """LlamaForCausalLM (attn_implementation 'sdpa') in `dtype` with the weights aifbench's
    build_model(shape, seed=seed, dtype=dtype) has: the two implementations start from one model.
    Both are built in `dtype` directly (no transient fp32 copy of a big model)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_dict(config_json(shape))
    dtype_kw = "dtype" if int(version().split(".")[0]) >= 5 else "torch_dtype"
    with torch.device(device):
        hf = LlamaForCausalLM._from_config(config, attn_implementation="sdpa", **{dtype_kw: dtype})
    ours = build_model(shape, device=device, seed=seed, max_seq_len=max_seq_len, dtype=dtype)
    copy_weights(ours, hf)
    return hf


@torch.no_grad()
def copy_weights(ours: torch.nn.Module, hf: torch.nn.Module) -> None:
    """Copy aifbench Llama weights into a LlamaForCausalLM of the same shape.

    aifbench fuses q/k/v (`wqkv`, rows q | k | v) and gate/up (`w13`, rows gate | up); both use
    the rotate-half RoPE layout of transformers' checkpoints, so no row permutation is needed.
    """
    shape = ours.shape
    split_qkv = [shape.q_dim, shape.kv_dim, shape.kv_dim]
    hf.model.embed_tokens.weight.copy_(ours.tok_embeddings.weight)
    for mine, theirs in zip(ours.layers, hf.model.layers):
        mine = _unwrap(mine)
        q, k, v = mine.attention.wqkv.weight.split(split_qkv, dim=0)
        attn, mlp = theirs.self_attn, theirs.mlp
        for target, source in ((attn.q_proj, q), (attn.k_proj, k), (attn.v_proj, v),
                               (attn.o_proj, mine.attention.wo.weight),
                               (mlp.down_proj, mine.feed_forward.w2.weight)):
            target.weight.copy_(source)
        gate, up = mine.feed_forward.w13.weight.chunk(2, dim=0)
        mlp.gate_proj.weight.copy_(gate)
        mlp.up_proj.weight.copy_(up)
        theirs.input_layernorm.weight.copy_(mine.attention_norm.weight)
        theirs.post_attention_layernorm.weight.copy_(mine.ffn_norm.weight)
    hf.model.norm.weight.copy_(ours.norm.weight)
    if shape.tie_word_embeddings:
        assert hf.lm_head.weight is hf.model.embed_tokens.weight, "transformers did not tie lm_head"
    else:
        hf.lm_head.weight.copy_(ours.lm_head.weight)


def loss_fn(hf: torch.nn.Module) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """(tokens, targets) -> mean next-token cross entropy in fp32, as aifbench's training loss:
    the logits of every position against the given targets (no label shifting inside)."""

    def loss(tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = hf(input_ids=tokens, use_cache=False).logits
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())

    return loss


@torch.no_grad()
def load_from_hf(hf: torch.nn.Module, ours: torch.nn.Module) -> None:
    """The inverse of copy_weights: fill an aifbench Llama from a LlamaForCausalLM (unfused
    q/k/v and gate/up projections, as in published checkpoints) by concatenating the rows
    into the fused `wqkv` (q | k | v) and `w13` (gate | up) weights."""
    ours.tok_embeddings.weight.copy_(hf.model.embed_tokens.weight)
    for mine, theirs in zip(ours.layers, hf.model.layers):
        mine, attn, mlp = _unwrap(mine), theirs.self_attn, theirs.mlp
        mine.attention.wqkv.weight.copy_(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
        mine.attention.wo.weight.copy_(attn.o_proj.weight)
        mine.feed_forward.w13.weight.copy_(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]))
        mine.feed_forward.w2.weight.copy_(mlp.down_proj.weight)
        mine.attention_norm.weight.copy_(theirs.input_layernorm.weight)
        mine.ffn_norm.weight.copy_(theirs.post_attention_layernorm.weight)
    ours.norm.weight.copy_(hf.model.norm.weight)
    if not ours.shape.tie_word_embeddings:
        ours.lm_head.weight.copy_(hf.lm_head.weight)
