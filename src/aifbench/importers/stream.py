"""McCalpin STREAM and BabelStream output: bandwidth per kernel, and the tool's own validation.

STREAM (stream.c 5.10, www.cs.virginia.edu/stream): `STREAM version $Revision: 5.10 $`, `This
system uses N bytes per array element.`, `Array size = N (elements)`, `Number of Threads counted
= T`, the table `Function  Best Rate MB/s  Avg time  Min time  Max time` with rows Copy, Scale,
Add, Triad, then `Solution Validates: ...` or `Failed Validation ...` lines. Rates are in MB/s =
1e6 B/s (stream.c: 1.0E-06 * bytes / mintime). Bytes per iteration (stream.c bytes[]): copy and
scale 2 arrays, add and triad 3 arrays of N elements.

BabelStream (UoB-HPC/BabelStream 4.x/5.x main.cpp): `BabelStream`, `Version: V`,
`Implementation: X`, `Precision: float|double`, `Array size: ... MB`, `Using <API> device NAME`,
`Driver: D`, optional `Validation failed on <array>. Error E` lines, then the table `Function
MBytes/sec Min (sec) Max Average` (rows Copy, Mul, Add, Triad, Dot; MBytes/sec = 1e6 B/s of the
minimum time). A validation failure invalidates every row of the file (the arrays are shared).

Both become aifbench's `membw` cases (op copy, scale/mul, add, triad, dot) with `gbps` rows: stat
max is the tool's best rate (min time), stat mean the rate at the average time (best rate x
min / average), so a reference judged on the median-like figure does not take the best run.
"""

from __future__ import annotations

import re
from pathlib import Path

from aifbench.importers.records import NOT_PRINTED, Device, Parsed, ParseError, Row

BENCHMARK = "membw"
STREAM_ARRAYS = {"copy": 2, "scale": 2, "add": 3, "triad": 3}


def _find(pattern: str, text: str) -> re.Match | None:
    return re.search(pattern, text, re.MULTILINE)


def parse_stream(path: Path, text: str) -> Parsed:
    p = Parsed(tool="stream")
    m = _find(r"STREAM version \$Revision:\s*([\d.]+)", text)
    p.version = m.group(1) if m else ""
    elem = _find(r"This system uses (\d+) bytes per array element", text)
    size = _find(r"Array size = (\d+)", text)
    threads = _find(r"Number of Threads counted = (\d+)", text)
    lines = text.splitlines()
    head = next((i for i, ln in enumerate(lines, 1) if ln.split()[:3] == ["Function", "Best", "Rate"]), None)
    if head is None:
        raise ParseError(path, len(lines) or 1, "the STREAM table header 'Function    Best Rate MB/s  Avg time ...'")
    if not elem or not size:
        raise ParseError(path, 1, "'This system uses N bytes per array element' and 'Array size = N (elements)'")
    width, n = int(elem.group(1)), int(size.group(1))
    p.extra.update(array_elements=n, bytes_per_element=width, threads=int(threads.group(1)) if threads else None)
    validates = "Solution Validates" in text
    failed = [ln.strip() for ln in lines if re.search(r"Failed Validation|^\s*ERROR", ln)]
    found = 0
    for no, line in enumerate(lines[head:], head + 1):
        t = line.split()
        if not t or not t[0].endswith(":") or t[0][:-1].lower() not in STREAM_ARRAYS:
            if found:
                break
            continue
        op = t[0][:-1].lower()
        try:
            best_mbs, avg_t, min_t, max_t = map(float, t[1:5])
        except ValueError:
            raise ParseError(path, no, f"'{t[0]}  <best MB/s> <avg s> <min s> <max s>', got {line.strip()[:60]!r}") from None
        found += 1
        params = {"op": op, "size_bytes": n * width, "dtype": {8: "fp64", 4: "fp32"}.get(width, f"{width}B")}
        status = "failed" if failed else "ok"
        reason = "; ".join(failed)[:300] if failed else ""
        detail = f"STREAM {p.version}: {STREAM_ARRAYS[op]} arrays x {n} x {width} B per iteration"
        _bandwidth_rows(p, params, best_mbs, avg_t, min_t, max_t, status, reason, detail)
    if found < len(STREAM_ARRAYS):
        p.missing.append(f"{len(STREAM_ARRAYS) - found} of the 4 STREAM kernels (Copy, Scale, Add, Triad) have no row")
    if not validates and not failed:
        p.missing.append("the 'Solution Validates' line: the log ends before STREAM's own check")
    p.devices = [Device(rank=0, node=NOT_PRINTED, device="cpu", name="CPU (model not printed by STREAM)")]
    return p


