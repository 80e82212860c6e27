"""nccl-tests / rccl-tests output: the text log (stdout) and the `-J` JSON (format version 3).

Text format (NVIDIA/nccl-tests src/common.cu, as printed by every release seen): a header line
`# nThread T nGpus G minBytes B maxBytes E step: F(factor)|S(bytes) warmup iters: ... iters: N ...`,
an optional `# nccl-tests version ...` and `# Collective test starting: X_perf` line, the device
block (`#  Rank  r Group g Pid p on HOST device d [BUS] NAME`; older rccl-tests without Group),
`NCCL version` / `RCCL version :` lines, the column header (`#  size count type redop root time
algbw busbw #wrong time algbw busbw #wrong`, the first group out-of-place, the second in-place),
one row per size, and the footer `# Out of bounds values : N OK|FAILED` and `# Avg bus bandwidth : X`.
Lines of other programs (MPI, ssh, NCCL INFO, wrappers) are skipped; a line that starts like a
table row but does not have the header's fields is named in the notes, never completed.

JSON format version 3 (NVIDIA/nccl-tests src/util.cu, v2.19): version, start_time, args, env,
nccl_version, config {devices: [...]}, results [{size, count, type, redop, root,
out_of_place/in_place {time, alg_bw, bus_bw, nwrong}}], out_of_bounds {count, okay},
average_bus_bandwidth {bandwidth}, errors, end_time. Booleans are the strings "true"/"false"
and NaN is "nan" (util.cu L273, L290-298).

busbw = algbw x 2(n-1)/n (all_reduce), (n-1)/n (all_gather, reduce_scatter, alltoall), 1
otherwise (nccl-tests doc/PERFORMANCE.md): with one rank it is 0 by definition, so those rows are
kept as skipped ("single rank"), not as a slow link.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from aifbench.importers.records import Device, Parsed, ParseError, Row

BENCHMARK = "collectives"
OPS = {  # nccl-tests binary / JSON name -> aifbench's collectives op (the native names where one exists)
    "all_reduce": "all_reduce", "allreduce": "all_reduce", "all_gather": "all_gather", "allgather": "all_gather",
    "reduce_scatter": "reduce_scatter", "reducescatter": "reduce_scatter", "alltoall": "all_to_all",
    "all_to_all": "all_to_all", "broadcast": "broadcast", "sendrecv": "send_recv", "send_recv": "send_recv",
    "reduce": "reduce", "gather": "gather", "scatter": "scatter", "hypercube": "hypercube",
}
DTYPES = {"float": "fp32", "half": "fp16", "bfloat16": "bf16", "double": "fp64"}
"""nccl-tests type names -> aifbench's dtype names; others (int8, f8e4m3, ...) kept verbatim"""
TYPE_BYTES = {"float": 4, "half": 2, "bfloat16": 2, "double": 8, "int8": 1, "uint8": 1, "int32": 4,
              "uint32": 4, "int64": 8, "uint64": 8, "f8e4m3": 1, "f8e5m2": 1}

_HEADER = re.compile(r"^#\s*(?:nThread\s+\d+\s+)?nGpus(?:\(perProc\))?\s+\d+\s+minBytes\s+\d+")
_DEVICE = re.compile(r"^#\s+Rank\s+(?P<rank>\d+)\s+(?:Group\s+\d+\s+)?Pid\s+\d+\s+on\s+(?P<host>\S+)\s+"
                     r"device\s+(?P<dev>\d+)\s+\[(?P<bus>[^\]]*)\]\s+(?P<name>.+?)\s*$")
_COLUMNS = re.compile(r"^#\s+size\s+count\s+type\b")
_OOB = re.compile(r"^#\s*Out of bounds values\s*:\s*(?P<n>\d+)\s+(?P<ok>OK|FAILED)")
_AVG = re.compile(r"^#\s*Avg bus bandwidth\s*:\s*(?P<v>[-+0-9.eE]+|nan|inf)")
_STARTING = re.compile(r"Collective test (?:starting|concluded):\s*(?P<op>\w+?)_perf")
_PERF = re.compile(r"\b(?P<op>[a-z_]+?)_perf(?:_mpi)?\b")
_NUM = re.compile(r"^-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?$")


def _int_field(text: str, key: str) -> int | None:
    m = re.search(rf"{key}\s*:?\s*(\d+)", text)
    return int(m.group(1)) if m else None


