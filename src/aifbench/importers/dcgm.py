"""`dcgmi diag` results (NVIDIA DCGM): the table and the `-j` JSON, kept as verdict rows.

Table (dcgmi diag, DCGM 2.x and 3.x): `+---+` rules, `| Diagnostic | Result |`, category rows
(`|-----  Deployment  ---+---|` or `+-----  Stress  ---+---+`), one row per test (`| Name | Pass |`,
`Pass - All`, `Fail - GPU: 3`, `Warn`, `Skip`), and `| Warning |` / `| Error |` / `| Info |` rows
whose text wraps over following rows with an empty first cell (dcgmi cuts the text at its width:
kept as printed). A `Metadata` category holds `DCGM Version`, `Driver Version Detected` and `GPU
Device IDs Detected` (PCI device ids, matched to the hardware catalog).

JSON (`dcgmi diag -j`, DCGM 3.x): {"DCGM GPU Diagnostic": {"test_categories": [{"category",
"tests": [{"name", "results": [{"gpu_ids" | "gpu_id", "status", "warnings"?, "info"?}]}]}]}};
`null` entries between tests are skipped, text before the first `{` (warnings) is ignored.

Each result is a `diag_pass` row of benchmark `dcgm_diag`, case (category, test, gpus): Pass 1;
Warn 0 (ok, the warning in the detail); Fail a failed row with the error text as its reason (so
validate can never PASS the run); Skip a skipped row.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from aifbench.importers.records import NOT_PRINTED, Device, Parsed, ParseError, Row

BENCHMARK = "dcgm_diag"
_RESULT = re.compile(r"^(Pass|Fail|Warn|Skip)\b(?:\s*-\s*(All|GPUs?:\s*[\d,\s]+))?", re.I)
_TEXT_ROWS = ("warning", "error", "info")


def _row(p: Parsed, category: str, test: str, status: str, gpus: str, text: str = "") -> None:
    params = {"category": category, "test": test, "gpus": gpus}
    status = status.capitalize()
    detail = f"dcgmi diag {p.version}: {status}" + (f": {text}" if text else "")
    if status == "Pass":
        p.rows.append(Row(BENCHMARK, params, "diag_pass", 1.0, detail=detail))
    elif status == "Warn":
        p.rows.append(Row(BENCHMARK, params, "diag_pass", 0.0, detail=detail))
    elif status == "Fail":
        p.rows.append(Row(BENCHMARK, params, "diag_pass", float("nan"), status="failed",
                          reason=f"dcgmi diag: {test} Fail" + (f": {text}" if text else ""), detail=detail))
    else:
        p.rows.append(Row(BENCHMARK, params, "diag_pass", float("nan"), status="skipped",
                          reason=f"dcgmi diag: {test} {status}", detail=detail))


def parse_table(path: Path, text: str) -> Parsed:
    p = Parsed(tool="dcgm-diag")
    lines = text.splitlines()
    category = ""
    pending: list[dict[str, Any]] = []  # results of the current test, waiting for their Error/Warning text
    meta: dict[str, str] = {}
    last_text: list[str] | None = None
    seen_header = False

    def flush() -> None:
        for r in pending:
            _row(p, r["category"], r["test"], r["status"], r["gpus"], " ".join("".join(r["text"]).split()))
        pending.clear()

    for no, raw in enumerate(lines, 1):
        s = raw.strip()
        m = re.match(r"^[|+]-+\s+(.+?)\s+-+[+|]", s)
        if m:
            flush()
            category, last_text = m.group(1).strip(), None
            continue
        if not s.startswith("|"):
            continue
        raw_cells = s.strip("|").split("|")
        cells = [c.strip() for c in raw_cells]
        if len(cells) != 2:
            raise ParseError(path, no, f"a dcgmi diag table row '| Name | Result |', got {s[:60]!r}")
        name, result = cells
        if name == "Diagnostic" and result == "Result":
            seen_header = True
            continue
        if category.lower() == "metadata":
            if name:
                meta[name] = result
                last_text = None
            continue
        chunk = raw_cells[1][1:-2] if len(raw_cells[1]) > 3 else result  # fixed-width slice: dcgmi wraps mid-word
        if name.lower() in _TEXT_ROWS:
            last_text = [chunk]
            target = pending[-1] if pending else None
            if target is not None:
                target["text"] = last_text
            continue
        if not name:
            r = _RESULT.match(result)
            if r and pending:
                pending.append({**pending[-1], "status": r.group(1), "gpus": _gpus(r.group(2)), "text": []})
                last_text = None
            elif last_text is not None:
                last_text.append(chunk)  # wrapped text: dcgmi cut it at the column width
            continue
        r = _RESULT.match(result)
        if not r:
            raise ParseError(path, no, f"a result (Pass, Fail, Warn, Skip, optionally '- All' / '- GPU: N') for "
                                       f"{name!r}, got {result[:40]!r}")
        flush()
        pending.append({"category": category, "test": name, "status": r.group(1), "gpus": _gpus(r.group(2)), "text": []})
        last_text = None
    flush()
    if not seen_header or not p.rows:
        raise ParseError(path, len(lines) or 1, "the dcgmi diag table: '| Diagnostic | Result |' and at least one test row")
    p.version = meta.get("DCGM Version", "")
    if "Driver Version Detected" in meta:
        p.versions["driver"] = meta["Driver Version Detected"]
    ids = [x.strip() for x in meta.get("GPU Device IDs Detected", "").split(",") if x.strip()]
    _devices(p, ids)
    return p


def _gpus(text: str | None) -> str:
    if not text or text.lower() == "all":
        return "all"
    return ",".join(x for x in re.split(r"[,\s]+", text.split(":", 1)[1]) if x)


def _devices(p: Parsed, pci_ids: list[str]) -> None:
    pci = pci_ids[0] if pci_ids and len(set(pci_ids)) == 1 else None
    p.devices = [Device(rank=0, node=NOT_PRINTED, device="cuda:0", name=NOT_PRINTED,
                        pci_device_id=f"0x{pci.lower()}" if pci else None)]
    p.extra["gpu_pci_device_ids"] = pci_ids
    p.extra["gpu_count"] = len(pci_ids) or None


def parse_json(path: Path, text: str) -> Parsed:
    start = text.find("{")
    try:
        data = json.loads(text[start:])
    except json.JSONDecodeError as exc:
        line = text[:start].count("\n") + exc.lineno
        raise ParseError(path, line, f"valid JSON after the first '{{' ({exc.msg})") from None
    root = data.get("DCGM GPU Diagnostic") if isinstance(data, dict) else None
    if not isinstance(root, dict):
        raise ParseError(path, 1, "a dcgmi diag -j document: a top-level 'DCGM GPU Diagnostic' object")
    p = Parsed(tool="dcgm-diag")
    p.version = str(root.get("version") or data.get("version") or "")
    meta = root.get("metadata") or {}
    if isinstance(meta, dict) and meta.get("Driver Version Detected"):
        p.versions["driver"] = str(meta["Driver Version Detected"])
    for cat in root.get("test_categories") or []:
        if not isinstance(cat, dict):
            continue
        for test in cat.get("tests") or []:
            if not isinstance(test, dict):
                continue  # null entries between tests
            for res in test.get("results") or []:
                if not isinstance(res, dict):
                    continue
                gpus = str(res.get("gpu_ids", res.get("gpu_id", "all")))
                text_ = "; ".join(str(w.get("warning", w)) if isinstance(w, dict) else str(w)
                                  for w in (res.get("warnings") or []))
                _row(p, str(cat.get("category", "")), str(test.get("name", "")), str(res.get("status", "Skip")),
                     gpus, text_)
    if not p.rows:
        raise ParseError(path, 1, "at least one test result under 'test_categories'")
    _devices(p, [])
    return p


def parse(path: Path, text: str) -> Parsed:
    if re.search(r'"DCGM GPU Diagnostic"\s*:', text):
        return parse_json(path, text)
    return parse_table(path, text)
