"""Recorded GPU telemetry traces: record a real session to a file, replay it through the same sampler.

Format (JSON Lines, UTF-8, one object per line), version 2:

    {"format": "aifbench-nvml-trace", "version": 2, "created_utc": "...", "origin": "...",
     "source": "nvml", "interval_s": 0.1,
     "static": [{"name": [0, "NVIDIA H100 80GB HBM3"], "max_clock:1": [0, 1980], ...}, ...]}
    {"window": "<case id>", "event": "start"}
    {"t": 0.0, "reads": [{"fields": [0, {"186@0": [0, 412345], "186@1": [3, null], ...}],
                          "energy": [0, 123456789], "clock:1": [0, 1980], "processes": [0, [4242]], ...},
                         {...the next GPU's reads...}]}
    ...                                   one line per poll
    {"window": "<case id>", "event": "end"}

"static" and each poll's "reads" hold one object per GPU ("slot"): the rank's own GPU first,
then the other visible GPUs it sampled. Every read is `[nvmlReturn, value]` in NVML's own
units (mW, mJ, MHz, bytes; see aifbench.telemetry.nvml_device for the query vocabulary; an
amdsmi session is recorded in the same vocabulary); a failed call is `[code, null]`.
`t` is seconds since the first poll of the recording. Reads outside any poll (device name,
UUID, max clocks) are in "static"; a polled read missing from a poll is answered from "static"
(older traces hold the enforced power limit there), and one missing from both fails as
NOT_SUPPORTED "not in the trace". Version 1 (one GPU: "static" and "reads" are single
objects) is still read, a compatibility shim that stays until release 0.2.0. A replay serves the windows in order (cycling when more are asked
than recorded) and every recorded poll of a window, independent of wall time, so tests are
deterministic.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from aifbench.distributed import rank_info
from aifbench.errors import ConfigError
from aifbench.telemetry.nvml_device import NVML_ERROR_NOT_SUPPORTED, DeviceAccess, NvmlCallError, call_key

log = logging.getLogger(__name__)

FORMAT = "aifbench-nvml-trace"
VERSION = 2
READABLE = (1, 2)


class TraceError(ConfigError):
    """A trace file cannot be read: the message names the file (and line)."""


class RecordingDevice:
    """Wraps a DeviceAccess and writes every poll and read to a trace file."""

    def __init__(self, inner: DeviceAccess, path: str | Path, *, origin: str | None = None,
                 interval_s: float | None = None, created_utc: str | None = None):
        self.inner = inner
        self.live = inner.live
        self.source = getattr(inner, "source", "nvml")
        self.slots = int(getattr(inner, "slots", 1))
        self.path = Path(path)
        self.origin = f"{inner.origin} (recording to {self.path})"
        self.note = getattr(inner, "note", "")
        self._header = {"format": FORMAT, "version": VERSION, "source": self.source,
                        "created_utc": created_utc or datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "origin": origin or f"recorded from {inner.origin} on {socket.gethostname()}",
                        "interval_s": interval_s, "static": [{} for _ in range(self.slots)]}
        self._file: TextIO | None = None
        self._failed = False
        self._poll: dict | None = None
        self._t0: float | None = None

    def read(self, query: str, *args: Any, slot: int = 0) -> Any:
        key = call_key(query, args)
        target = (self._poll["reads"] if self._poll is not None else self._header["static"])[slot]
        try:
            value = self.inner.read(query, *args, slot=slot)
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
        self._poll = {"t": round(t - self._t0, 6), "reads": [{} for _ in range(self.slots)]}
        return t

    def begin_window(self, case_id: str) -> None:
        self._write({"window": case_id, "event": "start"})
        self.inner.begin_window(case_id)

    def end_window(self, case_id: str) -> None:
        self._flush_poll()
        self._write({"window": case_id, "event": "end"})
        if self._file is not None and not self._failed:
            self._file.flush()
        self.inner.end_window(case_id)

    def close(self) -> None:
        try:
            self._flush_poll()
            self._write(None)  # a session without windows still leaves its header
            if self._file is not None:
                self._file.close()
        finally:
            self.inner.close()

    def open(self) -> None:
        """Create the file and write the header now (else at the first window): call it after
        the sampler has read the static facts, which the header carries."""
        if self._file is None:
            self._open()

    def _flush_poll(self) -> None:
        if self._poll is not None:
            self._write(self._poll)
            self._poll = None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", encoding="utf-8")
        self._file.write(json.dumps(self._header, sort_keys=True) + "\n")

    def _write(self, obj: dict | None) -> None:
        """Append one line (None: only make sure the file and its header exist); a file that
        cannot be written stops the recording, not the sampling."""
        if self._failed:
            return
        try:
            if self._file is None:
                self._open()
            if obj is not None:
                self._file.write(json.dumps(obj, sort_keys=True) + "\n")
        except OSError as exc:
            self._failed = True
            log.warning("telemetry trace %s: recording stopped: %s", self.path, exc)


class ReplayDevice:
    """Answers the sampler's reads from a trace file (see the module doc for the format)."""

    live = False
    source = "replay"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.header, self.windows = read_trace(self.path)
        self.slots = len(self.header["static"])
        self.origin = f"replay: {self.path.name}"
        self.note = self.header.get("origin", "")
        self._next = 0
        self._polls: list[dict] = []
        self._cursor = 0
        self._reads: list[dict] = []

    def read(self, query: str, *args: Any, slot: int = 0) -> Any:
        key = call_key(query, args)
        reads = self._reads[slot] if slot < len(self._reads) else {}
        found = reads.get(key) or self.header["static"][slot].get(key)
        if found is None:  # e.g. a trace recorded before aifbench read the default power limit
            raise NvmlCallError(NVML_ERROR_NOT_SUPPORTED, f"{key}: not in the trace", why="not in the trace")
        ret, value = found
        if ret != 0:
            raise NvmlCallError(ret, f"{key}: NVML error {ret} (recorded)")
        if query == "fields":
            wanted = args[0] if args else tuple(value)
            return {k: list(value.get(k, (NVML_ERROR_NOT_SUPPORTED, None))) for k in wanted}
        return value

    def poll_start(self) -> float | None:
        if self._cursor >= len(self._polls):
            self._reads = []
            return None
        poll = self._polls[self._cursor]
        self._cursor += 1
        self._reads = poll["reads"]
        return float(poll["t"])

    def begin_window(self, case_id: str) -> None:
        _, self._polls = self.windows[self._next % len(self.windows)]
        self._next += 1
        self._cursor = 0
        self._reads = []

    def end_window(self, case_id: str) -> None:
        self._reads = []

    def close(self) -> None:
        pass


