"""Analytic parameter, FLOP and memory counts of the Llama decoder (no torch needed).

FLOPs per token follow PaLM (Chowdhery et al. 2022, appendix B):
    training  = 6 * N + 12 * L * d_attn * T
    forward   = 2 * N +  4 * L * d_attn * T
N = non-embedding parameters: everything except the input token table. The output projection
(lm_head, V x d) stays in N even when tied to the embedding, because its matmul runs for every
token (torchtitan counts the same way). L = layers, d_attn = heads * head_dim, T = sequence (or
context) length. The attention term counts QK^T and AV over the full T x T square (no causal
halving), as PaLM does. Activation recomputation is never counted (model FLOPs, not hardware
FLOPs). Every matmul costs 2 FLOPs per multiply-add; backward is twice forward.

Memory estimates are deliberately rough (documented per term) and only decide "does not fit:
skip"; they never become metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

from aifbench.models.shapes import LlamaShape


@dataclass(frozen=True, slots=True)
class ParamCount:
    """Parameters by role. `stored` is what sits in memory (a tied lm_head is not stored twice)."""

    embedding: int
    lm_head: int
    attention: int
    mlp: int
    norms: int
    tied: bool

    @property
    def matmul(self) -> int:
        """weights that take part in a matmul for every token: attention, MLP, lm_head"""
        return self.attention + self.mlp + self.lm_head

    @property
    def non_embedding(self) -> int:
        """PaLM's N: all but the input token table (the lm_head counts even when tied)"""
        return self.matmul + self.norms

    @property
    def stored(self) -> int:
        return self.embedding + self.attention + self.mlp + self.norms + (0 if self.tied else self.lm_head)


def param_count(shape: LlamaShape) -> ParamCount:
    """Exact parameter counts of aifbench.models.llama.Llama for `shape`."""
    d, L = shape.hidden_size, shape.num_layers
    attn = d * (shape.q_dim + 2 * shape.kv_dim) + shape.q_dim * d
    mlp = 3 * d * shape.intermediate_size
    return ParamCount(embedding=shape.vocab_size * d, lm_head=shape.vocab_size * d, attention=L * attn,
                      mlp=L * mlp, norms=(2 * L + 1) * d, tied=shape.tie_word_embeddings)


def attention_flops_per_token(shape: LlamaShape, seq_len: int) -> int:
    """Forward FLOPs of QK^T and AV for one token attending over seq_len positions: 4 * L * d_attn * T."""
    return 4 * shape.num_layers * shape.q_dim * seq_len


def train_flops_per_token(shape: LlamaShape, seq_len: int) -> int:
    """Model FLOPs of forward + backward per trained token: 6 * N + 12 * L * d_attn * T (PaLM B)."""
    return 6 * param_count(shape).non_embedding + 3 * attention_flops_per_token(shape, seq_len)


def forward_flops_per_token(shape: LlamaShape, context_len: int) -> int:
    """Model FLOPs of a forward pass per token at context length T: 2 * N + 4 * L * d_attn * T."""
    return 2 * param_count(shape).non_embedding + attention_flops_per_token(shape, context_len)


# --- memory --------------------------------------------------------------------------------

BF16_BYTES = 2


def kv_cache_bytes(shape: LlamaShape, batch: int, positions: int, dtype_bytes: int = BF16_BYTES) -> int:
    """K and V of every layer for batch x positions tokens."""
    return 2 * shape.num_layers * shape.kv_dim * batch * positions * dtype_bytes


def train_memory_bytes(shape: LlamaShape, *, micro_batch: int, seq_len: int, world_size: int = 1,
                       checkpointing: bool = False, mixed_precision: bool = True) -> int:
    """Rough peak device memory of one training step with fp32 master weights and AdamW.

    - weights + grads + AdamW m, v: 16 bytes per stored parameter, divided by world_size (FSDP);
    - saved activations per token and layer, bf16 (fp32 residual): about 2*(11 d + 4 kv_dim + 6 f)
      bytes (norm inputs/outputs, qkv, rope'd q/k, attention output, SwiGLU gate/up/product);
      with activation checkpointing only the block input (4 d) per layer plus one layer's full set;
    - logits: bf16 output, fp32 copy for the loss, fp32 gradient: 10 bytes per token and vocab entry.
    """
    p = param_count(shape)
    tokens = micro_batch * seq_len
    act_bytes = 1 if mixed_precision else 2
    d, f, kv = shape.hidden_size, shape.intermediate_size, shape.kv_dim
    per_layer = 2 * act_bytes * (11 * d + 4 * kv + 6 * f)
    if checkpointing:
        activations = tokens * (4 * d * shape.num_layers + per_layer)
    else:
        activations = tokens * per_layer * shape.num_layers
    logits = tokens * shape.vocab_size * (10 if mixed_precision else 12)
    return 16 * p.stored // max(world_size, 1) + activations + logits


def infer_memory_bytes(shape: LlamaShape, *, batch: int, prompt_len: int, gen_tokens: int,
                       dtype_bytes: int = BF16_BYTES) -> int:
    """Rough peak device memory of prefill + decode: weights, KV cache, and the prefill transients
    (qkv, SwiGLU gate/up/product and residual of one layer for the whole prompt; fp32 logits)."""
    p = param_count(shape)
    tokens = batch * prompt_len
    d, f = shape.hidden_size, shape.intermediate_size
    transient = tokens * dtype_bytes * (shape.q_dim + 2 * shape.kv_dim + 4 * f + 3 * d)
    return (p.stored * dtype_bytes + kv_cache_bytes(shape, batch, prompt_len + gen_tokens, dtype_bytes)
            + transient + batch * shape.vocab_size * 4)


def decode_weight_bytes(shape: LlamaShape, *, batch: int, dtype_bytes: int = BF16_BYTES) -> int:
    """Weight bytes one decode step must read: every weight once, the input embedding table only
    its `batch` rows (a tied table is the lm_head, so it is read in full). The numerator of the
    HBM weight-streaming roofline: no decode step can be shorter than this / HBM bandwidth."""
    p = param_count(shape)
    weights = p.stored - p.embedding + (p.embedding if shape.tie_word_embeddings else 0)
    return (weights + batch * shape.hidden_size) * dtype_bytes


def decode_bytes_per_step(shape: LlamaShape, *, batch: int, context_len: int,
                          dtype_bytes: int = BF16_BYTES) -> int:
    """HBM bytes one decode step must read: decode_weight_bytes plus the K and V of `context_len`
    positions for each sequence."""
    return (decode_weight_bytes(shape, batch=batch, dtype_bytes=dtype_bytes)
            + kv_cache_bytes(shape, batch, context_len, dtype_bytes))
