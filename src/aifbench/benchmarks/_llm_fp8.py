"""llm_train's dtype "fp8": the bf16 run it is compared with (aifbench.models.fp8 does the conversion).

Before the fp8 model is built, the same model (same seed, hence the same weights) trains in bf16
autocast for _llm_step.CHECK_STEPS steps on the same batches with the same AdamW; check() then
requires the fp8 model's losses over those steps to stay within fp8.LOSS_TOLERANCE of these.
The bf16 steps run eagerly (no torch.compile: compiling changes rounding, not the maths) and
are not timed; the model is freed before the fp8 one is built.
"""

from __future__ import annotations

import gc

import torch

from aifbench.benchmarks._llm_step import CHECK_STEPS, adamw, train_step


def bf16_losses(bench) -> list[float]:
    """Losses of CHECK_STEPS bf16 optimizer steps of bench's model and batches (floats)."""
    from aifbench.models.llama import build_model

    c, dev = bench.config, bench.ctx.device
    model = build_model(bench.shape, device=dev, max_seq_len=c.seq_len, seed=c.seed)
    model.activation_checkpointing = c.activation_checkpointing
    model.train()
    optimizer = adamw(model, c.lr, bench.ctx.is_cuda)

    def autocast():
        return torch.autocast(device_type="cuda" if bench.ctx.is_cuda else "cpu", dtype=torch.bfloat16)

    losses = [train_step(model, bench.batches, optimizer, autocast).item() for _ in range(CHECK_STEPS)]
    del model, optimizer
    gc.collect()
    if bench.ctx.is_cuda:
        torch.cuda.empty_cache()
    return losses
