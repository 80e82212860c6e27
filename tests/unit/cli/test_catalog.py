"""Hardware catalog: shipped figures, exact matching (known, unknown, near-miss), overrides."""

from __future__ import annotations

import os

import pytest

from aifbench.benchmarks.base import Context, rate_metrics
from aifbench.errors import ConfigError
from aifbench.hardware import catalog
from aifbench.hardware.catalog import KINDS, load, normalize_pci_id, peak_lookup_for
from aifbench.timing import summarize

REQUIRED_IDS = {"h100-sxm5-80gb", "h100-pcie-80gb", "h100-64gb", "gh200-96gb", "gh200-144gb",
                "h200-sxm-141gb", "a100-sxm4-40gb", "a100-sxm4-64gb", "a100-sxm4-80gb", "mi250x",
                "mi300a", "mi300x", "cpu"}


@pytest.fixture(autouse=True)
def _no_site_catalog(monkeypatch):
    monkeypatch.delenv(catalog.ENV_VAR, raising=False)


def test_shipped_catalog_has_every_sku_and_every_kind_accounted_for():
    cat = load()
    assert REQUIRED_IDS <= set(cat.ids())
    for entry in cat.entries.values():
        for kind in KINDS:
            value, text = entry.peak(kind)
            assert text, (entry.id, kind)
            if value is None:
                assert kind in entry.missing, f"{entry.id} {kind}: neither a peak nor a reason"
            else:
                assert "source:" in text and len(entry.peaks[kind].source) > 20


@pytest.mark.parametrize("entry_id, kind, expected", [
    ("h100-sxm5-80gb", "tflops:bf16", 989), ("h100-sxm5-80gb", "tflops:fp8", 1979),
    ("h100-sxm5-80gb", "tflops:tf32", 494.7), ("h100-sxm5-80gb", "tflops:fp64", 66.9),
    ("h100-sxm5-80gb", "hbm_gbps", 3350), ("h100-sxm5-80gb", "gpu_link_gbps", 450),
    ("h200-sxm-141gb", "hbm_gbps", 4800), ("gh200-96gb", "hbm_gbps", 4000),
    ("gh200-96gb", "host_link_gbps", 450), ("a100-sxm4-80gb", "tflops:bf16", 312),
    ("a100-sxm4-80gb", "hbm_gbps", 2039), ("a100-sxm4-40gb", "hbm_gbps", 1555),
    ("mi300x", "tflops:bf16", 1307.4), ("mi300x", "hbm_gbps", 5300),
    ("h100-sxm5-80gb", "host_link_gbps", 63.0),
])
def test_reference_figures(entry_id, kind, expected):
    value, _ = load().get(entry_id).peak(kind)
    assert value == pytest.approx(expected, rel=1e-3)


def test_absent_features_have_reasons_not_zeros():
    cat = load()
    value, reason = cat.get("a100-sxm4-80gb").peak("tflops:fp8")
    assert value is None and "FP8" in reason
    value, reason = cat.get("mi250x").peak("tflops:tf32")
    assert value is None and "TF32" in reason


def test_mi250x_records_per_gcd_and_per_module():
    e = load().get("mi250x")
    assert e.scope == "gcd"
    assert e.module["tflops:bf16"].value == pytest.approx(2 * e.peaks["tflops:bf16"].value)
    assert e.module["hbm_gbps"].value == pytest.approx(2 * e.peaks["hbm_gbps"].value)
    assert "PER GCD" in e.peak("tflops:bf16")[1]


@pytest.mark.parametrize("value, expected", [
    ("0x2330", "0x2330"), ("2330", "0x2330"), (0x2330, "0x2330"), ("10de:2330", "0x2330"),
    ("0x233010DE", "0x2330"), (0x233010DE, "0x2330"), ("", None), ("H100", None), (None, None),
])
def test_pci_id_forms(value, expected):
    assert normalize_pci_id(value) == expected


def test_known_devices_match_by_name_or_pci_id():
    cat = load()
    assert cat.match("NVIDIA H100 80GB HBM3").entry.id == "h100-sxm5-80gb"
    assert cat.match("  nvidia   H100 80GB hbm3 ").entry.id == "h100-sxm5-80gb"  # case/whitespace only
    assert cat.match(None, "0x2337").entry.id == "h100-64gb"
    assert cat.match("NVIDIA GH200 480GB").entry.id == "gh200-96gb"
    assert cat.match("NVIDIA GH200 120GB", 0x234210DE).how == "name+pci_device_id"
    assert cat.match("NVIDIA GH200 144G HBM3e").entry.id == "gh200-144gb"
    assert cat.match("AMD Instinct MI300X").entry.id == "mi300x"


@pytest.mark.parametrize("near_miss", [
    "NVIDIA H100 80GB HBM3e", "NVIDIA H100", "H100 80GB HBM3", "NVIDIA H100 80GB", "NVIDIA H100 NVL",
    "NVIDIA A100-SXM4-80GB-MIG", "NVIDIA A100 80GB PCIe", "NVIDIA GH200", "AMD Instinct MI250X/MI250",
    "AMD Instinct MI250", "NVIDIA H200 NVL", "NVIDIA H100 80GB HBM3 (MIG 1g.10gb)",
])
def test_near_miss_names_do_not_match(near_miss):
    m = load().match(near_miss)
    assert m.entry is None and "not in the hardware catalog" in m.reason


def test_unknown_device_has_no_peak_but_a_reason():
    lookup = peak_lookup_for("Contoso Accelerator 9000", "0xbeef")
    value, reason = lookup("tflops:bf16")
    assert value is None and "Contoso Accelerator 9000" in reason and "0xbeef" in reason
    rows = rate_metrics("tflops", 2e12, summarize([1.0, 1.1]), 1e-12, lookup("tflops:bf16"))
    assert all(r.pct_of_peak is None and r.peak is None and r.peak_source == reason for r in rows)


