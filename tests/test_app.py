"""The Streamlit app, page by page and control by control, with ``streamlit.testing.v1.AppTest``.

Checkpoints are made here, in temporary folders: real BiSeNets at 64 x 128 (untrained: the same
network, small), one of them also saved as a course-template ``.pth`` (``saptial_path`` spelling).
The media files the app shows or offers for download are read back to check their bytes.
"""

from __future__ import annotations

import io
import json
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import media_bytes, open_page, rerun, shown, texts
from PIL import Image
from streamlit.testing.v1 import AppTest

from segdemo import jobs
from segdemo.checkpoints import CheckpointError, default_metadata, save_checkpoint
from segdemo.labels import CLASS_NAMES
from segdemo.models import build_model
from segdemo.profiles import DEMO_PROFILES
from segdemo.synthetic import render_scene, scene_rng
from segdemo.viz import label_png_bytes

PNG = b"\x89PNG\r\n\x1a\n"
WEBM = b"\x1a\x45\xdf\xa3"  # EBML header of Matroska / WebM


def _metrics(miou: float) -> dict:
    iou = {name: round(miou + i, 2) for i, name in enumerate(CLASS_NAMES)}
    return {"eval_data": "procedural cityscapes-layout val, 10 images", "miou": miou, "iou": iou}


@pytest.fixture(scope="module")
def bisenet_state() -> dict:
    torch.manual_seed(0)
    return build_model("bisenet").eval().state_dict()


