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


AB = REPO / "scripts" / "bench" / "bench_compact_ab.py"


def test_compaction_ab_times_commands_on_both_states_of_each_tree(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    gen = [sys.executable, str(REPO / "scripts" / "bench" / "gen_ranks.py"), str(SEED), str(tmp_path / "loose"),
           "--ranks", "8", "--slow-gpus", "5"]
    subprocess.run(gen, check=True, capture_output=True, env=env, timeout=300)
    p = subprocess.run([sys.executable, str(AB), "--loose", str(tmp_path / "loose"), "--tree", f"a={REPO}",
                        "--tree", f"b={REPO}", "--rounds", "1", "--work", str(tmp_path / "w"), "--out",
                        str(tmp_path / "ab.json"), "--commands", "validate,show"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((tmp_path / "ab.json").read_text())
    for tree in res["trees"].values():
        r = tree["rounds"][0]
        assert r["node_files"] == 8 and set(r["loose_commands"]) == set(r["compacted_commands"]) == {"validate", "show"}
        assert r["loose_commands"]["validate"]["rc"] == 1  # the planted slow GPU fails the verdict on both states
        assert r["compacted_commands"]["validate"]["rc"] == 1
    md = (tmp_path / "ab.md").read_text()
    assert "| a | validate |" in md and "| b | show |" in md
    assert (tmp_path / "loose").is_dir() and any((tmp_path / "loose").iterdir())  # the source run is only copied


def test_compaction_ab_refuses_an_unknown_command(tmp_path):
    (tmp_path / "loose" / "run").mkdir(parents=True)
    p = subprocess.run([sys.executable, str(AB), "--loose", str(tmp_path / "loose"), "--tree", f"a={REPO}",
                        "--work", str(tmp_path / "w"), "--out", str(tmp_path / "ab.json"), "--commands", "valdate"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "allowed are show, runs, validate, compare, report" in p.stderr
    assert not (tmp_path / "ab.json").exists() and not (tmp_path / "w").exists()


def test_a_seed_that_is_not_a_run_is_refused_before_anything_is_made(tmp_path):
    p = subprocess.run([sys.executable, str(SCRIPT), "--seed", "no-such-run", "--work", "work", "--out", "out/b.json"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--seed no-such-run: not a run directory" in p.stderr
    assert not (tmp_path / "work").exists() and not (tmp_path / "out").exists()
