"""Recorded NVML traces: record a real session to a file, replay it through the same sampler.

Format (JSON Lines, UTF-8, one object per line), version 1:

    {"format": "aifbench-nvml-trace", "version": 1, "created_utc": "...", "origin": "...",
     "interval_s": 0.1, "static": {"name": [0, "NVIDIA H100 80GB HBM3"], "max_clock:1": [0, 1980], ...}}
    {"window": "<case id>", "event": "start"}
    {"t": 0.0, "reads": {"fields": [0, {"186@0": [0, 412345], "186@1": [3, null], ...}],
                         "energy": [0, 123456789], "clock:1": [0, 1980], "processes": [0, [4242]], ...}}
    ...                                   one line per poll
    {"window": "<case id>", "event": "end"}

Every read is `[nvmlReturn, value]` in NVML's own units (mW, mJ, MHz, bytes; see
aifbench.telemetry.nvml_device for the query vocabulary); a failed call is `[code, null]`.
`t` is seconds since the first poll of the recording. Reads outside any poll (device name,
UUID, max clocks) are in the header's "static". A replay serves the windows in order
(cycling when more are asked than recorded) and every recorded poll of a window, independent
of wall time, so tests are deterministic.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from aifbench.errors import ConfigError
from aifbench.telemetry.nvml_device import NVML_ERROR_NOT_SUPPORTED, DeviceAccess, NvmlCallError, call_key

FORMAT = "aifbench-nvml-trace"
VERSION = 1


class TraceError(ConfigError):
    """A trace file cannot be read: the message names the file (and line)."""


class RecordingDevice:
    """Wraps a DeviceAccess and writes every poll and read to a trace file."""

    def __init__(self, inner: DeviceAccess, path: str | Path, *, origin: str | None = None,
                 interval_s: float | None = None, created_utc: str | None = None):
        self.inner = inner
        self.live = inner.live
        self.path = Path(path)
        self.origin = f"{inner.origin} (recording to {self.path})"
        self.note = getattr(inner, "note", "")
        self._header = {"format": FORMAT, "version": VERSION,
                        "created_utc": created_utc or datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "origin": origin or f"recorded from {inner.origin} on {socket.gethostname()}",
                        "interval_s": interval_s, "static": {}}
        self._file: TextIO | None = None
        self._poll: dict | None = None
        self._t0: float | None = None

    def read(self, query: str, *args: Any) -> Any:
        key = call_key(query, args)
        target = self._poll["reads"] if self._poll is not None else self._header["static"]
        try:
            value = self.inner.read(query, *args)
        except NvmlCallError as exc:
            target[key] = [exc.code, None]
            raise
        target[key] = [0, value]
        return value

    def poll_start(self) -> float | None:
        self._flush_poll()
        t = self.inner.poll_start()
        if t is None:
            return None
        self._t0 = t if self._t0 is None else self._t0
        self._poll = {"t": round(t - self._t0, 6), "reads": {}}
        return t

    def begin_window(self, case_id: str) -> None:
        self._write({"window": case_id, "event": "start"})
        self.inner.begin_window(case_id)

    def end_window(self, case_id: str) -> None:
        self._flush_poll()
        self._write({"window": case_id, "event": "end"})
        self._file.flush()
        self.inner.end_window(case_id)

    def close(self) -> None:
        self._flush_poll()
        if self._file is None:
            self._open()
        self._file.close()
        self.inner.close()

    def _flush_poll(self) -> None:
        if self._poll is not None:
            self._write(self._poll)
            self._poll = None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", encoding="utf-8")
        self._file.write(json.dumps(self._header, sort_keys=True) + "\n")

    def _write(self, obj: dict) -> None:
        if self._file is None:
            self._open()
        self._file.write(json.dumps(obj, sort_keys=True) + "\n")


class ReplayDevice:
    """Answers the sampler's reads from a trace file (see the module doc for the format)."""

    live = False

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.header, self.windows = read_trace(self.path)
        self.origin = f"replay: {self.path.name}"
        self.note = self.header.get("origin", "")
        self._next = 0
        self._polls: list[dict] = []
        self._cursor = 0
        self._reads: dict = {}

    def read(self, query: str, *args: Any) -> Any:
        key = call_key(query, args)
        ret, value = self._reads.get(key) or self.header["static"].get(key) or (NVML_ERROR_NOT_SUPPORTED, None)
        if ret != 0:
            raise NvmlCallError(ret, f"{key}: NVML error {ret} (recorded)")
        if query == "fields":
            wanted = args[0] if args else tuple(value)
            return {k: list(value.get(k, (NVML_ERROR_NOT_SUPPORTED, None))) for k in wanted}
        return value

    def poll_start(self) -> float | None:
        if self._cursor >= len(self._polls):
            self._reads = {}
            return None
        poll = self._polls[self._cursor]
        self._cursor += 1
        self._reads = poll["reads"]
        return float(poll["t"])

    def begin_window(self, case_id: str) -> None:
        _, self._polls = self.windows[self._next % len(self.windows)]
        self._next += 1
        self._cursor = 0
        self._reads = {}

    def end_window(self, case_id: str) -> None:
        self._reads = {}

    def close(self) -> None:
        pass