@pytest.fixture(scope="module")
def template_bytes(bisenet_state) -> bytes:
    """Our BiSeNet as the course template saves it: a bare state dict with its module names."""
    state = {k.replace("spatial_path.", "saptial_path.", 1): v for k, v in bisenet_state.items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def filled_root(tmp_path_factory, bisenet_state, template_bytes) -> Path:
    """Two evaluated checkpoint folders and a template file."""
    root = tmp_path_factory.mktemp("checkpoints")
    for variant, miou in (("bisenet_gta5_dacs", 31.5), ("bisenet_gta5", 12.25)):
        model = build_model("bisenet")
        model.load_state_dict(bisenet_state)
        if variant == "bisenet_gta5":  # a different network, so the two predictions differ
            torch.manual_seed(1)
            model = build_model("bisenet")
        meta = default_metadata(
            "bisenet",
            input_size=[64, 128],
            variant=variant,
            train_data={"kind": "procedural"},
            metrics=_metrics(miou),
        )
        save_checkpoint(model, root / variant, meta)
    (root / "template_bisenet.pth").write_bytes(template_bytes)
    return root


@pytest.fixture
def ckpts(filled_root, monkeypatch) -> Path:
    monkeypatch.setenv("SEGDEMO_CHECKPOINTS", str(filled_root))
    return filled_root


@pytest.fixture
def empty(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "checkpoints"
    monkeypatch.setenv("SEGDEMO_CHECKPOINTS", str(root))
    return root


def image_urls(at: AppTest) -> list[str]:
    return [url for image in at.image for url in image.value]


def captions(at: AppTest) -> list[str]:
    """The image captions as a reader sees them (Markdown escapes resolved)."""
    return [shown(c) for image in at.image for c in image.captions]


def sample_png(domain: str = "target", index: int = 0, size: tuple[int, int] = (160, 80)) -> bytes:
    image, _ = render_scene(scene_rng(0, domain, "val", index), domain, size)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def element(at: AppTest, kind: str, label: str):
    found = [e for e in getattr(at, kind) if e.label == label]
    assert found, f"no {kind} labelled {label!r}: {[e.label for e in getattr(at, kind)]}"
    return found[0]


# ---------------------------------------------------------------------------------------------
# Home
# ---------------------------------------------------------------------------------------------


def test_home_lists_checkpoints_with_training_data_and_device(ckpts):
    at = open_page()
    assert "Synthetic-to-real" in at.title[0].value
    table = at.dataframe[0].value
    assert list(table["name"]) == ["bisenet_gta5", "bisenet_gta5_dacs", "template_bisenet.pth"]
    row = table.set_index("name").loc["bisenet_gta5_dacs"]
    assert (row["variant"], row["model"], row["training data"], row["mIoU"]) == (
        "bisenet_gta5_dacs",
        "bisenet",
        "procedural",
        31.5,
    )
    assert "procedural" in row["measured on"]
    template = table.set_index("name").loc["template_bisenet.pth"]
    assert (template["model"], template["training data"], template["status"]) == ("bisenet", "unknown", "ok")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Usable checkpoints"] == "3" and metrics["Device"] in ("cpu", "cuda")
    assert "not a Cityscapes number" in texts(at.caption)
    assert any(b.label.startswith("Build") for b in at.button)


def test_home_without_checkpoints_explains_and_offers_the_demo(empty):
    at = open_page()
    assert "No checkpoints" in texts(at.info)
    assert element(at, "button", "Build the demo checkpoints")
    assert "python -m train" in texts(at.code)
    # Both profiles offered, each with the time it took where it was measured.
    radio = at.radio(key="demo_profile")
    assert [option.split(":")[0] for option in radio.options] == list(DEMO_PROFILES)
    assert all(DEMO_PROFILES[name].summary in option for name, option in zip(DEMO_PROFILES, radio.options))
    assert radio.value == "default"


def start_stand_in_demo(root, monkeypatch, script: str):
    """Press Home's build button with ``script`` standing in for `python -m train demo` (same progress
    file, seconds instead of minutes); return the page once the job has written progress, and a deadline."""
    monkeypatch.setattr(jobs, "demo_command", lambda folder, **_: [sys.executable, "-c", script, str(folder)])
    at = open_page()
    element(at, "button", "Build the demo checkpoints").click()
    rerun(at)
    deadline = time.monotonic() + 20
    while jobs.read_progress(root) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    rerun(at)
    return at, deadline


def test_home_demo_button_runs_the_job_in_the_background_with_progress(empty, monkeypatch):
    # A stand-in for `python -m train demo`: the same progress file, a few seconds long.
    script = (
        "import json, sys, time, pathlib\n"
        "root = pathlib.Path(sys.argv[1]); p = root / '.demo_progress.json'\n"
        "def w(**s): p.write_text(json.dumps({'count': 2, 'index': 0, 'finished': [], **s}))\n"
        "w(state='training', variant='bisenet_gta5', step=5, total=10, message='training bisenet_gta5',\n"
        "  seconds_left=185)\n"
        "print('step 5 of 10', flush=True); time.sleep(4)\n"
        "w(state='done', variant='bisenet_gta5', step=10, total=10, finished=['a', 'b'], message='all "
        "done')\n"
    )
    at, deadline = start_stand_in_demo(empty, monkeypatch, script)
    bars = at.get("progress")
    assert bars and "training bisenet_gta5" in bars[0].proto.text and bars[0].proto.value == 25
    assert "training about 3 min left" in bars[0].proto.text
    assert element(at, "button", "Stop the demo")
    while jobs.is_running(empty) and time.monotonic() < deadline:
        time.sleep(0.2)
    rerun(at)
    assert "demo checkpoints are built" in texts(at.success)
    assert "step 5 of 10" in texts(at.code)


def test_home_starts_the_demo_of_the_chosen_profile(empty, monkeypatch, tmp_path):
    started = tmp_path / "started-with"
    real_command = jobs.demo_command

    def stand_in(folder, profile="default", **_):
        argv = real_command(folder, profile=profile)  # what the real demo would be given
        return [
            sys.executable,
            "-c",
            f"import pathlib; pathlib.Path({str(started)!r}).write_text({argv!r}[6:].__repr__())",
        ]

    monkeypatch.setattr(jobs, "demo_command", stand_in)
    at = open_page()
    at.radio(key="demo_profile").set_value("full").run()
    element(at, "button", "Build the demo checkpoints").click()
    rerun(at)
    deadline = time.monotonic() + 20
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert started.read_text() == repr(["--profile", "full"])


def test_home_stop_button_interrupts_the_demo(empty, monkeypatch):
    script = (
        "import json, sys, time, pathlib\n"
        "p = pathlib.Path(sys.argv[1]) / '.demo_progress.json'\n"
        "p.write_text(json.dumps({'state': 'training', 'count': 8, 'index': 0, 'finished': [], 'step': 3,"
        " 'total': 400, 'variant': 'bisenet_gta5', 'message': 'training bisenet_gta5'}))\n"
        "time.sleep(60)\n"
    )
    at, _ = start_stand_in_demo(empty, monkeypatch, script)
    element(at, "button", "Stop the demo").click()
    rerun(at)
    assert not jobs.is_running(empty)
    assert "stopped during bisenet_gta5, step 3" in texts(at.warning)
    assert element(at, "button", "Build the demo checkpoints")  # and it can be started again


def test_segment_reports_a_checkpoint_whose_weights_are_damaged(tmp_path, monkeypatch, bisenet_state):
    model = build_model("bisenet")
    model.load_state_dict(bisenet_state)
    save_checkpoint(
        model, tmp_path / "damaged", default_metadata("bisenet", input_size=[64, 128], variant="x")
    )
    weights = tmp_path / "damaged" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated copy
    monkeypatch.setenv("SEGDEMO_CHECKPOINTS", str(tmp_path))
    at = open_page("segment")
    assert "Cannot load damaged" in texts(at.error) and "truncated" in texts(at.error)
    assert not at.image


def test_home_imports_a_course_template_file(empty, template_bytes):
    at = open_page()
    at.file_uploader(key="home_upload").upload("bisenet_trained.pth", template_bytes)
    rerun(at)
    assert "Imported bisenet_trained.pth" in texts(at.success)
    assert (empty / "uploads" / "bisenet_trained.pth").read_bytes() == template_bytes
    table = at.dataframe[0].value
    assert list(table["name"]) == ["uploads/bisenet_trained.pth"] and list(table["model"]) == ["bisenet"]


def test_home_imports_within_a_size_limit_and_a_quota_and_removes_an_import(
    empty, template_bytes, monkeypatch
):
    size_mb = len(template_bytes) / 2**20
    monkeypatch.setenv("SEGDEMO_UPLOADS_QUOTA_MB", str(int(size_mb * 1.5)))  # room for one, not two
    at = open_page()
    assert "At most 400 MB a file" in texts(at.caption)
    at.file_uploader(key="home_upload").upload("first.pth", template_bytes)
    rerun(at)
    assert "Imported first.pth" in texts(at.success)
    other = template_bytes[:-8] + b"\0" * 8  # other bytes (the zip's last record), so not the same file twice
    at.file_uploader(key="home_upload").clear().upload("second.pth", other)
    rerun(at)
    assert "second.pth was not imported" in texts(at.error) and "Remove one first" in texts(at.error)
    assert [p.name for p in (empty / "uploads").iterdir()] == ["first.pth"]
    # Remove it from the page: gone from disk and from the list; then the second one fits.
    at.selectbox(key="home_remove_choice").set_value("first.pth")
    element(at, "button", "Remove it").click()
    rerun(at)
    assert "Removed first.pth" in texts(at.success) and not any((empty / "uploads").iterdir())
    monkeypatch.setenv("SEGDEMO_MAX_CHECKPOINT_MB", "1")  # and a file over the size limit is refused
    at = open_page()
    at.file_uploader(key="home_upload").upload("big.pth", template_bytes)
    rerun(at)
    assert "the limit for an import is 1 MB" in texts(at.error) and not any((empty / "uploads").iterdir())


def test_only_imported_checkpoints_can_be_removed(tmp_path, template_bytes):
    from segdemo.catalogue import (
        import_template_checkpoint,
        imported_checkpoints,
        remove_imported_checkpoint,
        uploads_size,
    )

    path, _ = import_template_checkpoint(template_bytes, "mine.pth", tmp_path)
    assert imported_checkpoints(tmp_path) == [path] and uploads_size(tmp_path) == len(template_bytes)
    save_checkpoint(build_model("bisenet"), tmp_path / "trained", default_metadata("bisenet"))
    for outside in (
        tmp_path / "trained" / "model.safetensors",
        tmp_path / "uploads" / ".." / "trained",
        tmp_path / "uploads" / "missing.pth",
    ):
        with pytest.raises(CheckpointError, match="only those can be removed"):
            remove_imported_checkpoint(outside, tmp_path)
    assert (tmp_path / "trained" / "model.safetensors").is_file()
    remove_imported_checkpoint(path, tmp_path)
    assert imported_checkpoints(tmp_path) == [] and uploads_size(tmp_path) == 0


@pytest.mark.parametrize(
    "content, message",
    [
        (b"this is not a checkpoint", "cannot load"),
        ("state", "neither a BiSeNet nor a DeepLabV2"),
    ],
)
def test_home_rejects_a_bad_upload_and_keeps_nothing(empty, content, message):
    if content == "state":
        buffer = io.BytesIO()
        torch.save({"fc.weight": torch.zeros(2, 2)}, buffer)
        content = buffer.getvalue()
    at = open_page()
    at.file_uploader(key="home_upload").upload("broken.pth", content)
    rerun(at)
    errors = texts(at.error)
    assert "broken.pth was not imported" in errors and message in errors
    assert not at.exception
    assert not any((empty / "uploads").iterdir())


@pytest.mark.parametrize(
    "name", ["[link](http:__example.com) **bold**.pth", "back\\slash_and_`code`:smile:.pth"]
)
def test_user_supplied_names_are_shown_as_literal_text(empty, name):
    at = open_page()
    at.file_uploader(key="home_upload").upload(name, b"not a checkpoint")
    rerun(at)
    raw = "\n".join(str(e.value) for e in at.error)
    assert shown(raw).startswith(f"{name} was not imported")  # what the reader sees: the name as it is
    # No Markdown survives: every character that would make a link, emphasis, code or an emoji is escaped.
    for special in "[]()*`:\\":
        if special in name:
            assert f"\\{special}" in raw, special
    assert "**bold**" not in raw and "](" not in raw


def test_a_checkpoint_with_unusable_metadata_is_shown_with_its_reason_and_never_selected(
    empty, bisenet_state
):
    model = build_model("bisenet")
    model.load_state_dict(bisenet_state)
    save_checkpoint(
        model,
        empty / "bisenet_gta5_dacs",
        default_metadata("bisenet", input_size=[500, 1000], variant="bisenet_gta5_dacs"),
    )
    at = open_page()
    row = at.dataframe[0].value.set_index("name").loc["bisenet_gta5_dacs"]
    assert "multiples of 8" in row["status"]
    assert {m.label: m.value for m in at.metric}["Usable checkpoints"] == "0"
    for page in ("segment", "fda", "dacs"):  # no crash, and the checkpoint is not offered
        at = open_page(page)
        offered = [str(o) for widget in [*at.selectbox, *at.multiselect] for o in widget.options]
        assert not at.exception and not any("bisenet_gta5_dacs" in o for o in offered), (page, offered)
    assert "needs a checkpoint" in texts(open_page("segment").info)


# ---------------------------------------------------------------------------------------------
# Segment
# ---------------------------------------------------------------------------------------------


def test_segment_sample_overlay_legend_time_and_png_downloads(ckpts, media):
    at = open_page("segment")
    assert at.multiselect(key="seg_checkpoints").value == ["bisenet_gta5_dacs"]  # the best variant first
    assert len(at.image) == 2 and captions(at)[0] == "Input"
    assert "bisenet_gta5_dacs" in captions(at)[1] and "ms on cpu" in captions(at)[1]
    legend = at.dataframe[0].value
    assert set(legend["class"]) <= set(CLASS_NAMES) and len(legend) >= 1
    assert 0 < legend["share"].sum() <= 100.0 + 1e-6
    timing = at.dataframe[1].value
    assert list(timing["checkpoint"]) == ["bisenet_gta5_dacs"] and timing["milliseconds"][0] > 0
    mask = media_bytes(media, element(at, "download_button", "Mask PNG").proto.url)
    picture = media_bytes(media, element(at, "download_button", "Overlay PNG").proto.url)
    assert mask.startswith(PNG) and picture.startswith(PNG)
    labels = np.array(Image.open(io.BytesIO(mask)))
    assert labels.shape == (320, 640) and labels.max() < 19
    assert Image.open(io.BytesIO(picture)).size == (640, 320)


def picture(media, at: AppTest, index: int) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(media_bytes(media, image_urls(at)[index]))).convert("RGB"))


