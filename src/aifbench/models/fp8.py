"""FP8 training of the Llama decoder through torchao's float8 linear layers (optional extra [fp8]).

`convert(model)` swaps the decoder's nn.Linear layers for torchao.float8's Float8Linear
(`torchao.float8.convert_to_float8_training`, default recipe: dynamic tensorwise scaling, e4m3
for inputs and weights, e5m2 for gradients; the matmuls run as fp8 x fp8 -> bf16 on tensor
cores). Master weights stay fp32, everything else runs under bf16 autocast, as llm_train's bf16.
Left in higher precision, as torchtitan's float8 converter does: the output projection
(lm_head, whose logits feed the loss directly) and any layer with a dimension not divisible by
16 (what the fp8 GEMM kernels require).

fp8 tensor-core GEMMs need compute capability >= 8.9 (Ada, Hopper and later); elsewhere the case
is skipped with the reason. torch's CPU `_scaled_mm` lets the conversion itself be tested on CPU
(tests/unit/benchmarks/test_fp8.py, where torchao is installed), but CPU figures say nothing about GPU speed.
torchao is imported lazily: never by `import aifbench` and not at all without dtype "fp8".
"""

from __future__ import annotations

import torch
from torch import nn

INSTALL_HINT = "pip install 'aifbench[fp8]' (torchao)"
MIN_CAPABILITY = (8, 9)
# |fp8 loss - bf16 loss| / bf16 loss allowed at every check step (same weights, batch, steps).
# A stated bound, not yet measured on a GPU. On CPU (torch's _scaled_mm, torchao 0.18, tiny shape,
# unit-variance init): 0.8 % max over 3 steps against bf16 at lr 3e-4, 1.7 % against fp32 at lr 3e-3;
# 3 % leaves room for bigger shapes and longer runs.
LOSS_TOLERANCE = 3e-2


def unavailable_reason(device: str) -> str | None:
    """Why fp8 training cannot run on `device` here, or None."""
    try:
        import torchao.float8  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install raising anything else
        return f"dtype fp8 needs torchao ({type(exc).__name__}: {exc}); {INSTALL_HINT}"
    if not device.startswith("cuda"):
        return f"dtype fp8 needs a CUDA GPU with compute capability >= {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} " \
               f"(fp8 tensor cores); device is {device}"
    cap = torch.cuda.get_device_capability(device)
    if cap < MIN_CAPABILITY:
        return (f"dtype fp8 needs compute capability >= {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} "
                f"(fp8 tensor cores); {torch.cuda.get_device_name(device)} has {cap[0]}.{cap[1]}")
    return None


def _convertible(module: nn.Module, fqn: str) -> bool:
    """Float8Linear for every linear except the output head and fp8-GEMM-incompatible sizes."""
    if not isinstance(module, nn.Linear):
        return True  # let torchao descend into containers
    if fqn.split(".")[-1] == "lm_head":
        return False
    return module.in_features % 16 == 0 and module.out_features % 16 == 0


def convert(model: nn.Module) -> list[str]:
    """Swap the model's eligible nn.Linear layers for Float8Linear in place; their names."""
    from torchao.float8 import convert_to_float8_training

    convert_to_float8_training(model, module_filter_fn=_convertible)
    return [name for name, m in model.named_modules() if type(m).__name__ == "Float8Linear"]


def loss_problem(fp8_losses: list[float], bf16_losses: list[float]) -> str | None:
    """Why the fp8 losses are not those of bf16 over the same steps (LOSS_TOLERANCE), or None."""
    if len(fp8_losses) != len(bf16_losses) or not fp8_losses:
        return f"fp8 and bf16 loss sequences differ in length: {len(fp8_losses)} vs {len(bf16_losses)}"
    rel = [abs(a - b) / abs(b) for a, b in zip(fp8_losses, bf16_losses)]
    worst = max(rel)
    if not worst <= LOSS_TOLERANCE:
        return (f"fp8 training loss departs from bf16 over the same steps: max |fp8 - bf16| / bf16 = {worst:.3g} "
                f"> {LOSS_TOLERANCE:g} (fp8 {_fmt(fp8_losses)}; bf16 {_fmt(bf16_losses)})")
    return None


def comparison(fp8_losses: list[float], bf16_losses: list[float]) -> str:
    """One line for the loss row's detail."""
    worst = max(abs(a - b) / abs(b) for a, b in zip(fp8_losses, bf16_losses))
    return (f"fp8 vs bf16 over the same {len(bf16_losses)} steps: max rel diff {worst:.3g} "
            f"(tolerance {LOSS_TOLERANCE:g}); bf16 {_fmt(bf16_losses)}")


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.5g}" for v in values)
