"""Atomic file writes: write a temporary file in the target directory, then rename it in place.

os.replace is atomic on POSIX within one file system, so readers see the old file or the new
one, never a half-written one. The file gets the permissions a plain open() would give it
(0666 minus the umask), not mkstemp's private 0600, so a project's shared results stay readable.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path | str, write: Callable[[str], object]) -> Path:
    """Call `write(tmp_path)` to produce the content, then rename it to `path`."""
    path = Path(path)
    if path.is_dir():  # os.replace would fail only after the work, naming our temporary file
        raise IsADirectoryError(21, "Is a directory (give a file name)", str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # name the file the user asked for, not our temporary one
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename == tmp:  # name the file the user asked for, not our temporary one
            raise type(exc)(exc.errno, exc.strerror, str(path)) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path | str, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


@contextlib.contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield a temporary directory beside `path` to fill; on success it gets a plain mkdir's
    permissions (0777 minus the umask, not mkdtemp's 0700) and replaces `path` (an existing
    one is removed first); on failure it is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
