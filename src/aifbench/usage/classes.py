"""Account classes: the operator's TOML that maps Slurm accounts to classes, so that the card
names no account.

    default = "other"                  # class of every account not listed (default: "other")
    [accounts]
    proj-uni-a = "academia"
    acme-ai = "industry"

Class names are free text (academia, industry, SME, public sector, ...); any other key is refused
with one line naming the allowed ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from aifbench.typed_toml import build, nonempty, spec


@dataclass(frozen=True, kw_only=True)
class AccountClasses:
    """account -> class, and the class of the rest."""

    default: str = spec("other", check=nonempty, doc="class of accounts not listed")
    accounts: Mapping[str, str] = spec(default_factory=dict, doc="account -> class")

    def classify(self, account: str) -> str:
        return self.accounts.get(account, self.default)

    @property
    def names(self) -> list[str]:
        """Every class, sorted, the default among them."""
        return sorted({*self.accounts.values(), self.default})


def load(path: Path | None) -> AccountClasses:
    """The classes of `path`, or every account in the default class when None."""
    if path is None:
        return AccountClasses()
    from aifbench.files import read_toml

    classes = build(AccountClasses, read_toml(path), str(path))
    for account, name in classes.accounts.items():
        nonempty(f"{path}: accounts.{account}", name)
    return classes
