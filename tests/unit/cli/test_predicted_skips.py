"""`aifbench run` predicts skips from what the run will have (ranks, torch.distributed), not from
a skip message's text."""

from __future__ import annotations

from pathlib import Path

from aifbench.cli.run import predicted_skips
from aifbench.config import load_suite

SUITE = """
[suite]
name = "predict"
[[case]]
benchmark = "collectives"
params = { op = "all_reduce", size_bytes = 4096 }
[[case]]
benchmark = "llm_train"
params = { model = "tiny", seq_len = 32, micro_batch = 1, dtype = "fp32", reference = "transformers" }
"""


def test_two_ranks_predict_collectives_run_and_a_reference_under_fsdp_skips(tmp_path: Path):
    path = tmp_path / "s.toml"
    path.write_text(SUITE)
    suite = load_suite(str(path))
    one = predicted_skips(suite, "cpu", 1)
    assert one[0] is not None and "at least 2 ranks" in one[0]
    two = predicted_skips(suite, "cpu", 2)
    assert two[0] is None  # torch.distributed will be initialised across the 2 ranks
    assert two[1] is not None and "without --nproc/FSDP" in two[1]