def _header(text: str) -> dict[str, Any]:
    """minBytes, maxBytes, step (factor or bytes), iters, ... of the `# nThread ...` line."""
    out: dict[str, Any] = {k: _int_field(text, k) for k in ("nThread", "minBytes", "maxBytes", "validation")}
    m = re.search(r"(?<!warmup )(?<!agg )\biters:\s*(\d+)", text)  # not 'warmup iters' / 'agg iters'
    out["iters"] = int(m.group(1)) if m else None
    out["nGpus"] = _int_field(text, r"nGpus(?:\(perProc\))?")
    out["warmup_iters"] = _int_field(text, "warmup iters")
    m = re.search(r"step:\s*(\d+)\((factor|bytes)\)", text)
    out["step"] = (int(m.group(1)), m.group(2)) if m else None
    return out


def op_from_name(text: str) -> str | None:
    """The collective named in a binary name, a command line or a file name (None when none is)."""
    m = _PERF.search(text)
    if m and m.group("op") in OPS:
        return OPS[m.group("op")]
    flat = text.lower().replace("-", "_")
    for name in sorted(OPS, key=len, reverse=True):  # longest first: reduce_scatter before reduce
        if re.search(rf"(?<![a-z]){name}(?![a-z])", flat):
            return OPS[name]
    return None


def _infer_op(rows: list[dict[str, Any]], world: int) -> str | None:
    """all_reduce or reduce_scatter from the rows when n > 1: sum-reduced, root -1, and the element
    count x type size equal to the size (all_reduce) or the size / n (reduce_scatter)."""
    if world < 2 or not rows:
        return None
    r = max(rows, key=lambda x: x["size"])
    width = TYPE_BYTES.get(r["type"])
    if width is None or r["redop"] in ("none", "") or str(r["root"]).strip() != "-1" or not r["size"]:
        return None
    if r["count"] * width == r["size"]:
        return "all_reduce"
    if r["count"] * width * world == r["size"]:
        return "reduce_scatter"
    return None


def planned_sizes(header: dict[str, Any]) -> list[int]:
    """The sizes the header announces (minBytes, x factor or + bytes, up to maxBytes)."""
    lo, hi, step = header.get("minBytes"), header.get("maxBytes"), header.get("step")
    if lo is None or hi is None or step is None or hi < lo:
        return []
    out: list[int] = []
    size = lo
    while size <= hi and len(out) < 4096:
        out.append(size)
        nxt = size * step[0] if step[1] == "factor" else size + step[0]
        if nxt <= size:
            break
        size = nxt
    return out


def _elided(printed: list[int], header: dict[str, Any], unit: int) -> list[int]:
    """Announced sizes with no row. A printed size is the announced one rounded down to `unit`
    (the type size, x the ranks for gathers, scatters and alltoall), so a planned size counts as
    printed when its rounded value is, or a printed size lies within one step below it."""
    plan = planned_sizes(header)
    if not plan or not printed:
        return []
    step = header["step"]
    got = set(printed)

    def covered(size: int) -> bool:
        low = size / step[0] if step[1] == "factor" else size - step[0]
        return (size - size % unit) in got or any(low < p <= size for p in got)

    return [s for s in plan if not covered(s)]


def _value(text: str) -> float:
    return float("nan") if text.strip().lower() in ("nan", "n/a", "-nan") else float(text)


def _wrong(text: str) -> int | None:
    text = str(text).strip().rstrip("*")  # rccl-tests marks counts above its threshold with '*'
    if text.upper() == "N/A" or text in ("", "null", "None"):
        return None
    return int(float(text))


def _columns(line: str) -> list[str]:
    return line.lstrip("#").split()


