"""The library functions the app is built on: checkpoint listing and import, FDA / DACS previews,
result tables, profiling, and the background demo job."""

from __future__ import annotations

import io
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segdemo import jobs
from segdemo.catalogue import (
    checkpoint_fingerprint,
    describe_checkpoint,
    discover_checkpoints,
    eval_kind,
    import_template_checkpoint,
    list_checkpoints,
)
from segdemo.checkpoints import CheckpointError, default_metadata, load_model, save_checkpoint
from segdemo.dacs import (
    class_mix,
    mask_image,
    mix_preview,
    present_classes,
    weight_image,
)
from segdemo.fda import fda_preview, fda_source_to_target, resize_to, translate_image
from segdemo.images import ImageError, load_image
from segdemo.label_maps import AmbiguousLabelError, load_label
from segdemo.labels import CLASS_NAMES, PALETTE, colorize, id_to_train_id
from segdemo.models import build_model
from segdemo.results import (
    all_result_rows,
    best_per_class,
    checkpoints_frame,
    delta_frame,
    evaluation_rows,
    profile_frame,
    results_frame,
    run_profile,
)
from segdemo.synthetic import render_scene, scene_rng, train_ids_to_label_ids
from segdemo.viz import WINDOW_COLOR, label_png_bytes


@pytest.fixture(scope="module")
def bisenet() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("bisenet").eval()