def test_name_and_pci_id_disagreeing_is_refused():
    m = load().match("NVIDIA H100 80GB HBM3", "0x20b2")
    assert m.entry is None and "h100-sxm5-80gb" in m.reason and "a100-sxm4-80gb" in m.reason


def test_cpu_device_uses_the_generic_entry():
    lookup = peak_lookup_for("Intel(R) Xeon(R) Gold 6338", None, device="cpu")
    assert lookup.entry.id == "cpu"
    value, reason = lookup("hbm_gbps")
    assert value is None and "generic CPU" in reason


def test_unknown_kind_is_an_error():
    with pytest.raises(ConfigError, match="allowed: .*tflops:bf16"):
        peak_lookup_for("NVIDIA H100 80GB HBM3")("tflops:int4")


def test_pct_of_peak_from_a_known_device():
    ctx = Context(device="cuda:0", device_name="NVIDIA H100 80GB HBM3",
                  peak_lookup=peak_lookup_for("NVIDIA H100 80GB HBM3", "0x2330"))
    rows = rate_metrics("tflops", 989e12 * 0.5, summarize([1.0, 1.0, 1.0]), 1e-12, ctx.peak("tflops:bf16"))
    assert rows[0].pct_of_peak == pytest.approx(50.0)
    assert rows[0].peak == 989.0 and "h100-sxm5-80gb" in rows[0].peak_source


SITE = """
schema = 1
[sources]
site = "MareNostrum 5 acceptance measurements, BSC internal report 2025 (example)"
[[device]]
id = "h100-64gb"
vendor = "nvidia"
model = "H100 64GB with site figures"
names = ["NVIDIA H100 64GB HBM2e"]
pci_device_ids = ["0x2337"]
[device.peaks]
"hbm_gbps" = { value = 2400, source = "site", estimate = true }
[[device]]
id = "new-gpu"
names = ["Contoso Accelerator 9000"]
pci_device_ids = ["beef"]
[device.peaks]
"tflops:bf16" = { value = 123, source = "site" }
"""


def test_site_override_replaces_and_adds(tmp_path, monkeypatch):
    path = tmp_path / "site.toml"
    path.write_text(SITE)
    monkeypatch.setenv(catalog.ENV_VAR, f"{tmp_path / 'absent-is-an-error.toml'}{os.pathsep}{path}")
    broken = peak_lookup_for("Contoso Accelerator 9000")("tflops:bf16")
    assert broken[0] is None and "hardware catalog: cannot read" in broken[1]
    monkeypatch.setenv(catalog.ENV_VAR, str(path))
    assert peak_lookup_for("Contoso Accelerator 9000")("tflops:bf16")[0] == 123
    value, text = peak_lookup_for(None, "0x2337")("hbm_gbps")
    assert value == 2400 and text.startswith("ESTIMATE") and "BSC" in text
    assert load().get("h100-sxm5-80gb").peak("tflops:bf16")[0] == 989.0  # others untouched


@pytest.mark.parametrize("body, message", [
    ('[[device]]\nid = "x"\nnames = ["A"]\n[[device]]\nid = "y"\nnames = ["a"]\n', "claimed by both"),
    ('[[device]]\nid = "x"\n[device.peaks]\n"tflops:bf16" = { value = 1, source = "nope" }\n', "unknown source"),
    ('[[device]]\nid = "x"\n[device.peaks]\n"tflops:bf17" = { value = 1, source = "s" }\n', r"unknown key in \[device #1.peaks\] .*'tflops:bf17'; allowed: .*tflops:bf16"),
    ('[[device]]\nid = "x"\ncolour = "red"\n', "unknown key"),
    ('[[device]]\nid = "x"\npci_device_ids = ["H100"]\n', "malformed PCI"),
    ('[[device]]\nid = "x"\n[device.peaks]\n"hbm_gbps" = { value = -1, source = "s" }\n', "positive"),
])
def test_malformed_catalog_files_are_refused(tmp_path, body, message):
    path = tmp_path / "bad.toml"
    path.write_text('[sources]\ns = "a source"\n' + body)
    with pytest.raises(ConfigError, match=message):
        catalog.load_files([path])


def test_hardware_command(capsys, monkeypatch):
    from aifbench.cli import main
    from aifbench.cli.output import console

    monkeypatch.setattr(console, "_width", 200)
    assert main(["hardware"]) == 0
    table = capsys.readouterr().out
    assert "h100-sxm5-80gb" in table and "1979" in table
    assert main(["hardware", "mi250x"]) == 0
    one = capsys.readouterr().out
    assert "PER GCD" in one and "module tflops:bf16" in one
    assert main(["hardware", "--detect"]) == 0
    assert "catalog cpu" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["hardware", "h100"], "unknown hardware catalog id 'h100'; allowed:"),
    (["hardware", "mi250x", "h100"], "unknown hardware catalog id 'h100'"),  # nothing printed for mi250x
    (["hardware", "--detect", "mi250x"], "--detect matches this node's GPUs and takes no catalog ids"),
])
def test_hardware_command_bad_input(capsys, args, message):
    from aifbench.cli import main

    assert main(args) == 2
    out, err = capsys.readouterr()
    assert message in err and out == ""


def test_hardware_command_with_a_broken_site_catalog(tmp_path, monkeypatch, capsys):
    from aifbench.cli import main

    (tmp_path / "site.toml").write_text("bad = [")
    monkeypatch.setenv(catalog.ENV_VAR, str(tmp_path / "site.toml"))
    assert main(["hardware"]) == 2
    assert "site.toml: TOML syntax error" in capsys.readouterr().err
