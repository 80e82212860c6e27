"""The report's plots as a person reads them: datasheet peak lines, zero-based bandwidth and
throughput axes, readable metric names with units, system and GPU names in legends, and tick
labels that do not overlap at 20+ cases (bounding boxes from matplotlib's own renderer)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from aifbench.analysis import plots
from aifbench.analysis.data import select
from aifbench.analysis.report import plot_frame

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"


def _rows(metric: str, benchmark: str, cases: list[dict], values: list[float], peak: float | None = None,
          series: str = "sysA · NVIDIA H100 80GB HBM3") -> pd.DataFrame:
    return pd.DataFrame([{"run_id": "r1", "case_id": f"{i:04d}-{benchmark}-x", "rank": 0, "benchmark": benchmark,
                          "params": json.dumps(p), "p": p, "metric": metric, "value": v, "peak": peak,
                          "series": series, "label": f"{benchmark} {p}", "case_key": f"{benchmark} {p}",
                          "world_size": 1} for i, (p, v) in enumerate(zip(cases, values))])


def _drawn(fig):
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _overlaps(labels, renderer) -> list[tuple[str, str]]:
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels if t.get_text() and t.get_visible()]
    return [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:] if ba.overlaps(bb)]


def test_energy_labels_do_not_overlap_at_25_cases():
    cases = [{"model": "llama3-8b", "prompt_len": 2048, "gen_tokens": 128, "batch_size": b, "compile": c,
              "cuda_graphs": True} for b in range(1, 14) for c in (True, False)][:25]
    h = pd.concat([_rows("tflops_per_w", "llm_infer", cases, [1.0 + i / 10 for i in range(25)]),
                   _rows("tokens_per_j", "llm_infer", cases, [5.0 + i for i in range(25)])], ignore_index=True)
    fig, _ = plots.energy(h)
    renderer = _drawn(fig)
    for ax in fig.axes:
        labels = ax.get_yticklabels()
        assert len([t for t in labels if t.get_text()]) == 25  # every case shown, none dropped
        assert _overlaps(labels, renderer) == []
        assert _overlaps(ax.get_xticklabels(), renderer) == []
        assert ax.get_xlim()[0] == 0
    # whole labels: two cases that differ only in their last parameter stay apart
    texts = {t.get_text() for t in fig.axes[0].get_yticklabels()}
    assert len(texts) == 25 and not any("…" in t for t in texts)
    assert "(TFLOP/s/W)" in fig.axes[0].get_xlabel() and "(tokens/J)" in fig.axes[1].get_xlabel()


def test_gemm_bars_carry_the_datasheet_peak_and_start_at_zero():
    cases = [{"shape": "square", "m": 8192, "dtype": d} for d in ("bf16", "fp8")]
    h = _rows("tflops", "gemm", cases, [650.0, 1160.0], peak=989.0)
    h.loc[1, "peak"] = 1979.0
    fig, _ = plots.gemm(h)
    ax = fig.axes[0]
    _drawn(fig)
    peaks = sorted(round(c.get_segments()[0][0][1]) for c in ax.collections)
    assert peaks == [989, 1979]
    assert "datasheet peak" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] > 1979
    assert "(TFLOP/s)" in ax.get_ylabel()


def test_bandwidth_axis_is_zero_based_with_the_peak_line():
    cases = [{"op": op, "size_bytes": 4 << 30} for op in ("copy", "triad")]
    h = _rows("gbps", "membw", cases, [4240.0, 4310.0], peak=4800.0)  # 1.7 % apart
    fig, _ = plots.membw(h)
    ax = fig.axes[0]
    _drawn(fig)
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 4800
    assert any("datasheet peak 4800" in t.get_text() for t in ax.get_legend().get_texts())
    assert "(GB/s" in ax.get_ylabel()


def test_legends_name_the_system_and_the_gpu():
    sel = select([REFERENCE], full=False)
    h = plot_frame(sel)
    assert set(h["series"]) == {"local · NVIDIA H200 (reference)"}
    fig, _ = plots.gemm(h)
    assert "local · NVIDIA H200 (reference)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


@pytest.mark.parametrize("name", [name for name, _, _ in plots.PLOTS])
def test_every_plot_of_the_reference_runs_has_readable_non_overlapping_labels(name):
    h = plot_frame(select([REFERENCE], full=False))
    builder = {n: b for n, _, b in plots.PLOTS}[name]
    fig, _ = builder(h)
    if fig is None:
        pytest.skip(f"no {name} plot for the reference runs")
    renderer = _drawn(fig)
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        assert _overlaps(ax.get_xticklabels(), renderer) == [], name
        assert _overlaps(ax.get_yticklabels(), renderer) == [], name
        assert "_" not in ax.get_ylabel().split("(")[0] or ax.get_ylabel().startswith("%"), ax.get_ylabel()


def test_no_per_gpu_distribution_of_a_run_whose_ranks_share_one_job_wide_figure():
    """An imported nccl-tests log stores its one job-wide busbw on every rank: a histogram of it
    would claim 16 GPUs each at 100 %; a run that measured each GPU is shown instead."""
    import pandas as pd

    from aifbench.analysis.plots import distribution

    def run(run_id: str, values: list[float]) -> pd.DataFrame:
        return pd.DataFrame({"run_id": run_id, "case_id": "c", "label": "collectives", "metric": "busbw_gbps",
                             "rank": range(len(values)), "value": values})

    shared = run("20261206T000000Z-import-nccl-tests-0", [445.3] * 16)
    fig, note = distribution(shared)
    assert fig is None and "measured each GPU on its own" in note
    fig, note = distribution(pd.concat([shared, run("20261206T000000Z-own-1", [400.0, 410.0, 395.0, 405.0])]))
    assert fig is not None and note.startswith("run 20261206T000000Z-own-1:") and "over 4 ranks" in note
