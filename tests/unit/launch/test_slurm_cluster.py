"""Cluster state: sinfo/squeue/sacct text (recorded from the local Slurm 22.05 cluster) and pyslurm
objects (recorded attribute sets of pyslurm's 25.11 API; pyslurm cannot be built against any Slurm
these machines install) give the same objects."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest

from aifbench.errors import ConfigError
from aifbench.launch import cluster
from aifbench.launch.base import JobInfo
from aifbench.launch.cluster import NodeInfo, PartitionInfo

# recorded with the formats in cluster.py on scripts/ci/local-slurm.sh's cluster
SINFO_PARTITIONS = "debug|up|2|1:00:00|1-infinite|n[1-2]|debug*\n"
SINFO_NODES = "n1|idle|debug|4|gpu:4\nn2|mixed|debug|4|gpu:4\n"
SQUEUE = ("13_1|PENDING|wrap|debug||JobArrayTaskLimit|0:00\n"
          "13_0|RUNNING|wrap|debug|n1|None|0:01\n")
SACCT = ("4_0|COMPLETED|aifbench|debug|n1|None|0:0|00:00:05\n"
         "4_2|COMPLETED|aifbench|debug|n1|JobArrayTaskLimit|0:0|00:00:05\n"
         "9|CANCELLED by 0|aifbench|debug|n1|None|0:0|00:00:06\n"
         "10|FAILED|aifbench|debug|n1|None|9:0|00:00:06\n"
         "14|PENDING|aifbench|debug|None assigned|Priority|0:0|00:00:00\n"
         "15_[2-3%1]|PENDING|aifbench|debug|None assigned|JobArrayTaskLimit|0:0|00:00:00\n")


def test_sinfo_partitions():
    (p,) = cluster.parse_sinfo_partitions(SINFO_PARTITIONS)
    assert p == PartitionInfo(name="debug", state="UP", total_nodes=2, max_time_min=60, max_nodes=None,
                              is_default=True, nodes="n[1-2]")


def test_sinfo_nodes_merge_partitions_and_count_gpus():
    nodes = cluster.parse_sinfo_nodes(SINFO_NODES + "n1|idle|gpu|4|gpu:4\n")
    assert nodes[0] == NodeInfo(name="n1", state="idle", partitions=("debug", "gpu"), cpus=4, gpus=4, gres="gpu:4")
    assert nodes[1].state == "mixed"


def test_squeue_array_tasks():
    jobs = cluster.parse_squeue(SQUEUE)
    assert jobs["13_1"].state == "PENDING" and jobs["13_1"].reason == "JobArrayTaskLimit"
    assert jobs["13_0"].state == "RUNNING" and jobs["13_0"].nodes == "n1" and jobs["13_0"].reason == ""
    assert not jobs["13_0"].final


def test_squeue_all_states_lists_ended_jobs_without_stale_reasons():
    # `squeue -t all` on the local cluster: a killed task and never-started tasks cancelled in a pending range
    jobs = cluster.parse_squeue("33_0|FAILED|aifbench|debug|n1|NonZeroExitCode|0:04\n"
                                "33_2|CANCELLED|aifbench|debug||JobArrayTaskLimit|0:00\n")
    assert (jobs["33_0"].state, jobs["33_0"].reason, jobs["33_0"].final) == ("FAILED", "", True)
    assert (jobs["33_2"].state, jobs["33_2"].reason) == ("CANCELLED", "")


def test_sacct_states_exit_codes_and_stale_reasons():
    jobs = cluster.parse_sacct(SACCT)
    assert jobs["9"].state == "CANCELLED" and jobs["9"].raw_state == "CANCELLED by 0" and jobs["9"].final
    assert jobs["10"].state == "FAILED" and jobs["10"].exit_code == "9:0"
    assert jobs["4_2"].reason == ""  # the last pending reason of an ended job is not why it ended
    assert jobs["14"].reason == "Priority" and jobs["14"].nodes == ""
    assert "15_[2-3%1]" not in jobs and jobs["15_2"].state == jobs["15_3"].state == "PENDING"
    assert "15_4" not in jobs


def test_sacct_range_of_never_started_array_tasks():
    jobs = cluster.parse_sacct("21_[1-2,5%1]|CANCELLED by 0|aifbench|debug|None assigned|None|0:0|00:00:00\n")
    assert sorted(jobs) == ["21_1", "21_2", "21_5"] and {j.state for j in jobs.values()} == {"CANCELLED"}
    assert cluster.expand_array_tasks("21_3") == ["21_3"] and cluster.expand_array_tasks("21") == ["21"]


@pytest.mark.parametrize("raw,state", [
    ("CANCELLED by 1000", "CANCELLED"), ("COMPLETING", "RUNNING"), ("OUT_OF_MEMORY", "OUT_OF_MEMORY"),
    ("PREEMPTED", "PREEMPTED"), ("TIMEOUT", "TIMEOUT"), ("NODE_FAIL", "NODE_FAIL"), ("BOOT_FAIL", "NODE_FAIL"),
    ("REQUEUE_HOLD", "PENDING"), ("", "UNKNOWN"), ("WHATEVER", "UNKNOWN"),
])
def test_normalize_state(raw, state):
    assert cluster.normalize_state(raw) == state


@pytest.mark.parametrize("text,minutes", [
    ("infinite", None), ("UNLIMITED", None), ("60", 60), ("30:00", 30), ("0:30", 1), ("1:00:00", 60),
    ("2-00:00:00", 2880), ("1-12", 2160), ("1-00:30", 1470),
])
def test_parse_time(text, minutes):
    assert cluster.parse_time_min(text) == minutes


@pytest.mark.parametrize("gres,gpus", [
    ("gpu:4", 4), ("gpu:a100:4(S:0-1)", 4), ("gpu:a100:2,gpu:v100:2", 4), ("", 0), ("(null)", 0), ("mps:100", 0),
])
def test_gpus_in_gres(gres, gpus):
    assert cluster.gpus_in_gres(gres) == gpus


# --- pyslurm objects: attribute names of pyslurm 25.11 (Partition, Node, Job) ----------------

PYSLURM_PARTITION = SimpleNamespace(name="debug", state="UP", total_nodes=2, max_time_limit=60, max_nodes=None,
                                    is_default=True, nodes="n[1-2]")
PYSLURM_NODES = [SimpleNamespace(name="n1", state="IDLE", partitions=["debug"], total_cpus=4,
                                 configured_gres={"gpu": 4}),
                 SimpleNamespace(name="n2", state="MIXED+DRAIN", partitions=["debug"], total_cpus=4,
                                 configured_gres={"gpu": 4})]
PYSLURM_JOBS = [SimpleNamespace(id=31, array_id=13, array_task_id=0, name="wrap", state="RUNNING",
                                partition="debug", allocated_nodes="n1", state_reason="None", exit_code="0:0"),
                SimpleNamespace(id=77, array_id=None, array_task_id=None, name="x", state="PENDING",
                                partition="debug", allocated_nodes=None, state_reason="Priority", exit_code="")]


def test_pyslurm_objects_match_the_cli_objects():
    assert cluster.partitions_from_pyslurm([PYSLURM_PARTITION]) == cluster.parse_sinfo_partitions(SINFO_PARTITIONS)
    assert cluster.nodes_from_pyslurm(PYSLURM_NODES) == cluster.parse_sinfo_nodes(SINFO_NODES)
    unlimited = SimpleNamespace(**{**vars(PYSLURM_PARTITION), "max_time_limit": "UNLIMITED"})
    assert cluster.partitions_from_pyslurm([unlimited])[0].max_time_min is None


def test_pyslurm_jobs_keyed_like_squeue():
    jobs = cluster.jobs_from_pyslurm(PYSLURM_JOBS, ["13"])
    assert set(jobs) == {"13_0"}
    assert jobs["13_0"].state == cluster.parse_squeue(SQUEUE)["13_0"].state == "RUNNING"
    assert cluster.jobs_from_pyslurm(PYSLURM_JOBS, ["77"])["77"].reason == "Priority"


def test_backend_uses_pyslurm_only_when_versions_match(monkeypatch):
    fake = types.ModuleType("pyslurm")
    monkeypatch.setitem(sys.modules, "pyslurm", fake)
    monkeypatch.delenv("AIFBENCH_CLUSTER_BACKEND", raising=False)
    monkeypatch.setattr(cluster, "slurm_available", lambda: True)
    monkeypatch.setattr(cluster, "slurm_version", lambda timeout_s=0: "22.05.8")
    fake.__version__ = "25.11.0"
    cluster._detect_backend.cache_clear()
    assert cluster.backend() == "cli"
    fake.__version__ = "22.5.0"
    cluster._detect_backend.cache_clear()
    assert cluster.backend() == "cli"
    fake.__version__ = "22.05.1"
    cluster._detect_backend.cache_clear()
    assert cluster.backend() == "pyslurm"
    fake.__version__ = "25.11.0"  # decided once per process: no re-import, no sinfo every poll
    assert cluster.backend() == "pyslurm"
    cluster._detect_backend.cache_clear()
    monkeypatch.setenv("AIFBENCH_CLUSTER_BACKEND", "cli")
    assert cluster.backend() == "cli"
    monkeypatch.setenv("AIFBENCH_CLUSTER_BACKEND", "magic")
    with pytest.raises(ConfigError, match="allowed: cli, pyslurm"):
        cluster.backend()


def test_pyslurm_backend_serves_partitions_and_nodes(monkeypatch):
    fake = types.ModuleType("pyslurm")
    fake.Partitions = SimpleNamespace(load=lambda: {"debug": PYSLURM_PARTITION})
    fake.Nodes = SimpleNamespace(load=lambda: {n.name: n for n in PYSLURM_NODES})
    monkeypatch.setitem(sys.modules, "pyslurm", fake)
    monkeypatch.setenv("AIFBENCH_CLUSTER_BACKEND", "pyslurm")
    assert cluster.partitions()[0].nodes == "n[1-2]"
    assert [n.gpus for n in cluster.nodes()] == [4, 4]


def test_missing_slurm_commands_are_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(Exception, match="sinfo not found"):
        cluster.run_command(["sinfo", "--version"])


def test_job_info_final():
    assert JobInfo("1", "TIMEOUT", "TIMEOUT").final and not JobInfo("1", "PENDING", "PENDING").final
