"""Browser-test fixtures: two small trained checkpoints, the app as a real server, Debian Chromium.

The checkpoints are BiSeNet at 64 x 128, trained for 60 steps on procedural scenes: one on the
game-like source domain (like the report's GTA5 baseline), one on the photo-like target domain (like its
Cityscapes reference), so the screenshots show a real domain gap. They are trained once and kept in
pytest's cache folder (``.pytest_cache``); delete it to retrain.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
VIEWPORT = {"width": 1400, "height": 900}
INPUT_SIZE = [64, 128]  # [height, width] the small checkpoints run at
CACHE_VERSION = "v3"  # bump to retrain the cached checkpoints
TRAINED = {"bisenet_gta5": "source", "bisenet_cityscapes": "target"}  # variant -> training domain
STEPS = 60


def _batch(images: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    from segdemo.normalization import IMAGENET_MEAN, IMAGENET_STD

    x = torch.from_numpy(np.stack([im for im, _ in images])).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return x, torch.from_numpy(np.stack([lab for _, lab in images])).long()


def _train(domain: str, seed: int) -> torch.nn.Module:
    """BiSeNet trained from scratch on 64 procedural scenes of one domain (a CPU minute)."""
    from segdemo.hardware import bfloat16_trains_faster
    from segdemo.models import build_model
    from segdemo.synthetic import render_scene, scene_rng

    height, width = INPUT_SIZE
    x, y = _batch(
        [render_scene(scene_rng(seed, domain, "train", i), domain, (width, height)) for i in range(64)]
    )
    torch.manual_seed(seed)
    # channels_last and, where it trains faster (segdemo.hardware), bfloat16 autocast: on one thread of a
    # 2-core AMD EPYC with AVX-512, 52 s and 44 s instead of 62 s for 240 steps, ending at the same mIoU
    # (25.3, 25.3, 25.5); 150 steps took about 30 s each there and ended at 22.4 (target-trained) and 5.8
    # (source-trained). On two threads of an AMD EPYC with AVX2 only (float32), 150 steps take about two
    # minutes per checkpoint and a clean CI run trains both, so 60: about 50 s each there, ending at 18.5 and
    # 8.5 (90 steps: 21.5 and 9.2 in 65 s). No test needs more than a trained checkpoint with a domain gap.
    model = build_model("bisenet").train().to(memory_format=torch.channels_last)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(seed)
    for step in range(STEPS):
        index = torch.randint(0, len(x), (8,), generator=generator)
        images, labels = x[index], y[index]
        if step % 2:  # flips: the cheapest augmentation there is
            images, labels = images.flip(-1), labels.flip(-1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16_trains_faster()):
            outputs = model(images.contiguous(memory_format=torch.channels_last))
        loss = sum(F.cross_entropy(out.float(), labels, ignore_index=255) for out in outputs)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval().to(memory_format=torch.contiguous_format)


def _evaluate(model: torch.nn.Module, meta: dict, count: int = 10) -> dict:
    """Per-class IoU on procedural target val scenes, labelled as such."""
    from segdemo.inference import predict
    from segdemo.metrics import ConfusionMatrix
    from segdemo.synthetic import render_scene, scene_rng

    matrix = ConfusionMatrix()
    for i in range(count):
        image, label = render_scene(scene_rng(0, "target", "val", i), "target", (256, 128))
        prediction = predict(model, meta, image)
        matrix.update(
            torch.from_numpy(prediction.train_ids)[None].long(), torch.from_numpy(label)[None].long()
        )
    summary = matrix.summary()
    return {
        "eval_data": f"procedural cityscapes-layout val, {count} images",
        "miou": summary["miou"],
        "iou": summary["iou"],
        "selected_by": "final step",
    }


def _train_and_save(variant: str, domain: str, seed: int, folder: Path) -> None:
    from segdemo.checkpoints import default_metadata, save_checkpoint

    model = _train(domain, seed)
    meta = default_metadata(
        "bisenet",
        input_size=INPUT_SIZE,
        variant=variant,
        steps=STEPS,
        train_data={
            "kind": "procedural",
            "labeled": "gta5" if domain == "source" else "cityscapes",
            "note": "tiny browser-test checkpoint: 64 scenes, 64 x 128",
        },
    )
    meta["metrics"] = _evaluate(model, meta)
    save_checkpoint(model, folder, meta)  # meta.json last: a folder with it is complete


def _fill_cache(cache: Path) -> None:
    """Train whichever cached checkpoints are missing. Several processes (pytest-xdist workers running the two
    browser-test modules) share the cache: each takes a checkpoint no one else is training, then waits for the
    rest, so two workers train the two checkpoints at the same time and neither is trained twice."""
    import fcntl

    for blocking in (False, True):
        for seed, (variant, domain) in enumerate(TRAINED.items()):
            with (cache / f".{variant}.lock").open("w") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                except BlockingIOError:
                    continue  # another process is training it
                if not (cache / variant / "meta.json").is_file():
                    shutil.rmtree(cache / variant, ignore_errors=True)  # left by an interrupted run
                    _train_and_save(variant, domain, seed, cache / variant)


@pytest.fixture(scope="session")
def checkpoint_root(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint folder holding the two small trained checkpoints (copied from the cache)."""
    name = f"segdemo-e2e-checkpoints-{CACHE_VERSION}"
    cache_plugin = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    if cache_plugin is not None:
        cache = Path(cache_plugin.mkdir(name))
    else:  # the folder all xdist workers' temporary folders are in (a worker's own one otherwise)
        shared = tmp_path_factory.getbasetemp()
        cache = (shared.parent if os.environ.get("PYTEST_XDIST_WORKER") else shared) / name
        cache.mkdir(exist_ok=True)
    _fill_cache(cache)
    root = tmp_path_factory.mktemp("checkpoints")
    for variant in TRAINED:
        shutil.copytree(cache / variant, root / variant)
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AppServer:
    url: str
    process: subprocess.Popen


@contextlib.contextmanager
def serve_app(checkpoints: Path, log_path: Path, env: dict[str, str] | None = None) -> Iterator[AppServer]:
    """``streamlit run app.py`` on a free port with SEGDEMO_CHECKPOINTS (and ``env``) set, once it answers."""
    port = _free_port()
    env = {**os.environ, "SEGDEMO_CHECKPOINTS": str(checkpoints), "PYTHONUNBUFFERED": "1", **(env or {})}
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "viewer",
    ]
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail(f"streamlit exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer on {url} within 90 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield AppServer(url, server)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@contextlib.contextmanager
def run_app(checkpoints: Path, log_path: Path) -> Iterator[str]:
    """:func:`serve_app`, yielding only the URL."""
    with serve_app(checkpoints, log_path) as server:
        yield server.url


@pytest.fixture(scope="session")
def start_app():
    """:func:`run_app`, for tests that need a server of their own."""
    return run_app


@pytest.fixture(scope="session")
def app_url(checkpoint_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app server shared by the browser tests."""
    with run_app(checkpoint_root, tmp_path_factory.mktemp("server") / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's Chromium, driven by Playwright (never a downloaded browser)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium. Install it with `apt-get "
            "install chromium` (as root; .ci/run does this on CI)."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser, app_url: str) -> Iterator[object]:
    """A fresh browser tab (1400 x 900) on its own context, so sessions never share state."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(60_000)
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()
