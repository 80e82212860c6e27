"""analysis/baseline.py: what a baseline freezes and what it refuses, each named in its message:
a run with an unreadable shard, a run without metrics, a name taken (without --force), a bad name;
the ranks counted (distinct ranks, not the highest index), loading by name and by run id."""

from __future__ import annotations

import pytest

from aifbench.analysis import baseline as B
from aifbench.errors import ConfigError
from tests._analysis_data import RunSpec, gemm, write_run

RUN = "20260105T120000Z-base-0000b1"


def _run(tmp_path, **kw):
    spec = RunSpec(run_id=RUN, nodes=("n1", "n2"), gpus_per_node=2, cases=[gemm(1024)], repeats=3, **kw)
    return write_run(tmp_path / "res", spec)


def test_save_freezes_the_run_and_counts_its_ranks(tmp_path):
    run_dir = _run(tmp_path)
    info = B.save(tmp_path / "res", RUN, "h100-ref", note="n")
    assert (info.name, info.run_id, info.system, info.partition, info.ranks, info.note) == (
        "h100-ref", RUN, "sysA", "booster", 4, "n")  # ranks 0 1 2 3: four ranks
    saved = tmp_path / "res" / "baselines" / "h100-ref"
    assert sorted(p.name for p in saved.iterdir()) == [RUN, "baseline.json"]
    assert sorted(p.name for p in (saved / RUN).iterdir()) == sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("."))
    assert [b.name for b in B.list_baselines(tmp_path / "res")] == ["h100-ref"]
    what, res = B.load(tmp_path / "res", "h100-ref")
    assert what == f"baseline h100-ref (run {RUN})" and set(res.tables["metrics"]["rank"]) == {0, 1, 2, 3}


def test_ranks_are_counted_not_the_highest_index(tmp_path):
    """Only ranks 0 and 3 stored (the shards of ranks 1 and 2 absent): 2 ranks, not 3 + 1 = 4."""
    run_dir = _run(tmp_path)
    for p in [*run_dir.glob("*.rank00001.*"), *run_dir.glob("*.rank00002.*")]:
        p.unlink()
    assert B.save(tmp_path / "res", RUN, "two").ranks == 2


def test_a_run_with_an_unreadable_shard_is_not_frozen(tmp_path):
    run_dir = _run(tmp_path)
    bad = run_dir / "metrics.rank00001.main.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(ConfigError) as e:
        B.save(tmp_path / "res", RUN, "broken")
    assert f"run {RUN} has invalid shards, not saved as a baseline: {bad.name}:" in str(e.value)
    assert not (tmp_path / "res" / "baselines" / "broken").exists()


def test_a_taken_name_needs_force(tmp_path):
    _run(tmp_path)
    B.save(tmp_path / "res", RUN, "ref", note="first")
    with pytest.raises(ConfigError, match="baseline 'ref' exists .*pass --force"):
        B.save(tmp_path / "res", RUN, "ref", note="second")
    assert [b.note for b in B.list_baselines(tmp_path / "res")] == ["first"]
    B.save(tmp_path / "res", RUN, "ref", note="second", force=True)
    assert [b.note for b in B.list_baselines(tmp_path / "res")] == ["second"]


@pytest.mark.parametrize("name", ["", "-x", "a/b", "x" * 129])
def test_bad_names_are_refused(tmp_path, name):
    _run(tmp_path)
    with pytest.raises(ConfigError, match="invalid baseline name"):
        B.save(tmp_path / "res", RUN, name)


def test_a_name_of_128_characters_is_fine(tmp_path):
    _run(tmp_path)
    assert B.save(tmp_path / "res", RUN, "x" * 128).name == "x" * 128


def test_load_by_run_id_and_an_unknown_name_lists_the_baselines(tmp_path):
    _run(tmp_path)
    assert B.load(tmp_path / "res", RUN)[0] == f"run {RUN}"
    B.save(tmp_path / "res", RUN, "ref")
    with pytest.raises(ConfigError, match="no baseline or run 'nope' under .*; baselines: ref"):
        B.load(tmp_path / "res", "nope")
    assert B.list_baselines(tmp_path / "absent") == []