def parse_text(path: Path, text: str, tool: str = "nccl-tests") -> Parsed:
    """Read a nccl-tests / rccl-tests stdout log (see the module docstring)."""
    p = Parsed(tool=tool)
    header: dict[str, Any] = {}
    columns: list[str] | None = None
    table: list[dict[str, Any]] = []
    op: str | None = None
    oob: tuple[int, bool] | None = None
    avg: float | None = None
    elided_ranks = False
    seen_table_end = False
    lines = text.splitlines()
    for no, raw in enumerate(lines, 1):
        line = raw.rstrip()
        s = line.strip()
        if not s:
            continue
        if (_HEADER.match(s) or _COLUMNS.match(s)) and table:
            raise ParseError(path, no, "one nccl-tests run per file; a second run starts here (split the file)")
        if _HEADER.match(s):
            header = _header(s)
            p.args = s.lstrip("# ").strip()
            continue
        m = _STARTING.search(s)
        if m and s.startswith("#"):
            op = OPS.get(m.group("op"), m.group("op"))
            continue
        if s.startswith("# nccl-tests version") or s.startswith("rccl-tests: Version"):
            p.version = s.split("ersion", 1)[1].strip()
            for key, val in re.findall(r"(nccl-headers|nccl-library)=(\S+)", s):
                p.versions[key] = val
            continue
        if s.startswith("NCCL version") or s.startswith("RCCL version"):
            p.versions["nccl" if s.startswith("NCCL") else "rccl"] = s.split("version", 1)[1].strip(" :")
            continue
        for key in ("HIP version", "ROCm version"):
            if s.startswith(key):
                p.versions[key.split()[0].lower()] = s.split(":", 1)[1].strip()
        m = _DEVICE.match(s)
        if m:
            p.devices.append(Device(rank=int(m["rank"]), node=m["host"], device=f"cuda:{m['dev']}",
                                    name=m["name"], bus_id=m["bus"]))
            continue
        if s == "..." and p.devices and columns is None:
            elided_ranks = True
            continue
        if _COLUMNS.match(s):
            columns = _columns(s)
            continue
        m = _OOB.match(s)
        if m:
            oob, seen_table_end = (int(m["n"]), m["ok"] == "OK"), True
            continue
        m = _AVG.match(s)
        if m:
            avg, seen_table_end = _value(m["v"]), True
            continue
        if s.startswith("#"):
            if "truncated" in s.lower() and columns is not None:
                p.notes.append(f"line {no}: the file says {s.lstrip('# ')!r}")
            continue
        if columns is None or seen_table_end:
            continue  # a line of another program before the table or after it
        tokens = s.split()
        if not _NUM.match(tokens[0]):
            continue  # NCCL INFO, MPI, ssh, wrapper lines interleaved in the table
        if len(tokens) != len(columns) or not tokens[0].isdigit() or _NUM.match(tokens[2]):
            p.notes.append(f"line {no}: a table row broken by interleaved output ({len(tokens)} of "
                           f"{len(columns)} fields: {s[:60]!r}); not used")
            continue
        try:
            table.append(_row_from_tokens(columns, tokens, no))
        except (ValueError, IndexError):
            raise ParseError(path, no, f"a table row of {len(columns)} fields under the column header "
                                       f"({' '.join(columns)}), got {s[:60]!r}") from None
    if columns is None:
        raise ParseError(path, len(lines) or 1, "the nccl-tests column header ('#  size  count  type  redop  root  "
                                                "time  algbw  busbw #wrong ...'); none found")
    if not p.devices:
        raise ParseError(path, 1, "the '# Using devices' block ('#  Rank  0 Group  0 Pid ... on HOST device 0 "
                                  "[BUS] NAME'); without it the ranks, nodes and GPUs are unknown")
    if not table:
        raise ParseError(path, len(lines), "at least one table row (size, count, type, ... #wrong) below the header")
    p.world_size = max(d.rank for d in p.devices) + 1
    listed = len({d.rank for d in p.devices})
    if elided_ranks or listed < p.world_size:
        p.missing.append(f"device block lists {listed} of {p.world_size} ranks")
    op = op or _op_from_lines(lines) or op_from_name(path.name) or _infer_op(table, p.world_size)
    if op is None:
        raise ParseError(path, 1, "the collective: no '# Collective test starting: X_perf' line, no X_perf in the "
                                  "file or its name, and the rows do not tell (name the file e.g. all_gather_perf.log)")
    if not header:
        p.missing.append("header line ('# nThread ... minBytes ... maxBytes ...')")
    if oob is None or avg is None:
        p.missing.append("footer ('# Out of bounds values' and '# Avg bus bandwidth'): the log ends before it")
    _finish(p, op, table, header, oob, avg)
    return p


def _op_from_lines(lines: Iterable[str]) -> str | None:
    for line in lines:
        m = _PERF.search(line)
        if m and m.group("op") in OPS:
            return OPS[m.group("op")]
    for line in lines:  # a wrapper line naming the collective: "running nccl test all_reduce ..."
        if "nccl" in line.lower() and not line.lstrip().startswith("#") and "INFO" not in line:
            found = op_from_name(line)
            if found:
                return found
    return None


