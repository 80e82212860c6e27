"""Schema-valid runs for the analysis tests, written through the real ShardWriter.

Rows are built the way the runner builds them (time_metrics + rate_metrics: a rate's median
row is work / median(t), its max row work / min(t)), from generated time samples, so the
analysis sees exactly what a GPU run would store. Only the numbers are synthetic.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from aifbench import SCHEMA_VERSION
from aifbench.results.store import ShardWriter

H100 = ("NVIDIA H100 80GB HBM3", "0x2330")
A100 = ("NVIDIA A100-SXM4-80GB", "0x20b2")
GH200 = ("NVIDIA GH200 480GB", "0x2342")
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


@dataclass
class CaseSpec:
    benchmark: str
    params: dict
    time_s: float                      # median time of one repeat at factor 1
    rates: list[tuple[str, float, float | None]] = field(default_factory=list)  # (metric, value at factor 1, peak)
    time_metric: str = "time_s"
    samples: bool = True               # False: rates only (like llm_infer's decode rate)


def gemm(m: int, dtype: str = "bf16", tflops: float = 700.0, peak: float | None = 989.0) -> CaseSpec:
    """An m^3 GEMM stored as the benchmark stores shape "square": n and k keep their unused defaults."""
    work = 2.0 * m ** 3
    return CaseSpec("gemm", {"shape": "square", "m": m, "n": 1024, "k": 1024, "dtype": dtype, "check_size": 64},
                    work / (tflops * 1e12), [("tflops", tflops, peak)])


def membw(size: int, gbps: float = 3000.0, peak: float | None = 3350.0) -> CaseSpec:
    return CaseSpec("membw", {"op": "copy", "size_bytes": size}, 2.0 * size / (gbps * 1e9), [("gbps", gbps, peak)])


def allreduce(size: int, busbw: float = 150.0) -> CaseSpec:
    return CaseSpec("collectives", {"op": "all_reduce", "size_bytes": size}, 1e-3,
                    [("busbw_gbps", busbw, None), ("algbw_gbps", busbw / 1.5, None)])


def train(model: str = "llama3-8b", mfu: float = 40.0, tps: float = 5000.0) -> CaseSpec:
    return CaseSpec("llm_train", {"model": model, "seq_len": 2048, "micro_batch": 1}, 0.8,
                    [("tokens_per_s", tps, None), ("tokens_per_s_per_device", tps, None), ("mfu_pct", mfu, None)],
                    time_metric="step_time_s")


def decode(batch: int, tps: float = 100.0) -> CaseSpec:
    return CaseSpec("llm_infer", {"model": "llama3-8b", "batch_size": batch}, 0.5,
                    [("decode_tokens_per_s", tps * batch ** 0.8, None)], samples=False)


@dataclass
class RunSpec:
    run_id: str
    system: str = "sysA"
    device: tuple[str, str] = H100
    nodes: tuple[str, ...] = ("n1",)
    gpus_per_node: int = 1
    partition: str = "booster"
    cases: list[CaseSpec] = field(default_factory=lambda: [gemm(4096), membw(1 << 30)])
    factor: dict[int, float] = field(default_factory=dict)     # rank -> time multiplier (2.0 = half speed)
    flags: dict[int, str] = field(default_factory=dict)        # rank -> telemetry flags
    power_w: float | None = None
    repeats: int = 9
    noise: float = 0.01
    seed: int = 0
    status: dict[int, str] = field(default_factory=dict)       # rank -> failed (all cases)
    part: str = "main"                                          # shard part: an array task ("a3")


def _time_rows(name: str, t: np.ndarray) -> list[tuple[str, str, float]]:
    q = np.percentile(t, [5, 25, 50, 75, 95])
    return [(name, "median", q[2]), (name, "iqr", q[3] - q[1]), (name, "p5", q[0]), (name, "p95", q[4]),
            (name, "min", t.min()), (name, "mean", t.mean())]


def _case_rows(spec: RunSpec, case: CaseSpec, rank: int, rng) -> tuple[list[tuple], dict[str, np.ndarray]]:
    """[(metric, stat, value, peak)], samples of one case on one rank."""
    f = spec.factor.get(rank, 1.0)
    t = case.time_s * f * (1.0 + spec.noise * rng.standard_normal(spec.repeats))
    rows = [(m, s, v, None) for m, s, v in _time_rows(case.time_metric, t)] if case.samples else []
    med = float(np.median(t))
    for metric, value, peak in case.rates:
        work = value * case.time_s          # rate = work / median time, as rate_metrics defines it
        rows += [(metric, "median", work / med, peak), (metric, "max", work / t.min(), peak)]
        if spec.power_w and metric in ("tflops", "gbps"):
            rows.append((f"{metric}_per_w", "value", work / med / spec.power_w, None))
    if spec.power_w:
        rows.append(("power_mean_w", "mean", spec.power_w, None))
    return rows, ({case.time_metric: t} if case.samples else {})


def case_ids(spec: RunSpec) -> list[str]:
    """The case id of every case of the spec, in plan order."""
    return [f"{i:04d}-{c.benchmark}-{hashlib.sha256(json.dumps(c.params, sort_keys=True).encode()).hexdigest()[:8]}"
            for i, c in enumerate(spec.cases)]


def write_run(root: Path, spec: RunSpec) -> Path:
    """Write every rank's shards of one run; returns the run directory."""
    world = len(spec.nodes) * spec.gpus_per_node
    rng = np.random.default_rng(spec.seed)
    ids = case_ids(spec)
    for rank in range(world):
        node, local = spec.nodes[rank // spec.gpus_per_node], rank % spec.gpus_per_node
        w = ShardWriter(root, spec.run_id, rank, part=spec.part)
        base = {"schema_version": SCHEMA_VERSION, "run_id": spec.run_id, "rank": rank}
        w.add("runs", [_run_row(spec, base, node, local, world)])
        for i, (case, case_id) in enumerate(zip(spec.cases, ids)):
            rows, samples = _case_rows(spec, case, rank, rng)
            status = spec.status.get(rank, "ok")
            common = dict(base, case_id=case_id, benchmark=case.benchmark,
                          params=json.dumps(case.params, sort_keys=True), world_size=world, node=node,
                          device=f"cuda:{local}", device_name=spec.device[0], system=spec.system,
                          partition=spec.partition, started_utc=T0 + timedelta(seconds=i),
                          ended_utc=T0 + timedelta(seconds=i + 1), status=status,
                          reason="" if status == "ok" else "RuntimeError: CUDA error: ECC", flags=spec.flags.get(rank, ""))
            w.add("metrics", [dict(common, metric=m, stat=s, value=v if status == "ok" else None,
                                   unit=_unit(m), n_samples=spec.repeats, noisy=False, peak=p,
                                   pct_of_peak=None if p is None or status != "ok" else 100 * v / p,
                                   peak_source="test datasheet" if p else "", detail="")
                              for m, s, v, p in rows])
            w.add("samples", [dict(base, case_id=case_id, metric=m, sample_index=j, value=float(x), unit="s")
                              for m, xs in samples.items() for j, x in enumerate(xs)])
        w.flush()
    return Path(root) / spec.run_id


def _unit(metric: str) -> str:
    from aifbench import metrics

    return metrics.get(metric).unit


def _run_row(spec: RunSpec, base: dict, node: str, local: int, world: int) -> dict:
    return dict(base, world_size=world, task=spec.part, suite="test", system=spec.system, partition=spec.partition,
                launcher="slurm", status="ok", started_utc=T0, ended_utc=T0 + timedelta(minutes=1),
                config=json.dumps({"suite": "test", "cases": [  # the plan, as the runner stores it
                    {"case_id": cid, "benchmark": c.benchmark, "params": c.params}
                    for c, cid in zip(spec.cases, case_ids(spec))]}, sort_keys=True), config_hash="0" * 16, node=node, platform="Linux x86_64", cpu_model="test",
                cpu_cores=64, memory_bytes=2**40, device=f"cuda:{local}", device_name=spec.device[0],
                gpu_uuid=f"GPU-{spec.run_id[-4:]}-{node}-{local}", gpu_memory_bytes=80 * 2**30,
                gpu_count=spec.gpus_per_node, gpu_pci_device_id=spec.device[1], torch_version="2.13",
                python_version="3.11", aifbench_version="0.1.0", telemetry="nvml")
