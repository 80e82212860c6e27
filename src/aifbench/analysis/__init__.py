"""Analysis over stored results: never re-runs anything.

data.py       what is loaded: paths + results/reference, baselines left out, rows deduplicated
samples.py    the raw samples behind a metric row, in the metric's unit
stats.py      Mann-Whitney U, bootstrap interval of a median ratio, robust z-score (no scipy)
compare.py    medians with spread per system / partition / GPU / node; normalised; vs a baseline
references.py acceptance references (system profiles, acceptance.toml, --references FILE)
validate.py   an operator's acceptance of a partition: references, outliers, flags, drift; PASS / FAIL / INCOMPLETE; JUnit
completeness.py  validate's completeness: every case of the stored plan on every rank, every reference judged
baseline.py   runs frozen as baselines under <results>/baselines/NAME/
plots.py      the report's plots, each present only when its data is
report.py     one self-contained HTML file
exchange.py   export / import of a one-file Parquet bundle between sites
"""

from aifbench.analysis.data import load  # noqa: E402  the Python API: load(["results"]) -> Results

__all__ = ["load"]
