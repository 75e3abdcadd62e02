"""The app's upload path with every awkward file of issue 6 (``tests/upload_cases.py``), in one session one
after the other: each bad file gets a clear message naming it, each usable one is segmented at its own
size, and the session keeps serving to the end. Also: a checkpoint upload whose unpickling would run code."""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import media_bytes, open_page, rerun, texts
from PIL import Image
from upload_cases import red_corners, uploads

from segdemo.checkpoints import default_metadata, save_checkpoint
from segdemo.models import build_model


@pytest.fixture(scope="module")
def checkpoint_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    meta = default_metadata(
        "bisenet", input_size=[64, 128], variant="bisenet_gta5_dacs", train_data={"kind": "procedural"}
    )
    save_checkpoint(build_model("bisenet").eval(), root / "bisenet_gta5_dacs", meta)
    return root


def test_every_awkward_upload_gets_a_clear_message_and_the_session_keeps_serving(
    checkpoint_root, monkeypatch, media
):
    monkeypatch.setenv("SEGDEMO_CHECKPOINTS", str(checkpoint_root))
    monkeypatch.setenv("SEGDEMO_MAX_UPLOAD_MB", "1")  # the configured limit: the 1.5 MB file is over it
    at = open_page("segment")
    at.radio(key="seg_input").set_value("Upload a photo")
    rerun(at)
    cases = uploads()
    for case in [*cases, cases[-1]]:  # the last one twice: a usable upload after all the others
        at.file_uploader(key="seg_upload").clear().upload(case.name, case.data, case.mime)
        rerun(at)
        if case.error:
            errors = texts(at.error)
            assert errors.startswith(f"{case.name}: ") and re.search(case.error, errors), (case.name, errors)
            assert "Traceback" not in errors and "BytesIO" not in errors
            assert not at.image, case.name
            continue
        width, height = case.size
        assert not at.error, (case.name, texts(at.error))
        assert len(at.image) == 2, case.name  # the photo and its overlay
        assert f"Image: {width} x {height} pixels" in texts(at.caption), case.name
        shown = media_image(media, at.image[0].value[0])
        assert shown.shape == (height, width, 3)
        if case.top_right_red:
            assert red_corners(shown) == ["top_right"]  # shown upright
        if case.name == "animated.gif":
            assert (np.abs(shown.astype(int) - [255, 0, 0]) <= 2).all()  # the first frame


def test_a_checkpoint_upload_that_would_run_code_is_refused_and_never_runs(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    monkeypatch.setenv("SEGDEMO_CHECKPOINTS", str(root))
    marker = tmp_path / "pwned.txt"

    class CreatesAFile:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    buffer = io.BytesIO()
    pickle.dump({"conv.weight": CreatesAFile()}, buffer, protocol=2)
    at = open_page()
    at.file_uploader(key="home_upload").upload("evil.pth", buffer.getvalue())
    rerun(at)
    errors = texts(at.error)
    assert "evil.pth was not imported" in errors and "weights_only=True" in errors
    assert not marker.exists()
    assert not any((root / "uploads").iterdir())  # nothing kept


# --- reading back what the app showed
# -------------------------------------------------------------------------


def media_image(stores: list, url: str) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(media_bytes(stores, url))).convert("RGB"))
