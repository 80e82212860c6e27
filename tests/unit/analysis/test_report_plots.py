"""The report's plots as a person reads them: datasheet peak lines, zero-based bandwidth and
throughput axes, readable metric names with units, system and GPU names in legends, and tick
labels that do not overlap at 20+ cases (bounding boxes from matplotlib's own renderer)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from aifbench import metrics as M
from aifbench.analysis import plots
from aifbench.analysis.data import select
from aifbench.analysis.report import plot_frame

REFERENCE = Path(__file__).resolve().parents[3] / "results" / "reference"


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


# --- a plot draws every metric its trait names, and names none itself ---------------------------
GEMM_CASE = ("gemm", {"shape": "square", "m": 4096, "n": 4096, "k": 4096, "dtype": "bf16"})
CASE_OF_PLOT = {"gemm": GEMM_CASE, "roofline": GEMM_CASE,
                "bandwidth": ("membw", {"op": "copy", "size_bytes": 1 << 30}),
                "busbw": ("collectives", {"op": "all_reduce", "size_bytes": 1 << 28}),
                "training": ("llm_train", {"model": "llama3-1b", "seq_len": 4096}),
                "decode": ("llm_infer", {"model": "llama3-8b", "batch_size": 8}),
                "energy": GEMM_CASE}
"""a case each plot can place its metrics in (a size, a batch, a dtype and GEMM shape ...)"""
BUILDERS = {name: build for name, _, build in plots.PLOTS}


def drawn(fig) -> tuple[list[float], str]:
    """Every value a figure shows (bar lengths, line and point y values) and all its text."""
    _drawn(fig)
    values: list[float] = []
    for ax in fig.axes:
        values += [x for p in ax.patches for x in (p.get_height(), p.get_width())]  # bars up or across
        values += [float(y) for line in ax.lines for y in line.get_ydata()]
        values += [float(y) for c in ax.collections for y in c.get_offsets()[:, 1]]
    texts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    return values, "\n".join(texts)


def _frame(metric: str, plot: str, value: float) -> pd.DataFrame:
    benchmark, params = CASE_OF_PLOT[plot]
    return _rows(metric, benchmark, [params], [value])


@pytest.mark.parametrize("metric,plot", [(d.name, p) for d in M.METRICS.values() for p in d.plots])
def test_every_metric_a_plot_trait_names_is_drawn_by_that_plot(metric, plot):
    h = _frame(metric, plot, 123.25)
    if plot == "roofline" and M.get(metric).unit == "GB/s":  # a bandwidth is the roof's slope: needs GEMM points
        h = pd.concat([_frame("tflops", plot, 500.0), h], ignore_index=True)
    fig, note = BUILDERS[plot](h)
    assert fig is not None, note
    values, text = drawn(fig)
    if plot == "roofline" and M.get(metric).unit == "GB/s":
        assert "memory 123.2 GB/s" in text
    else:
        assert 123.25 in values, (metric, plot)
    if plot not in ("roofline", "distribution"):
        assert M.get(metric).label in text.lower() or M.get(metric).label in text, "its words label it"


@pytest.fixture
def define_toy():
    """Define metrics the way the dictionary does (metrics.define); removed again after the test."""
    made: list[str] = []

    def define(name: str, unit: str, definition: str, **traits) -> M.MetricDef:
        made.append(name)
        return M.define(name, unit, True, definition, **traits)

    yield define
    for name in made:
        del M.METRICS[name]


TOY = {"gemm": ("TFLOP/s", {}), "roofline": ("TFLOP/s", {}), "bandwidth": ("GB/s", {}), "busbw": ("GB/s", {}),
       "training": ("tokens/s", {}), "decode": ("tokens/s", {}),
       "energy": ("TFLOP/s/W", {"role": "efficiency", "derivation": "per_power", "per_power": M.PerPower(("tflops",))})}


@pytest.mark.parametrize("plot", sorted(TOY))
def test_a_new_metric_with_a_plots_trait_appears_beside_the_old_ones(define_toy, plot):
    """The README's recipe for a metric: one define with `plots=(...)`; the plot shows it next to
    the metrics already there, and plots.py names neither."""
    unit, traits = TOY[plot]
    old = next((m for m in plots.plotted(plot) if M.get(m).scope == "device"), plots.plotted(plot)[0])
    define_toy("toy_rate", unit, "a toy rate for this test", **{"role": "throughput", "derivation": "from_time",
                                                                 **traits}, plots=(plot,), label="toy rate")
    assert plots.plotted(plot)[-1] == "toy_rate"
    h = pd.concat([_frame(old, plot, 400.0), _frame("toy_rate", plot, 321.5)], ignore_index=True)
    fig, _ = BUILDERS[plot](h)
    values, text = drawn(fig)
    assert 321.5 in values and 400.0 in values
    if plot != "roofline":  # the roofline draws points, one roof per dtype
        assert "toy rate" in text.lower()


def test_training_shows_a_job_wide_figure_only_where_no_per_gpu_one_of_its_unit_is():
    """tokens_per_s (scope job) gives way to tokens_per_s_per_device; MFU (a score) leads."""
    both = pd.concat([_frame(m, "training", v) for m, v in
                      (("tokens_per_s", 8000.0), ("tokens_per_s_per_device", 1000.0), ("mfu_pct", 40.0))])
    fig, note = plots.training(both)
    assert [ax.get_title() for ax in fig.axes] == ["Model FLOPs utilisation by model shape",
                                                  "Training throughput per GPU by model shape"]
    assert 8000.0 not in drawn(fig)[0] and "not measured" not in note
    fig, note = plots.training(_frame("tokens_per_s", "training", 8000.0))
    assert [ax.get_title() for ax in fig.axes] == ["Training throughput by model shape"]
    assert note.endswith("not measured: tokens_per_s_per_device, mfu_pct")


def test_plots_name_no_metric():
    """What a plot draws comes from the `plots` trait: no metric name is written in plots.py."""
    import inspect

    source = inspect.getsource(plots)
    assert [m for m in M.METRICS if f'"{m}"' in source or f"'{m}'" in source] == []


def test_worked_example_a_new_metric_is_one_define(define_toy, tmp_path):
    """A metric added by one define, stored by a run as any metric is, is drawn in the report's
    bandwidth plot as a panel of its own with its words and unit: nothing else was touched."""
    import inspect

    from aifbench.analysis import report
    from tests._analysis_data import CaseSpec, RunSpec, membw, write_run

    define_toy("toy_gbps", "GB/s", "toy: bytes moved by a toy kernel / median time, in 1e9 B/s",
               role="throughput", derivation="from_time", additive=True, plots=("bandwidth",), label="toy kernel bandwidth")
    sizes = (1 << 20, 1 << 24, 1 << 28)
    toy = [CaseSpec("membw", {"op": "toy", "size_bytes": s}, 1e-3, [("toy_gbps", 100.0 * i, None)])
           for i, s in enumerate(sizes, 1)]
    root = tmp_path / "results"
    write_run(root, RunSpec(run_id="20260105T120000Z-toy-00000a", cases=[membw(s) for s in sizes] + toy, noise=0.0))
    sel = select([root], full=False)
    html, _ = report.render(sel)
    assert '<h2 id="bandwidth">' in html and "no memory bandwidth results" not in html
    fig, _ = plots.membw(plot_frame(sel))
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["Memory bandwidth vs size", "Toy kernel bandwidth vs size"]
    toy_ax = fig.axes[1]
    assert toy_ax.get_ylabel() == "toy kernel bandwidth (GB/s)"
    assert [round(y, 6) for y in toy_ax.lines[0].get_ydata()] == [100.0, 200.0, 300.0]
    assert "toy" not in inspect.getsource(plots)
