"""Shared test fixtures. ``../shared`` (beside the checkout) holds the reference listings and real samples."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# Under pytest-xdist (``make test`` runs one worker per core) a second intra-op thread per worker would only
# contend for the cores; run without xdist, the suite uses two threads in one process.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
torch.set_num_threads(1 if XDIST_WORKER else 2)
# Checkpoint files are not flushed to the disk in tests (a second per resume state; nothing here must
# survive a power cut).
# tests/test_train_reliability.py::test_a_state_is_flushed_to_the_disk_before_last_names_it turns it back on.
# Subprocesses (the CLI, the app servers) inherit it.
os.environ["SEGDEMO_FSYNC"] = "0"

# Long-running modules first, so that neither worker is left alone with one of them at the end.
SLOW_FIRST = (
    "tests/e2e/",
    "tests/test_train_reliability.py",
    "tests/test_train.py",
    "tests/test_bad_samples.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.path.relative_to(REPO).as_posix()
        return next((i for i, prefix in enumerate(SLOW_FIRST) if path.startswith(prefix)), len(SLOW_FIRST))

    items.sort(key=rank)  # stable: the order within a module is kept


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Whole modules per worker, so that module fixtures are built once, in SLOW_FIRST's order. The two
    browser-test modules start at once on the two workers, which then train their two checkpoints side by side
    (e2e/conftest)."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return nodeid.split("::", 1)[0]

    config.option.loadscopereorder = False  # keep SLOW_FIRST's order rather than xdist's (most tests first)
    return ModuleScheduling(config, log)


# The settings of every tiny training run in the tests: 64 x 32, batch 2, loading in the process, a line per
# step, and no periodic saves (a test that needs them asks with checkpoint_every=N).
TINY = [
    "gta5_size=64x32",
    "cityscapes_size=64x32",
    "batch_size=2",
    "num_workers=0",
    "log_every=1",
    "checkpoint_every=1000",
]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A procedural tree for tiny runs (read only): 8 GTA5-layout images, 8 + 4 Cityscapes-layout ones, 64 x
    32."""
    from segdemo import synthetic

    root = tmp_path_factory.mktemp("procedural")
    synthetic.generate(root, seed=3, n_source=8, n_target_train=8, n_target_val=4, size=(64, 32))
    return root


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


def fixed_input(*shape: int, seed: int = 0) -> torch.Tensor:
    """A random input that is the same in every run (the global generator depends on what ran before)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def assert_same_logits(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Float32 results of the same maths in another op order agree to about 1e-6 of their scale (measured on
    an AMD EPYC: 2e-7 to 1.2e-6 over 30 inputs); which kernels run, and so how the rounding errors add up
    through 20 layers, differs between CPUs, hence 1e-4. Random weights give logits in the thousands, so
    compare relative to that scale; a wrong weight or a wrong op is off by the scale itself."""
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max() <= 1e-4 * theirs.abs().max()


# --- Streamlit AppTest helpers (tests/test_app.py, tests/test_app_uploads.py)
# ------------------------------------

APP_TIMEOUT = 120  # seconds per script run: a first checkpoint load builds its inference form


def open_page(page: str | None = None):
    """A fresh app session (``app.py``), switched to ``pages/<page>.py`` if given; fails on an exception."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=APP_TIMEOUT)
    at.run()
    if page is not None:
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def rerun(at):
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> str:
    """The elements' Markdown as a reader sees it: backslash escapes (pages.common.literal) resolved."""
    return "\n".join(shown(str(e.value)) for e in elements)


def shown(markdown: str) -> str:
    return re.sub(r"\\(.)", r"\1", markdown)


@pytest.fixture
def media(monkeypatch) -> list:
    """Every media store AppTest creates, so the bytes behind an image or download URL can be read."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    stores: list[MemoryMediaFileStorage] = []

    class Recording(MemoryMediaFileStorage):
        def __init__(self, endpoint: str) -> None:
            super().__init__(endpoint)
            stores.append(self)

    monkeypatch.setattr("streamlit.testing.v1.app_test.MemoryMediaFileStorage", Recording)
    return stores


def media_bytes(stores: list, url: str) -> bytes:
    name = url.rsplit("/", 1)[-1]
    file_id = name.split(".", 1)[0]
    for store in reversed(stores):
        if file_id in store._files_by_id:  # each run has its own store
            return store.get_file(name).content
    raise AssertionError(f"no media file behind {url}")