def test_segment_against_the_ground_truth_confidence_and_before_after(ckpts, media):
    from segdemo.viz import IGNORED_COLOR, RIGHT_COLOR, WRONG_COLOR

    at = open_page("segment")
    at.toggle(key="seg_truth_Procedural sample").set_value(True)
    rerun(at)
    assert "Against the ground truth" in [s.value for s in at.subheader]
    assert len(at.image) == 2 + 2  # photo, overlay; ground truth, error map
    errors = picture(media, at, 3).reshape(-1, 1, 3).astype(int)  # shown as a JPEG: colours within a margin
    nearest = np.abs(errors - np.array([RIGHT_COLOR, WRONG_COLOR, IGNORED_COLOR])).sum(axis=2)
    assert (nearest.min(axis=1) < 60).mean() > 0.9  # right / wrong / ignored colours only
    assert (nearest.argmin(axis=1) == 1).mean() > 0.1  # an untrained network: many errors
    scores = at.dataframe[1].value
    assert list(scores["checkpoint"]) == ["bisenet_gta5_dacs"] and 0 <= scores["mIoU"][0] <= 100
    # The confidence view replaces the overlay; the before/after view adds one picture split by a line.
    overlay_view = picture(media, at, 1)
    at.radio(key="seg_view").set_value("Confidence")
    rerun(at)
    assert not np.array_equal(picture(media, at, 1), overlay_view)
    at.toggle(key="seg_compare").set_value(True)
    rerun(at)
    at.slider(key="seg_split").set_value(25)
    rerun(at)
    split = picture(media, at, 2)
    assert split.shape == (320, 640, 3) and split[:, 159:161].mean() > 230  # the white line at a quarter