def _row_from_tokens(columns: list[str], tokens: list[str], no: int) -> dict[str, Any]:
    row: dict[str, Any] = {"line": no, "size": int(tokens[0]), "count": int(tokens[1]), "type": tokens[2],
                           "redop": tokens[3], "root": tokens[4]}
    groups: list[dict[str, Any]] = []
    for name, tok in zip(columns[5:], tokens[5:]):
        if name == "time":
            groups.append({})
        if not groups:
            raise ValueError(name)
        key = {"time": "time_us", "algbw": "algbw", "busbw": "busbw", "#wrong": "wrong"}.get(name, name)
        groups[-1][key] = _wrong(tok) if key == "wrong" else _value(tok)
    for placement, g in zip(("out_of_place", "in_place"), groups):
        row[placement] = g
    return row


def _finish(p: Parsed, op: str, table: list[dict[str, Any]], header: dict[str, Any],
            oob: tuple[int, bool] | None, avg: float | None) -> None:
    """Rows on the metric dictionary; missing sizes; validity (see the module docstring)."""
    p.extra.update(op=op, header=header)
    n = p.world_size
    oob_failed = oob is not None and not oob[1]
    if oob is not None:
        p.extra["out_of_bounds"] = oob[0]
    any_wrong = any((r[k].get("wrong") or 0) > 0 for r in table for k in ("out_of_place", "in_place") if k in r)
    dtypes = set()
    for r in table:
        dtype = DTYPES.get(r["type"], r["type"])
        dtypes.add(dtype)
        for placement in ("out_of_place", "in_place"):
            g = r.get(placement)
            if not g:
                continue
            params: dict[str, Any] = {"op": op, "size_bytes": r["size"], "dtype": dtype}
            if placement == "in_place":
                params["in_place"] = True
            if r["redop"] not in ("sum", "none") and op in ("all_reduce", "reduce", "reduce_scatter"):
                params["redop"] = r["redop"]
            wrong = g.get("wrong")
            status, reason = "ok", ""
            if wrong:
                status, reason = "failed", f"#wrong = {wrong}: nccl-tests found {wrong} wrong element(s) in this result"
            elif oob is not None and oob_failed and not any_wrong:  # oob_failed implies oob; named for mypy
                status, reason = "failed", f"Out of bounds values: {oob[0]} FAILED (the row at fault is not printed)"
            checked = "not checked (#wrong N/A)" if wrong is None else f"#wrong {wrong}"
            detail = (f"nccl-tests {placement.replace('_', '-')}: mean of {header.get('iters') or '?'} iterations, "
                      f"n={n} ranks, {checked}, line {r['line']}")
            time_s = g["time_us"] * 1e-6
            for metric, value, peak in (("time_s", time_s, ""), ("algbw_gbps", g["algbw"], ""),
                                        ("busbw_gbps", g["busbw"], "gpu_link_gbps")):
                row_status, row_reason = status, reason
                if metric == "busbw_gbps" and n == 1 and status == "ok":
                    row_status, row_reason = "skipped", "single rank: busbw is 0 by definition (n = 1), not a link figure"
                if row_status == "ok" and not math.isfinite(value):
                    row_status, row_reason = "skipped", "the tool printed no number (nan)"
                shown = "" if row_status == "ok" else f"; printed value {value:g}"
                p.rows.append(Row(BENCHMARK, dict(params), metric, value, "mean", row_status, row_reason,
                                  detail + shown, int(header.get("iters") or 1), peak))
    if avg is not None:
        params = {"op": op, "dtype": "/".join(sorted(dtypes)), "sizes": "all"}
        status = "failed" if (any_wrong or oob_failed) else "ok"
        reason = "a row of the table has #wrong > 0 or out-of-bounds values" if status == "failed" else ""
        if status == "ok" and n == 1:
            status, reason = "skipped", "single rank: busbw is 0 by definition (n = 1)"
        p.rows.append(Row(BENCHMARK, params, "avg_busbw_gbps", avg, "mean", status, reason,
                          f"nccl-tests footer 'Avg bus bandwidth': mean busbw over the {len(table)} printed size(s) "
                          "and both placements (and any sizes the file does not show)", len(table)))
    printed = [r["size"] for r in table]
    unit = TYPE_BYTES.get(table[0]["type"], 1) * (n if op in ("all_gather", "reduce_scatter", "all_to_all", "gather", "scatter") else 1)
    gone = _elided(printed, header, unit)
    if gone:
        p.missing.append(f"{len(gone)} of the {len(planned_sizes(header))} sizes the header announces (minBytes "
                         f"{header.get('minBytes')} .. maxBytes {header.get('maxBytes')}) have no row: "
                         + ", ".join(map(str, gone)) + " B")


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def parse_json(path: Path, data: dict[str, Any], tool: str = "nccl-tests") -> Parsed:
    """Read a nccl-tests `-J` JSON document (format version 3)."""
    version = data.get("version")
    if version != 3:
        raise ParseError(path, 1, f"nccl-tests JSON format version 3 (key 'version'), got {version!r}")
    p = Parsed(tool=tool)
    args = [str(a) for a in data.get("args") or []]
    p.args = " ".join(args)
    nccl = data.get("nccl_version")
    if isinstance(nccl, int):  # NCCL_VERSION_CODE: major*10000 + minor*100 + patch
        nccl = f"{nccl // 10000}.{nccl // 100 % 100}.{nccl % 100}"
    p.versions["nccl"] = _str(nccl)
    for key, attr in (("start_time", "started"), ("end_time", "ended")):
        try:
            setattr(p, attr, datetime.strptime(str(data.get(key)), "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc))
        except ValueError:
            pass
    config = data.get("config") or {}
    for d in config.get("devices") or []:
        p.devices.append(Device(rank=int(d["rank"]), node=str(d.get("hostname", "")), device=f"cuda:{d.get('device')}",
                                name=str(d.get("device_info", "")), bus_id=str(d.get("device_hex", ""))))
    if not p.devices:
        raise ParseError(path, 1, "config.devices (one record per rank) in the nccl-tests JSON")
    p.world_size = max(d.rank for d in p.devices) + 1
    header = {"minBytes": config.get("minimum_bytes"), "maxBytes": config.get("maximum_bytes"),
              "iters": config.get("iterations"), "warmup_iters": config.get("warmup_iters"),
              "nGpus": config.get("ngpus"), "nThread": config.get("nthreads")}
    if config.get("step_factor"):
        header["step"] = (int(config["step_factor"]), "factor")
    elif config.get("step_bytes"):
        header["step"] = (int(config["step_bytes"]), "bytes")
    table = []
    for i, r in enumerate(data.get("results") or []):
        row = {"line": f"results[{i}]", "size": int(r["size"]), "count": int(r["count"]), "type": str(r["type"]),
               "redop": str(r["redop"]), "root": str(r["root"]).strip()}
        for placement in ("out_of_place", "in_place"):
            g = r.get(placement)
            if g:
                row[placement] = {"time_us": _value(str(g["time"])), "algbw": _value(str(g["alg_bw"])),
                                  "busbw": _value(str(g["bus_bw"])), "wrong": _wrong(_str(g.get("nwrong")))}
        table.append(row)
    if not table:
        raise ParseError(path, 1, "a non-empty 'results' list in the nccl-tests JSON")
    op = (op_from_name(Path(args[0]).name) if args else None) or op_from_name(path.name) or _infer_op(table, p.world_size)
    if op is None:
        raise ParseError(path, 1, "the collective: args[0] names no X_perf binary and the rows do not tell")
    oob_rec = data.get("out_of_bounds") or {}
    oob = (int(oob_rec["count"]), str(oob_rec.get("okay")).lower() == "true") if "count" in oob_rec else None
    avg_rec = data.get("average_bus_bandwidth") or {}
    avg = _value(str(avg_rec["bandwidth"])) if "bandwidth" in avg_rec else None
    errors = [e for e in data.get("errors") or [] if e]
    if errors:
        p.notes.append("errors: " + "; ".join(map(str, errors)))
    if oob is None or avg is None or "end_time" not in data:
        p.missing.append("footer (out_of_bounds, average_bus_bandwidth, end_time): the document ends before it")
    _finish(p, op, table, header, oob, avg)
    return p


def parse(path: Path, text: str, tool: str = "nccl-tests") -> Parsed:
    """Text log or JSON, by content."""
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ParseError(path, exc.lineno, f"valid JSON ({exc.msg})") from None
        return parse_json(path, data, tool)
    return parse_text(path, text, tool)
