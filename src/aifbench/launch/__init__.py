"""Launchers start aifbench.worker where it must run: local processes or Slurm (submitit).

Nothing below launch/ imports launch/.
"""