def test_segment_an_upload_with_its_label_shows_the_comparison_at_once(ckpts):
    at = open_page("segment")
    at.radio(key="seg_input").set_value("Upload a photo")
    rerun(at)
    _, label = render_scene(scene_rng(0, "target", "val", 1), "target", (160, 80))
    at.file_uploader(key="seg_upload").upload("street.png", sample_png(index=1))
    at.file_uploader(key="seg_label").upload("street_labelIds.png", label_png_bytes(label))
    rerun(at)
    assert "Against the ground truth" in [s.value for s in at.subheader]
    assert "label read as trainIds" in texts(at.caption)
    at.file_uploader(key="seg_label").upload("small.png", label_png_bytes(label[:40]))
    rerun(at)
    assert "they must match" in texts(at.error)


def test_segment_opacity_domain_and_sample_controls(ckpts):
    at = open_page("segment")
    first = image_urls(at)
    at.slider(key="seg_alpha").set_value(0.0)
    rerun(at)
    input_url, overlay_url = image_urls(at)
    assert input_url == overlay_url  # opacity 0: the overlay is the photo, byte for byte
    at.slider(key="seg_alpha").set_value(1.0)
    at.selectbox(key="seg_domain").set_value("source")
    at.number_input(key="seg_sample").set_value(3)
    rerun(at)
    assert image_urls(at)[0] != first[0] and image_urls(at)[1] != image_urls(at)[0]


def test_segment_two_checkpoints_side_by_side_and_where_they_disagree(ckpts):
    at = open_page("segment")
    at.multiselect(key="seg_checkpoints").set_value(["bisenet_gta5_dacs", "bisenet_gta5"])
    rerun(at)
    assert len(at.image) == 4  # photo, two overlays, disagreement map
    assert "magenta" in captions(at)[3]
    share = element(at, "metric", "Pixels where they disagree").value
    assert share.endswith("%") and 0.0 < float(share.rstrip("%")) <= 100.0
    at.selectbox(key="seg_dis_b").set_value("bisenet_gta5_dacs")
    rerun(at)
    assert "two different checkpoints" in texts(at.info)


