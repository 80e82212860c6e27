"""A profile's software environment: what a job loads before aifbench starts on a compute node.

    [environment]                 # in a profile (systems/*.toml) or a job file (jobs/*.toml)
    modules = ["Stages/2025", "GCC", "PyTorch"]   # `module load`, in this order, in the batch script
    module_purge = false          # `module purge` first
    uenv = "pytorch/v2.8.0:v1"    # CSCS uenv: srun --uenv=... (with uenv_view: srun --view=...)
    container_environment = ""    # CSCS Container Engine: srun --environment=EDF (name or path)
    container_image = ""          # pyxis/enroot: srun --container-image=... (container_mounts too)
    apptainer_image = ""          # apptainer/singularity: srun ... singularity exec IMAGE python
    venv = ""                     # a virtual environment on top (aifbench installed there): VENV/bin/python
    python = "python3"            # interpreter inside the environment when no venv is given
    export = ""                   # sbatch --export: "" = the site's default, "ALL" or "NONE"
    setup = []                    # more shell lines before srun
    [environment.vars]            # exported in the batch script (values shell-quoted)
    NCCL_SOCKET_IFNAME = "ib0"

A job file's [environment] replaces each key it names (vars: per variable). The batch script's
set-up lines are `script_lines`; the options srun takes to enter a uenv or container are
`srun_args`; the interpreter command that runs inside it is `python_command`. Every value that
reaches the script without quoting is checked against PATH_VALUE (no spaces, quotes or shell
operators; `$VAR` and `${VAR}` expand on the compute node).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

from aifbench.errors import ConfigError
from aifbench.typed_toml import build, spec

PATH_VALUE = re.compile(r"^[A-Za-z0-9_.:+@,=/%#~{}$-]+$")
"""module names, image and venv paths: letters, digits, _ . : + @ , = / % # ~ - and $VAR / ${VAR}"""
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
EXPORTS = ("", "ALL", "NONE")
RECORD_VAR = "AIFBENCH_ENVIRONMENT"
"""set in the batch script: JSON of what the job asked for (provenance records it with what it got)"""


def check_path(loc: str, value: str) -> str:
    """'' or a value written into the script unquoted; ConfigError (exit 2) otherwise."""
    if value and (not PATH_VALUE.match(value) or "$(" in value):
        raise ConfigError(f"{loc} {value!r} refused: only letters, digits, $VAR and _ . : + @ , = / % # ~ - "
                          "are allowed (no spaces, quotes or shell operators)")
    return value


def _paths(loc: str, values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(check_path(f"{loc} entry", v) for v in values)


def _line(loc: str, lines: tuple[str, ...]) -> tuple[str, ...]:
    for line in lines:
        if not isinstance(line, str) or any(c in line for c in "\n\r\0"):
            raise ConfigError(f"{loc}: each entry must be one line of text, got {line!r}")
    return lines


def _vars(loc: str, table: Mapping[str, Any]) -> Mapping[str, Any]:
    for name in table:
        if not ENV_NAME.match(name):
            raise ConfigError(f"{loc}: environment variable name {name!r} is not a valid identifier")
    return {k: str(v) for k, v in table.items()}


def _python(loc: str, value: str) -> str:
    try:
        return shlex.join(shlex.split(value)) if value else value
    except ValueError as exc:
        raise ConfigError(f"{loc} {value!r}: {exc}") from None


@dataclass(frozen=True, kw_only=True, slots=True)
class Environment:
    """The software environment of a job (see the module docstring for each key)."""

    modules: tuple[str, ...] = spec((), check=_paths)
    module_purge: bool = False
    uenv: str = spec("", check=check_path)
    uenv_view: str = spec("", check=check_path)
    container_environment: str = spec("", check=check_path)
    container_image: str = spec("", check=check_path)
    container_mounts: tuple[str, ...] = spec((), check=_paths)
    apptainer_image: str = spec("", check=check_path)
    venv: str = spec("", check=check_path)
    python: str = spec("", check=_python)
    """interpreter command; '' = the one running aifbench (local profiles only)"""
    export: str = spec("", choices=EXPORTS)
    setup: tuple[str, ...] = spec((), check=_line)
    vars: Mapping[str, Any] = spec(default_factory=dict, check=_vars)

    def __post_init__(self) -> None:
        kinds = [k for k in ("uenv", "container_environment", "container_image", "apptainer_image") if getattr(self, k)]
        if len(kinds) > 1:
            raise ConfigError(f"environment: {' and '.join(kinds)} both given; a job enters one of them")

    @property
    def container(self) -> str:
        """The uenv or container image asked for, '' for none."""
        return self.uenv or self.container_environment or self.container_image or self.apptainer_image

    def script_lines(self) -> list[str]:
        """Batch-script lines before srun: modules, the profile's set-up lines, exported variables."""
        lines = ["module purge"] if self.module_purge else []
        if self.modules:
            lines += [f"module load {' '.join(self.modules)}", "module list 2>&1"]
        lines += list(self.setup)
        lines += [f"export {name}={shlex.quote(value)}" for name, value in self.vars.items()]
        return lines

    def srun_args(self) -> list[str]:
        """srun options that enter the uenv or container (the job step runs inside it)."""
        if self.uenv:
            return [f"--uenv={self.uenv}"] + ([f"--view={self.uenv_view}"] if self.uenv_view else [])
        if self.container_environment:
            return [f"--environment={self.container_environment}"]
        if self.container_image:
            mounts = [f"--container-mounts={','.join(self.container_mounts)}"] if self.container_mounts else []
            return [f"--container-image={self.container_image}", *mounts]
        return []

    def python_command(self, fallback: str) -> str:
        """The command that starts Python inside the environment; `fallback` when none is named."""
        python = f"{self.venv}/bin/python" if self.venv else (self.python or fallback)
        if self.apptainer_image:
            binds = ["--bind", ",".join(self.container_mounts)] if self.container_mounts else []
            return " ".join(["singularity", "exec", *binds, self.apptainer_image, python])
        return python

    def describe(self) -> dict[str, Any]:
        """What was asked for, for `systems show` and the run's provenance (non-empty keys)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: (list(v) if isinstance(v, tuple) else dict(v) if isinstance(v, Mapping) else v)
                for k, v in out.items() if v not in ("", (), {}, False)}


def parse_environment(raw: Any, where: str, path: str = "environment") -> Environment:
    return build(Environment, raw, where, path)


def override(base: Environment, raw: Mapping[str, Any], where: str) -> Environment:
    """`base` with the keys a job file's [environment] names replaced (vars merged per variable)."""
    given = parse_environment(raw, where)
    changes = {k: getattr(given, k) for k in raw if k != "vars"}
    if "vars" in raw:
        changes["vars"] = {**base.vars, **given.vars}
    if any(k in raw for k in ("uenv", "container_environment", "container_image", "apptainer_image")):
        cleared = {k: "" for k in ("uenv", "uenv_view", "container_environment", "container_image",
                                   "apptainer_image") if k not in raw}
        changes = {**cleared, **changes}
    return replace(base, **changes)

