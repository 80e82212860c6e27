"""hostlink on CPU: link arithmetic, sysfs detection on a recorded tree, peak choice, skip reason.

The copies themselves need a GPU (they run on H100/GH200 nodes); what can run here does.
"""

from __future__ import annotations

import pytest

from aifbench.benchmarks.base import Context
from aifbench.benchmarks.hostlink import Hostlink, HostlinkConfig, link_detail, link_peak
from aifbench.cli import main
from aifbench.hardware import detect
from aifbench.hardware.catalog import peak_lookup_for
from aifbench.hardware.detect import HostLink, gen_from_speed, pcie_gbps
from tests.conftest import write


@pytest.mark.parametrize("gen, width, gbps", [(3, 16, 15.754), (4, 16, 31.508), (5, 16, 63.015), (5, 8, 31.508),
                                              (4, 1, 1.9692), (2, 16, 8.0)])
def test_pcie_per_direction_rates(gen, width, gbps):
    assert pcie_gbps(gen, width) == pytest.approx(gbps, rel=1e-4)


@pytest.mark.parametrize("text, gen", [("32.0 GT/s PCIe", 5), ("16.0 GT/s PCIe", 4), ("8 GT/s", 3),
                                       ("2.5 GT/s PCIe", 1), ("Unknown", None), ("", None)])
def test_sysfs_speed_strings(text, gen):
    assert gen_from_speed(text) == gen


def fake_pci(root, bus, **files):
    for name, text in files.items():
        write(root / bus / name, text + "\n")


def test_sysfs_link_of_a_downtrained_gpu(tmp_path):
    """An idle H100 trains its link down to Gen1: the current value is kept beside the maximum."""
    fake_pci(tmp_path, "0000:65:00.0", current_link_speed="2.5 GT/s PCIe", current_link_width="16",
             max_link_speed="32.0 GT/s PCIe", max_link_width="16", device="0x2330")
    link = detect.sysfs_link("0000:65:00.0", tmp_path)
    assert (link.kind, link.gen, link.width, link.max_gen, link.max_width) == ("pcie", 1, 16, 5, 16)
    assert link.max_gbps == pytest.approx(63.015, rel=1e-4)
    assert "PCIe Gen1 x16 (max Gen5 x16, 63.0 GB/s per direction at max; via sysfs)" == link.describe()
    assert detect.read_sysfs("0000:65:00.0", "device", tmp_path) == "0x2330"
    assert detect.sysfs_link("0000:99:00.0", tmp_path) is None


def test_no_host_link_on_cpu():
    link = detect.host_link("cpu")
    assert link.kind == "unknown" and "CPU" in link.describe()
    assert detect.pci_device_id("cpu") is None


def test_cache_size_from_a_recorded_sysfs_tree(tmp_path):
    for i, (level, size) in enumerate([(1, "32K"), (1, "32K"), (2, "1024K"), (3, "32768K")]):
        write(tmp_path / f"index{i}" / "level", f"{level}\n")
        write(tmp_path / f"index{i}" / "size", f"{size}\n")
    assert detect.last_level_cache_bytes("cpu", tmp_path) == 32 * 2**20
    assert detect.parse_cache_size("1M") == 2**20 and detect.parse_cache_size("bogus") is None
    assert detect.last_level_cache_bytes("cpu", tmp_path / "absent") is None


GEN5 = HostLink("pcie", gen=5, width=16, max_gen=5, max_width=16, via="nvml")
GEN4 = HostLink("pcie", gen=4, width=16, max_gen=4, max_width=16, via="nvml")


def test_peak_is_the_catalog_link_doubled_for_both_directions():
    catalog = peak_lookup_for("NVIDIA H100 80GB HBM3")("host_link_gbps")
    assert link_peak("h2d", catalog, GEN5) == catalog
    value, source = link_peak("bidir", catalog, GEN5)
    assert value == pytest.approx(126.0) and source.startswith("2 x per-direction") and "h100-sxm5-80gb" in source


def test_without_a_catalog_figure_the_detected_link_is_the_peak_and_says_so():
    unknown = peak_lookup_for("Contoso Accelerator 9000")("host_link_gbps")
    value, source = link_peak("d2h", unknown, GEN4)
    assert value == pytest.approx(31.508, rel=1e-4)
    assert source.startswith("detected PCIe Gen4 x16") and "Contoso" in source
    assert link_peak("d2h", unknown, HostLink("unknown", via="nothing")) == unknown


def test_a_link_below_its_datasheet_is_flagged():
    assert "MISMATCH: the catalog's SKU has PCIe Gen5 x16" in link_detail(GEN4, "PCIe Gen5 x16")
    assert "MISMATCH" not in link_detail(GEN5, "PCIe Gen5 x16")
    c2c = HostLink("nvlink-c2c", via="nvml C2C mode")
    assert link_detail(c2c, "NVLink-C2C") == "link: NVLink-C2C (via nvml C2C mode)"
    assert "not confirmed" in link_detail(GEN5, "NVLink-C2C")


def test_hostlink_on_cpu_is_skipped_with_the_reason():
    reason = Hostlink(HostlinkConfig(), Context(device="cpu")).skip_reason()
    assert "host<->GPU" in reason


def test_hostlink_sweep_through_the_runner_on_cpu(tmp_path, capsys):
    """Every case skipped on a CPU: the run says so with the reason and stores nothing."""
    suite = write(tmp_path / "h.toml", """
[suite]
name = "h"
[[case]]
benchmark = "hostlink"
sweep = { direction = ["h2d", "d2h", "bidir"], memory = ["pinned", "pageable"] }
""")
    assert main(["run", str(suite), "--results", str(tmp_path / "r"), "--device", "cpu", "--telemetry-hz", "0"]) == 0
    err = capsys.readouterr().err
    assert "every case of suite h (6) would be skipped" in err and "host<->GPU" in err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("*.parquet"))


def test_copies_that_do_not_fit_host_memory_are_skipped(monkeypatch):
    """The host-memory half of the size check runs on CPU (the device half needs a GPU)."""
    monkeypatch.setattr(detect, "free_bytes", lambda device, share=1: 1 << 40)  # a roomy GPU
    ctx = Context(device="cuda:0", world_size=4)
    reason = Hostlink(HostlinkConfig(direction="bidir", size_bytes=1 << 45), ctx).skip_reason()
    assert reason.startswith("needs") and "of device buffers" in reason
    huge_host = detect.host_available_bytes(4)
    monkeypatch.setattr(detect, "free_bytes", lambda device, share=1: (1 << 50) if device != "cpu" else huge_host)
    reason = Hostlink(HostlinkConfig(direction="bidir", size_bytes=huge_host), ctx).skip_reason()
    assert reason.startswith("needs") and "of host buffers" in reason and reason.endswith("free on cpu")
