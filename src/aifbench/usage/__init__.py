"""The utilisation card: compute-utilisation figures of a Slurm partition over a period.

slurm.py reads Slurm's accounting and state through its commands (or a directory of their
captured output), classes.py reads the operator's account -> class file, compute.py turns the
records into figures (pure, streamed), card.py is the versioned table that stores them with
provenance, and render.py sets cards side by side and draws them. docs/operators-usage.md
defines every figure.
"""
