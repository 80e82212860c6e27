"""Models used by the LLM benchmarks: a Llama-3-style decoder (llama), its shapes, FLOP counts.

Importing this package does not import torch; `aifbench.models.llama` does.
"""

from aifbench.models.shapes import SHAPES, LlamaShape, resolve_shape

__all__ = ["SHAPES", "LlamaShape", "resolve_shape"]
