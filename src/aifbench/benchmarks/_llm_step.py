"""The training step shared by llm_train and its fp8 check (_llm_fp8): one optimizer step over
micro-batches, and the AdamW both use. A leading underscore keeps the registry from importing
this module as a benchmark.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)
CHECK_STEPS = 3
"""optimizer steps of llm_train's loss check, of its reference's, and of the fp8 model's bf16 twin"""


def train_step(loss_fn, batches, optimizer, autocast, before_micro=None) -> torch.Tensor:
    """One optimizer step: forward + backward of every micro-batch (x, y) under autocast(), then
    the update; returns the mean micro-batch loss (a device tensor, no host sync)."""
    total = None
    for i, (x, y) in enumerate(batches):
        if before_micro is not None:
            before_micro(i)
        with autocast():
            loss = loss_fn(x, y)
        (loss / len(batches)).backward()
        total = loss.detach() if total is None else total + loss.detach()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total / len(batches)


def adamw(model, lr: float, cuda: bool) -> torch.optim.Optimizer:
    """AdamW (betas 0.9, 0.95, weight decay 0.1); the fused CUDA kernel where available."""
    kwargs = dict(lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    if cuda:
        try:
            return torch.optim.AdamW(model.parameters(), fused=True, **kwargs)
        except (RuntimeError, TypeError) as exc:
            log.info("fused AdamW unavailable (%s); using foreach", exc)
    return torch.optim.AdamW(model.parameters(), foreach=True, **kwargs)
