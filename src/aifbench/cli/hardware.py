"""`aifbench hardware`: the catalog of datasheet peaks, and what this node's devices match."""

from __future__ import annotations

import argparse

from aifbench.cli.args import add_format_option

COLUMNS = (("bf16", "tflops:bf16"), ("fp8", "tflops:fp8"), ("tf32", "tflops:tf32"), ("fp64", "tflops:fp64"),
           ("HBM GB/s", "hbm_gbps"), ("host GB/s", "host_link_gbps"), ("GPU link GB/s", "gpu_link_gbps"),
           ("TDP W", "tdp_w"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hardware", help="datasheet peaks per GPU, and what this node's GPUs match",
                       description="List the hardware catalog (dense TFLOP/s, GB/s per direction, W), "
                                   "or with --detect show this node's devices, their host link and catalog match.")
    p.add_argument("ids", nargs="*", metavar="ID", help="catalog ids to show with every source (default: a table of all)")
    p.add_argument("--detect", action="store_true", help="detect this node's GPUs and match them against the catalog")
    add_format_option(p)
    p.set_defaults(func=cmd_hardware)


def cmd_hardware(args: argparse.Namespace) -> int:
    from aifbench.hardware import catalog

    from aifbench.errors import ConfigError

    cat = catalog.load()
    if args.detect:
        if args.ids:
            raise ConfigError(f"--detect matches this node's GPUs and takes no catalog ids (got {' '.join(args.ids)})")
        return _detect(cat)
    if args.ids:
        entries = [cat.get(entry_id) for entry_id in args.ids]  # every id checked before printing any
        for entry in entries:
            _details(entry)
        return 0
    _table(cat, args.format)
    return 0


def _table(cat, fmt: str) -> None:
    from aifbench.cli.output import Col, emit

    rows = []
    for entry in cat.entries.values():
        row = {"id": entry.id, "model": entry.model}
        for _, kind in COLUMNS:
            peak = entry.peaks.get(kind)
            row[kind] = None if peak is None else peak.value
        row["estimates"] = [kind for kind, peak in entry.peaks.items() if peak.estimate]
        rows.append(row)

    def cell(kind: str):
        return lambda r: "-" if r[kind] is None else f"{r[kind]:g}{'*' if kind in r['estimates'] else ''}"

    cols = [Col("id"), Col("model", kind="text"), *(Col(kind, header, kind="num", show=cell(kind)) for header, kind in COLUMNS)]
    emit(rows, cols, fmt, "hardware catalog (dense TFLOP/s; bandwidth per direction; * = estimate; "
                          "- = none, see 'aifbench hardware ID')")


def _details(entry) -> None:
    from aifbench.cli.output import console
    from aifbench.hardware.catalog import KINDS

    console.print(f"[bold]{entry.id}[/bold]  {entry.model}", markup=True)
    console.print(f"  names: {', '.join(entry.names) or '(match by PCI id)'}   PCI ids: {', '.join(entry.pci_device_ids) or '-'}"
                  f"   memory: {entry.memory_gb:g} GB {entry.memory_type}   host link: {entry.host_link or '-'}"
                  f"   figures per: {entry.scope}", markup=False, soft_wrap=True)
    for kind in KINDS:
        console.print(f"  {kind}: {entry.peak(kind)[1]}", markup=False, soft_wrap=True)
    for kind, peak in entry.module.items():
        console.print(f"  module {kind}: {peak.describe(entry.id)}", markup=False, soft_wrap=True)


def _detect(cat) -> int:
    import torch

    from aifbench.cli.output import console
    from aifbench.hardware import detect

    if not torch.cuda.is_available():
        match = cat.match(device="cpu")
        console.print(f"no GPU visible (torch.cuda.is_available() is False): device cpu -> catalog {match.entry.id}",
                      markup=False)
        return 0
    for index in range(torch.cuda.device_count()):
        device = f"cuda:{index}"
        ident = detect.identity(device)
        match = cat.match(ident["name"], ident.get("pci_device_id"), device)
        found = f"catalog {match.entry.id} (by {match.how})" if match.entry else f"NO MATCH: {match.reason}"
        console.print(f"{device}: {ident['name']}  PCI {ident.get('pci_device_id') or '?'} at {ident.get('pci_bus_id') or '?'}"
                      f"  cc {ident.get('compute_capability')}{' ' + ident['arch'] if ident.get('arch') else ''}"
                      f"\n  host link: {detect.host_link(device).describe()}\n  {found}", markup=False)
    return 0

