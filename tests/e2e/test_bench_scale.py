"""scripts/bench/bench_scale.py end to end at a tiny size: a replica generated, the commands timed
on the loose run, node-level compaction, the merge, and the commands again on the compacted run,
given relative paths (its commands run in the work directory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "bench" / "bench_scale.py"
SEED = REPO / "results" / "reference" / "20261204T182739Z-gpu-kernels-f495fd"


def test_every_state_of_a_tiny_run_is_timed_with_relative_paths(tmp_path):
    seed = Path(os.path.relpath(SEED, tmp_path))
    p = subprocess.run([sys.executable, str(SCRIPT), "--seed", str(seed), "--work", "work", "--ranks", "8",
                        "--states", "loose,nodes,compacted", "--repeat", "1", "--only", "show,validate",
                        "--out", "out/b.json"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    assert p.returncode == 0, p.stderr[-2000:]
    size = json.loads((tmp_path / "out" / "b.json").read_text())["sizes"][0]
    assert size["ranks"] == 8 and size["generated_as"] == "loose shards"
    for state in ("loose", "compacted"):
        assert set(size[state]) == {"show", "validate"}
        assert size[state]["show"]["rc"] == 0 and size[state]["show"]["wall_s"] > 0
        assert size[state]["validate"]["rc"] in (0, 1)  # a verdict, not a crash (slow ranks are planted at scale)
    node = json.loads(size["node_merge"]["stdout"].strip().splitlines()[-1])
    assert node["nodes"] == 2 and size["node_files"] == 2 * 4  # two nodes of 4 ranks, one file per table each
    assert size["compact"]["rc"] == 0
    run = next((tmp_path / "work" / "x8").iterdir())
    assert not list(run.glob("*.rank*.main.parquet"))  # every loose shard merged away
    md = (tmp_path / "out" / "b.md").read_text()
    assert "| 8 | loose | show |" in md and "| 8 | compacted | validate |" in md and "node-level compaction" in md