@pytest.fixture(scope="module")
def template_bytes(bisenet) -> bytes:
    state = {k.replace("spatial_path.", "saptial_path.", 1): v for k, v in bisenet.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _meta(variant: str, **fields):
    return default_metadata("bisenet", input_size=[64, 128], variant=variant, **fields)


@pytest.fixture(scope="module")
def root(tmp_path_factory, bisenet, template_bytes) -> Path:
    """evaluated/ (procedural), real/ (real data), plain/ (no metrics), a template, and things to skip."""
    root = tmp_path_factory.mktemp("ckpts")
    save_checkpoint(
        bisenet,
        root / "evaluated",
        _meta(
            "bisenet_gta5_dacs",
            train_data={"kind": "procedural"},
            metrics={
                "eval_data": "procedural cityscapes-layout val, 100 images",
                "miou": 40.0,
                "iou": {name: float(i) for i, name in enumerate(CLASS_NAMES)},
            },
        ),
    )
    save_checkpoint(
        bisenet,
        root / "runs" / "real",
        _meta(
            "bisenet_gta5",
            train_data={"kind": "real"},
            metrics={
                "eval_data": "real cityscapes-layout val, 500 images",
                "miou": 20.0,
                "iou": {"road": 80.0},
            },
        ),
    )
    save_checkpoint(bisenet, root / "plain", _meta("bisenet_gta5_aug1"))
    save_checkpoint(bisenet, root / "plain" / "last", _meta("resume state"))  # resume state: never listed
    (root / "evaluated" / "tb").mkdir()
    (root / "evaluated" / "tb" / "events.pt").write_bytes(b"x")
    (root / "uploads").mkdir()
    (root / "uploads" / "template.pth").write_bytes(template_bytes)
    (root / "uploads" / ".upload-half.pth").write_bytes(b"half")  # an upload being written
    (root / "broken.pth").write_bytes(b"not a state dict")
    return root


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------


def test_discover_finds_folders_and_template_files_but_not_training_state(root):
    found = [p.relative_to(root).as_posix() for p in discover_checkpoints(root)]
    assert found == ["broken.pth", "evaluated", "plain", "runs/real", "uploads/template.pth"]
    assert discover_checkpoints(root / "missing") == []


def test_list_describes_each_checkpoint(root):
    infos = {i.name: i for i in list_checkpoints(root)}
    evaluated = infos["evaluated"]
    assert (evaluated.format, evaluated.variant, evaluated.model, evaluated.train_data) == (
        "folder",
        "bisenet_gta5_dacs",
        "bisenet",
        "procedural",
    )
    assert evaluated.miou == 40.0 and evaluated.eval_kind == "procedural" and evaluated.error is None
    assert evaluated.measured_on.startswith("procedural") and evaluated.input_size == [64, 128]
    assert infos["runs/real"].train_data == "real" and infos["runs/real"].eval_kind == "real"
    assert infos["plain"].miou is None and infos["plain"].measured_on is None
    assert infos["plain"].train_data == "unknown"
    template = infos["uploads/template.pth"]
    assert (template.format, template.model, template.train_data, template.error) == (
        "template",
        "bisenet",
        "unknown",
        None,
    )
    assert "cannot load" in infos["broken.pth"].error


def test_describe_reports_a_damaged_folder_instead_of_raising(tmp_path, bisenet):
    save_checkpoint(bisenet, tmp_path / "ck", _meta("x"))
    (tmp_path / "ck" / "meta.json").write_text("{broken")
    info = describe_checkpoint(tmp_path / "ck", tmp_path)
    assert info.name == "ck" and "not valid JSON" in info.error


def test_eval_kind_reads_the_evaluation_description():
    assert (
        eval_kind({"miou": 1.0, "eval_data": "procedural cityscapes-layout val, 10 images"}) == "procedural"
    )
    assert eval_kind({"miou": 1.0, "eval_data": "real cityscapes-layout val, 500 images"}) == "real"
    assert eval_kind({"miou": 1.0, "eval_data": "somewhere"}) == "unknown"
    assert eval_kind({"eval_data": "real ..."}) == "unknown"  # no mIoU: no evaluation
    assert eval_kind({"miou": 1.0, "eval_kind": "real", "eval_data": "x"}) == "real"
    assert eval_kind(None) == "unknown"


def test_fingerprint_changes_when_a_checkpoint_is_rewritten(tmp_path, bisenet):
    save_checkpoint(bisenet, tmp_path / "ck", _meta("a"))
    before = checkpoint_fingerprint(tmp_path / "ck")
    time.sleep(0.01)
    save_checkpoint(bisenet, tmp_path / "ck", _meta("a much longer variant name"))
    assert checkpoint_fingerprint(tmp_path / "ck") != before


def test_import_keeps_a_valid_template_file(tmp_path, template_bytes, bisenet):
    path, meta = import_template_checkpoint(template_bytes, "../../My Model (final).pth", tmp_path)
    assert path == tmp_path / "uploads" / "My_Model__final.pth"  # no folders, no odd characters
    assert path.read_bytes() == template_bytes and meta["model"] == "bisenet"
    model, _ = load_model(path)
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        assert torch.equal(model(x), bisenet(x))
    again, _ = import_template_checkpoint(template_bytes, "My Model (final).pth", tmp_path)
    assert again == path  # the same bytes are kept once
    other = dict(torch.load(io.BytesIO(template_bytes), weights_only=True))
    other["conv.bias"] = other["conv.bias"] + 1
    buffer = io.BytesIO()
    torch.save(other, buffer)
    third, _ = import_template_checkpoint(buffer.getvalue(), "My Model (final).pth", tmp_path)
    assert third.name == "My_Model__final-1.pth"
    assert {p.name for p in (tmp_path / "uploads").iterdir()} == {path.name, third.name}


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("model.pth", b"garbage", "cannot load model.pth"),
        ("model.pth", b"", "empty"),
        ("model.onnx", b"x", "expected a course-template state dict"),
    ],
)
def test_import_refuses_bad_files_and_leaves_nothing(tmp_path, name, data, message):
    with pytest.raises(CheckpointError, match=message) as info:
        import_template_checkpoint(data, name, tmp_path)
    assert ".upload-" not in str(info.value)  # the message names the user's file, not the temporary one
    uploads = tmp_path / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())


def test_import_refuses_a_state_dict_of_another_network(tmp_path):
    buffer = io.BytesIO()
    torch.save({"saptial_path.convblock1.conv1.weight": torch.zeros(1)}, buffer)
    with pytest.raises(CheckpointError, match="does not fit|has no"):
        import_template_checkpoint(buffer.getvalue(), "odd.pth", tmp_path)
    assert not any((tmp_path / "uploads").iterdir())


# ---------------------------------------------------------------------------------------------
# fda
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    source, _ = render_scene(scene_rng(0, "source", "val", 0), "source", (128, 64))
    target, _ = render_scene(scene_rng(0, "target", "val", 0), "target", (160, 96))  # another size
    return source, target


