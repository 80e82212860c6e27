"""aifbench import --from: real outputs of nccl-tests, rccl-tests, nvbandwidth, STREAM, BabelStream,
dcgmi diag and MLPerf (tests/data/peers, sources in its SOURCES.md) into the results schema.

Figures pinned here were read by hand from the files (largest size's busbw, the 'Avg bus
bandwidth' line, ranks, nodes, GPU model)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from aifbench import importers
from aifbench.analysis.data import headline, load_runs
from aifbench.analysis.runs import summary
from aifbench.cli import main
from aifbench.importers.records import ParseError

PEERS = Path(__file__).parents[2] / "data" / "peers"
FILES = sorted(p for p in PEERS.iterdir() if p.name != "SOURCES.md")
REFUSED = {  # file -> what its one-line refusal says (every other file imports)
    "mlperf-mllog-ssd-eos_n8-h100-training-v4.0-head-excerpt.txt": "run_start and run_stop",
    "mlperf-systems-eos_n8-h100-8node-training-v4.0.json": "systems description",
    "nccl-sendrecv-a100-1node-g8-liplus-partial.txt": "Using devices",
}


def _rows(parsed, metric: str, **params) -> list:
    return [r for r in parsed.rows if r.metric == metric and all(r.params.get(k) == v for k, v in params.items())]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_peer_file_imports_or_is_refused_with_one_line(path):
    if path.name in REFUSED:
        with pytest.raises(ParseError) as exc:
            importers.parse("auto", path)
        text = str(exc.value)
        assert "\n" not in text and text.startswith(str(path)) and REFUSED[path.name] in text
        return
    parsed = importers.parse("auto", path)
    assert parsed.rows and parsed.devices
    expected = path.name.split("-")[0]
    tool = {"nccl": "nccl-tests", "rccl": "rccl-tests", "dcgm": "dcgm-diag"}.get(expected, expected)
    assert parsed.tool == tool


def test_gh200_alps_all_reduce_figures_read_by_hand():
    p = importers.parse("nccl-tests", PEERS / "nccl-allreduce-gh200-2node-cscs-nccldoc-cxi.txt")
    assert p.world_size == 8 and p.nodes == ["nid005471", "nid005487"]
    assert {d.name for d in p.devices} == {"NVIDIA GH200 120GB"}
    big = _rows(p, "busbw_gbps", size_bytes=134217728, op="all_reduce")
    assert sorted(r.value for r in big) == [122.57, 123.11]  # out-of-place, in-place
    assert _rows(p, "avg_busbw_gbps")[0].value == pytest.approx(19.7866)
    t = _rows(p, "time_s", size_bytes=8)[0]
    assert t.value == pytest.approx(17.93e-6) and t.stat == "mean" and t.n_samples == 20
    assert not p.missing and p.extra["out_of_bounds"] == 0


def test_h100_a3mega_and_mi300x_and_json():
    a3 = importers.parse("auto", PEERS / "nccl-allreduce-h100-2node-a3mega-lessizzmore.txt")
    assert a3.extra["op"] == "all_reduce"  # no 'Collective test' line: told by the rows (count x 4 = size)
    assert (a3.world_size, len(a3.nodes)) == (16, 2)
    assert [r.value for r in _rows(a3, "busbw_gbps", size_bytes=8589934592) if "in_place" not in r.params] == [338.82]
    assert _rows(a3, "avg_busbw_gbps")[0].value == pytest.approx(70.742)
    mi = importers.parse("auto", PEERS / "rccl-allreduce-mi300x-2node-16rank-hisohara.txt")
    assert mi.tool == "rccl-tests" and (mi.world_size, len(mi.nodes)) == (16, 2)
    assert mi.versions["rccl"].startswith("2.22.3") and mi.version == "develop:448c4c7"
    assert [r.value for r in _rows(mi, "busbw_gbps", size_bytes=17179869184) if "in_place" not in r.params] == [357.46]
    assert _rows(mi, "avg_busbw_gbps")[0].value == pytest.approx(92.3318)
    js = importers.parse("auto", PEERS / "nccl-allreduce-json-h100-1node-8rank-azure-chm.json")
    assert (js.world_size, js.nodes, js.versions["nccl"]) == (8, ["nccl-json"], "2.23.4")
    assert [r.value for r in _rows(js, "busbw_gbps") if "in_place" not in r.params] == [pytest.approx(480.902491)]
    assert _rows(js, "avg_busbw_gbps")[0].value == pytest.approx(480.294297)


def test_interleaved_lines_skipped_and_broken_row_named_not_guessed():
    p = importers.parse("auto", PEERS / "nccl-allreduce-h200-2node-16rank-ncclinfo-interleaved-FIXTURE.txt")
    assert any("line 17" in n and "broken" in n for n in p.notes)
    sizes = sorted({r.params["size_bytes"] for r in p.rows if "size_bytes" in r.params})
    assert sizes[0] == 0 and sizes[-1] == 1073741824 and len(sizes) == 31
    assert p.extra["op"] == "all_reduce" and p.rows[0].params["dtype"] == "bf16"
    assert p.missing == ["device block lists 2 of 16 ranks"]  # every announced size is there
    mpi = importers.parse("auto", PEERS / "nccl-alltoall-5kpro-2node-16rank-spcx-mpiwarn.txt")
    assert mpi.extra["op"] == "all_to_all" and mpi.world_size == 16 and mpi.version.startswith("2.18.3")


def test_truncated_and_elided_logs_are_incomplete():
    gb = importers.parse("auto", PEERS / "nccl-allreduce-gb300-32node-128rank-ociquickstarts-truncated.txt")
    assert gb.world_size == 128 and any("4 of 128 ranks" in m for m in gb.missing)
    assert any("14 of the 16 sizes" in m for m in gb.missing)
    mi = importers.parse("auto", PEERS / "rccl-alltoall-mi355x-1node-g8-ociquickstarts.txt")
    assert any("14 of the 16 sizes" in m for m in mi.missing)
    text = (PEERS / "nccl-allreduce-gh200-2node-cscs-nccldoc-cxi.txt").read_text()
    cut = importers.parse("nccl-tests", Path("cut.log"), text.split("# Out of bounds")[0])
    assert any(m.startswith("footer") for m in cut.missing)


def test_single_rank_busbw_is_recorded_as_such():
    p = importers.parse("auto", PEERS / "nccl-alltoall-rtx5090-1gpu-issue287.txt")
    bus = _rows(p, "busbw_gbps")
    assert bus and all(r.status == "skipped" and "single rank" in r.reason for r in bus)
    assert [r.value for r in _rows(p, "algbw_gbps", in_place=True)] == [43046.10]


def test_stream_babelstream_nvbandwidth_dcgm_figures():
    st = importers.parse("auto", PEERS / "stream-5.10-cpu-xeon-icelake-72thr-ocitutorials.txt")
    triad = [r for r in _rows(st, "gbps", op="triad") if r.stat == "max"]
    assert triad[0].value == pytest.approx(320.9351) and triad[0].status == "ok"
    assert triad[0].params["size_bytes"] == 268435456 * 8
    bs = importers.parse("auto", PEERS / "babelstream-5.0-cuda-a100-sxm4-80gb-tursa-ukribench.txt")
    assert bs.devices[0].name == "NVIDIA A100-SXM4-80GB"
    assert [r.value for r in _rows(bs, "gbps", op="triad") if r.stat == "max"] == [pytest.approx(1724.827354)]
    bad = importers.parse("auto", PEERS / "babelstream-4.0-cuda-iluvatar-biv100-validation-failed.txt")
    assert all(r.status == "failed" and "Validation failed on sum" in r.reason for r in bad.rows)
    nv = importers.parse("auto", PEERS / "nvbandwidth-v0.10-json-h100-8gpu-azure-chm-d2d.json")
    assert [r.value for r in nv.rows if r.params["row"] == "sum"] == [pytest.approx(22122.8706709385)]
    assert len([r for r in nv.rows if r.params["row"] != "sum"]) == 56  # 8 x 8 without the diagonal
    txt = importers.parse("auto", PEERS / "nvbandwidth-v0.10-7gpu-dell-partial.txt")
    assert txt.versions["driver"] == "610.57.04" and len(txt.extra["gpus"]) == 7
    h2d = [r for r in txt.rows if r.params["testcase"] == "host_to_device_memcpy_ce" and r.params["row"] == "sum"]
    assert [r.value for r in h2d] == [389.15]
    dc = importers.parse("auto", PEERS / "dcgm-diag-r1-h200-8gpu-azure-debian-persistfail.txt")
    fail = [r for r in dc.rows if r.status == "failed"]
    assert [r.params["test"] for r in fail] == ["Persistence Mode"]
    assert "Persistence mode for GPU 0 is currently disabled. The DCGM" in fail[0].reason
    assert dc.version == "3.1.8" and dc.devices[0].pci_device_id == "0x2335"


def _import(root: Path, *files: Path, system: str | None = None) -> int:
    return main(["import", "--from", "auto", *map(str, files), "--results", str(root)]
                + (["--system", system] if system else []))


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_import_is_idempotent_and_shows_beside_native_runs(tmp_path, capsys):
    root = tmp_path / "results"
    files = [PEERS / "nccl-allreduce-gh200-2node-cscs-nccldoc-cxi.txt", PEERS / "dcgm-diag-r1-h200-8gpu-azure-debian-persistfail.txt"]
    assert _import(root, *files, system="alps-gh200") == 0
    before = _tree(root)
    assert _import(root, *files, system="alps-gh200") == 0
    assert "nothing new" in capsys.readouterr().out and _tree(root) == before
    res = load_runs([root])
    info = summary(res).set_index("suite")
    assert info.loc["import:nccl-tests", "status"] == "ok" and info.loc["import:nccl-tests", "ranks"] == 8
    assert info.loc["import:dcgm-diag", "status"] == "failed"
    runs = res.tables["runs"]
    assert set(runs["launcher"]) == {"import"} and set(runs["system"]) == {"alps-gh200"}
    cfg = json.loads(runs[runs["suite"] == "import:nccl-tests"]["config"].iloc[0])["import"]
    assert cfg["file"] == files[0].name and len(cfg["sha256"]) == 64 and "nThread 1" in cfg["args"]
    assert main(["runs", "--results", str(root)]) == 0
    assert "import:nccl-tests" in capsys.readouterr().out


def test_broken_file_leaves_the_store_untouched(tmp_path, capsys):
    root = tmp_path / "results"
    assert _import(root, PEERS / "stream-5.10-cpu-xeon-icelake-72thr-ocitutorials.txt") == 0
    before = _tree(root)
    text = (PEERS / "nccl-allreduce-gh200-2node-cscs-nccldoc-cxi.txt").read_text().replace("122.57", "12x.57")
    broken = tmp_path / "broken.log"
    broken.write_text(text)
    capsys.readouterr()
    assert _import(root, broken) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{broken}:41:" in err and "table row" in err
    assert _tree(root) == before


def _validate(root: Path, capsys) -> tuple[int, str]:
    run_id = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))[-1]
    capsys.readouterr()
    code = main(["validate", run_id, "--results", str(root), "--format", "json"])
    return code, capsys.readouterr().out


def test_wrong_values_never_pass_and_truncated_is_incomplete(tmp_path, capsys):
    text = (PEERS / "nccl-allreduce-gh200-2node-cscs-nccldoc-cxi.txt").read_text()
    wrong = tmp_path / "nccl-allreduce-gh200-2node-cscs-nccldoc-cxi-WRONG-EDITED.txt"
    wrong.write_text(text.replace("122.57      0", "122.57      3"))
    p = importers.parse("auto", wrong)
    bad = [r for r in p.rows if r.status == "failed"]
    assert {r.params.get("size_bytes") for r in bad} == {134217728, None}  # the size, and the footer's average
    assert "#wrong = 3" in bad[0].reason and all("in_place" not in r.params for r in bad)
    root = tmp_path / "w"
    assert _import(root, wrong, system="alps-gh200") == 0
    code, out = _validate(root, capsys)
    assert code == 1 and '"fail"' in out
    root2 = tmp_path / "t"
    assert _import(root2, PEERS / "nccl-allreduce-gb300-32node-128rank-ociquickstarts-truncated.txt",
                   system="local") == 0
    assert summary(load_runs([root2]))["status"].tolist() == ["incomplete"]
    code, out = _validate(root2, capsys)
    assert code == 1 and "incomplete" in out and "sizes the header announces" in out


def test_compare_key_sets_imported_all_reduce_beside_native_collectives():
    base = {"run_id": "r", "rank": 0, "metric": "busbw_gbps", "stat": "median", "status": "ok", "value": 1.0,
            "benchmark": "collectives", "world_size": 8}
    native = dict(base, run_id="native", case_id="0001-collectives-a", stat="median",
                  params=json.dumps({"dtype": "fp32", "gpu_only": True, "inner": 10, "op": "all_reduce",
                                     "size_bytes": 1073741824}, sort_keys=True))
    imported = dict(base, run_id="imp", case_id="0002-collectives-b", stat="mean",
                    params=json.dumps({"dtype": "fp32", "op": "all_reduce", "size_bytes": 1073741824}, sort_keys=True))
    other_ranks = dict(imported, run_id="imp16", case_id="0003-collectives-c", world_size=16)
    h = headline(pd.DataFrame([native, imported, other_ranks]))
    keys = dict(zip(h["run_id"], h["case_key"]))
    assert keys["native"] == keys["imp"] != keys["imp16"] and keys["imp"].endswith("ranks=8")


def test_unknown_tool_and_bundle_import_stay_one_line(tmp_path, capsys):
    assert main(["import", "--from", "iperf", str(PEERS / "SOURCES.md"), "--results", str(tmp_path)]) == 2
    assert "allowed:" in capsys.readouterr().err
    assert main(["import", str(PEERS / "SOURCES.md"), "--results", str(tmp_path)]) == 2  # not a bundle
    assert main(["import", "--from", "auto", str(PEERS / "SOURCES.md"), "--results", str(tmp_path)]) == 2
    assert "SOURCES.md:1:" in capsys.readouterr().err


def test_reference_pack_judges_imported_alps_logs(tmp_path, capsys):
    """The GH200 pack's two-node all_reduce reference: the CXI log passes (122.6 GB/s at 128 MiB),
    the log without the CXI hook fails (5.4 GB/s): an imported run judged like a native one."""
    root = tmp_path / "r"
    assert _import(root, PEERS / "nccl-allreduce-gh200-2node-cscs-nccldoc-cxi.txt", system="alps-gh200") == 0
    assert _import(root, PEERS / "nccl-allreduce-gh200-2node-cscs-nccldoc-nocxi.txt", system="alps-gh200") == 0
    pack = Path(__file__).parents[3] / "benchmarks" / "targets" / "gh200-96gb.toml"
    verdicts = {}
    for run_id in sorted(p.name for p in root.iterdir()):
        capsys.readouterr()
        main(["validate", run_id, "--results", str(root), "--references", str(pack), "--format", "json"])
        out = capsys.readouterr().out
        checks = json.loads(out[: out.rindex("}") + 1])["checks"]  # validate JSON: one verdict object
        two_node = [c for c in checks if "nodes>=2" in str(c.get("name", c.get("check", "")))]
        verdicts[run_id] = {c["status"] for c in two_node}
    assert sorted(verdicts.values(), key=str) == [{"fail"}, {"pass"}]


def test_profiles_point_at_reference_packs():
    from aifbench.analysis import references

    for system, pack in (("jupiter-booster", "gh200-96gb"), ("alps-gh200", "gh200-96gb"), ("lumi-g", "mi250x-gcd"),
                         ("leonardo-booster", "a100-sxm4"), ("marenostrum5-acc", "h100-sxm5-80gb")):
        refs = references.for_system(system)
        references.check_names(refs)
        sku = references.profile_gpu(system)
        assert all(r.applies_to(sku) for r in refs if r in references.pack(system))
        path = references._targets_path(f"targets/{pack}.toml", system)
        packed = references.load_file(path)
        assert all(r.source and r.kind in ("datasheet", "measurement", "estimate") for r in packed
                   if pack != "h100-sxm5-80gb" or r.benchmark == "collectives")
        assert all(r.estimate == (r.kind == "estimate") for r in packed if r.kind)


def test_report_shows_imported_systems_beside_the_reference_runs(tmp_path, capsys):
    root = tmp_path / "r"
    assert _import(root, PEERS / "nccl-allreduce-gh200-2node-cscs-nccldoc-cxi.txt",
                   PEERS / "babelstream-5.0-cuda-a100-sxm4-80gb-tursa-ukribench.txt") == 0
    reference = Path(__file__).parents[3] / "results" / "reference"
    out = tmp_path / "report.html"
    assert main(["report", "--results", str(root), "--reference-dir", str(reference), "-o", str(out)]) == 0
    html = out.read_text()
    for name in ("nccl-allreduce-gh200-2node-cscs-nccldoc-cxi", "babelstream-5.0-cuda-a100-sxm4-80gb-tursa-ukribench",
                 "import:nccl-tests", "NVIDIA H200"):
        assert name in html, name


def test_mlperf_log_with_run_stop_gives_time_to_train():
    """The excerpt (first 17 lines of a real result log) plus run_start / run_stop events written
    here in the MLLOG format (the excerpt stops before them): 1000 s apart, status success."""
    head = (PEERS / "mlperf-mllog-ssd-eos_n8-h100-training-v4.0-head-excerpt.txt").read_text()
    event = ':::MLLOG {{"namespace": "", "time_ms": {t}, "event_type": "{e}", "key": "{k}", "value": null, ' \
            '"metadata": {{"file": "train.py", "lineno": 1{extra}}}}}\n'
    text = head + event.format(t=1714150200000, e="INTERVAL_START", k="run_start", extra="") \
        + event.format(t=1714151200000, e="INTERVAL_END", k="run_stop", extra=', "status": "success"')
    p = importers.parse("auto", Path("result_0.txt"), text)
    assert p.tool == "mlperf" and p.world_size == 64 and len(p.nodes) == 8
    assert p.devices[0].name == "NVIDIA H100-SXM5-80GB" and p.versions["nccl"] == "2.21.5"
    (row,) = p.rows
    assert (row.metric, row.value, row.status, row.params["benchmark"]) == ("time_to_train_s", 1000.0, "ok", "ssd")
    aborted = importers.parse("auto", Path("result_1.txt"), text.replace('"success"', '"aborted"'))
    assert aborted.rows[0].status == "failed" and "aborted" in aborted.rows[0].reason


def test_two_runs_in_one_file_are_refused_not_merged():
    text = (PEERS / "nccl-allreduce-gh200-2node-cscs-nccldoc-cxi.txt").read_text()
    with pytest.raises(ParseError, match="one nccl-tests run per file"):
        importers.parse("nccl-tests", Path("two.log"), text + text)
