"""segdemo.files: the one atomic write every writer of the project goes through."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segdemo.files import atomic_write


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def fail(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


@pytest.mark.parametrize("durable", [True, False])
def test_the_temporary_is_hidden_and_keeps_the_suffix_writers_go_by(tmp_path: Path, durable: bool) -> None:
    seen = []

    def write(tmp: str) -> None:
        seen.append(Path(tmp).name)
        np.savez(tmp, a=np.arange(3))  # np.savez appends .npz to a name without it

    atomic_write(tmp_path / "entry.npz", write, durable=durable)
    assert seen[0].startswith(".") and seen[0].endswith(".npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.npz"]
    with np.load(tmp_path / "entry.npz") as data:
        assert data["a"].tolist() == [0, 1, 2]