def test_translate_image_matches_fda_on_the_resized_target(pair):
    source, target = pair
    out = translate_image(source, target, 0.05)
    assert out.dtype == np.uint8 and out.shape == source.shape
    resized = resize_to(target, (64, 128))
    as_float = lambda a: torch.from_numpy(np.array(a, np.float32)).permute(2, 0, 1)
    raw = fda_source_to_target(as_float(source), as_float(resized), 0.05)
    assert np.array_equal(out, raw.clamp(0, 255).round().byte().permute(1, 2, 0).numpy())
    # The mean colour (the DC term) is now the target's, before clipping to 0..255.
    assert torch.allclose(raw.mean(dim=(1, 2)), as_float(resized).mean(dim=(1, 2)), atol=1e-2)
    assert np.array_equal(translate_image(source, target, 0.0), source)


def test_translate_image_rejects_bad_input(pair):
    source, target = pair
    with pytest.raises(ValueError, match="uint8"):
        translate_image(source.astype(np.float32), target, 0.01)
    with pytest.raises(ValueError, match="beta"):
        translate_image(source, target, 0.6)


def test_fda_preview_draws_the_window_and_zooms(pair):
    source, target = pair
    preview = fda_preview(source, target, 0.05)
    assert preview.b == 3 and preview.window == (29, 61, 36, 68)
    assert preview.target.shape == source.shape and np.array_equal(
        preview.result, translate_image(source, target, 0.05)
    )
    for picture in preview.spectra.values():
        assert picture.shape == source.shape and picture.dtype == np.uint8
        assert (picture == WINDOW_COLOR).all(axis=2).sum() > 0
    zoomed = fda_preview(source, target, 0.05, zoom=4)
    # 4x zoom: the ring around the 7x7 window is four times as long and as thick.
    ring = (preview.spectra["source"] == WINDOW_COLOR).all(axis=2).sum()
    assert (zoomed.spectra["source"] == WINDOW_COLOR).all(axis=2).sum() == 16 * ring
    off = fda_preview(source, target, 0.0)
    assert not (off.spectra["source"] == WINDOW_COLOR).all(axis=2).any()
    with pytest.raises(ValueError, match="zoom"):
        fda_preview(source, target, 0.05, zoom=0.5)


# ---------------------------------------------------------------------------------------------
# dacs
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image, label = render_scene(scene_rng(0, "source", "val", 1), "source", (128, 64))
    target, _ = render_scene(scene_rng(0, "target", "val", 1), "target", (256, 128))
    return image, label, target


def test_mix_preview_random_half_is_class_mix_with_the_seed(scene):
    image, label, target = scene
    mix = mix_preview(image, label, target, seed=3)
    present = present_classes(label)
    assert len(mix.classes) == math.ceil(len(present) / 2) and set(mix.classes) <= set(present)
    resized = resize_to(target, label.shape)
    to_t = lambda a: torch.from_numpy(np.array(a)).permute(2, 0, 1)[None]
    lab = torch.from_numpy(label.astype(np.int64))[None]
    expected = class_mix(
        to_t(image), lab, to_t(resized), torch.full_like(lab, 255), generator=torch.Generator().manual_seed(3)
    )
    assert mix.classes == expected.classes[0].tolist()
    assert np.array_equal(mix.mask, expected.mask[0].numpy())
    assert np.array_equal(mix.image, expected.image[0].permute(1, 2, 0).numpy())
    assert np.array_equal(mix.label[mix.mask], label[mix.mask]) and (mix.label[~mix.mask] == 255).all()
    assert mix.weight is None and mix.confident_fraction is None
    assert mix_preview(image, label, target, seed=3).classes == mix.classes  # reproducible


