"""The worker loop on every rank: cases -> benchmark -> timing + telemetry -> result rows.

For each case: skip_reason -> setup -> check (correctness, before timing) -> measure, whose
timed regions (Timer.time's repeats: "main"; timer.region(name): others) are each sampled into
their own telemetry window(s) (aifbench.telemetry.regions) -> rows. Region main's figures keep
their names and give the `flags` column; region R's are stored as R_<metric>, and each
efficiency figure uses its own region's power. A failure (out of memory, a wrong result, a
bug) becomes status=failed rows with the reason; the suite goes on. The rank's shards are rewritten
atomically after every case, so a crash loses at most the case in flight, and a requeued
worker resumes: cases already ok or skipped in its shard are kept, not re-run.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from aifbench import SCHEMA_VERSION, provenance
from aifbench.benchmarks import registry
from aifbench import metrics as metric_dict
from aifbench.benchmarks.base import Benchmark, Context, Measurement, Metric
from aifbench.config import Case, build_config
from aifbench.distributed import RankInfo
from aifbench.errors import LaunchError, SkipCase
from aifbench.plan import Plan
from aifbench.results import rows
from aifbench.results.store import ShardWriter
from aifbench.telemetry.efficiency import region_efficiency
from aifbench.telemetry.regions import MAIN, RegionResult, Regions, prefixed
from aifbench.telemetry.base import Sampler
from aifbench.telemetry.select import sampler_for
from aifbench.timing import Timer

log = logging.getLogger(__name__)

CaseCallback = Callable[[Case, str, str], None]  # (case, status, reason)


@dataclass
class RunSummary:
    run_id: str
    statuses: dict[str, str] = field(default_factory=dict)  # case_id -> ok|failed|skipped

    @property
    def failed(self) -> int:
        return sum(s == "failed" for s in self.statuses.values())


@dataclass
class CaseRun:
    """One case's run on this rank, as its metrics rows record it."""

    case: Case
    benchmark: type[Benchmark]
    started: datetime
    status: str = "ok"
    """ok | failed | skipped"""
    reason: str = ""
    measurement: Measurement = field(default_factory=Measurement)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def rank_device(plan_device: str, local_rank: int, visible: int | None = None) -> str:
    """This rank's torch device: cuda:<local rank>, or cuda:0 where the scheduler binds one GPU
    per task (each task then sees a single device)."""
    if plan_device != "cuda":
        return "cpu"
    if visible is None:
        import torch

        visible = torch.cuda.device_count()
    if visible == 1:
        return "cuda:0"
    if not 0 <= local_rank < visible:
        raise LaunchError(f"local rank {local_rank} has no GPU: {visible} visible to this task")
    return f"cuda:{local_rank}"


def build_context(plan: Plan, info: RankInfo, device: str, device_name: str, pci_id: str | None) -> Context:
    # --- peaks: the hardware catalog attaches here (see aifbench.hardware) ---
    peak_lookup = _peak_lookup(device_name, pci_id, device)
    return Context(device=device, device_name=device_name, rank=info.rank, world_size=info.world_size,
                   local_rank=info.local_rank, timing=plan.timing, peak_lookup=peak_lookup,
                   distributed=info.distributed, telemetry=plan.telemetry)


def _peak_lookup(device_name: str, pci_id: str | None, device: str):
    from aifbench.hardware import catalog

    return catalog.peak_lookup_for(device_name, pci_id, device=device)


def execute(plan: Plan, info: RankInfo | None = None, on_case: CaseCallback | None = None) -> RunSummary:
    """Run this rank's cases of `plan`, writing shards under plan.results_root/run_id."""
    info = info or RankInfo()
    if info.world_size != plan.world_size:
        log.warning("rank %d is in a world of %d ranks, but the plan launches %d", info.rank, info.world_size,
                    plan.world_size)
    device = rank_device(plan.device, info.local_rank)
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(device)
    prov = provenance.collect(device)
    ctx = build_context(plan, info, device, prov.device_name, prov.gpu_pci_device_id)
    writer = ShardWriter(Path(plan.results_root), plan.run_id, info.rank, plan.part)
    kept = _resume(writer, info.distributed)
    sampler = sampler_for(device, plan.telemetry)  # a NullSampler with the reason when off
    run_row = _run_row(plan, info, prov, sampler.describe())
    summary = RunSummary(plan.run_id)
    try:  # from the first runs row on: an interrupt (KeyboardInterrupt) still ends in status=interrupted
        writer.replace("runs", [run_row])
        writer.flush()
        for case in plan.cases:
            status = kept.get(case.case_id)
            if status is None:
                status, reason = _run_case(case, ctx, plan, writer, sampler, prov)
                writer.flush()
            else:
                reason = "kept from an earlier attempt"
            summary.statuses[case.case_id] = status
            if on_case:
                on_case(case, status, reason)
            if info.distributed:
                _barrier()
    finally:
        sampler.close()
        finished = len(summary.statuses) == len(plan.cases)
        run_row.update(ended_utc=now_utc(),
                       status="interrupted" if not finished else "failed" if summary.failed else "ok")
        writer.replace("runs", [run_row])
        writer.flush()
    return summary


