"""Collectives over real gloo process groups on CPU: nccl-tests formulas, checks, rank agreement."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket

import pytest

from aifbench.benchmarks import _collective_ops as ops
from aifbench.benchmarks._shared import torch_dtype
from aifbench.benchmarks.base import Context
from aifbench.benchmarks.collectives import OPS, Collectives, CollectivesConfig, algbw_busbw, busbw_factor
from aifbench.cli import main
from aifbench.results.store import load
from tests.conftest import write


# --- formulas, hand-computed -------------------------------------------------------------------

@pytest.mark.parametrize("op, n, algbw, busbw", [
    # S = 1e9 B in 0.01 s -> algbw 100 GB/s
    ("all_reduce", 2, 100.0, 100.0),       # 2(n-1)/n = 1
    ("all_reduce", 8, 100.0, 175.0),       # 2*7/8 = 1.75
    ("all_reduce", 3, 100.0, 133.3333),    # 4/3
    ("all_gather", 4, 100.0, 75.0),        # (n-1)/n = 3/4
    ("reduce_scatter", 8, 100.0, 87.5),    # 7/8
    ("all_to_all", 2, 100.0, 50.0),        # 1/2
    ("broadcast", 8, 100.0, 100.0),        # 1
    ("send_recv", 4, 100.0, 100.0),        # 1
])
def test_busbw_by_the_nccl_tests_definitions(op, n, algbw, busbw):
    got_alg, got_bus = algbw_busbw(op, n, size_bytes=1e9, time_s=0.01)
    assert got_alg == pytest.approx(algbw) and got_bus == pytest.approx(busbw, rel=1e-6)


def test_factor_of_an_unknown_op_is_an_error():
    with pytest.raises(ValueError):
        busbw_factor("all_reduce_scatter", 4)


@pytest.mark.parametrize("op, size, n, count", [
    ("all_reduce", 10, 4, 2), ("all_reduce", 1, 4, 1),          # whole fp32 elements, at least 1
    ("all_gather", 100, 4, 24), ("all_gather", 4, 4, 4),        # multiple of n, at least n
    ("all_to_all", 96, 3, 24), ("reduce_scatter", 1 << 20, 8, 262144),
])
def test_message_sizes_round_to_whole_elements_per_rank(op, size, n, count):
    import torch

    assert ops.element_count(op, size, n, torch.float32) == count


def test_one_rank_is_skipped_with_the_reason():
    reason = Collectives(CollectivesConfig(), Context(device="cpu", world_size=1)).skip_reason()
    assert "at least 2 ranks" in reason and "--nproc" in reason


def test_gpu_sized_cases_are_skipped_on_cpu_before_any_rank_talks():
    bench = Collectives(CollectivesConfig(gpu_only=True, size_bytes=1 << 32), Context(device="cpu", world_size=2))
    assert bench.skip_reason().startswith("gpu_only: this case is sized for a GPU (all_reduce of 4294967296 B)")


def test_check_patterns_are_exact_in_every_dtype():
    for dt in map(torch_dtype, ops.DTYPES):
        p = ops.periodic(40, 11, dt, "cpu")
        assert p.tolist() == [float((11 + i) % 13) for i in range(40)]


# --- real process groups ----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scenarios(rank: int, world: int, port: int, out_dir: str) -> None:
    """One gloo rank: run scenarios where one rank misbehaves; write what each rank saw."""
    import datetime

    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    ctx = Context(device="cpu", rank=rank, world_size=world, distributed=True)
    seen = {}

    def attempt(name, fn):
        try:
            fn()
            seen[name] = "ok"
        except Exception as exc:
            seen[name] = f"{type(exc).__name__}: {exc}"

    def corrupted(op, corrupt):
        bench = Collectives(CollectivesConfig(op=op, size_bytes=4096), ctx)
        bench.setup()
        if rank == 1:
            real = bench.call
            bench.call = lambda: (real(), corrupt(bench.bufs))
        bench.check()

    attempt("all_reduce_ok", lambda: Collectives(CollectivesConfig(size_bytes=4096), ctx).setup())
    attempt("all_reduce_bad", lambda: corrupted("all_reduce", lambda b: b["buf"][5].add_(1)))
    attempt("all_to_all_swapped", lambda: corrupted(
        "all_to_all", lambda b: b["out"].copy_(torch.cat(list(b["out"].chunk(world))[::-1]))))
    skipper = Collectives(CollectivesConfig(size_bytes=4096), ctx)
    if rank == 1:
        skipper._local_skip_reason = lambda: "needs 9 GiB per rank (simulated)"
    seen["skip"] = skipper.skip_reason()
    failing = Collectives(CollectivesConfig(size_bytes=4096), ctx)
    if rank == 0:
        failing._count = lambda: (_ for _ in ()).throw(MemoryError("out of memory (simulated)"))
    attempt("setup_fails_on_rank0", failing.setup)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump(seen, fh)
    dist.destroy_process_group()


def test_ranks_agree_on_wrong_results_skips_and_failed_setup(tmp_path):
    spawn = mp.get_context("spawn")
    port = _free_port()
    procs = [spawn.Process(target=_scenarios, args=(r, 2, port, str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert r0["all_reduce_ok"] == r1["all_reduce_ok"] == "ok"
    for seen in (r0, r1):  # the corrupted rank and its healthy peer both fail the case
        assert seen["all_reduce_bad"].startswith("CorrectnessError: all_reduce wrong on rank(s) [1]")
        assert seen["all_to_all_swapped"].startswith("CorrectnessError: all_to_all wrong on rank(s) [1]")
    assert "element 5 is 14.0, expected 13.0" in r1["all_reduce_bad"]  # n (i mod 13) + n(n+1)/2 at i=5
    assert r1["skip"] == "needs 9 GiB per rank (simulated)"
    assert r0["skip"] == "rank(s) [1] cannot run this case (their rows give the reason)"
    assert r0["setup_fails_on_rank0"] == "MemoryError: out of memory (simulated)"
    assert r1["setup_fails_on_rank0"] == "RuntimeError: setup failed on rank(s) [0]"


SUITE = """
[suite]
name = "coll"
[timing]
warmup = 1
repeats = 3
[[case]]
benchmark = "collectives"
params = { size_bytes = 1000 }
sweep = { op = ["all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "send_recv"] }
[[case]]
benchmark = "collectives"
params = { op = "all_reduce", size_bytes = 300000, dtype = "bf16", inner = 2 }
"""


@pytest.mark.slow  # three worker processes start torch: ~15-30 s on 2 busy cores
def test_every_collective_across_three_local_processes(tmp_path):
    suite = write(tmp_path / "coll.toml", SUITE)
    code = main(["run", str(suite), "--nproc", "3", "--device", "cpu", "--results", str(tmp_path / "r"),
                 "--telemetry-hz", "0"])
    df = load([tmp_path / "r"]).metrics
    assert code == 0, df[["case_id", "rank", "status", "reason"]].drop_duplicates().to_string()
    assert set(df["status"]) == {"ok"} and set(df["rank"]) == {0, 1, 2}
    per_rank = df[df["stat"] == "median"]
    for (case, rank), rows in per_rank.groupby(["case_id", "rank"]):
        op = json.loads(rows["params"].iloc[0])["op"]
        v = rows.set_index("metric")["value"]
        assert v["busbw_gbps"] == pytest.approx(v["algbw_gbps"] * busbw_factor(op, 3))
        size = int(rows.set_index("metric")["detail"]["busbw_gbps"].split()[0][2:])
        assert v["algbw_gbps"] == pytest.approx(size / v["time_s"] * 1e-9)
        if op in ("all_gather", "reduce_scatter", "all_to_all"):
            assert size == 996  # 250 fp32 elements rounded down to a multiple of 3 ranks
    slowest = df[df["stat"] == "slowest_rank"]
    assert set(slowest["rank"]) == {0} and len(slowest) == 3 * 7
    t = slowest[slowest["metric"] == "time_s"]
    assert (t.set_index("case_id")["value"] == per_rank[per_rank["metric"] == "time_s"].groupby("case_id")["value"].max()).all()
    assert slowest["detail"].str.contains("r0=.* r1=.* r2=").all()
    assert df[df["metric"] == "busbw_gbps"]["peak_source"].str.contains("no GPU link").all()
    assert df["pct_of_peak"].isna().all()


def test_all_operations_are_covered():
    assert set(OPS) == {"all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "send_recv"}


def test_more_ranks_than_gpus_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    """--nproc above the visible GPU count: one clear line, exit 2, no results (a 2-GPU node faked)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    suite = write(tmp_path / "coll.toml", SUITE)
    code = main(["run", str(suite), "--nproc", "4", "--results", str(tmp_path / "r")])
    assert code == 2 and not (tmp_path / "r").exists()
    assert "--nproc 4 is more than the 2 visible GPU(s); allowed: 1..2" in capsys.readouterr().err