def test_segment_nothing_selected_and_the_template_checkpoint(ckpts):
    at = open_page("segment")
    at.multiselect(key="seg_checkpoints").set_value([])
    rerun(at)
    assert "Choose at least one checkpoint" in texts(at.info) and not at.image
    at.multiselect(key="seg_checkpoints").set_value(["template_bisenet.pth"])
    rerun(at)
    assert len(at.image) == 2 and "model input 1024 x 512" in captions(at)[1]


def test_segment_uploaded_photo_and_an_unreadable_one(ckpts):
    at = open_page("segment")
    at.radio(key="seg_input").set_value("Upload a photo")
    rerun(at)
    assert "Upload a photo" in texts(at.info)
    at.file_uploader(key="seg_upload").upload("street.png", sample_png(size=(200, 100)), "image/png")
    rerun(at)
    assert len(at.image) == 2 and "200 x 100" in texts(at.caption)
    at.file_uploader(key="seg_upload").clear().upload("holiday.jpg", b"definitely not a JPEG", "image/jpeg")
    rerun(at)
    assert "holiday.jpg" in texts(at.error) and "not an image" in texts(at.error)
    assert not at.image


def _clip(path: Path, frames: int = 6) -> bytes:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (96, 48))
    for i in range(frames):
        image, _ = render_scene(scene_rng(0, "target", "val", i), "target", (96, 48))
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path.read_bytes()


def test_segment_video_is_returned_playable_with_a_download(ckpts, media, tmp_path):
    at = open_page("segment")
    at.radio(key="seg_input").set_value("Upload a video clip")
    rerun(at)
    assert "Upload a clip" in texts(at.info)
    at.file_uploader(key="seg_video").upload("drive.avi", _clip(tmp_path / "drive.avi"), "video/x-msvideo")
    at.number_input(key="seg_video_frames").set_value(4)
    rerun(at)
    element(at, "button", "Segment the video").click()
    rerun(at)
    videos = at.get("video")
    assert len(videos) == 1
    data = media_bytes(
        media, element(at, "download_button", "Download the segmented video (4 frames)").proto.url
    )
    assert data.startswith(WEBM)
    assert media_bytes(media, videos[0].proto.url) == data
    (tmp_path / "check.webm").write_bytes(data)  # the file plays back: decode it
    capture = cv2.VideoCapture(str(tmp_path / "check.webm"))
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape == (48, 96, 3)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("clip.mp4", b"\x00" * 100, "clip.mp4: this is not a video OpenCV can read"),
        ("zero.mp4", b"", "zero.mp4: the file is empty (0 bytes)"),
    ],
)
def test_segment_unreadable_video_gives_a_message(ckpts, name, content, message):
    at = open_page("segment")
    at.radio(key="seg_input").set_value("Upload a video clip")
    rerun(at)
    at.file_uploader(key="seg_video").upload(name, content, "video/mp4")
    rerun(at)
    element(at, "button", "Segment the video").click()
    rerun(at)
    errors = texts(at.error)
    # Only the user's file is named (the page saves it under another name to decode it).
    assert errors.startswith(message) and "input" not in errors and not at.get("video")


def test_segment_without_checkpoints_explains(empty):
    at = open_page("segment")
    assert "needs a checkpoint" in texts(at.info)
    assert not at.image


# ---------------------------------------------------------------------------------------------
# FDA
# ---------------------------------------------------------------------------------------------


def test_fda_beta_slider_updates_the_translated_image(empty):
    at = open_page("fda")
    source, target, result = image_urls(at)[:3]
    assert len(at.image) == 6 and "β = 0.010 (7 x 7 frequencies swapped)" in captions(at)[2]
    assert result not in (source, target)
    at.slider(key="fda_beta").set_value(0.0)
    rerun(at)
    assert image_urls(at)[2] == image_urls(at)[0]  # nothing swapped: the source itself
    at.slider(key="fda_beta").set_value(0.1)
    rerun(at)
    assert image_urls(at)[2] not in (source, result) and "65 x 65" in captions(at)[2]


def test_fda_zoom_and_sample_controls(empty):
    at = open_page("fda")
    pictures, spectra = image_urls(at)[:3], image_urls(at)[3:6]
    at.toggle(key="fda_zoom").set_value(True)
    rerun(at)
    assert image_urls(at)[:3] == pictures  # zooming changes the spectra only
    assert all(new != old for new, old in zip(image_urls(at)[3:6], spectra))
    before = image_urls(at)[0]
    at.number_input(key="fda_source_sample").set_value(5)
    at.selectbox(key="fda_target_domain").set_value("source")
    rerun(at)
    assert image_urls(at)[0] != before
    assert "procedural source sample 5" in captions(at)[0]
    assert "Choose a checkpoint" in texts(at.caption)  # no checkpoint here: no prediction section


def test_fda_prediction_before_and_after_translation(ckpts):
    at = open_page("fda")
    assert at.selectbox(key="fda_checkpoint").value == "bisenet_gta5_dacs"
    assert len(at.image) == 8
    assert captions(at)[6:] == ["prediction on the source", "prediction after translation"]
    assert element(at, "metric", "Pixels whose class changed").value.endswith("%")
    at.selectbox(key="fda_checkpoint").set_value("(none)")
    rerun(at)
    assert len(at.image) == 6


