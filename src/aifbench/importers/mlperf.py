"""MLPerf Training result logs (`:::MLLOG` lines, mlcommons/logging) and systems descriptions.

A result log (results/<system>/<benchmark>/result_N.txt) holds `:::SYSJSON {...}` (the systems
description: system_name, number_of_nodes, accelerators_per_node, accelerator_model_name,
other_software_stack) and `:::MLLOG {"time_ms", "event_type", "key", "value", "metadata"}` events;
every rank may print the same event. The figure is the time to train: run_stop.time_ms -
run_start.time_ms (the MLPerf Training rules' score of one run), `time_to_train_s`; run_stop's
metadata.status `success` keeps it ok, any other status (aborted) fails it. A systems JSON alone
(systems/*.json) describes hardware and holds no measurement: it is refused with that reason.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aifbench.importers.records import NOT_PRINTED, Device, Parsed, ParseError, Row

BENCHMARK = "mlperf"


def is_systems_json(data: Any) -> bool:
    return isinstance(data, dict) and "system_name" in data and "accelerator_model_name" in data


def _system(p: Parsed, sysjson: dict[str, Any]) -> None:
    try:
        nodes = int(sysjson.get("number_of_nodes") or 1)
        per_node = int(sysjson.get("accelerators_per_node") or 1)
    except ValueError:
        nodes, per_node = 1, 1
    name = str(sysjson.get("accelerator_model_name") or NOT_PRINTED)
    p.world_size = nodes * per_node
    p.devices = [Device(rank=r, node=f"node{r // per_node}", device=f"cuda:{r % per_node}", name=name)
                 for r in range(p.world_size)]
    stack = sysjson.get("other_software_stack") or {}
    if isinstance(stack, dict):
        for key in ("cuda_version", "nccl_version", "cuda_driver_version"):
            if stack.get(key):
                p.versions[key.removesuffix("_version")] = str(stack[key])
    p.extra["system_name"] = sysjson.get("system_name", "")
    p.extra["framework"] = sysjson.get("framework", "")


def parse(path: Path, text: str) -> Parsed:
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ParseError(path, exc.lineno, f"valid JSON ({exc.msg})") from None
        if is_systems_json(data):
            raise ParseError(path, 1, "an MLPerf result log (:::MLLOG lines): this is a systems description, "
                                      "which holds no measurement; import the run's result_N.txt")
        raise ParseError(path, 1, "an MLPerf result log (:::MLLOG lines) or systems JSON (system_name, "
                                  "accelerator_model_name)")
    p = Parsed(tool="mlperf")
    events: dict[str, dict[str, Any]] = {}
    sysjson: dict[str, Any] | None = None
    n_lines = 0
    for no, line in enumerate(text.splitlines(), 1):
        for tag in (":::SYSJSON", ":::MLLOG"):
            at = line.find(tag)
            if at < 0:
                continue
            try:
                obj = json.loads(line[at + len(tag):].strip())
            except json.JSONDecodeError as exc:
                raise ParseError(path, no, f"JSON after '{tag}' ({exc.msg})") from None
            n_lines += 1
            if tag == ":::SYSJSON":
                sysjson = sysjson or obj
            elif isinstance(obj, dict) and "key" in obj:
                events.setdefault(str(obj["key"]), {**obj, "line": no})  # ranks repeat events: the first counts
    if not n_lines:
        raise ParseError(path, 1, "':::MLLOG {...}' event lines")
    if sysjson:
        _system(p, sysjson)
    else:
        p.devices = [Device(rank=0)]
        p.missing.append("the :::SYSJSON line (system, nodes, accelerators)")
    bench = str((events.get("submission_benchmark") or {}).get("value") or "")
    p.version = str((events.get("submission_org") or {}).get("value") or "")
    start, stop = events.get("run_start"), events.get("run_stop")
    if not start or not stop:
        absent = " and ".join(k for k, e in (("run_start", start), ("run_stop", stop)) if not e)
        raise ParseError(path, len(text.splitlines()), f"the {absent} event(s) of a complete result log; "
                                                       f"this log holds no time to train (an excerpt?)")
    p.started = datetime.fromtimestamp(start["time_ms"] / 1000, timezone.utc)
    p.ended = datetime.fromtimestamp(stop["time_ms"] / 1000, timezone.utc)
    status = str((stop.get("metadata") or {}).get("status", "")).lower()
    seconds = (stop["time_ms"] - start["time_ms"]) / 1000
    params = {"benchmark": bench or NOT_PRINTED, "division": str((events.get("submission_division") or {}).get("value", ""))}
    ok = status == "success"
    p.rows.append(Row(BENCHMARK, params, "time_to_train_s", seconds, "value", "ok" if ok else "failed",
                          "" if ok else f"run_stop status {status or 'not printed'}",
                      f"MLLOG run_stop - run_start (lines {start['line']}, {stop['line']}); job-wide figure"))
    return p
