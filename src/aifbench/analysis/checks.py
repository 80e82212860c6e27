"""One judgement of validate (a Check) and who measured a row (a Slot): shared by validate and
its completeness rules, below both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Check:
    kind: str       # complete | ran | gpu | reference | outliers-gpu | outliers-node | drift
    name: str
    status: str     # pass | fail | skip | inconclusive (an interval straddling a bound: not a pass) | incomplete (kind complete)
    message: str
    value: float | None = None
    unit: str = ""


Slot = tuple[int, str]
"""(rank, node): who measured a row. A rank number alone is ambiguous in array jobs, where every
array task has its own rank 0 on its own node."""


def slot(r: Any) -> Slot:  # r: a row of DataFrame.itertuples (a namedtuple built at run time)
    return int(r.rank), str(r.node)