def test_fda_uploads_and_a_bad_one(empty):
    at = open_page("fda")
    at.radio(key="fda_source_mode").set_value("Upload")
    at.radio(key="fda_target_mode").set_value("Upload")
    rerun(at)
    assert not at.image and "Upload an image" in texts(at.info)
    at.file_uploader(key="fda_source_upload").upload(
        "game.png", sample_png("source", size=(128, 64)), "image/png"
    )
    at.file_uploader(key="fda_target_upload").upload(
        "photo.png", sample_png("target", size=(300, 100)), "image/png"
    )
    rerun(at)
    assert len(at.image) == 6 and captions(at)[0] == "source: game.png"
    at.file_uploader(key="fda_target_upload").clear().upload("photo.png", PNG + b"broken", "image/png")
    rerun(at)
    assert "photo.png" in texts(at.error) and not at.image


# ---------------------------------------------------------------------------------------------
# DACS
# ---------------------------------------------------------------------------------------------


def test_dacs_random_half_with_a_teacher(ckpts):
    at = open_page("dacs")
    assert at.selectbox(key="dacs_checkpoint").value == "bisenet_gta5_dacs"
    assert len(at.image) == 8
    assert captions(at)[3] == "pseudo-label (bisenet_gta5_dacs)"
    assert captions(at)[4].startswith("class mask") and captions(at)[7].startswith("loss weight: 1 on pasted")
    pasted = texts(at.markdown)
    assert "Pasted classes" in pasted
    at.number_input(key="dacs_seed").set_value(7)
    rerun(at)
    assert texts(at.markdown) != pasted  # another draw of classes
    at.slider(key="dacs_threshold").set_value(0.5)
    rerun(at)
    assert "loss weight" in captions(at)[7]


def test_dacs_chosen_classes_and_nothing_chosen(ckpts):
    at = open_page("dacs")
    at.radio(key="dacs_mode").set_value("Choose classes")
    rerun(at)
    at.multiselect(key="dacs_classes").set_value(["road"])
    rerun(at)
    assert "Pasted classes** (1 of" in texts(at.markdown) and ": road" in texts(at.markdown)
    at.multiselect(key="dacs_classes").set_value([])
    rerun(at)
    assert "No class selected" in texts(at.warning)
    assert "class mask (0% of the pixels)" in captions(at)


def test_dacs_without_a_teacher_shows_the_target_as_ignore(empty, media):
    at = open_page("dacs")
    assert "pseudo-label needs a teacher checkpoint" in texts(at.info)
    assert len(at.image) == 6
    label_url = next(u for u, c in zip(image_urls(at), captions(at)) if c.startswith("mixed label"))
    mixed_label = np.array(Image.open(io.BytesIO(media_bytes(media, label_url))).convert("RGB"))
    assert (mixed_label == 0).all(axis=2).any()  # black = ignore where the target shows through


def test_dacs_uploaded_image_with_label_and_a_mismatched_label(empty):
    image, label = render_scene(scene_rng(0, "source", "val", 2), "source", (128, 64))
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    at = open_page("dacs")
    at.radio(key="dacs_source_mode").set_value("Upload")
    rerun(at)
    at.file_uploader(key="dacs_source_upload").upload("game.png", buffer.getvalue(), "image/png")
    rerun(at)
    assert "needs its label map" in texts(at.info)
    at.file_uploader(key="dacs_source_label").upload("game_label.png", label_png_bytes(label), "image/png")
    rerun(at)
    assert "label read as trainIds" in texts(at.caption) and len(at.image) == 6
    at.file_uploader(key="dacs_source_label").clear().upload("small.png", label_png_bytes(label[:32, :64]))
    rerun(at)
    assert "must match" in texts(at.error) and not at.image
    # A plain PNG of ids 0-18 could be trainIds or label ids: the page asks, and reads it as the user says.
    plain = io.BytesIO()
    Image.fromarray(np.where(label == 255, 0, label).astype(np.uint8)).save(plain, format="PNG")
    at.file_uploader(key="dacs_source_label").clear().upload("ids.png", plain.getvalue(), "image/png")
    rerun(at)
    assert "both a trainId and a Cityscapes label id" in texts(at.warning) and not at.image
    at.selectbox(key="dacs_source_label_encoding").set_value("trainIds")
    rerun(at)
    assert "label read as trainIds" in texts(at.caption) and len(at.image) == 6


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