def read_trace(path: Path) -> tuple[dict, list[tuple[str, list[dict]]]]:
    """(header, [(case id, polls)]) of a trace, version 1 read as 2 (static and reads as
    lists, one entry per GPU); TraceError naming the file and line otherwise."""
    objs = _objects(path)
    if not objs or objs[0][1].get("format") != FORMAT:
        raise TraceError(f"{path} is not an aifbench NVML trace (first line must have \"format\": \"{FORMAT}\")")
    header = objs[0][1]
    version = header.get("version")
    if version not in READABLE:
        raise TraceError(f"telemetry trace {path}: version {version!r} unsupported (this aifbench reads "
                         f"{', '.join(map(str, READABLE))})")
    static = header.get("static", {} if version == 1 else [{}])
    static = [static] if version == 1 and isinstance(static, dict) else static
    if not isinstance(static, list) or not static or not all(isinstance(d, dict) for d in static):
        want = "an object" if version == 1 else "a non-empty list of objects, one per GPU"
        raise TraceError(f"corrupt telemetry trace {path}, line 1: \"static\" must be {want}")
    header["static"] = static
    windows = _windows(path, objs[1:], version, len(static))
    if not windows:
        raise TraceError(f"telemetry trace {path} has no complete window")
    return header, windows


def _objects(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) of every non-blank line."""
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
    return objs


def _windows(path: Path, objs: list[tuple[int, dict]], version: int, slots: int) -> list[tuple[str, list[dict]]]:
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
            current[1].append(_poll(obj, current[1][-1] if current[1] else None, version, slots, bad))
        else:
            raise bad("neither a window marker nor a poll")
    if current is not None:
        raise TraceError(f"corrupt telemetry trace {path}: window {current[0]!r} never ends (truncated file?)")
    return windows


def _poll(obj: dict, last: dict | None, version: int, slots: int, bad) -> dict:
    """One checked poll with its reads as a list of `slots` objects."""
    reads = [obj["reads"]] if version == 1 and isinstance(obj["reads"], dict) else obj["reads"]
    if not isinstance(obj["t"], (int, float)) or not isinstance(reads, list):
        raise bad("a poll needs a numeric \"t\" and " + ("an object" if version == 1 else "a list") + " \"reads\"")
    if len(reads) != slots or not all(isinstance(r, dict) for r in reads):
        raise bad(f"\"reads\" must hold one object per GPU ({slots}, as in \"static\")")
    if last is not None and obj["t"] < last["t"]:
        raise bad("time goes backwards")
    if not all(isinstance(r, list) and len(r) == 2 and isinstance(r[0], int) for d in reads for r in d.values()):
        raise bad("every read must be [nvmlReturn, value]")
    return {"t": obj["t"], "reads": reads}


def rank_path(template: str | os.PathLike) -> Path:
    """Expand '{rank}' in a trace path to this process's rank (aifbench.distributed.rank_info)."""
    return Path(str(template).replace("{rank}", str(rank_info().rank)))