def test_mix_preview_chosen_classes_pseudo_label_and_weights(scene):
    image, label, target = scene
    pseudo = np.full((32, 64), 13, np.uint8)  # teacher output at another size: resized to the source
    confidence = np.zeros((64, 128), np.float32)
    confidence[:16] = 0.99  # a quarter of the target is confident
    mix = mix_preview(image, label, target, classes=[0, 10], pseudo_label=pseudo, confidence=confidence)
    assert mix.classes == [0, 10]
    assert np.array_equal(mix.mask, np.isin(label, [0, 10]))
    assert (mix.label[~mix.mask] == 13).all()
    assert mix.confident_fraction == pytest.approx(0.25)
    assert np.allclose(mix.weight[mix.mask], 1.0) and np.allclose(mix.weight[~mix.mask], 0.25)
    nothing = mix_preview(image, label, target, classes=[])
    assert not nothing.mask.any() and np.array_equal(nothing.image, resize_to(target, label.shape))
    with pytest.raises(ValueError, match="source label"):
        mix_preview(image, label[:10], target)


def test_weight_and_mask_pictures(scene):
    image, label, _ = scene
    pictures = weight_image(np.array([[0.0, 1.0]], np.float32))
    assert pictures.shape == (1, 2, 3) and pictures[0, 1].sum() > pictures[0, 0].sum()  # yellow brighter
    mask = label == label[0, 0]
    shown = mask_image(image, mask)
    assert np.array_equal(shown[mask], image[mask]) and (shown[~mask] <= image[~mask]).all()


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_load_label_reads_the_three_encodings(scene):
    _, label, _ = scene
    ids, kind = load_label(label_png_bytes(label))
    assert kind == "trainIds" and np.array_equal(ids, label)
    label_ids = train_ids_to_label_ids(label)  # the ego vehicle (ignore) becomes 0 "unlabeled"
    ids, kind = load_label(_png(label_ids))
    assert kind == "label ids" and np.array_equal(ids, label)
    ids, kind = load_label(_png(colorize(label)), size=label.shape)
    assert kind == "colours" and np.array_equal(ids, label)
    odd = colorize(label)
    odd[0, 0] = (1, 2, 3)  # not a class colour
    assert load_label(_png(odd))[0][0, 0] == 255
    assert tuple(PALETTE[0]) == (128, 64, 128)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"\xff\xd8\xff\xe0 not a png", "must be a lossless image"),
        ("truncated", "could not be decoded"),
    ],
)
def test_load_label_refuses_what_is_not_a_label_png(data, message):
    if data == "truncated":
        data = _png(np.random.default_rng(0).integers(0, 19, (64, 64), dtype=np.uint8))[:200]
    with pytest.raises(ImageError, match=message):
        load_label(data)


def test_a_label_with_a_stray_value_is_refused_never_remapped():
    label = np.random.default_rng(0).integers(0, 19, (32, 64)).astype(np.uint8)
    label[0, :8] = 255
    label[5, 7] = 100  # one stray value: neither a trainId nor a label id
    with pytest.raises(ImageError, match=r"holds 100: neither trainIds .* nor label ids"):
        load_label(_png(label))
    label[5, 7] = 30  # only a label id, beside 255, only a trainId: no convention fits, no guess
    with pytest.raises(
        ImageError, match=r"mixes the two conventions \(255 only as trainIds, 30 only as label ids\)"
    ):
        load_label(_png(label))
    with pytest.raises(ImageError, match="read as trainIds, the label map holds 30"):
        load_label(_png(label), encoding="trainIds")


def test_a_label_that_means_either_makes_the_user_choose(scene):
    label = np.random.default_rng(1).integers(0, 19, (32, 64)).astype(np.uint8)  # no 255, all 0-18
    with pytest.raises(AmbiguousLabelError, match="both a trainId and a Cityscapes label id"):
        load_label(_png(label))
    as_train, kind = load_label(_png(label), encoding="trainIds")
    assert kind == "trainIds" and np.array_equal(as_train, label)
    as_ids, kind = load_label(_png(label), encoding="label ids")
    assert kind == "label ids" and np.array_equal(as_ids, id_to_train_id(label))
    # The app's own mask PNGs say they hold trainIds: no question asked.
    assert load_label(label_png_bytes(label))[1] == "trainIds"
    with pytest.raises(ImageError, match="cannot be read as trainIds"):
        load_label(_png(colorize(scene[1])), encoding="trainIds")
    with pytest.raises(ValueError, match="encoding must be one of"):
        load_label(_png(label), encoding="guess")


