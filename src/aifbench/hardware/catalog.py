"""Datasheet peaks per accelerator SKU (catalog.toml), matched exactly, and the peak lookup.

    entry = load().match(name="NVIDIA H100 80GB HBM3", pci_device_id="0x2330").entry
    lookup = peak_lookup_for("NVIDIA H100 80GB HBM3", "0x2330", device="cuda:0")
    lookup("tflops:bf16")  -> (989.0, "catalog h100-sxm5-80gb: 989 TFLOP/s ...; source ...")
    lookup("tflops:fp8")   -> (None, "why there is none")

Matching is exact (whitespace runs collapsed, case ignored) on the device name torch/NVML
report, or on the PCI device id; never substring or prefix, so 'NVIDIA H100 80GB HBM3e' is not an
H100 SXM5. A device that matches nothing gets no peaks and the reason, and its results are
still recorded with pct_of_peak empty. Extra catalog files (same format) from AIFBENCH_CATALOG
(os.pathsep-separated) add entries or replace entries with the same id.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from aifbench.errors import ConfigError, one_of
from aifbench.typed_toml import build, spec

ENV_VAR = "AIFBENCH_CATALOG"
DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8")
UNITS = {**{f"tflops:{d}": "TFLOP/s" for d in DTYPES},
         "hbm_gbps": "GB/s", "host_link_gbps": "GB/s per direction",
         "gpu_link_gbps": "GB/s per direction", "tdp_w": "W"}
KINDS = tuple(UNITS)


@dataclass(frozen=True, slots=True)
class Peak:
    """One datasheet figure in the unit of its kind, with where it comes from."""

    kind: str
    value: float
    source: str
    """citation text (resolved from the catalog's [sources] table)"""
    note: str = ""
    estimate: bool = False

    def describe(self, entry_id: str) -> str:
        """The peak_source text stored beside every pct_of_peak computed from this figure."""
        head = f"{'ESTIMATE ' if self.estimate else ''}catalog {entry_id} {self.kind} = {self.value:g} {UNITS[self.kind]}"
        note = f" ({self.note})" if self.note else ""
        return f"{head}{note}; source: {self.source}"


@dataclass(frozen=True)
class Entry:
    id: str
    vendor: str
    model: str
    names: tuple[str, ...]
    pci_device_ids: tuple[str, ...]
    memory_gb: float
    memory_type: str
    host_link: str
    scope: str = "device"
    peaks: Mapping[str, Peak] = field(default_factory=dict)
    missing: Mapping[str, str] = field(default_factory=dict)
    module: Mapping[str, Peak] = field(default_factory=dict)
    """whole-module figures where a torch device is part of one (MI250X: 2 GCDs)"""

    def peak(self, kind: str) -> tuple[float | None, str]:
        check_kind(kind)
        if kind in self.peaks:
            return self.peaks[kind].value, self.peaks[kind].describe(self.id)
        reason = self.missing.get(kind, "no figure in the catalog")
        return None, f"catalog {self.id} has no {kind}: {reason}"


@dataclass(frozen=True, slots=True)
class Match:
    entry: Entry | None
    how: str
    """'name', 'pci_device_id', 'name+pci_device_id', 'device cpu', or '' when unmatched"""
    reason: str = ""
    """why nothing matched (empty when matched)"""


def check_kind(kind: str) -> None:
    if kind not in UNITS:
        raise one_of("peak kind", kind, KINDS)


def normalize_name(name: str) -> str:
    """Case-folded, whitespace runs collapsed: the only liberty exact matching takes."""
    return " ".join(str(name).split()).casefold()


_PCI_RE = re.compile(r"^(?:0x)?(?:(?P<vendor>[0-9a-f]{4}):)?(?P<device>[0-9a-f]{4})(?P<nvml_vendor>[0-9a-f]{4})?$")


def normalize_pci_id(value: str | int | None) -> str | None:
    """'0x2330', '2330', 0x2330, '10de:2330' or NVML's combined '0x233010DE' -> '0x2330'.

    Returns None for an empty or malformed id (the caller then matches by name alone).
    """
    if value is None:
        return None
    if isinstance(value, int):
        value = f"{value:04x}" if value <= 0xFFFF else f"{value:08x}"
    m = _PCI_RE.match(str(value).strip().lower())
    return f"0x{m.group('device')}" if m else None


class Catalog:
    """All entries, indexed by id, exact name and PCI device id."""

    def __init__(self, entries: Iterable[Entry]):
        self.entries: dict[str, Entry] = {}
        for e in entries:
            self.entries[e.id] = e  # later files replace earlier entries with the same id
        self.by_name: dict[str, Entry] = {}
        self.by_pci: dict[str, Entry] = {}
        for e in self.entries.values():
            for n in e.names:
                _claim(self.by_name, normalize_name(n), e, "device name")
            for p in e.pci_device_ids:
                _claim(self.by_pci, normalize_pci_id(p) or p, e, "PCI device id")

    def ids(self) -> list[str]:
        return sorted(self.entries)

    def get(self, entry_id: str) -> Entry:
        try:
            return self.entries[entry_id]
        except KeyError:
            raise one_of("hardware catalog id", entry_id, self.entries) from None

    def match(self, name: str | None = None, pci_device_id: str | int | None = None,
              device: str | None = None) -> Match:
        """The entry for a device: exact name and/or PCI device id; 'cpu' devices -> generic entry."""
        if device is not None and not str(device).startswith("cuda"):
            return Match(self.entries.get("cpu"), "device cpu", "" if "cpu" in self.entries else "no cpu entry")
        by_name = self.by_name.get(normalize_name(name)) if name else None
        pci = normalize_pci_id(pci_device_id)
        by_pci = self.by_pci.get(pci) if pci else None
        if by_name and by_pci and by_name is not by_pci:
            return Match(None, "", f"device name {name!r} is catalog {by_name.id} but PCI device id {pci} "
                                   f"is catalog {by_pci.id}; refusing to choose")
        if by_name and by_pci:
            return Match(by_name, "name+pci_device_id")
        if by_name:
            return Match(by_name, "name")
        if by_pci:
            return Match(by_pci, "pci_device_id")
        return Match(None, "", f"device {name!r} (PCI device id {pci or 'unknown'}) is not in the hardware "
                               f"catalog (exact name or PCI id match only); add it through {ENV_VAR}")


def _claim(index: dict[str, Entry], key: str, entry: Entry, what: str) -> None:
    other = index.get(key)
    if other is not None and other.id != entry.id:
        raise ConfigError(f"hardware catalog: {what} {key!r} claimed by both {other.id} and {entry.id}")
    index[key] = entry


# --- loading ------------------------------------------------------------------------------

def _read(path: Path) -> dict[str, Any]:
    from aifbench.files import read_toml

    try:
        return read_toml(path)
    except ConfigError as exc:
        raise ConfigError(f"hardware catalog: {exc}") from None


def _positive(loc: str, value: float) -> float:
    if value <= 0:
        raise ConfigError(f"{loc}: value must be a positive number, got {value!r}")
    return value


def _pci_ids(loc: str, ids: tuple[str, ...]) -> tuple[str, ...]:
    out = tuple(normalize_pci_id(p) or "" for p in ids)
    if "" in out:
        raise ConfigError(f"{loc}: malformed PCI device id in {list(ids)}")
    return out


@dataclass(frozen=True, kw_only=True, slots=True)
class PeakSpec:
    """One figure as a catalog file writes it: { value = <number>, source = <key>, note?, estimate? }"""

    value: float = spec(check=_positive)
    source: str
    """a key of the file's [sources] table (or an earlier file's)"""
    note: str = ""
    estimate: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceTable:
    """One [[device]] table of a catalog file; becomes an Entry once its sources are resolved."""

    id: str
    vendor: str = ""
    model: str = ""
    names: tuple[str, ...] = ()
    pci_device_ids: tuple[str, ...] = spec((), check=_pci_ids)
    memory_gb: float = 0.0
    memory_type: str = ""
    host_link: str = ""
    scope: str = "device"
    peaks: Mapping[str, PeakSpec] = spec(default_factory=dict, keys=KINDS)
    missing: Mapping[str, str] = spec(default_factory=dict, keys=KINDS)
    module: Mapping[str, PeakSpec] = spec(default_factory=dict, keys=KINDS)


@dataclass(frozen=True, kw_only=True, slots=True)
class CatalogFile:
    """A whole catalog file (catalog.toml, or one named by AIFBENCH_CATALOG)."""

    schema: int = spec(1, choices=(1,))
    sources: Mapping[str, str] = spec(default_factory=dict)
    device: tuple[DeviceTable, ...] = ()


def _peaks(table: Mapping[str, PeakSpec], sources: Mapping[str, str], where: str) -> dict[str, Peak]:
    out = {}
    for kind, p in table.items():
        if p.source not in sources:
            raise one_of(f"source in {where} {kind}", p.source, sources)
        out[kind] = Peak(kind, p.value, sources[p.source], p.note, p.estimate)
    return out


def _entry(d: DeviceTable, sources: Mapping[str, str], where: str) -> Entry:
    here = f"{where} [[device]] {d.id}"
    both = set(d.peaks) & set(d.missing)
    if both:
        raise ConfigError(f"{here}: {sorted(both)[0]} is both a peak and missing")
    return Entry(id=d.id, vendor=d.vendor, model=d.model, names=d.names, pci_device_ids=d.pci_device_ids,
                 memory_gb=d.memory_gb, memory_type=d.memory_type, host_link=d.host_link, scope=d.scope,
                 peaks=_peaks(d.peaks, sources, here), missing=dict(d.missing),
                 module=_peaks(d.module, sources, here + " module"))


def builtin_path() -> Path:
    return Path(str(resources.files("aifbench.hardware"))) / "catalog.toml"


def extra_paths(env: Mapping[str, str] | None = None) -> list[Path]:
    env = os.environ if env is None else env
    return [Path(p) for p in env.get(ENV_VAR, "").split(os.pathsep) if p.strip()]


def load_files(paths: Iterable[Path]) -> Catalog:
    """Read catalog files in order (later ids replace earlier); sources are per file, merged."""
    entries: list[Entry] = []
    sources: dict[str, str] = {}
    for path in paths:
        data = build(CatalogFile, _read(path), f"hardware catalog {path}")
        sources.update(data.sources)
        entries += [_entry(d, sources, path.name) for d in data.device]
    return Catalog(entries)


@lru_cache(maxsize=8)
def _load_cached(extra: tuple[str, ...]) -> Catalog:
    return load_files([builtin_path(), *map(Path, extra)])


def load() -> Catalog:
    """The shipped catalog plus any AIFBENCH_CATALOG files (cached per set of files)."""
    return _load_cached(tuple(str(p) for p in extra_paths()))


# --- the lookup the runner attaches to Context --------------------------------------------

class PeakTable:
    """Callable kind -> (peak or None, source or reason); what Context.peak_lookup expects."""

    def __init__(self, match: Match, device_name: str = ""):
        self.match = match
        self.device_name = device_name

    @property
    def entry(self) -> Entry | None:
        return self.match.entry

    def __call__(self, kind: str) -> tuple[float | None, str]:
        check_kind(kind)
        if self.match.entry is None:
            return None, self.match.reason
        return self.match.entry.peak(kind)

    def __repr__(self) -> str:
        return f"PeakTable({self.entry.id if self.entry else None!r}, how={self.match.how!r})"


def peak_lookup_for(device_name: str | None, pci_device_id: str | int | None = None,
                    device: str | None = None) -> PeakTable:
    """Peak lookup for one device. `device` ('cpu', 'cuda:0') selects the generic CPU entry for
    non-GPU devices; on CUDA, a PCI id the caller lacks is detected (aifbench.hardware.detect)."""
    if pci_device_id is None and device is not None and str(device).startswith("cuda"):
        try:
            from aifbench.hardware import detect

            pci_device_id = detect.pci_device_id(device)
        except Exception:  # detection is best effort; the name still matches
            pass
    try:
        match = load().match(device_name, pci_device_id, device)
    except ConfigError as exc:  # a broken site override must not stop measurements
        match = Match(None, "", f"hardware catalog unusable: {exc}")
    return PeakTable(match, device_name or "")