def test_results_tables_charts_and_csv_say_what_each_row_was_measured_on(ckpts, media):
    at = open_page("results")
    table = at.dataframe[0].value
    assert "bisenet_gta5_dacs (report)" in table.index and "bisenet_gta5_dacs (procedural)" in table.index
    assert table.loc["bisenet_gta5_dacs (report)", "mIoU"] == "32.12"
    assert table.loc["bisenet_gta5_dacs (report)", "road"] == "88.29"
    assert table.loc["bisenet_cityscapes (report)", "road"] == "–"  # the report gives no per-class IoU there
    assert table.loc["bisenet_gta5_dacs (report)", "measured on"].startswith("real cityscapes val")
    assert table.loc["bisenet_gta5_dacs (procedural)", "measured on"].startswith("procedural")
    assert table.loc["bisenet_gta5_dacs (procedural)", "mIoU"] == "31.50"
    assert "opposite of the report" in texts(at.caption)  # why the demo's DACS trails its FDA
    assert [c.key for c in at.get("plotly_chart")] == ["results_bar", "results_heatmap", "results_delta_bar"]
    csv = media_bytes(media, element(at, "download_button", "Download as CSV").proto.url).decode()
    assert "bisenet_gta5 (procedural)" in csv and "procedural cityscapes-layout val" in csv
    efficiency = at.dataframe[-1].value
    assert efficiency.loc["bisenet_cityscapes (report)", "params"] == "12.58M"
    assert efficiency.loc["deeplabv2_cityscapes (report)", "latency ms"] == "246.17"


def test_results_deltas_warn_across_kinds_of_data(ckpts):
    at = open_page("results")
    at.selectbox(key="results_delta_a").set_value("bisenet_gta5 (report)")
    at.selectbox(key="results_delta_b").set_value("bisenet_gta5_dacs (report)")
    rerun(at)
    deltas = at.dataframe[1].value
    assert deltas.loc["mIoU", "delta"] == "+17.00"
    assert deltas.loc["road", "delta"] == f"{88.29 - 8.35:+.2f}"
    assert not at.warning
    at.selectbox(key="results_delta_b").set_value("bisenet_gta5_dacs (procedural)")
    rerun(at)
    assert "measured on different data" in texts(at.warning)


def test_results_row_choice_and_no_checkpoints(empty):
    at = open_page("results")
    assert "only the report's rows" in texts(at.info)
    assert all(name.endswith("(report)") for name in at.dataframe[0].value.index)
    assert "opposite of the report" not in texts(at.caption)  # no procedural row, nothing to explain
    at.multiselect(key="results_rows").set_value(["bisenet_gta5_fda (report)"])
    rerun(at)
    assert list(at.dataframe[0].value.index) == ["bisenet_gta5_fda (report)"]
    assert "at least two rows" in texts(at.info)
    at.multiselect(key="results_rows").set_value([])
    rerun(at)
    assert "Choose at least one row" in texts(at.info)


# ---------------------------------------------------------------------------------------------
# Benchmark
# ---------------------------------------------------------------------------------------------


def test_benchmark_measures_this_device_beside_the_report(empty):
    at = open_page("benchmark")
    assert list(at.dataframe[0].value.index) == [
        "deeplabv2_cityscapes (report)",
        "bisenet_cityscapes (report)",
    ]
    at.selectbox(key="bench_size").set_value("64 x 128 (tiny)")
    at.slider(key="bench_runs").set_value(2)
    at.slider(key="bench_warmup").set_value(0)
    rerun(at)
    element(at, "button", "Run the benchmark").click()
    rerun(at)
    table = at.dataframe[0].value
    row = table.loc["run 1: bisenet (this machine)"]
    assert row["params"] == "12.07M" and row["input"] == "1x3x64x128" and float(row["latency ms"]) > 0
    assert row["mIoU"] == "–"  # a fresh network has no accuracy to report
    assert row["FLOPs"].endswith("G") and row["device"].startswith("cpu")
    assert at.get("plotly_chart")
    element(at, "button", "Clear the measurements").click()
    rerun(at)
    assert len(at.dataframe[0].value) == 2


def test_benchmark_warns_about_slow_deeplab_on_cpu(empty):
    at = open_page("benchmark")
    at.selectbox(key="bench_model").set_value("deeplabv2")
    at.selectbox(key="bench_size").set_value("512 x 1024 (the report's)")
    rerun(at)
    assert "takes seconds per run" in texts(at.warning)


def test_every_page_is_in_the_navigation(empty):
    at = open_page()
    pages = json.dumps([str(p) for p in at._registered_pages.values()])
    for name in ("home", "segment", "fda", "dacs", "results", "benchmark"):
        assert f"{name}.py" in pages


# ---------------------------------------------------------------------------------------------
# Evaluate
# ---------------------------------------------------------------------------------------------