MODES = ["1", "L", "LA", "P", "PA", "I;16", "I", "F", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"]


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_pil_opens_works_or_gets_one_sentence_as_image_and_as_label(mode):
    values = (np.arange(24 * 32).reshape(24, 32) % 19).astype(np.uint8)
    values[0, 0] = 255  # an ignore pixel: unambiguously trainIds
    wide = {"I": np.int32, "F": np.float32, "I;16": np.uint16}  # fromarray picks these modes from the dtype
    picture = (
        Image.fromarray(values.astype(wide[mode])) if mode in wide else Image.fromarray(values).convert(mode)
    )
    assert picture.mode == mode
    saved = 0
    for fmt in ("PNG", "TIFF", "WEBP"):
        buffer = io.BytesIO()
        try:
            picture.save(buffer, format=fmt)
        except (OSError, ValueError, KeyError):
            continue  # this format cannot hold this mode
        saved += 1
        data = buffer.getvalue()
        try:
            assert load_image(data).mode == "RGB"
        except ImageError as exc:  # a clear sentence, never another exception
            assert str(exc) and "Traceback" not in str(exc)
        try:
            ids, kind = load_label(data)
        except ImageError as exc:
            assert str(exc) and "\n" not in str(exc)
            continue
        assert ids.shape == (24, 32) and ids.dtype == np.uint8
        if kind == "trainIds":
            assert np.array_equal(ids, values) or mode in ("P", "PA")  # palette conversion may requantise


def test_load_label_checks_the_size(scene):
    _, label, _ = scene
    with pytest.raises(ImageError, match="must match"):
        load_label(label_png_bytes(label), size=(10, 10))


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------


def test_evaluation_rows_label_the_data_they_were_measured_on(root):
    rows = {r["label"]: r for r in evaluation_rows(root)}
    assert set(rows) == {"evaluated (procedural)", "runs/real (real)"}  # plain/ has no evaluation
    assert rows["evaluated (procedural)"]["iou"]["sidewalk"] == 1.0
    assert rows["runs/real (real)"]["iou"]["sidewalk"] is None
    labels = [r["label"] for r in all_result_rows(root)]
    assert labels[:8] == [
        f"{v} (report)"
        for v in (
            "deeplabv2_cityscapes",
            "bisenet_cityscapes",
            "bisenet_gta5",
            "bisenet_gta5_aug1",
            "bisenet_gta5_aug2",
            "bisenet_gta5_aug12",
            "bisenet_gta5_fda",
            "bisenet_gta5_dacs",
        )
    ]


def test_results_frame_best_per_class_and_deltas(root):
    frame = results_frame(all_result_rows(root))
    assert frame.loc["bisenet_gta5_fda (report)", "mIoU"] == pytest.approx(26.42)
    assert frame.loc["evaluated (procedural)", "data"] == "procedural"
    assert frame.loc["bisenet_gta5_dacs (report)", "source"] == "report"
    assert math.isnan(frame.loc["bisenet_cityscapes (report)", "road"])
    best = best_per_class(frame)
    # Real and procedural numbers never compete: each kind has its own best.
    assert (
        best.loc["bisenet_gta5_dacs (report)", "road"] and best.loc["runs/real (real)", "road"] is np.False_
    )
    assert best.loc["deeplabv2_cityscapes (report)", "mIoU"]
    assert best.loc["evaluated (procedural)", "mIoU"] and best.loc["evaluated (procedural)", "bicycle"]
    assert not best.loc["evaluated (procedural)", "road"]  # its only procedural value is 0: nothing to mark
    assert not best.loc["bisenet_cityscapes (report)", "road"]  # NaN is never best
    change = delta_frame(frame, "bisenet_gta5_fda (report)", "bisenet_gta5_dacs (report)")
    assert change.loc["mIoU", "delta"] == pytest.approx(32.12 - 26.42)
    assert list(change.columns) == ["bisenet_gta5_fda (report)", "bisenet_gta5_dacs (report)", "delta"]
    with pytest.raises(KeyError, match="no row"):
        delta_frame(frame, "nope", "bisenet_gta5 (report)")


def test_checkpoints_frame(root):
    table = checkpoints_frame(list_checkpoints(root)).set_index("name")
    assert table.loc["evaluated", "training data"] == "procedural"
    assert table.loc["plain", "measured on"] == "not evaluated"
    assert table.loc["broken.pth", "status"].startswith("unusable: ")


def test_run_profile_reports_progress_and_sits_beside_the_report():
    seen = []
    row = run_profile("bisenet", 32, 64, runs=2, warmup=0, progress=lambda text, f: seen.append((text, f)))
    assert row["params"] == 12_068_672 and row["flops"] > 0 and row["latency_ms"] > 0 and row["runs"] == 2
    assert [f for _, f in seen] == sorted(f for _, f in seen) and seen[-1][1] == pytest.approx(1.0)
    assert sum("timed run" in text for text, _ in seen) == 2
    table = profile_frame([row])
    assert list(table.index) == [
        "deeplabv2_cityscapes (report)",
        "bisenet_cityscapes (report)",
        "run 1: bisenet (this machine)",
    ]
    assert table.loc["bisenet_cityscapes (report)", "FPS"] == pytest.approx(1000 / 17.14)
    assert table.loc["run 1: bisenet (this machine)", "params"] == "12.07M"
    with pytest.raises(ValueError, match="runs"):
        run_profile("bisenet", 32, 64, runs=0)


# ---------------------------------------------------------------------------------------------
# jobs
# ---------------------------------------------------------------------------------------------


def test_progress_file_name_is_the_demos():
    from train.demo import PROGRESS_FILE

    assert jobs.PROGRESS_FILE == PROGRESS_FILE


def test_demo_command_runs_the_training_cli_with_the_chosen_profile(tmp_path):
    command = jobs.demo_command(tmp_path)
    assert command[1:5] == ["-m", "train", "demo", "--out"] and command[5] == str(tmp_path.resolve())
    assert "--profile" not in command  # the default profile
    assert jobs.demo_command(tmp_path, profile="full")[6:] == ["--profile", "full"]
    with pytest.raises(jobs.JobError, match="unknown demo profile"):
        jobs.demo_command(tmp_path, profile="huge")


def test_progress_fraction():
    assert jobs.progress_fraction(None) == 0.0
    assert jobs.progress_fraction({"state": "done"}) == 1.0
    assert jobs.progress_fraction({"state": "generating", "count": 8, "finished": []}) == 0.0
    state = {"state": "training", "count": 4, "finished": ["a"], "step": 50, "total": 100}
    assert jobs.progress_fraction(state) == pytest.approx(1.5 / 4)
    assert jobs.progress_fraction({"state": "training", "count": "x"}) == 0.0


FAKE_DEMO = (
    "import json, sys, time, pathlib\n"
    "p = pathlib.Path(sys.argv[1]) / '.demo_progress.json'\n"
    "p.write_text(json.dumps({'state': 'training', 'count': 2, 'finished': ['a'], 'step': 1, 'total': 2,"
    " 'message': 'training b'}))\n"
    "print('line one\\rline one, updated', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
    "p.write_text(json.dumps({'state': 'done', 'count': 2, 'finished': ['a', 'b'], 'message': 'all done'}))\n"
)


def _wait(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_job_runs_in_the_background_and_reports_progress(tmp_path):
    assert jobs.demo_status(tmp_path).state == "idle" and not jobs.is_running(tmp_path)
    pid = jobs.start_demo(tmp_path, [sys.executable, "-c", FAKE_DEMO, str(tmp_path), "1.5"])
    assert pid > 0 and jobs.is_running(tmp_path)
    with pytest.raises(jobs.JobError, match="already running"):
        jobs.start_demo(tmp_path, [sys.executable, "-c", "pass"])
    _wait(lambda: jobs.read_progress(tmp_path) is not None)
    status = jobs.demo_status(tmp_path)
    assert status.running and status.state == "training" and status.fraction == pytest.approx(0.75)
    assert status.finished == ["a"] and status.pid == pid
    _wait(lambda: not jobs.is_running(tmp_path))
    status = jobs.demo_status(tmp_path)
    assert (status.running, status.state, status.fraction, status.message) == (False, "done", 1.0, "all done")
    tail = jobs.log_tail(tmp_path)
    assert (
        "line one, updated" in tail.splitlines() and "line one" not in tail.splitlines()
    )  # \r: the last state
    assert any(line.startswith("$ ") for line in tail.splitlines())  # the command line heads its output


def test_a_job_can_be_stopped_and_says_so(tmp_path):
    jobs.start_demo(tmp_path, [sys.executable, "-c", FAKE_DEMO, str(tmp_path), "60"])
    _wait(lambda: jobs.read_progress(tmp_path) is not None)
    assert jobs.stop_demo(tmp_path)
    assert not jobs.is_running(tmp_path)
    status = jobs.demo_status(tmp_path)
    assert status.state == "stopped" and "start it again" in status.message
    assert not jobs.stop_demo(tmp_path)  # nothing left to stop
    # The real demo records an interrupt as failed with the KeyboardInterrupt; that is a stop, too.
    (tmp_path / jobs.PROGRESS_FILE).write_text(
        json.dumps(
            {"state": "failed", "message": "KeyboardInterrupt: SIGINT", "variant": "bisenet_gta5", "step": 32}
        )
    )
    status = jobs.demo_status(tmp_path)
    assert status.state == "stopped" and "bisenet_gta5, step 32" in status.message


def test_a_job_that_ignores_sigint_is_still_stopped(tmp_path):
    # What a job inherits when the app runs under a background shell: SIGINT ignored.
    ignoring = "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\n" + FAKE_DEMO
    jobs.start_demo(tmp_path, [sys.executable, "-c", ignoring, str(tmp_path), "60"])
    _wait(lambda: jobs.read_progress(tmp_path) is not None)
    assert jobs.stop_demo(tmp_path, timeout=4.0)
    assert not jobs.is_running(tmp_path)
    assert jobs.demo_status(tmp_path).state == "stopped"


def test_a_job_that_dies_early_is_reported_failed(tmp_path):
    jobs.start_demo(tmp_path, [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])
    _wait(lambda: not jobs.is_running(tmp_path))
    status = jobs.demo_status(tmp_path)
    assert status.state == "failed" and "boom" in jobs.log_tail(tmp_path)


def test_a_job_started_by_another_process_is_found_through_the_pid_file(tmp_path):
    (tmp_path / jobs.PID_FILE).write_text(json.dumps({"pid": 999_999_999}))
    assert not jobs.is_running(tmp_path)  # no such process
    (tmp_path / jobs.PID_FILE).write_text(json.dumps({"pid": 1}))
    assert not jobs.is_running(tmp_path)  # alive, but not the demo
    (tmp_path / jobs.PID_FILE).write_text("{damaged")
    assert not jobs.is_running(tmp_path) and jobs.demo_status(tmp_path).state == "idle"


def test_starting_fails_clearly_when_the_program_is_missing_or_the_folder_unwritable(tmp_path):
    with pytest.raises(jobs.JobError, match="cannot start"):
        jobs.start_demo(tmp_path, ["/nonexistent/python"])
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(jobs.JobError, match="cannot write into the checkpoint folder"):
        jobs.start_demo(tmp_path / "file" / "checkpoints", [sys.executable, "-c", "pass"])


def test_old_evaluation_jobs_are_removed_when_a_new_one_starts(tmp_path):
    # finished job folders (no process): only the newest KEEP_EVALUATIONS stay, the new one included
    for i in range(8):
        (tmp_path / jobs.EVALUATIONS_DIR / f"2026-old-{i}" / "data").mkdir(parents=True)
    folder = jobs.start_evaluation(tmp_path, [tmp_path / "missing"], ["--procedural", "1"], job="2027-new")
    left = sorted(d.name for d in (tmp_path / jobs.EVALUATIONS_DIR).iterdir())
    assert len(left) == jobs.KEEP_EVALUATIONS and left[-1] == "2027-new" and "2026-old-7" in left
    for _ in range(100):  # the job fails (no such checkpoint) and says why
        status = jobs.evaluation_status(folder)
        if not status.running:
            break
        time.sleep(0.2)
    assert status.state == "failed" and "does not exist" in status.message