def _resume(writer: ShardWriter, distributed: bool = False) -> dict[str, str]:
    """Keep rows of cases that ended ok or skipped in an earlier attempt; drop failed ones.

    With several ranks, only cases every rank kept are kept, so no rank waits in a collective
    the others skip.
    """
    frames = {table: writer.load_existing(table) for table in ("metrics", "samples", "telemetry")}
    done = frames["metrics"][frames["metrics"]["status"].isin(["ok", "skipped"])]
    kept = dict(zip(done["case_id"], done["status"]))
    if distributed:
        kept = _agree_on_kept(kept)
    for table, df in frames.items():
        writer.replace(table, df[df["case_id"].isin(list(kept))].to_dict("records") if len(df) else [])
    return kept


def _agree_on_kept(kept: dict[str, str]) -> dict[str, str]:
    """Ranks resume only the cases every rank kept, so no rank waits in a collective others skip."""
    import torch.distributed as dist

    everyone: list[dict[str, str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, kept)
    common = set(kept).intersection(*(set(k or {}) for k in everyone))
    return {case_id: status for case_id, status in kept.items() if case_id in common}


def _run_row(plan: Plan, info: RankInfo, prov: provenance.Provenance, telemetry: str) -> dict[str, Any]:
    row = dict(prov.row)
    row.update(schema_version=SCHEMA_VERSION, run_id=plan.run_id, rank=info.rank, world_size=info.world_size,
               task=plan.part, suite=plan.suite, system=plan.system, partition=plan.partition,
               launcher=plan.launcher, status="running", started_utc=now_utc(), ended_utc=None,
               config=json.dumps(plan.config_dict(), sort_keys=True), config_hash=plan.config_hash,
               telemetry=telemetry)
    return row


def _run_case(case: Case, ctx: Context, plan: Plan, writer: ShardWriter, sampler: Sampler,
              prov: provenance.Provenance) -> tuple[str, str]:
    """Run one case; add its rows to the writer. Returns (status, reason)."""
    started = now_utc()
    cls = registry.get(case.benchmark)
    regions = Regions(sampler, case.case_id)
    bench: Benchmark | None = None
    try:
        bench = cls(build_config(cls.Config, case.params, case.benchmark), ctx)
        reason = bench.skip_reason()
        if reason:
            raise SkipCase(reason)
        bench.setup()
        bench.check()
        measurement = bench.measure(Timer(ctx.device, ctx.timing, regions=regions))
        status, reason = "ok", ""
    except SkipCase as exc:
        status, reason, measurement = "skipped", str(exc), Measurement()
    except Exception as exc:  # recorded, never fatal to the suite
        log.debug("case %s failed", case.case_id, exc_info=True)
        status, reason, measurement = "failed", f"{type(exc).__name__}: {exc}".strip(), Measurement()
    finally:
        if bench is not None:
            _teardown(bench)
    if status == "ok" and not measurement.metrics:  # telemetry rows alone are no measurement
        status, reason = "failed", "benchmark returned no metrics"
    results = regions.results()
    run = CaseRun(case, cls, started, status, reason, measurement)
    writer.add("metrics", _metric_rows(run, ctx, plan, prov.node, results))
    base = {"schema_version": SCHEMA_VERSION, "run_id": plan.run_id, "case_id": case.case_id, "rank": ctx.rank}
    for name, values in measurement.samples.items():
        unit = metric_dict.get(name).unit
        writer.add("samples", [dict(base, metric=name, sample_index=i, value=float(v), unit=unit)
                               for i, v in enumerate(values)])
    writer.add("telemetry", [dict(base, **r) for res in results.values() for r in res.rows])
    return status, reason


def _teardown(bench: Benchmark) -> None:
    try:
        bench.teardown()
    except Exception:
        log.debug("teardown of %s failed", bench.name, exc_info=True)
    gc.collect()
    if bench.ctx.is_cuda:
        import torch

        torch.cuda.empty_cache()


def region_metrics(measurement_metrics: list[Metric], results: dict[str, RegionResult]) -> list[Metric]:
    """Every region's telemetry metrics (R_<metric> outside main), then the efficiency metrics,
    each throughput over the power of its own region."""
    out = []
    for name, res in results.items():
        for m in res.metrics:
            stored = prefixed(name, m.metric)
            if stored not in metric_dict.METRICS:  # a window metric metrics.py has no R_ variant of
                log.warning("telemetry metric %s of region %s not stored: %s is not defined", m.metric, name, stored)
                continue
            out.append(dataclasses.replace(m, metric=stored))
    return out + region_efficiency(measurement_metrics, {n: r.metrics for n, r in results.items()})


def case_flags(results: dict[str, RegionResult]) -> list[str]:
    """The case's `flags`: region main's; in a case without main (llm_infer) every region's."""
    if MAIN in results:
        return results[MAIN].flags
    return list(dict.fromkeys(f for r in results.values() for f in r.flags))


def _metric_rows(run: CaseRun, ctx: Context, plan: Plan, node: str,
                 results: dict[str, RegionResult]) -> list[dict[str, Any]]:
    """The case's metrics rows: the benchmark's figures, then its regions' telemetry and efficiency."""
    case, measurement = run.case, run.measurement
    metrics = list(measurement.metrics) + region_metrics(measurement.metrics, results)
    columns = rows.CaseColumns(
        run_id=plan.run_id, case_id=case.case_id, rank=ctx.rank, benchmark=case.benchmark, params=case.params,
        world_size=ctx.world_size, node=node, device=ctx.device, device_name=ctx.device_name,
        system=plan.system, partition=plan.partition, started_utc=run.started, ended_utc=now_utc(),
        status=run.status, reason=run.reason, flags=",".join(case_flags(results)))
    return rows.case_rows(columns, metrics, getattr(run.benchmark, "emits", ()))


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
