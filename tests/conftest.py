"""Shared test fixtures. ``../shared`` (beside the checkout) holds the reference listings and real samples."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} (reference files and real GTA5 samples) is not beside the checkout")
    return SHARED


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): inputs of a
    few thousand pixels gain nothing from a second thread and, on a busy 2-core machine, lose up to 50x to
    OpenMP contention; runs that diverge on purpose then diverge as the one-thread child processes do."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def read_state_dict_listing(path: Path) -> dict[str, tuple[int, ...]]:
    """Parse a ``key<TAB>(shape)<TAB>dtype`` listing into {key: shape}."""
    listing = {}
    for line in path.read_text().splitlines():
        key, shape, _dtype = line.split("\t")
        listing[key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return listing


def assert_same_logits(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Float32 results of the same maths in another op order agree to ~1e-7 of their scale; random
    weights give logits in the thousands, so compare relative to that scale."""
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max() <= 1e-5 * theirs.abs().max()
