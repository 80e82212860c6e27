"""nvbandwidth output (NVIDIA/nvbandwidth): the text report and the `-j` JSON.

Text: `nvbandwidth Version: vX`, `CUDA Runtime Version`, `CUDA Driver Version`, `Driver Version`,
older releases a `Device N: NAME` line per GPU; then per testcase `Running NAME.`, a description
(`memcpy CE CPU(row) -> GPU(column) bandwidth (GB/s)`; bidirectional tests of v0.10 print Read1 /
Write2 / Total sub-matrices), a line of column indices, one line per row index with GB/s or
`N/A` (the diagonal of GPU-GPU tests; pre-0.5 releases print 0.00 there), `SUM NAME value` and
(v0.10) `COEFFICIENT_OF_VARIATION NAME value`. JSON: {"nvbandwidth": {"CUDA Runtime Version",
"Driver Version", "GPU Device list": ["0: NAME (BUS): host"], "git_version", "testcases":
[{"name", "bandwidth_description", "bandwidth_matrix" (strings, "N/A"), "status", "sum"}]}}.

Each matrix entry becomes a `link_gbps` row of benchmark `nvbandwidth`, case (testcase, matrix,
row, column) with the description kept in the detail; each SUM a row of column "sum".
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from aifbench.importers.records import NOT_PRINTED, Device, Parsed, ParseError, Row

BENCHMARK = "nvbandwidth"
_SUB = re.compile(r"\)\s+(Read\d|Write\d|Total)\s+bandwidth", re.I)


def _matrix_rows(p: Parsed, testcase: str, description: str, matrix: list[list[str]], where: str) -> None:
    sub = _SUB.search(description)
    part = sub.group(1).lower() if sub else ""
    gpu_gpu = description.count("GPU(") == 2
    for i, row in enumerate(matrix):
        for j, cell in enumerate(row):
            text = str(cell).strip()
            if text.upper() == "N/A" or (gpu_gpu and i == j):
                continue  # no copy from a GPU to itself (old releases print 0.00 there)
            try:
                value = float(text)
            except ValueError:
                raise ParseError(p.extra["path"], 0, f"a number or N/A in {where} row {i}, got {text!r}") from None
            params = {"testcase": testcase, "row": i, "column": j}
            if part:
                params["matrix"] = part
            p.rows.append(Row(BENCHMARK, params, "link_gbps", value, "value",
                              detail=f"nvbandwidth {p.version}: {description}"))


def _sum_row(p: Parsed, testcase: str, name: str, value: float) -> None:
    params: dict[str, Any] = {"testcase": testcase, "row": "sum", "column": "sum"}
    if name != testcase:
        params["matrix"] = name.removeprefix(testcase).strip("_")
    p.rows.append(Row(BENCHMARK, params, "link_gbps", value, "value",
                      detail=f"nvbandwidth {p.version}: SUM {name} (every entry of the matrix added)"))


def parse_text(path: Path, text: str) -> Parsed:
    p = Parsed(tool="nvbandwidth")
    p.extra["path"] = str(path)
    lines = text.splitlines()
    names: dict[int, str] = {}
    testcase, description, header_cols = "", "", 0
    matrix: list[list[str]] = []
    matrix_start = 0
    sums: set[str] = set()
    started: list[tuple[str, int]] = []

    def flush() -> None:
        nonlocal matrix, description
        if matrix and description:
            _matrix_rows(p, testcase or "(unnamed)", description, matrix, f"line {matrix_start}")
        matrix, description = [], ""

    for no, raw in enumerate(lines, 1):
        s = raw.strip()
        if not s:
            flush()
            continue
        m = re.match(r"nvbandwidth Version:\s*(\S+)", s)
        if m:
            p.version = m.group(1)
            continue
        m = re.match(r"(CUDA Runtime Version|CUDA Driver Version(?: \(API\))?|Driver Version):\s*(.+)$", s)
        if m:
            key = {"CUDA Runtime Version": "cuda_runtime", "Driver Version": "driver"}.get(m.group(1), "cuda_driver")
            p.versions[key] = m.group(2).strip()
            continue
        m = re.match(r"Device (\d+):\s*(.+?)(?:\s*\([0-9a-fA-F:.]+\))?\s*$", s)  # v0.6+: NAME (BUS ID)
        if m:
            names[int(m.group(1))] = m.group(2).strip()
            continue
        m = re.match(r"Running (\w+)\.?$", s)
        if m:
            flush()
            testcase = m.group(1)
            started.append((testcase, no))
            continue
        if "bandwidth (GB/s)" in s and "(row)" in s:
            flush()
            description = s
            header_cols = 0
            continue
        m = re.match(r"SUM (\S+)\s+([-+0-9.eE]+)$", s)
        if m:
            flush()
            _sum_row(p, testcase or m.group(1), m.group(1), float(m.group(2)))
            sums.add(testcase or m.group(1))
            continue
        if s.startswith("COEFFICIENT_OF_VARIATION"):
            continue
        if description:
            t = s.split()
            if not header_cols and all(x.isdigit() for x in t):
                header_cols, matrix_start = len(t), no
                continue
            if header_cols and t[0].isdigit() and len(t) == header_cols + 1:
                matrix.append(t[1:])
                continue
            if header_cols:
                raise ParseError(path, no, f"a matrix row: row index and {header_cols} values (GB/s or N/A), got {s[:60]!r}")
    flush()
    if not started and not p.rows:
        raise ParseError(path, len(lines) or 1, "nvbandwidth output: 'Running <testcase>.' and a bandwidth matrix")
    for name, no in started:
        if name not in sums:
            p.missing.append(f"SUM line of testcase {name} (started line {no})")
    if not started:
        p.missing.append("the 'nvbandwidth Version' header and 'Running <testcase>.' line: a fragment")
    _devices(p, names, _gpu_count(p))
    return p


def _gpu_count(p: Parsed) -> int:
    """GPUs the matrices index: columns of 'GPU(column)' tests, rows of 'GPU(row)' tests."""
    idx = [int(r.params[k]) for r in p.rows for k, tag in (("row", "GPU(row)"), ("column", "GPU(column)"))
           if isinstance(r.params.get(k), int) and tag in r.detail]
    return max(idx) + 1 if idx else 0


def _devices(p: Parsed, names: dict[int, str], counted: int) -> None:
    n = max([counted, *(i + 1 for i in names)]) if (names or counted) else 1
    p.devices = [Device(rank=0, node=NOT_PRINTED, device="cuda:0", name=names.get(0, NOT_PRINTED))]
    p.extra["gpus"] = [{"index": i, "name": names.get(i, NOT_PRINTED)} for i in range(n)]


def parse_json(path: Path, data: dict[str, Any]) -> Parsed:
    root = data.get("nvbandwidth")
    if not isinstance(root, dict):
        raise ParseError(path, 1, "an nvbandwidth -j document: a top-level 'nvbandwidth' object")
    p = Parsed(tool="nvbandwidth")
    p.extra["path"] = str(path)
    p.version = str(root.get("git_version") or ".".join(str(root.get(f"Version {k}", "")) for k in ("Major", "Minor", "Patch")))
    for key, name in (("CUDA Runtime Version", "cuda_runtime"), ("CUDA Driver API Version", "cuda_driver"),
                      ("Driver Version", "driver")):
        if key in root:
            p.versions[name] = str(root[key])
    names: dict[int, str] = {}
    for entry in root.get("GPU Device list") or []:
        m = re.match(r"(\d+):\s*(.+?)\s*\(([0-9a-fA-F:.]+)\)", str(entry))
        if m:
            names[int(m.group(1))] = m.group(2)
    cases = root.get("testcases")
    if not isinstance(cases, list) or not cases:
        raise ParseError(path, 1, "a non-empty 'testcases' list in the nvbandwidth document")
    for i, tc in enumerate(cases):
        name = str(tc.get("name", f"testcase{i}"))
        status = str(tc.get("status", ""))
        if status and status.lower() != "passed":
            p.notes.append(f"testcase {name}: status {status}")
            continue
        _matrix_rows(p, name, str(tc.get("bandwidth_description", "")), tc.get("bandwidth_matrix") or [],
                     f"testcases[{i}]")
        if "sum" in tc:
            _sum_row(p, name, name, float(tc["sum"]))
    _devices(p, names, _gpu_count(p))
    return p


def parse(path: Path, text: str) -> Parsed:
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ParseError(path, exc.lineno, f"valid JSON ({exc.msg})") from None
        return parse_json(path, data)
    return parse_text(path, text)
