"""llm_train dtype "fp8" on CPU: skipped with the reason (no torchao, no fp8 GPU), config
validation, the loss comparison rule, and (where torchao is installed: torch's CPU _scaled_mm
runs its Float8Linear) the conversion itself against the unconverted model."""

import contextlib
import sys

import pytest
import torch

from aifbench.benchmarks.base import Context
from aifbench.benchmarks.llm_train import LlmTrain, LlmTrainConfig, train_step
from aifbench.cli import main
from aifbench.config import build_config
from aifbench.models import fp8
from aifbench.models.llama import build_model
from aifbench.models.shapes import SHAPES
from tests.conftest import write

TINY = SHAPES["tiny"]


def _suite(tmp_path, params: str) -> str:
    body = f'[suite]\nname = "t"\n[timing]\nwarmup = 1\nrepeats = 2\n[[case]]\nbenchmark = "llm_train"\n' \
           f'params = {{ {params} }}\n'
    return str(write(tmp_path / "t.toml", body))


def test_fp8_without_torchao_is_skipped_with_the_install_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torchao", None)  # what an environment without it looks like
    monkeypatch.setitem(sys.modules, "torchao.float8", None)
    suite = _suite(tmp_path, 'model = "tiny", seq_len = 32, dtype = "fp8"')
    assert main(["run", suite, "--results", str(tmp_path / "res"), "--telemetry-hz", "0"]) == 0
    err = capsys.readouterr().err  # the only case is skipped: the run says why and stores nothing
    assert "would be skipped" in err and "first reason: dtype fp8 needs torchao" in err and "aifbench[fp8]" in err


def test_fp8_on_cpu_is_skipped_naming_the_gpu_it_needs(monkeypatch):
    try:
        import torchao.float8  # noqa: F401
    except ImportError:
        pytest.skip("torchao not installed: the no-torchao reason comes first (test above)")
    reason = fp8.unavailable_reason("cpu")
    assert reason == "dtype fp8 needs a CUDA GPU with compute capability >= 8.9 (fp8 tensor cores); device is cpu"


def test_fp8_with_fsdp_is_skipped_with_the_reason():
    b = LlmTrain(build_config(LlmTrainConfig, dict(model="tiny", seq_len=32, dtype="fp8"), "llm_train"),
                 Context(world_size=2, distributed=True))
    assert b._local_skip_reason() == "dtype fp8 is timed on one device; run it without --nproc/FSDP"


@pytest.mark.parametrize("params, message", [
    ('model = "tiny", seq_len = 32, dtype = "fp8", reference = "transformers"',
     "llm_train.reference: 'transformers' is compared in bf16 or fp32; with dtype fp8 allowed: none"),
    ('model = "tiny", dtype = "fp4"', "llm_train.dtype: 'fp4' not allowed; allowed: bf16, fp32, fp8"),
])
def test_bad_fp8_input_is_a_config_error(tmp_path, capsys, params, message):
    assert main(["run", _suite(tmp_path, params), "--results", str(tmp_path / "res")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


def test_loss_comparison_rule():
    bf16 = [12.0, 11.0, 10.0]
    assert fp8.loss_problem([12.1, 11.05, 10.2], bf16) is None  # within 3 %
    problem = fp8.loss_problem([12.1, 11.05, 10.5], bf16)  # 5 % at the last step
    assert problem.startswith("fp8 training loss departs from bf16 over the same steps: max |fp8 - bf16| / bf16 = 0.05")
    assert "differ in length" in fp8.loss_problem([12.0], bf16)
    assert "max rel diff 0.0167 (tolerance 0.03)" in fp8.comparison([12.2, 11.0, 10.0], bf16)


def test_conversion_trains_like_the_unconverted_model():
    """torchao on CPU: every block linear becomes Float8Linear (lm_head stays), the logits move
    (fp8 is really used) but stay close, and three AdamW steps track the fp32 losses."""
    pytest.importorskip("torchao.float8")
    ref, conv = build_model(TINY, max_seq_len=32, seed=4), build_model(TINY, max_seq_len=32, seed=4)
    names = fp8.convert(conv)
    per_layer = {"attention.wqkv", "attention.wo", "feed_forward.w13", "feed_forward.w2"}
    assert sorted(names) == sorted(f"layers.{i}.{n}" for i in range(TINY.num_layers) for n in per_layer)
    tokens = torch.randint(TINY.vocab_size, (2, 33), generator=torch.Generator().manual_seed(0))
    x, y = tokens[:, :-1], tokens[:, 1:]
    with torch.no_grad():
        a, b = ref(x), conv(x)
    rel = ((a - b).norm() / a.norm()).item()
    assert 1e-3 < rel < 0.3, rel  # e4m3 keeps 3 mantissa bits: ~4 % per GEMM output (measured: 0.14)
    losses = {}
    for name, model in (("fp32", ref), ("fp8", conv)):
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        # no autocast: CPU fp32 master weights straight into Float8Linear
        losses[name] = [train_step(model, [(x, y)], opt, contextlib.nullcontext).item() for _ in range(3)]
    assert fp8.loss_problem(losses["fp8"], losses["fp32"]) is None, losses
    assert losses["fp8"][-1] < losses["fp8"][0]



def test_fp8_case_checks_against_bf16_and_reports_it():
    """The llm_train path behind the GPU skip, on CPU where torchao is installed: a bf16 run of
    the same steps first, then the fp8 model; the loss row states the comparison."""
    pytest.importorskip("torchao.float8")
    from aifbench.timing import Timer, TimingConfig

    b = LlmTrain(build_config(LlmTrainConfig, dict(model="tiny", seq_len=32, micro_batch=2, dtype="fp8"),
                              "llm_train"), Context())
    b.setup()
    b.check()
    assert len(b.fp8_layers) == 4 * TINY.num_layers and len(b.bf16_losses) == 3
    assert b.check_losses != b.bf16_losses and fp8.loss_problem(b.check_losses, b.bf16_losses) is None
    loss = next(m for m in b.measure(Timer("cpu", TimingConfig(warmup=0, repeats=1))).metrics if m.metric == "loss")
    assert "8 Float8Linear layers; fp8 vs bf16 over the same 3 steps: max rel diff" in loss.detail
    assert "mfu_pct against the bf16 dense peak" in loss.detail
