"""A Llama-3-style decoder in plain torch: RMSNorm, RoPE (with Llama 3 scaling), SwiGLU, GQA, KV cache.

Written from the published architecture (Touvron et al. 2023; Llama 3 herd paper, 2024) and the
field meanings of Hugging Face's LlamaConfig; no code is taken from either. Layout choices for
speed, none of which change the parameter count or the maths:
  - q/k/v are one fused projection (`wqkv`) and gate/up are one (`w13`): one GEMM instead of three/two;
  - RoPE rotates the two halves of each head (HF's "rotate_half" convention);
  - attention goes through F.scaled_dot_product_attention: causal with `enable_gqa` for training
    and prefill (flash attention on GPU), and for one-token decode the query heads of each KV group
    are folded into the query-length axis, so no backend has to expand K/V;
  - decode may attend over only the filled part of the static cache (`kv_len`, bucketed by
    decode_window()) and fuse the greedy argmax into the step (`decode_greedy`).
Three entry points: `forward(tokens)` (full causal pass, logits at every position), `prefill`
(fills the KV cache, logits of the last position) and `decode` (one token per sequence at a
position given as a tensor: static shapes, so torch.compile and CUDA graphs can capture it).
Weights are synthetic: seeded normal init, nothing is downloaded.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from aifbench.models.shapes import LlamaShape

def rope_inv_freq(shape: LlamaShape) -> torch.Tensor:
    """Inverse frequencies (head_dim/2,) in fp32, with Llama 3 scaling where the shape has it.

    Llama 3 scaling (rope_type 'llama3'): wavelengths longer than original_max / low_freq_factor
    are stretched by `factor`, shorter than original_max / high_freq_factor kept, and the band in
    between interpolated linearly in original_max / wavelength.
    """
    hd = shape.head_dim
    inv = 1.0 / (shape.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    s = shape.rope_scaling
    if s is not None:
        wavelen = 2 * math.pi / inv
        low_wavelen = s.original_max_position_embeddings / s.low_freq_factor
        high_wavelen = s.original_max_position_embeddings / s.high_freq_factor
        smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (
            s.high_freq_factor - s.low_freq_factor)
        interpolated = (1 - smooth) * inv / s.factor + smooth * inv
        inv = torch.where(wavelen > low_wavelen, inv / s.factor,
                          torch.where(wavelen < high_wavelen, inv, interpolated))
    return inv.float()


def rope_tables(shape: LlamaShape, positions: int, device: torch.device | str | None = None):
    """cos and sin tables (positions, head_dim), fp32, angles computed in fp32 as in HF."""
    inv = rope_inv_freq(shape).to(device)
    angles = torch.outer(torch.arange(positions, device=device, dtype=torch.float32), inv)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, T, heads, head_dim) by cos/sin (T or 1, head_dim), in x's dtype."""
    cos = cos.to(x.dtype)[:, None, :]
    sin = sin.to(x.dtype)[:, None, :]
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight, normalised in fp32."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return h.to(x.dtype) * self.weight


