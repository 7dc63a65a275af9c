"""Files written whole or not at all: a temporary file beside the target, then a rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: Path | str, write: Callable[[Path], object]) -> Path:
    """Write ``path`` through ``write(tmp)`` on a uniquely named file in its folder, then rename.

    Readers see the old file or the whole new one; two processes writing the same target at
    once each rename their own temporary file (the last rename wins), so neither fails.
    A failed ``write`` leaves no temporary file behind.

    Args:
        path: the target.
        write: writes the content to the path it is given.

    Returns:
        ``path``.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
