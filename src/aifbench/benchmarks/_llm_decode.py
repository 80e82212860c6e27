"""The decode step llm_infer times, with the levers fast decoders use.

A step is `step(tokens (B, 1), i) -> (next tokens (B, 1), logits (B, V))` for the i-th decode
position after the prompt. Levers, each shown not to change the logits by tests/unit/benchmarks/test_llm_decode.py:
  - greedy argmax inside the step (Llama.decode_greedy): one compiled graph / CUDA graph per
    token, no separate argmax launch and no host synchronisation (positions are device tensors
    made once in setup; the attended window is a host int known from i);
  - decode_window > 0: attention reads only the filled part of the static KV cache, rounded up
    to a multiple of decode_window (llama.decode_window); one graph per window bucket;
  - compiler options as in gpt-fast's generate.py (pytorch-labs/gpt-fast): inductor
    coordinate_descent_tuning, triton.unique_kernel_names, fx_graph_cache, fullgraph=True;
    compile_mode "max-autotune" adds inductor's GEMM autotuning; CUDA graphs through
    inductor's cudagraphs ("reduce-overhead") when cuda_graphs is on;
  - decode_attention = "math": SDPA's math backend during decode, so inductor generates the
    (tiny, memory-bound) attention itself, as gpt-fast does, instead of calling a flash kernel.
Options are passed per torch.compile call (`options=`), so nothing global changes for other
benchmarks in the same process.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch

from aifbench.benchmarks.configs import COMPILE_MODES  # noqa: F401 (the lever's allowed values)
from aifbench.models.llama import decode_window

# inductor settings gpt-fast's generate.py sets for decode (read from its source; facts, not code)
FAST_DECODE_OPTIONS = {"coordinate_descent_tuning": True, "triton.unique_kernel_names": True,
                       "fx_graph_cache": True}
Step = Callable[[torch.Tensor, int], "tuple[torch.Tensor, torch.Tensor]"]




@dataclass(frozen=True, slots=True)
class DecodeSettings:
    compile: bool = False
    backend: str = "inductor"
    cuda_graphs: bool = False
    compile_mode: str = "default"
    attention: str = "sdpa"
    window: int = 0

    def describe(self) -> str:
        """One line for a metric's detail: how the timed step was built."""
        parts = [f"compile={self.compile}" + (f" ({self.backend}, {self.compile_mode})" if self.compile else ""),
                 f"cuda_graphs={self.cuda_graphs}", f"decode_attention={self.attention}",
                 f"decode_window={self.window or 'whole cache'}"]
        return ", ".join(parts)


def compile_options(mode: str, cuda_graphs: bool) -> dict:
    """Inductor options for the decode step: gpt-fast's settings, max-autotune's GEMM search
    when asked, and inductor's CUDA graphs (what mode "reduce-overhead" turns on)."""
    options = dict(FAST_DECODE_OPTIONS)
    if mode == "max-autotune":
        options["max_autotune"] = True
    if cuda_graphs:
        options["triton.cudagraphs"] = True
    return options


def attention_context(attention: str):
    """SDPA backend context for a decode call: the math backend for "math", else no constraint."""
    if attention == "math":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()


def build_step(model, settings: DecodeSettings, positions: list[torch.Tensor], first_position: int,
               example_tokens: torch.Tensor) -> Step:
    """The timed decode step for `model` (cache set up) at positions[i] = first_position + i."""
    cache_len = model.cache_positions.numel()
    windows = [decode_window(first_position + i, settings.window, cache_len) for i in range(len(positions))]
    fn = model.decode_greedy
    if settings.compile:
        if settings.backend == "inductor":
            fn = torch.compile(fn, fullgraph=True, dynamic=False,
                               options=compile_options(settings.compile_mode, settings.cuda_graphs))
        else:
            fn = torch.compile(fn, fullgraph=True, dynamic=False, backend=settings.backend)
        _allow_recompiles(len(set(windows)))
    elif settings.cuda_graphs:
        fn = GraphedDecode(fn, example_tokens, positions[0], sorted(set(windows), key=_order),
                           lambda: attention_context(settings.attention))

    def step(tokens: torch.Tensor, i: int):
        with attention_context(settings.attention):
            return fn(tokens, positions[i], windows[i])

    return step


def _order(window: int | None) -> int:
    return -1 if window is None else window


def _allow_recompiles(buckets: int) -> None:
    """One compiled graph per window bucket: raise dynamo's per-function recompile limit to fit."""
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):  # renamed in torch 2.6
        if hasattr(dynamo_config, name) and getattr(dynamo_config, name) < buckets + 8:
            setattr(dynamo_config, name, buckets + 8)


class GraphedDecode:
    """The decode step captured in CUDA graphs, one per window bucket, sharing one memory pool;
    a replay copies the inputs into static buffers. The outputs are the graph's static tensors:
    read them before the next call."""

    def __init__(self, fn, tokens: torch.Tensor, input_pos: torch.Tensor, windows: list[int | None],
                 context: Callable[[], contextlib.AbstractContextManager]):
        self.tokens, self.input_pos = tokens.clone(), input_pos.clone()
        pool = torch.cuda.graph_pool_handle()
        self.graphs: dict[int | None, tuple[torch.cuda.CUDAGraph, tuple]] = {}
        for window in windows:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), context():  # warm-up outside the capture
                for _ in range(2):
                    fn(self.tokens, self.input_pos, window)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with context(), torch.cuda.graph(graph, pool=pool):
                out = fn(self.tokens, self.input_pos, window)
            self.graphs[window] = (graph, out)

    def __call__(self, tokens: torch.Tensor, input_pos: torch.Tensor, window: int | None = None):
        graph, out = self.graphs[window]
        self.tokens.copy_(tokens)
        self.input_pos.copy_(input_pos)
        graph.replay()
        return out
