"""llm_infer's latency and token rates against numpy on the raw samples the same measurement
kept: itl_s p50/p90/p99 are percentiles of every inter-token time; prefill and decode rates
are tokens / median time."""

from __future__ import annotations

import numpy as np
import pytest

from aifbench.benchmarks.base import Context
from aifbench.benchmarks.llm_infer import LlmInfer, LlmInferConfig
from aifbench.timing import Timer, TimingConfig


@pytest.fixture(scope="module")
def measured():
    b = LlmInfer(LlmInferConfig(model="tiny", prompt_len=8, gen_tokens=6, batch_size=3, dtype="fp32"), Context())
    b.setup()
    out = b.measure(Timer("cpu", TimingConfig(warmup=1, repeats=4)))
    return {(m.metric, m.stat): m.value for m in out.metrics}, out.samples


def test_inter_token_latency_percentiles(measured):
    rows, samples = measured
    itl = samples["itl_s"]
    assert len(itl) == 4 * 6  # every decode step of every timed generation
    for q in (50, 90, 99):
        assert rows["itl_s", f"p{q}"] == pytest.approx(float(np.percentile(itl, q)))


def test_token_rates_over_the_median_times(measured):
    rows, samples = measured
    assert rows["prefill_tokens_per_s", "median"] == pytest.approx(3 * 8 / float(np.median(samples["ttft_s"])))
    decode_s = float(np.median(samples["decode_time_s"]))
    assert rows["decode_tokens_per_s", "median"] == pytest.approx(3 * 6 / decode_s)
    assert rows["decode_tokens_per_s_per_seq", "median"] == pytest.approx(6 / decode_s)
