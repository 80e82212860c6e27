"""aifbench: how fast and how healthy is this AI-factory partition for LLM work.

Importing this package is cheap: it never imports torch.cuda, pynvml, submitit or pyslurm.
"""

__version__ = "0.1.0"
SCHEMA_VERSION = 2