def _bandwidth_rows(p: Parsed, params: dict, best_mbs: float, avg_t: float, min_t: float, max_t: float,
                    status: str, reason: str, detail: str, peak: str = "") -> None:
    best = best_mbs * 1e-3  # MB/s (1e6 B/s) -> GB/s (1e9 B/s)
    mean = best * min_t / avg_t if avg_t > 0 else float("nan")
    for metric, value, stat, what in (("gbps", best, "max", "best rate (min time)"),
                                      ("gbps", mean, "mean", "rate at the average time = best x min / avg"),
                                      ("time_s", min_t, "min", "min time"), ("time_s", avg_t, "mean", "average time"),
                                      ("time_s", max_t, "max", "max time")):
        p.rows.append(Row(BENCHMARK, dict(params), metric, value, stat, status, reason, f"{detail}; {what}",
                          peak_kind=peak if metric == "gbps" else ""))


def parse_babelstream(path: Path, text: str) -> Parsed:
    p = Parsed(tool="babelstream")
    lines = text.splitlines()
    m = _find(r"^Version:\s*(\S+)", text)
    p.version = m.group(1) if m else ""
    impl = _find(r"^Implementation:\s*(.+)$", text)
    prec = _find(r"^Precision:\s*(\w+)", text)
    arr = _find(r"^Array size:\s*([\d.]+)\s*MB", text)
    dev = _find(r"^Using (\S+) device (.+)$", text)
    drv = _find(r"^Driver:\s*(\S+)", text)
    if drv:
        p.versions["driver"] = drv.group(1)
    p.extra.update(implementation=impl.group(1).strip() if impl else "", precision=prec.group(1) if prec else "")
    head = next((i for i, ln in enumerate(lines, 1) if ln.split()[:2] == ["Function", "MBytes/sec"]), None)
    if head is None:
        raise ParseError(path, len(lines) or 1, "the BabelStream table header 'Function    MBytes/sec  Min (sec)  Max  Average'")
    failed = [ln.strip() for ln in lines if ln.strip().startswith("Validation failed")]
    dtype = {"double": "fp64", "float": "fp32"}.get(prec.group(1) if prec else "", prec.group(1) if prec else "")
    # Array size: X MB (1e6 B) per array, printed with one decimal: kept as printed
    size_bytes = int(round(float(arr.group(1)) * 1e6)) if arr else None
    found = 0
    for no, line in enumerate(lines[head:], head + 1):
        t = line.split()
        if len(t) != 5 or not t[0].isalpha():
            if found and t:
                raise ParseError(path, no, f"a BabelStream row 'Name  MBytes/sec  min  max  average', got {line.strip()[:60]!r}")
            continue
        try:
            mbs, min_t, max_t, avg_t = map(float, t[1:])
        except ValueError:
            raise ParseError(path, no, f"'{t[0]}  <MBytes/sec> <min s> <max s> <average s>', got {line.strip()[:60]!r}") from None
        found += 1
        params = {"op": t[0].lower(), "dtype": dtype}
        if size_bytes:
            params["size_bytes"] = size_bytes
        status = "failed" if failed else "ok"
        reason = ("BabelStream: " + "; ".join(failed))[:300] if failed else ""
        detail = f"BabelStream {p.version} {p.extra['implementation']}: MBytes/sec of the min time"
        _bandwidth_rows(p, params, mbs, avg_t, min_t, max_t, status, reason, detail,
                        "hbm_gbps" if dev else "")
    if not found:
        raise ParseError(path, head + 1, "at least one BabelStream row (Copy, Mul, Add, Triad, Dot) below the header")
    name = dev.group(2).strip() if dev else f"CPU ({p.extra['implementation'] or 'host'}; model not printed by BabelStream)"
    p.devices = [Device(rank=0, node=NOT_PRINTED, device="cuda:0" if dev else "cpu", name=name)]
    return p