def read_trace(path: Path) -> tuple[dict, list[tuple[str, list[dict]]]]:
    """(header, [(case id, polls)]) of a trace; TraceError naming the file and line otherwise."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"cannot read telemetry trace {path}: {exc}") from None
    objs = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceError(f"corrupt telemetry trace {path}, line {n}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise TraceError(f"corrupt telemetry trace {path}, line {n}: expected a JSON object")
        objs.append((n, obj))
    if not objs or objs[0][1].get("format") != FORMAT:
        raise TraceError(f"{path} is not an aifbench NVML trace (first line must have \"format\": \"{FORMAT}\")")
    header = objs[0][1]
    if header.get("version") != VERSION:
        raise TraceError(f"telemetry trace {path}: version {header.get('version')!r} unsupported (this aifbench reads {VERSION})")
    if not isinstance(header.get("static", {}), dict):
        raise TraceError(f"corrupt telemetry trace {path}, line 1: \"static\" must be an object")
    header.setdefault("static", {})
    windows = _windows(path, objs[1:])
    if not windows:
        raise TraceError(f"telemetry trace {path} has no complete window")
    return header, windows


def _windows(path: Path, objs: list[tuple[int, dict]]) -> list[tuple[str, list[dict]]]:
    windows: list[tuple[str, list[dict]]] = []
    current: tuple[str, list[dict]] | None = None
    for n, obj in objs:
        def bad(why: str) -> TraceError:
            return TraceError(f"corrupt telemetry trace {path}, line {n}: {why}")

        if "window" in obj:
            event = obj.get("event")
            if event == "start" and current is None:
                current = (str(obj["window"]), [])
            elif event == "end" and current is not None and current[0] == str(obj["window"]):
                windows.append(current)
                current = None
            else:
                raise bad(f"unexpected window {event!r} marker for {obj['window']!r}")
        elif "t" in obj and "reads" in obj:
            if current is None:
                raise bad("a poll outside any window")
            if not isinstance(obj["t"], (int, float)) or not isinstance(obj["reads"], dict):
                raise bad("a poll needs a numeric \"t\" and an object \"reads\"")
            if current[1] and obj["t"] < current[1][-1]["t"]:
                raise bad("time goes backwards")
            if not all(isinstance(r, list) and len(r) == 2 and isinstance(r[0], int) for r in obj["reads"].values()):
                raise bad("every read must be [nvmlReturn, value]")
            current[1].append(obj)
        else:
            raise bad("neither a window marker nor a poll")
    if current is not None:
        raise TraceError(f"corrupt telemetry trace {path}: window {current[0]!r} never ends (truncated file?)")
    return windows


def rank_path(template: str | os.PathLike) -> Path:
    """Expand '{rank}' in a trace path from RANK / SLURM_PROCID (one file per rank)."""
    rank = os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or "0"
    return Path(str(template).replace("{rank}", rank))
