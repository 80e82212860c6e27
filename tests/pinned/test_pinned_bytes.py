"""Bytes behind every bandwidth figure, pinned by hand: STREAM (copy/scale move 2 arrays,
add/triad 3), host link (h2d, d2h: one buffer; bidir: both directions summed), busbw factors,
and the LLM decode roofline bytes. Timed with an injected clock, so rates are exact."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from aifbench.benchmarks.base import Context, rate_metrics
from aifbench.benchmarks.collectives import algbw_busbw, busbw_factor
from aifbench.benchmarks.hostlink import Hostlink, HostlinkConfig
from aifbench.benchmarks.llm_infer import LlmInfer, LlmInferConfig
from aifbench.benchmarks.membw import Membw, MembwConfig
from aifbench.models import flops
from aifbench.models.shapes import SHAPES
from aifbench.timing import Timer, TimingConfig, summarize


def microsecond_timer(repeats: int = 3) -> Timer:
    """Every sample lasts exactly 1 us: the clock advances 1000 ns per reading."""
    ticks = iter(range(0, 10**9, 1000))
    return Timer("cpu", TimingConfig(warmup=0, repeats=repeats), clock=lambda: next(ticks))


def rows(measurement) -> dict:
    return {(m.metric, m.stat): m for m in measurement.metrics}


def test_rate_is_work_over_the_median_and_best_is_work_over_the_fastest():
    stats = summarize([10.0, 3.0, 1.0, 4.0, 2.0])  # median 3 s, mean 4 s, min 1 s
    median, best = rate_metrics("gbps", 6e9, stats, 1e-9, (12.0, "test datasheet"))
    assert (median.stat, median.value, median.pct_of_peak) == ("median", pytest.approx(2.0), pytest.approx(100 / 6))
    assert (best.stat, best.value) == ("max", pytest.approx(6.0))


# 4096 B per array in 1 us: 2 arrays -> 8192 B / 1e-6 s = 8.192 GB/s; 3 arrays -> 12.288 GB/s
@pytest.mark.parametrize("op, gbps", [("copy", 8.192), ("scale", 8.192), ("add", 12.288), ("triad", 12.288)])
@pytest.mark.parametrize("dtype", ["fp32", "fp64"])
def test_stream_bytes_per_op(op, gbps, dtype):
    b = Membw(MembwConfig(size_bytes=4096, op=op, dtype=dtype), Context())
    b.setup()
    b.check()
    r = rows(b.measure(microsecond_timer()))
    assert r["gbps", "median"].value == pytest.approx(gbps)
    assert r["gbps", "max"].value == pytest.approx(gbps)  # every sample equal: best = median


# 1000 B per direction in 1 us: 1.0 GB/s one way; bidir moves both buffers: 2.0 GB/s
@pytest.mark.parametrize("direction, gbps", [("h2d", 1.0), ("d2h", 1.0), ("bidir", 2.0)])
def test_host_link_bytes_per_direction(direction, gbps):
    b = Hostlink(HostlinkConfig(direction=direction, size_bytes=1000), Context(device="cpu"))
    src = torch.arange(1000, dtype=torch.int32).to(torch.uint8)
    b.pairs = {d: (src, torch.zeros(1000, dtype=torch.uint8)) for d in b._directions()}  # injected: no GPU here
    b.call = lambda: [dst.copy_(s) for s, dst in b.pairs.values()]
    r = rows(b.measure(microsecond_timer()))
    assert r["link_gbps", "median"].value == pytest.approx(gbps)
    assert set(b.pairs) == ({"h2d", "d2h"} if direction == "bidir" else {direction})


# nccl-tests PERFORMANCE.md: all_reduce 2(n-1)/n; all_gather, reduce_scatter, all_to_all (n-1)/n;
# broadcast, reduce, send/recv 1
@pytest.mark.parametrize("op, n, factor", [
    ("all_reduce", 4, 1.5), ("all_reduce", 16, 1.875), ("all_gather", 8, 0.875), ("reduce_scatter", 2, 0.5),
    ("all_to_all", 4, 0.75), ("broadcast", 4, 1.0), ("send_recv", 2, 1.0)])
def test_busbw_factor_by_hand(op, n, factor):
    assert busbw_factor(op, n) == pytest.approx(factor)
    alg, bus = algbw_busbw(op, n, size_bytes=2e9, time_s=0.04)  # 2e9 B / 0.04 s = 50 GB/s
    assert alg == pytest.approx(50.0) and bus == pytest.approx(50.0 * factor)


# tiny: V=256 d=64 f=160 L=2, 4 heads x 16 (q_dim 64), 2 KV heads (kv_dim 32), untied
#   per layer: attention 64*(64+2*32) + 64*64 = 12288, MLP 3*64*160 = 30720; x2 layers
#   lm_head 256*64 = 16384, norms (2*2+1)*64 = 320, input embedding 256*64 = 16384
TINY_N = 2 * (12288 + 30720) + 16384 + 320     # 102720 non-embedding parameters
TINY_DECODE_WEIGHTS_BF16 = (TINY_N + 64) * 2   # every weight but the table, + 1 embedding row, 2 B each
TINY_KV_PER_POSITION_BF16 = 2 * 2 * 32 * 2     # K and V, 2 layers, kv_dim 32, 2 B


def test_roofline_bytes_of_tiny_by_hand():
    tiny = SHAPES["tiny"]
    assert flops.decode_weight_bytes(tiny, batch=1) == TINY_DECODE_WEIGHTS_BF16 == 205568
    assert flops.decode_weight_bytes(tiny, batch=3) == (TINY_N + 3 * 64) * 2
    assert flops.kv_cache_bytes(tiny, 1, 10) == 10 * TINY_KV_PER_POSITION_BF16
    assert flops.decode_bytes_per_step(tiny, batch=2, context_len=7) == (TINY_N + 2 * 64) * 2 + 2 * 7 * 256


def test_a_tied_table_is_read_in_full_as_the_lm_head():
    tied = dataclasses.replace(SHAPES["tiny"], tie_word_embeddings=True)
    assert flops.decode_weight_bytes(tied, batch=1) == (TINY_N + 64) * 2  # table once (as lm_head) + 1 row
    # Llama 3.2 1B, tied: d=2048, L=16, 32 x 64 query heads, 8 KV heads (kv_dim 512), f=8192, V=128256
    per_layer = 2048 * (2048 + 2 * 512) + 2048 * 2048 + 3 * 2048 * 8192
    stored = 16 * per_layer + 33 * 2048 + 128256 * 2048
    assert stored == 1_235_814_400  # the published 1.24 B parameters
    assert flops.decode_weight_bytes(SHAPES["llama3-1b"], batch=1) == (stored + 2048) * 2


def test_llama3_8b_decode_weight_bytes_by_hand():
    # Llama 3 8B: d=4096, L=32, 32 x 128 query heads, 8 KV heads (kv_dim 1024), f=14336, V=128256, untied
    per_layer = 4096 * (4096 + 2 * 1024) + 4096 * 4096 + 3 * 4096 * 14336
    n = 32 * per_layer + 128256 * 4096 + 65 * 4096
    assert n + 128256 * 4096 == 8_030_261_248  # the published 8.03 B parameters
    assert flops.decode_weight_bytes(SHAPES["llama3-8b"], batch=1) == (n + 4096) * 2


def test_decode_hbm_rate_and_roofline_by_hand():
    """tiny bf16, batch 1, prompt 4, 2 decode steps at context 5 and 6, 1 ms per generation, HBM peak 0.5 GB/s."""
    ctx = Context(peak_lookup=lambda kind: (0.5, "test datasheet") if kind == "hbm_gbps" else (None, "none"))
    b = LlmInfer(LlmInferConfig(model="tiny", batch_size=1, prompt_len=4, gen_tokens=2, dtype="bf16"), ctx)
    got = {(m.metric, m.stat): m.value for m in b._bandwidth_rows(summarize([1e-3, 1e-3, 1e-3]))}
    moved = 2 * TINY_DECODE_WEIGHTS_BF16 + (5 + 6) * TINY_KV_PER_POSITION_BF16  # 413952 B per generation
    assert got["hbm_gbps", "median"] == pytest.approx(moved / 1e-3 / 1e9)
    # roofline: weight bytes / peak per step, as % of the measured step: 100 * (205568 / 0.5e9) / (1e-3 / 2)
    assert got["decode_roofline_pct", "median"] == pytest.approx(82.2272)
