"""One imported file -> one run of the results store, written whole or not at all.

The run id is `<start>-import-<tool>-<sha256[:12]>`: the file's digest makes it idempotent (a
file already in the store adds nothing, whatever its name now) and its own start time (else
the import time) sorts it among native runs. Rows are assembled by aifbench.results.rows like
a native case's, on every rank of the file's device block (the tool prints job-wide figures:
each rank carries the figure it took part in, so layout, completeness and per-GPU figures read
as for a native run). What the file lacks (`Parsed.missing`) becomes plan cases without rows,
so `runs` shows the run as incomplete and validate says INCOMPLETE, naming each part.
All shards are validated and written to a hidden directory beside the store, then renamed into place at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from aifbench import SCHEMA_VERSION, __version__
from aifbench.config import Case
from aifbench.errors import ConfigError
from aifbench.hardware import catalog
from aifbench.importers.records import NOT_PRINTED, Device, Parsed
from aifbench.measurement import Metric
from aifbench.results import rows as rowlib
from aifbench.results import schema, store

LAUNCHER = "import"
SUITE_PREFIX = "import:"
"""runs.suite of an imported run: 'import:<tool>' (the source tool, shown by runs and compare)"""


@dataclass(frozen=True, slots=True)
class Outcome:
    run_id: str
    added: bool
    """False: the same file (by digest) is already in the store as run_id"""
    rows: int
    notes: tuple[str, ...] = ()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def existing_run(root: Path, sha: str) -> str | None:
    """The run id under `root` already holding the file with this digest, if any."""
    root = Path(root)
    if not root.is_dir():
        return None
    for d in root.iterdir():
        if d.is_dir() and not d.name.startswith(".") and d.name.endswith(f"-{sha[:12]}"):
            return d.name
    return None


def _gpu(devices: list[Device]) -> tuple[catalog.Entry | None, str]:
    """The catalog entry of the file's GPU model (exact name or PCI id, as `hardware --detect`)."""
    d = devices[0]
    if d.device == "cpu":
        return None, "a CPU run: no GPU peak"
    try:
        m = catalog.load().match(None if d.name == NOT_PRINTED else d.name, d.pci_device_id)
    except ConfigError as exc:
        return None, f"hardware catalog unusable: {exc}"
    if m.entry is None:
        return None, (f"GPU {d.name!r} is not in the hardware catalog: kept verbatim, no peak ({m.reason})"
                      if d.name != NOT_PRINTED else "the file does not name its GPU model: no peak")
    return m.entry, f"GPU {d.name!r} is catalog {m.entry.id} (matched by {m.how})"


def _peak(entry: catalog.Entry | None, kind: str, nodes: int, why: str) -> tuple[float | None, str]:
    if not kind:
        return None, ""
    if entry is None:
        return None, why
    if kind == "gpu_link_gbps" and nodes > 1:
        return None, (f"ranks span {nodes} nodes: the network, not the GPU link, bounds busbw; "
                      "the catalog has no per-node network figure")
    return entry.peak(kind)


