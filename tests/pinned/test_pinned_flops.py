"""FLOPs per token and MFU pinned by hand (PaLM appendix B: training 6N + 12 L d_attn T,
forward 2N + 4 L d_attn T), at 1 and at 2 ranks: model FLOPs per device use the tokens of
one device, never the global batch."""

from __future__ import annotations

import pytest

from aifbench.benchmarks.base import Context
from aifbench.benchmarks.llm_train import LlmTrain, LlmTrainConfig
from aifbench.models import flops
from aifbench.models.shapes import SHAPES
from aifbench.timing import summarize

# tiny (see test_pinned_bytes): N = 2 * (12288 + 30720) + 16384 + 320 = 102720, L = 2, d_attn = 64
TINY_TRAIN_F_T32 = 6 * 102720 + 12 * 2 * 64 * 32     # 616320 + 49152 = 665472 FLOP per token
# Llama 3 8B: N = 32 * 218103808 + 128256 * 4096 + 65 * 4096 = 7504924672, L = 32, d_attn = 4096
L8B_N = 7_504_924_672


def test_flops_per_token_by_hand():
    tiny, l8b = SHAPES["tiny"], SHAPES["llama3-8b"]
    assert flops.param_count(tiny).non_embedding == 102720
    assert flops.train_flops_per_token(tiny, 32) == TINY_TRAIN_F_T32 == 665472
    assert flops.forward_flops_per_token(tiny, 100) == 2 * 102720 + 4 * 2 * 64 * 100
    assert flops.param_count(l8b).non_embedding == L8B_N
    assert flops.train_flops_per_token(l8b, 8192) == 6 * L8B_N + 12 * 32 * 4096 * 8192


def _throughput(world_size: int, step_s: float = 0.5) -> dict:
    peak = lambda kind: (2.0, "test catalog") if kind == "tflops:bf16" else (None, "none")
    cfg = LlmTrainConfig(model="tiny", seq_len=32, micro_batch=2, dtype="fp32")
    b = LlmTrain(cfg, Context(world_size=world_size, peak_lookup=peak))  # the formulas only: nothing set up
    return {(m.metric, m.stat): m.value for m in b._throughput(summarize([step_s] * 3))}


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_tokens_model_flops_and_mfu_per_device(world_size):
    """micro_batch 2 x seq 32 = 64 tokens per device per step, step 0.5 s, bf16 peak 2 TFLOP/s."""
    r = _throughput(world_size)
    assert r["tokens_per_s", "median"] == pytest.approx(64 * world_size / 0.5)   # global
    assert r["tokens_per_s_per_device", "median"] == pytest.approx(128.0)         # 64 / 0.5, any world size
    tflops = TINY_TRAIN_F_T32 * 128.0 / 1e12                                      # 0.085180416 TFLOP/s
    assert r["model_tflops_per_device", "median"] == pytest.approx(tflops)
    assert r["mfu_pct", "median"] == pytest.approx(100 * tflops / 2.0)            # 4.2590208 %, not x world size


def test_mfu_is_the_same_at_one_and_two_ranks_for_the_same_per_device_work():
    one, two = _throughput(1), _throughput(2)
    assert two["mfu_pct", "median"] == pytest.approx(one["mfu_pct", "median"])
    assert two["tokens_per_s", "median"] == pytest.approx(2 * one["tokens_per_s", "median"])
