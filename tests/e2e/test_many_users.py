"""Many users on one app server: eight browser sessions segment photos at the same time and each gets its own
result, with the model in memory once; a long video job in one session does not hold up another; a file over
the configured upload size is refused by the browser with a message, and the session goes on.

One Chromium, one context (a separate Streamlit session) per user, against ``streamlit run app.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from segdemo.synthetic import render_scene, scene_rng

from .conftest import VIEWPORT, serve_app
from .test_browser import image_sources, settle, wait_until

USERS = 8
UPLOAD_LIMIT_MB = 1
VIDEO_FRAMES = 600


def memory(pid: int) -> tuple[int, int]:
    """(resident memory now, its peak so far) of a process, in bytes (Linux: VmRSS, VmHWM)."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def street_photo(path: Path, width: int, index: int) -> Path:
    """A procedural street scene, ``width`` x 160: each user's own size, so results cannot be mixed up."""
    image, _ = render_scene(scene_rng(0, "target", "val", index), "target", (width, 160))
    Image.fromarray(image).save(path)
    return path


def street_clip(path: Path, frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (160, 80))
    scenes = [render_scene(scene_rng(0, "target", "val", i), "target", (160, 80))[0] for i in range(4)]
    for i in range(frames):
        writer.write(cv2.cvtColor(np.roll(scenes[i % 4], i, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def new_users(browser, url: str, count: int, contexts: list) -> list:
    """``count`` sessions on the Segment page with its photo uploader showing. They open at the same time:
    every page is asked for before any is waited on, so the server runs their scripts side by side."""
    pages = []
    for _ in range(count):
        context = browser.new_context(viewport=VIEWPORT)
        contexts.append(context)  # closed by the caller, also when a wait below fails
        context.set_default_timeout(120_000)
        pages.append(context.new_page())
    for page in pages:
        page.goto(f"{url}/segment")
    for page in pages:
        page.get_by_role("heading", name="Segment a street scene").first.wait_for()
        settle(page)
    for page in pages:
        page.get_by_text("Upload a photo", exact=True).click()
    for page in pages:
        page.get_by_text(INPUT_PROMPTS["Upload a photo"]).first.wait_for()
        settle(page)
    return pages


INPUT_PROMPTS = {"Upload a photo": "Upload a photo (PNG, JPEG", "Upload a video clip": "Upload a clip (mp4"}


def choose_input(page, option: str) -> None:
    """Pick the Segment page's input; returns once the page shows that input's own uploader (not the old
    one)."""
    page.get_by_text(option, exact=True).click()
    page.get_by_text(INPUT_PROMPTS[option]).first.wait_for()
    settle(page)


def upload(page, path: Path) -> None:
    """Give the page's file uploader ``path``; returns once the browser lists the file."""
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(path))
    page.locator('[data-testid="stFileChipName"]').filter(has_text=path.name).first.wait_for()


def shows_result(page, width: int) -> bool:
    captions = page.locator('[data-testid="stCaptionContainer"]').all_inner_texts()
    return len(image_sources(page)) == 2 and any(f"Image: {width} x 160 pixels" in c for c in captions)


@pytest.fixture
def server(checkpoint_root: Path, tmp_path: Path):
    """A server of its own (its memory is measured) with a 1 MB image upload limit."""
    # glibc gives every thread that allocates its own malloc arena (up to 8 per core), which would add ~100
    # MiB of allocator slack for eight concurrent script threads; two arenas keep the measurement about the
    # app.
    env = {"SEGDEMO_MAX_UPLOAD_MB": str(UPLOAD_LIMIT_MB), "MALLOC_ARENA_MAX": "2"}
    with serve_app(checkpoint_root, tmp_path / "streamlit.log", env=env) as s:
        yield s


def test_eight_sessions_at_once_one_model_and_a_video_that_blocks_no_one(
    browser, server, checkpoint_root, tmp_path
):
    contexts = []
    try:
        # One user first: the model is loaded (and cached) once.
        (first,) = new_users(browser, server.url, 1, contexts)
        upload(first, street_photo(tmp_path / "first.png", 320, 0))
        wait_until(lambda: shows_result(first, 320), what="the first user's result")
        settle(first)
        one_user, one_user_peak = memory(server.process.pid)

        # Eight more, uploading back to back: the server segments them concurrently.
        users = new_users(browser, server.url, USERS, contexts)
        widths = [328 + 8 * i for i in range(USERS)]
        for i, (page, width) in enumerate(zip(users, widths)):
            upload(page, street_photo(tmp_path / f"user{i}.png", width, i + 1))
        for i, (page, width) in enumerate(zip(users, widths)):
            wait_until(lambda page=page, width=width: shows_result(page, width), what=f"user {i}'s result")
            settle(page)
            assert image_sources(page)[0] != image_sources(page)[1]  # the overlay, not the photo again
        nine_users, nine_users_peak = memory(server.process.pid)

        # The model is in memory once: eight more sessions cost far less than a copy of its weights each. The
        # peak counts too: a model loaded per session and freed after use would show there, not in the RSS
        # after.
        model_bytes = (checkpoint_root / "bisenet_cityscapes" / "model.safetensors").stat().st_size
        growth, peak_growth = nine_users - one_user, nine_users_peak - one_user_peak
        print(
            f"server memory with 1 session: {one_user / 2**20:.0f} MiB (peak {one_user_peak / 2**20:.0f}); "
            f"with {USERS + 1}: {nine_users / 2**20:.0f} MiB (peak {nine_users_peak / 2**20:.0f}); one model "
            f"copy is {model_bytes / 2**20:.0f} MiB"
        )
        assert growth < 3 * model_bytes and peak_growth < 3 * model_bytes, (growth, peak_growth, model_bytes)

        # A file over the configured limit: the browser refuses it with a message; the session goes on.
        big = tmp_path / "big.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)).save(big)
        assert big.stat().st_size > UPLOAD_LIMIT_MB * 2**20
        page = users[0]
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(big))
        message = page.get_by_text(re.compile(rf"File must be {UPLOAD_LIMIT_MB}(\.0)? ?MB or smaller"))
        message.first.wait_for()
        upload(page, street_photo(tmp_path / "after.png", 304, 20))
        wait_until(lambda: shows_result(page, 304), what="a photo after the refused file")

        # A long video job in one session; another session segments a photo meanwhile and is not held up.
        video_user = first
        choose_input(video_user, "Upload a video clip")
        upload(video_user, street_clip(tmp_path / "drive.avi", VIDEO_FRAMES))
        settle(video_user)
        frames = video_user.get_by_role("spinbutton", name="At most this many frames")
        frames.fill(str(VIDEO_FRAMES))
        frames.press("Enter")
        settle(video_user)
        video_user.get_by_role("button", name="Segment the video").click()
        progress = video_user.locator('[data-testid="stProgress"]')
        wait_until(
            lambda: re.search(r"frame \d+ of", " ".join(progress.all_inner_texts())) is not None,
            what="the video job to start",
        )
        photo_user = users[1]
        upload(photo_user, street_photo(tmp_path / "meanwhile.png", 296, 30))
        wait_until(lambda: shows_result(photo_user, 296), what="a photo while the video runs")
        done = re.search(r"frame (\d+) of (\d+)", " ".join(progress.all_inner_texts()))
        assert done and int(done.group(1)) < int(done.group(2)) == VIDEO_FRAMES, progress.all_inner_texts()
        print(
            f"another session's photo was segmented while the video was at frame {done.group(1)} of "
            f"{VIDEO_FRAMES}"
        )
        assert video_user.locator("video").count() == 0  # the video is still being made
    finally:
        for context in contexts:
            context.close()