def build(p: Parsed, *, path: Path, sha: str, system: str, partition: str = "",
          now: datetime | None = None) -> tuple[str, dict[str, pd.DataFrame], list[str]]:
    """(run id, validated tables, notes) of one parsed file; nothing is written."""
    now = now or datetime.now(timezone.utc)
    started = p.started or now
    ended = p.ended or started
    run_id = store.check_run_id(f"{started:%Y%m%dT%H%M%SZ}-import-{p.tool}-{sha[:12]}")
    entry, gpu_note = _gpu(p.devices)
    nodes = len(p.nodes)
    notes = [gpu_note, *p.notes] + [f"incomplete: {m}" for m in p.missing]
    cases: dict[tuple[str, str], Case] = {}
    for r in p.rows:
        key = (r.benchmark, json.dumps(r.params, sort_keys=True))
        if key not in cases:
            cases[key] = Case(index=len(cases), benchmark=r.benchmark, params=r.params)
    plan = [{"benchmark": c.benchmark, "case_id": c.case_id, "params": dict(c.params)} for c in cases.values()]
    bench = p.rows[0].benchmark if p.rows else p.tool
    for i, what in enumerate(p.missing):
        plan.append({"benchmark": bench, "case_id": f"{len(cases) + i:04d}-missing", "params": {"missing": what}})
    provenance = {"tool": p.tool, "version": p.version, "file": path.name, "sha256": sha, "args": p.args,
                  "versions": p.versions, "missing": p.missing, "notes": p.notes, "gpu": gpu_note,
                  "world_size": p.world_size, "nodes": p.nodes, **{k: v for k, v in p.extra.items() if k != "path"}}
    config = json.dumps({"suite": SUITE_PREFIX + p.tool, "cases": plan, "import": provenance}, sort_keys=True,
                        default=str)
    metrics: list[dict[str, Any]] = []
    for r in p.rows:
        case = cases[(r.benchmark, json.dumps(r.params, sort_keys=True))]
        peak, source = _peak(entry, r.peak_kind, nodes, gpu_note)
        metric = Metric(r.metric, r.value if r.status == "ok" else float("nan"), stat=r.stat, n_samples=r.n_samples, noisy=None,
                        peak=peak if r.status == "ok" else None, peak_source=source, detail=f"source: {p.tool}; {r.detail}")
        for d in p.devices:
            cols = rowlib.CaseColumns(run_id=run_id, case_id=case.case_id, rank=d.rank, benchmark=r.benchmark,
                                      params=r.params, world_size=p.world_size, node=d.node, device=d.device,
                                      device_name=d.name, system=system, partition=partition, started_utc=started,
                                      ended_utc=ended, status="ok")
            row = rowlib.case_rows(cols, [metric])[0]
            row.update(status=r.status, reason=r.reason)
            metrics.append(row)
    runs = [_runs_row(p, d, run_id, system, partition, started, ended, config) for d in p.devices]
    tables = {"metrics": schema.validate("metrics", pd.DataFrame(metrics)),
              "runs": schema.validate("runs", pd.DataFrame(runs))}
    return run_id, tables, notes


def _runs_row(p: Parsed, d: Device, run_id: str, system: str, partition: str, started: datetime,
              ended: datetime, config: str) -> dict[str, Any]:
    failed = any(r.status == "failed" for r in p.rows)
    return {
        "schema_version": SCHEMA_VERSION, "run_id": run_id, "rank": d.rank, "world_size": p.world_size,
        "task": "main", "suite": SUITE_PREFIX + p.tool, "system": system, "partition": partition,
        "launcher": LAUNCHER, "status": "failed" if failed else "ok", "started_utc": started, "ended_utc": ended,
        "config": config, "config_hash": hashlib.sha256(config.encode()).hexdigest()[:16], "node": d.node,
        "platform": NOT_PRINTED, "device": d.device, "device_name": d.name,
        "gpu_count": p.extra.get("gpu_count") or (len(p.extra["gpus"]) if "gpus" in p.extra else None),
        "gpu_pci_device_id": d.pci_device_id,
        "driver_version": p.versions.get("driver") or p.versions.get("cuda_driver"),
        "cuda_version": p.versions.get("cuda") or p.versions.get("cuda_runtime"),
        "nccl_version": p.versions.get("nccl") or p.versions.get("rccl"),
        "torch_version": "", "python_version": "", "aifbench_version": __version__,
        "telemetry": f"unavailable: imported from {p.tool} output",
    }


def write(p: Parsed, *, path: Path, data: bytes, root: Path, system: str, partition: str = "") -> Outcome:
    """Add the parsed file as one run under `root`, atomically; nothing when already there."""
    sha = digest(data)
    there = existing_run(root, sha)
    if there:
        return Outcome(there, False, 0)
    run_id, tables, notes = build(p, path=path, sha=sha, system=system, partition=partition)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    # beside the store, not in it: a reader scanning the store never sees a half-written run, and a
    # crash leaves only this hidden sibling behind (same file system, so the rename is atomic)
    tmp = root.resolve().parent / f".{root.resolve().name}.import-{secrets.token_hex(4)}"
    try:
        tmp.mkdir()
        for name, df in tables.items():
            store.write_shard(tmp / store.shard_name(name, 0, "import"), name, df)
        os.rename(tmp, root / run_id)  # the whole run appears at once, or not at all
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Outcome(run_id, True, len(tables["metrics"]), tuple(notes))