def wait_for_evaluation(at: AppTest, seconds: float = 240.0) -> AppTest:
    """Rerun the page (as its polling fragment does) until the background evaluation has a result."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rerun(at)
        if at.session_state["eval_job"] is None if "eval_job" in at.session_state else True:
            break
        time.sleep(0.5)
    rerun(at)
    assert not at.error, texts(at.error)
    return at


def labelled_zip_bytes(count: int = 2) -> bytes:
    """A zip of procedural photos in images/ and their Cityscapes colour labels in labels/."""
    from segdemo.labels import colorize

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(count):
            image, label = render_scene(scene_rng(3, "target", "val", i), "target", (160, 80))
            for folder, picture in (("images", image), ("labels", colorize(label))):
                data = io.BytesIO()
                Image.fromarray(picture).save(data, format="PNG")
                archive.writestr(f"street/{folder}/scene_{i}.png", data.getvalue())
    return buffer.getvalue()


def test_evaluate_procedural_val_shows_scores_matrix_table_and_the_worst_images(ckpts):
    at = open_page("evaluate")
    at.number_input(key="eval_count").set_value(3)
    at.multiselect(key="eval_checkpoints").set_value(["bisenet_gta5_dacs", "bisenet_gta5"])
    rerun(at)
    at.button(key="eval_run").click()
    wait_for_evaluation(at)
    assert [s.value for s in at.subheader] == ["Scores", "Confusion matrix", "Per image", "The worst images"]
    scores, per_image = at.dataframe[0].value, at.dataframe[1].value
    assert list(scores["checkpoint"]) == ["bisenet_gta5_dacs", "bisenet_gta5"] and len(per_image) == 3
    assert "procedural data, not Cityscapes" in texts(at.caption)
    assert at.get("plotly_chart")  # the row-normalised confusion matrix
    # The worst images (all three: four asked): input, ground truth, prediction, error map, and where the two
    # checkpoints differ.
    assert len(at.image) == 3 * 5 and "only bisenet_gta5 (" in " ".join(captions(at))
    at.selectbox(key="eval_sort").set_value("road")
    rerun(at)
    assert at.dataframe[1].value["road"].is_monotonic_increasing


def test_evaluate_an_uploaded_zip_with_colour_labels_gives_the_clis_numbers(ckpts, tmp_path, capsys):
    from train.__main__ import main

    at = open_page("evaluate")
    at.radio(key="eval_source").set_value("Upload a zip of image / label pairs")
    rerun(at)
    data = labelled_zip_bytes()
    at.file_uploader(key="eval_zip").upload("street.zip", data)
    rerun(at)
    at.button(key="eval_run").click()
    wait_for_evaluation(at)
    assert "uploaded street.zip (2 labelled images) · labels read as **colours**" in texts(at.caption)
    page_miou = float(at.dataframe[0].value["mIoU"][0])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(tmp_path)
    args = [
        "evaluate",
        str(ckpts / "bisenet_gta5_dacs"),
        "--images",
        str(tmp_path / "street/images"),
        "--labels",
        str(tmp_path / "street/labels"),
        "--device",
        "cpu",
        "--no-write",
    ]
    assert main(args) == 0
    assert f"| {page_miou:.2f} |" in capsys.readouterr().out


def test_evaluate_refuses_a_broken_zip_with_a_message(ckpts):
    at = open_page("evaluate")
    at.radio(key="eval_source").set_value("Upload a zip of image / label pairs")
    rerun(at)
    at.file_uploader(key="eval_zip").upload("street.zip", b"not a zip at all")
    rerun(at)
    at.button(key="eval_run").click()
    rerun(at)
    assert "not a zip file" in texts(at.error)


def test_results_confusions_side_by_side_and_seeds_as_mean_and_std(tmp_path, monkeypatch, bisenet_state):
    from segdemo.results import seed_groups

    confusion = (np.eye(19, dtype=int) * 90 + 1).tolist()
    for seed, miou in ((0, 20.0), (1, 24.0), (2, 25.0)):
        meta = default_metadata(
            "bisenet",
            input_size=[64, 128],
            variant="bisenet_gta5_aug12",
            train_data={"kind": "procedural"},
            config={"seed": seed},
            metrics={**_metrics(miou), "eval_kind": "procedural", "confusion": confusion},
        )
        model = build_model("bisenet")
        model.load_state_dict(bisenet_state)
        save_checkpoint(model, tmp_path / f"aug12_seed{seed}", meta)
    monkeypatch.setenv("SEGDEMO_CHECKPOINTS", str(tmp_path))
    at = open_page("results")
    seeds = next(d.value for d in at.dataframe if "seeds" in d.value.columns)
    assert list(seeds["seeds"]) == ["0, 1, 2"] and seeds["mIoU"][0] == "23.00 ± 2.65"  # mean and sample std
    assert len(at.get("plotly_chart")) >= 2 + 2  # bars, heatmap ... and the two confusion matrices
    groups = seed_groups(
        [
            {
                "variant": "v",
                "model": "m",
                "measured_on": "d",
                "data": "real",
                "seed": 0,
                "miou": 10.0,
                "iou": {},
            }
        ]
    )
    assert groups == []  # one seed alone is no spread
    run = {"variant": "v", "model": "m", "measured_on": "d", "data": "real", "miou": 10.0, "iou": {}}
    profiles = [{**run, "seed": 0, "input_size": (64, 128)}, {**run, "seed": 1, "input_size": (128, 256)}]
    assert seed_groups(profiles) == []  # two sizes (the demo's profiles) are not two seeds of one run


def test_results_exports_a_study_as_one_html_file(ckpts, media):
    at = open_page("results")
    assert at.multiselect(key="study_checkpoints").value == ["bisenet_gta5", "bisenet_gta5_dacs"]
    at.number_input(key="study_samples").set_value(1)
    at.button(key="study_build").click()
    rerun(at)
    study = media_bytes(media, element(at, "download_button", "Download the study (HTML)").proto.url).decode()
    assert study.startswith("<!doctype html>") and study.count("<section") == 5
    assert "sample_0" in study and "procedural target val sample 0" in study and "31.50" in study
