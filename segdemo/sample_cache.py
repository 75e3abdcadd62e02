"""A one-time cache of decoded, validated and resized samples, so that later epochs (and other variants at the
same size) read ready uint8 arrays instead of decoding a 1914 x 1052 PNG, checking and mapping its label and
resizing both, every time.

An entry is one uncompressed ``.npz`` (``image`` H x W x 3 uint8, ``label`` uint8 trainIds when the dataset
has labels), named by a hash of everything its content depends on: both source files (path, size, modification
time), how the label's values are read, the output sizes and this format's version. A changed or replaced
file, another size or another label convention is therefore a new entry, never a stale one. Entries are
written to a temporary file and renamed, so loader workers and ranks filling the cache at once never see half
an entry; an entry that cannot be read (a disk that filled up, say) is treated as missing and written again.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np

from segdemo.files import atomic_write

CACHE_FORMAT = 1  # bump when what an entry holds changes


def _file_identity(path: Path | None) -> str:
    if path is None:
        return "-"
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


class SampleCache:
    """Entries under ``folder`` (created on first write)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder).expanduser()

    def __repr__(self) -> str:
        return f"SampleCache({str(self.folder)!r})"

    def key(self, image: Path, label: Path | None, label_kind: str, size: object, label_size: object) -> str:
        """The entry name for a sample read from ``image`` / ``label`` and resized to ``size`` /
        ``label_size``."""
        text = "|".join(
            [
                f"v{CACHE_FORMAT}",
                _file_identity(image),
                _file_identity(label),
                label_kind,
                repr(size),
                repr(label_size),
            ]
        )
        return hashlib.sha1(text.encode()).hexdigest()[:24]

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npz"

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray | None] | None:
        """``(image, label or None)`` of an entry, or None if there is none (or it cannot be read)."""
        path = self.path(key)
        try:
            with np.load(path, allow_pickle=False) as entry:
                image = entry["image"]
                label = entry["label"] if "label" in entry.files else None
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)  # damaged: written again by the caller
            return None
        if image.dtype != np.uint8 or image.ndim != 3 or (label is not None and label.dtype != np.uint8):
            path.unlink(missing_ok=True)
            return None
        return image, label

    def put(self, key: str, image: np.ndarray, label: np.ndarray | None) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"image": np.ascontiguousarray(image, dtype=np.uint8)}
        if label is not None:
            arrays["label"] = np.ascontiguousarray(label, dtype=np.uint8)
        # a cache: atomic (never half an entry) but not flushed, a lost entry is decoded again
        atomic_write(path, lambda tmp: np.savez(tmp, **arrays), durable=False)

    def entries(self) -> int:
        """How many entries the cache holds."""
        return sum(1 for _ in self.folder.glob("*/*.npz")) if self.folder.is_dir() else 0
