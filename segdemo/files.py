"""Writing files so that nobody ever sees half of one: every writer in the project goes through here."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

PNG_COMPRESS_LEVEL = 1
"""zlib level of every PNG the project writes (the app's download buttons, the procedural scenes): level 1
encodes a 2048 x 1024 overlay about 4x as fast as Pillow's default 6 for a file ~12% larger, and a 320 x 160
scene's PNGs in about a third of the time for files ~6% larger (docs/benchmarks.md)."""

FSYNC_ENV = "SEGDEMO_FSYNC"
"""``SEGDEMO_FSYNC=0`` skips :func:`fsync_path` (durability against power cuts) for disposable runs: the
test suite sets it, since flushing a 150 MB resume state takes about a second; the test of the flushing
unsets it."""


def fsync_path(path: str | Path) -> None:
    """Flush a file's (or a folder's) content to the disk: after it, a power cut cannot take it back."""
    if os.environ.get(FSYNC_ENV, "1") == "0":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[str], Any], durable: bool = True) -> None:
    """``write(tmp)`` a temporary file in ``path``'s folder and rename it to ``path``: readers and a run
    killed
    half-way never see half a file under the name. ``durable`` also flushes the file and the folder to the
    disk, so a power cut cannot either (checkpoints, run state); files that are cheap to regenerate skip
    it."""
    path = Path(path)
    # hidden (listings skip it) and ending in the target's own suffix, for writers that go by it (np.savez,
    # OpenCV's video writer, a checkpoint loader)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        write(tmp)
        if durable:
            fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_path(path.parent)  # the rename itself