class Attention(nn.Module):
    """Grouped-query attention with an optional static KV cache (B, kv_heads, max_len, head_dim)."""

    def __init__(self, shape: LlamaShape):
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = shape.num_heads, shape.num_kv_heads, shape.head_dim
        self.wqkv = nn.Linear(shape.hidden_size, shape.q_dim + 2 * shape.kv_dim, bias=False)
        self.wo = nn.Linear(shape.q_dim, shape.hidden_size, bias=False)
        # buffers, so torch.compile treats them as module state mutated in place
        self.register_buffer("cache_k", None, persistent=False)
        self.register_buffer("cache_v", None, persistent=False)

    def forward(self, x, cos, sin, mode: str, input_pos=None, mask=None) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.wqkv(x).split([self.n_heads * self.head_dim, self.n_kv * self.head_dim,
                                      self.n_kv * self.head_dim], dim=-1)
        q = apply_rope(q.view(b, t, self.n_heads, self.head_dim), cos, sin).transpose(1, 2)
        k = apply_rope(k.view(b, t, self.n_kv, self.head_dim), cos, sin).transpose(1, 2)
        v = v.view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        if mode == "decode":
            out = self._decode(q, k, v, input_pos, mask)
        else:
            if mode == "prefill":
                self.cache_k[:, :, :t] = k
                self.cache_v[:, :, :t] = v
            out = causal_attention(q, k, v)
        return self.wo(out.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim))

    def _decode(self, q, k, v, input_pos, mask) -> torch.Tensor:
        """One new token per sequence: write it to the cache, attend over the first mask.shape[-1]
        cache positions (the filled window; the whole cache by default) under `mask`."""
        self.cache_k.index_copy_(2, input_pos, k)
        self.cache_v.index_copy_(2, input_pos, v)
        window = mask.shape[-1]
        keys, values = self.cache_k[:, :, :window], self.cache_v[:, :, :window]
        b, group = q.shape[0], self.n_heads // self.n_kv
        # (B, H, 1, hd) -> (B, KV, G, hd): head h belongs to KV group h // G, as enable_gqa pairs them
        qg = q.reshape(b, self.n_kv, group, self.head_dim)
        out = F.scaled_dot_product_attention(qg, keys, values, attn_mask=mask)
        return out.reshape(b, self.n_heads, 1, self.head_dim)


