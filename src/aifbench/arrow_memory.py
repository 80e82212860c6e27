"""Arrow's memory allocator in aifbench's own processes: jemalloc where the pyarrow build has it.

With pyarrow's default pool (mimalloc since pyarrow 20, https://github.com/apache/arrow/issues/46929)
the many small reads of a store cost several times the kernel (system) time they cost with
jemalloc, and the analysis commands peaked higher (measured side by side: docs/scale.md,
"Arrow's allocator").
Arrow reads the choice once, from ARROW_DEFAULT_MEMORY_POOL, when its default pool is first
made (https://arrow.apache.org/docs/cpp/env_vars.html): so it is set before pyarrow is
imported, and a user's own setting wins. Child processes (ranks, Slurm jobs) inherit it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"


def prefer(backend: str = "jemalloc") -> str | None:
    """Make `backend` Arrow's default pool in this process and its children unless the user
    chose one or pyarrow is already imported; the backend in use, None when left alone. A
    build without `backend` keeps its default, silently (Arrow would warn once per process)."""
    if POOL_ENV in os.environ or "pyarrow" in sys.modules:
        return None
    os.environ[POOL_ENV] = backend
    with _quiet_stderr():
        import pyarrow

        used = str(pyarrow.default_memory_pool().backend_name)
    if used != backend:
        del os.environ[POOL_ENV]  # children keep the build's default too, without the warning
    return used


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 pointed at /dev/null (Arrow's C++ log writes there, not to sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