_HAS_GQA = torch.__version__ >= "2.5"  # TorchVersion compares with strings


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal SDPA with fewer K/V heads than query heads (enable_gqa where torch has it, >= 2.5)."""
    if q.shape[1] == k.shape[1]:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if _HAS_GQA:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    rep = q.shape[1] // k.shape[1]
    return F.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1),
                                          is_causal=True)


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(x W1) * (x W3)), W1 and W3 fused into one projection `w13`."""

    def __init__(self, shape: LlamaShape):
        super().__init__()
        self.w13 = nn.Linear(shape.hidden_size, 2 * shape.intermediate_size, bias=False)
        self.w2 = nn.Linear(shape.intermediate_size, shape.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then + ffn(norm(.))."""

    def __init__(self, shape: LlamaShape):
        super().__init__()
        self.attention_norm = RMSNorm(shape.hidden_size, shape.rms_norm_eps)
        self.attention = Attention(shape)
        self.ffn_norm = RMSNorm(shape.hidden_size, shape.rms_norm_eps)
        self.feed_forward = FeedForward(shape)

    def forward(self, x, cos, sin, mode: str = "full", input_pos=None, mask=None) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin, mode, input_pos, mask)
        return h + self.feed_forward(self.ffn_norm(h))


class Llama(nn.Module):
    """The decoder. `max_seq_len` sizes the RoPE tables (and bounds prefill + decode)."""

    def __init__(self, shape: LlamaShape, max_seq_len: int | None = None):
        super().__init__()
        self.shape = shape.validate()
        self.max_seq_len = max_seq_len or shape.max_position_embeddings
        shape.check_positions(self.max_seq_len)
        self.tok_embeddings = nn.Embedding(shape.vocab_size, shape.hidden_size)
        self.layers = nn.ModuleList(Block(shape) for _ in range(shape.num_layers))
        self.norm = RMSNorm(shape.hidden_size, shape.rms_norm_eps)
        self.lm_head = nn.Linear(shape.hidden_size, shape.vocab_size, bias=False)
        if shape.tie_word_embeddings:
            self.lm_head.weight = self.tok_embeddings.weight
        cos, sin = rope_tables(shape, self.max_seq_len, device=self.tok_embeddings.weight.device)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.activation_checkpointing = False
        self.head_loss = self._head_loss  # replaced by a compiled version in compile_parts()

    # --- weights ------------------------------------------------------------------------
    @torch.no_grad()
    def init_weights(self, seed: int = 0) -> None:
        """Seeded synthetic weights, N(0, 1/fan_in) for every matrix (embedding rows: 1/d), norms 1.

        Unit-variance ("LeCun") scaling keeps every sublayer's output at the size of the
        residual stream and attention scores at about unit spread, so attention shapes the
        logits as it does in a trained model. Then the decode-vs-full-forward check sees a wrong
        position, mask or cache entry well above bf16 rounding; with GPT-style N(0, 0.02) the
        attention contribution is too small to tell apart. Speed does not depend on the values.

        Works on plain tensors and on FSDP2-sharded DTensors (each rank fills its shard from
        its own generator; the caller passes seed + rank there). Also rebuilds the fp32 RoPE
        tables, so a model created on the meta device and materialised with `to_empty()` is
        complete afterwards.
        """
        if self.shape.tie_word_embeddings and self.lm_head.weight is not self.tok_embeddings.weight:
            self.lm_head.weight = self.tok_embeddings.weight  # keep the tie if to_empty() broke it
        device = self.rope_cos.device
        gen = torch.Generator(device=device).manual_seed(seed)
        for name, p in self.named_parameters():
            local = p.to_local() if hasattr(p, "to_local") else p
            if name.endswith("norm.weight"):
                local.fill_(1.0)
            else:  # nn.Linear weights are (out, in); the embedding table is (vocab, d)
                _normal_(local, p.shape[-1] ** -0.5, gen)
        self.rope_cos, self.rope_sin = rope_tables(self.shape, self.max_seq_len, device=device)

    # --- passes -------------------------------------------------------------------------
    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Full causal pass over tokens (B, T) without cache: logits (B, T, vocab), or with
        `targets` (B, T) the mean next-token cross entropy in fp32 (the training loss).

        Training calls this (not a separate method) so FSDP2's forward hooks run on the root."""
        h = self.hidden(tokens)
        if targets is not None:
            return self.head_loss(h, targets)
        return self.lm_head(self.norm(h))

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final hidden states (B, T, d) before the last norm; activation checkpointing per block."""
        t = tokens.shape[1]
        cos, sin = self.rope_cos[:t], self.rope_sin[:t]
        x = self.tok_embeddings(tokens)
        for layer in self.layers:
            if self.activation_checkpointing and torch.is_grad_enabled():
                x = checkpoint(layer, x, cos, sin, use_reentrant=False)
            else:
                x = layer(x, cos, sin)
        return x

    def _head_loss(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.lm_head(self.norm(h))
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())

    def compile_parts(self, backend: str = "inductor", mode: str | None = None) -> None:
        """torch.compile each block and the head+loss separately (as torchtitan does): small
        graphs, compatible with activation checkpointing and FSDP2's per-block sharding."""
        for i, layer in enumerate(self.layers):
            self.layers[i] = torch.compile(layer, backend=backend, mode=mode)
        self.head_loss = torch.compile(self._head_loss, backend=backend, mode=mode)

    # --- KV cache -----------------------------------------------------------------------
    def setup_cache(self, batch_size: int, max_len: int, dtype: torch.dtype | None = None,
                    pad_to: int = 64) -> None:
        """Allocate a static KV cache (B, kv_heads, L, head_dim) in every layer, L = max_len rounded
        up to a multiple of `pad_to` (aligned rows for the attention kernels; the surplus is masked)."""
        self.shape.check_positions(max_len, "cache length")
        if max_len > self.max_seq_len:
            raise ValueError(f"cache length {max_len} > max_seq_len {self.max_seq_len} of this model")
        weight = self.tok_embeddings.weight
        dtype = dtype or weight.dtype
        alloc = -(-max_len // pad_to) * pad_to
        size = (batch_size, self.shape.num_kv_heads, alloc, self.shape.head_dim)
        for layer in self.layers:
            attn = _unwrap(layer).attention
            attn.cache_k = torch.zeros(size, dtype=dtype, device=weight.device)
            attn.cache_v = torch.zeros(size, dtype=dtype, device=weight.device)
        self.register_buffer("cache_positions", torch.arange(alloc, device=weight.device), persistent=False)

    def clear_cache(self) -> None:
        for layer in self.layers:
            attn = _unwrap(layer).attention
            attn.cache_k = attn.cache_v = None

    def prefill(self, tokens: torch.Tensor) -> torch.Tensor:
        """Write positions 0..T-1 of the cache from a prompt (B, T); logits of the last position (B, V)."""
        t = tokens.shape[1]
        x = self.tok_embeddings(tokens)
        # no autocast when serving: q and k have x's dtype, so the tables are cast once, not per layer
        cos, sin = self.rope_cos[:t].to(x.dtype), self.rope_sin[:t].to(x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin, "prefill")
        return self.lm_head(self.norm(x[:, -1]))

    def decode(self, tokens: torch.Tensor, input_pos: torch.Tensor, kv_len: int | None = None) -> torch.Tensor:
        """One token per sequence (B, 1) at position input_pos (tensor of shape (1,)); logits (B, V).

        Attends over the first `kv_len` cache positions (default: the whole static cache) with a
        mask keeping positions <= input_pos. The position stays a device tensor and kv_len a host
        int chosen by the caller (bucketed, see decode_window), so a step has fixed shapes and no
        host synchronisation: what CUDA graphs and torch.compile need. kv_len must exceed input_pos.
        """
        mask = (self.cache_positions[:kv_len] <= input_pos).view(1, 1, 1, -1)
        x = self.tok_embeddings(tokens)
        cos, sin = self.rope_cos[input_pos].to(x.dtype), self.rope_sin[input_pos].to(x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin, "decode", input_pos, mask)
        return self.lm_head(self.norm(x[:, -1]))

    def decode_greedy(self, tokens: torch.Tensor, input_pos: torch.Tensor,
                      kv_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """decode() and the greedy next token in one call (one compiled graph, no extra launch):
        (next tokens (B, 1), logits (B, V))."""
        logits = self.decode(tokens, input_pos, kv_len)
        return logits.argmax(-1, keepdim=True), logits


def decode_window(position: int, window: int, cache_len: int) -> int | None:
    """Cache positions a decode step at `position` attends over: position + 1 rounded up to a
    multiple of `window`, at most cache_len; None (the whole cache) when window is 0.

    Buckets bound the number of distinct shapes (compiled graphs, CUDA graphs) to
    cache_len / window while reading at most window - 1 unfilled positions."""
    if window <= 0:
        return None
    return min(cache_len, -(-(position + 1) // window) * window)


def _unwrap(module: nn.Module) -> nn.Module:
    """The original module behind torch.compile's OptimizedModule."""
    return getattr(module, "_orig_mod", module)


def _normal_(t: torch.Tensor, std: float, gen: torch.Generator) -> None:
    """In-place N(0, std) from `gen`; drawn in fp32 and copied for low-precision tensors."""
    if t.dtype == torch.float32:
        t.normal_(0.0, std, generator=gen)
    else:
        t.copy_(torch.empty(t.shape, dtype=torch.float32, device=t.device).normal_(0.0, std, generator=gen))


def build_model(shape: LlamaShape, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                max_seq_len: int | None = None, seed: int = 0) -> Llama:
    """A model with synthetic weights on `device` in `dtype`.

    Big shapes are built on the meta device and materialised once, in `dtype`, so no transient
    fp32 copy exists; small ones (< 1 GiB in fp32) directly on the device, which skips the
    one-off cost (~1.5 s) of torch's meta-tensor decompositions.
    """
    from aifbench.models.flops import param_count

    small = param_count(shape).stored * 4 < 2**30
    with torch.device(device if small else "meta"):
        model = Llama(shape, max_seq_len).to(dtype)
    if not small:
        model.to_empty(device=device)
    model.init_weights(seed)  # also rebuilds the fp32 RoPE tables
    return model
