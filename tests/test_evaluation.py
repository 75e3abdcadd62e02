"""segdemo.evaluation's workbench and ``python -m train evaluate --images/--labels``: scores checked against
hand counts, test-time options, the label encodings, zip uploads and the metadata they write."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from segdemo.checkpoints import default_metadata, read_metadata, save_checkpoint
from segdemo.evaluation import (
    TestTime,
    evaluate_set,
    image_folders,
    labelled_zip,
    probabilities,
    procedural_val,
    save_evaluation,
)
from segdemo.inference import Segmenter
from segdemo.labels import CAR, IGNORE_INDEX, PALETTE, PERSON, ROAD, SKY, TRAIN_ID_TO_LABEL_ID, VEGETATION
from segdemo.models import build_model
from train.__main__ import main

H, W = 32, 48


class ColourModel(nn.Module):
    """Logit of class c = -distance^2 of the pixel colour to PALETTE[c]: a per-pixel model whose prediction of
    a painted image is known exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("colours", torch.tensor(PALETTE, dtype=torch.float32).view(1, 19, 3, 1, 1) / 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -500.0 * ((x.unsqueeze(1) - self.colours) ** 2).sum(dim=2)


def colour_segmenter() -> Segmenter:
    meta = {"model": "colour", "input_size": [H, W], "mean": [0.0] * 3, "std": [1.0] * 3}
    return Segmenter(ColourModel().eval(), meta, "cpu", backend="plain")


def painted_pair(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image painted in class colours, what the colour model predicts, a label that differs from it)."""
    predicted = np.full((H, W), SKY, np.uint8)
    predicted[H // 2 :, :] = CAR
    predicted[H // 2 :, : W // 3] = PERSON
    label = predicted.copy()
    rows = 4 + seed  # some car pixels are road in the ground truth
    label[H - rows :, W // 3 :] = ROAD
    label[: 2 + seed, :] = IGNORE_INDEX  # and the top rows are not scored
    return PALETTE[predicted], predicted, label


def write_set(
    folder: Path, encoding: str, seeds: tuple[int, ...] = (0, 1)
) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = []
    for seed in seeds:
        image, predicted, label = painted_pair(seed)
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "labels").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / "images" / f"street_{seed}.png")
        if encoding == "trainIds":
            Image.fromarray(label).save(folder / "labels" / f"street_{seed}_labelTrainIds.png")
        elif encoding == "label ids":
            lut = np.zeros(256, np.uint8)
            lut[:19] = TRAIN_ID_TO_LABEL_ID  # ignore -> 0, "unlabeled"
            Image.fromarray(lut[label]).save(folder / "labels" / f"street_{seed}_gtFine_labelIds.png")
        else:
            colours = np.zeros((H, W, 3), np.uint8)  # ignore: black, a colour of no training class
            colours[label != IGNORE_INDEX] = PALETTE[label[label != IGNORE_INDEX]]
            Image.fromarray(colours).save(folder / "labels" / f"street_{seed}_color.png")
        pairs.append((predicted, label))
    return pairs


def hand_confusion(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The confusion matrix counted pixel by pixel, the plainest way."""
    matrix = np.zeros((19, 19), np.int64)
    for predicted, label in pairs:
        for p, t in zip(predicted.ravel(), label.ravel(), strict=True):
            if t != IGNORE_INDEX:
                matrix[t, p] += 1
    return matrix


def test_scores_match_a_hand_counted_confusion_matrix_and_per_image_iou(tmp_path):
    pairs = write_set(tmp_path, "trainIds")
    evaluation = evaluate_set(colour_segmenter(), image_folders(tmp_path / "images", tmp_path / "labels"))
    expected = hand_confusion(pairs)
    assert np.array_equal(evaluation.confusion, expected)
    # Image 0 by hand: sky, person right; car right except the road rows; road never predicted.
    predicted, label = pairs[0]
    scored = label != IGNORE_INDEX
    ious = []
    for cls in (SKY, CAR, PERSON, ROAD):
        tp = np.sum((predicted == cls) & (label == cls) & scored)
        union = np.sum(((predicted == cls) | (label == cls)) & scored)
        ious.append(100 * tp / union)
    first = evaluation.images[0]
    assert first.name == "street_0" and first.miou == pytest.approx(np.mean(ious), abs=0.01)
    assert first.iou[ROAD] == 0.0 and np.isnan(first.iou[VEGETATION])
    assert first.pixel_accuracy == pytest.approx(100 * np.mean(predicted[scored] == label[scored]), abs=0.01)
    total_iou = [
        expected[c, c] / (expected[c].sum() + expected[:, c].sum() - expected[c, c])
        for c in (SKY, CAR, PERSON, ROAD)
    ]
    assert evaluation.summary["miou"] == pytest.approx(100 * np.mean(total_iou), abs=0.01)
    assert evaluation.per_image_frame()["image"].tolist()[0] == "street_1"  # worst first: more road rows


def test_the_three_label_encodings_give_the_same_score_and_say_which_they_are(tmp_path):
    results = {}
    for encoding in ("trainIds", "label ids", "colours"):
        write_set(tmp_path / encoding, encoding)
        data = image_folders(tmp_path / encoding / "images", tmp_path / encoding / "labels")
        assert data.label_encoding == encoding
        results[encoding] = evaluate_set(colour_segmenter(), data)
    assert np.array_equal(results["trainIds"].confusion, results["label ids"].confusion)
    assert np.array_equal(results["trainIds"].confusion, results["colours"].confusion)
    assert results["colours"].protocol["label_encoding"] == "colours"


def test_flip_tta_leaves_a_per_pixel_model_unchanged_and_a_symmetric_input_symmetric(tmp_path):
    pairs = write_set(tmp_path, "trainIds", seeds=(0,))
    data = image_folders(tmp_path / "images", tmp_path / "labels")
    plain = evaluate_set(colour_segmenter(), data)
    flipped = evaluate_set(colour_segmenter(), data, TestTime(flip=True))
    assert (
        np.array_equal(plain.confusion, flipped.confusion) and flipped.protocol["test_time"]["name"] == "flip"
    )
    # A real BiSeNet is not mirror-equivariant, but with flip TTA a mirror-symmetric input gets a
    # mirror-symmetric result, and mirroring the image and its label changes no score.
    torch.manual_seed(0)
    segmenter = Segmenter(
        build_model("bisenet").eval(), default_metadata("bisenet", input_size=[64, 128]), "cpu"
    )
    rng = np.random.default_rng(0)
    half = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    symmetric = np.concatenate([half, half[:, ::-1]], axis=1)
    probs = probabilities(segmenter, symmetric, (64, 128), TestTime(flip=True))
    assert torch.equal(probs, probs.flip(-1))
    assert not torch.equal(probabilities(segmenter, symmetric, (64, 128)), probs)  # the flip did something
    predicted, label = pairs[0]
    image = np.asarray(Image.fromarray(PALETTE[predicted]).resize((128, 64), Image.Resampling.NEAREST))
    label = np.asarray(Image.fromarray(label).resize((128, 64), Image.Resampling.NEAREST))
    for name, (img, lab) in {"a": (image, label), "b": (image[:, ::-1], label[:, ::-1])}.items():
        folder = tmp_path / "mirror" / name
        write_pair(folder, img, lab)
    a, b = (
        evaluate_set(
            segmenter,
            image_folders(tmp_path / "mirror" / n / "images", tmp_path / "mirror" / n / "labels"),
            TestTime(flip=True),
        )
        for n in "ab"
    )
    assert np.array_equal(a.confusion, b.confusion)


def write_pair(folder: Path, image: np.ndarray, label: np.ndarray) -> None:
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir(parents=True)
    Image.fromarray(np.ascontiguousarray(image)).save(folder / "images" / "x.png")
    Image.fromarray(np.ascontiguousarray(label)).save(folder / "labels" / "x_labelTrainIds.png")


def test_multi_scale_and_sliding_windows_run_at_the_label_size(tmp_path):
    torch.manual_seed(0)
    segmenter = Segmenter(
        build_model("bisenet").eval(), default_metadata("bisenet", input_size=[32, 64]), "cpu"
    )
    image = np.random.default_rng(1).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    for test_time in (TestTime.parse("ms"), TestTime.parse("slide"), TestTime.parse("flip,ms,slide")):
        probs = probabilities(segmenter, image, (50, 75), test_time)
        assert probs.shape == (19, 50, 75) and torch.allclose(probs.sum(0), torch.ones(50, 75), atol=1e-4)
    assert TestTime.parse("flip+ms").name == "flip+ms" and TestTime.parse("").name == "none"
    with pytest.raises(ValueError, match="unknown test-time option"):
        TestTime.parse("rotate")


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_zip_of_pairs_is_evaluated_whichever_way_it_is_laid_out_and_a_hostile_one_is_refused(tmp_path):
    image, predicted, label = painted_pair(0)
    folders = zipped(
        {"mine/images/a.png": png(image), "mine/labels/a.png": png(label), "mine/notes.txt": b"x"}
    )
    flat = zipped({"a.png": png(image), "a_labelTrainIds.png": png(label), "__MACOSX/._a.png": b"junk"})
    for name, data in (("folders", folders), ("flat", flat)):
        labelled = labelled_zip(data, tmp_path / name)
        assert labelled.names == ["a"] and labelled.label_encoding == "trainIds"
        assert np.array_equal(
            evaluate_set(colour_segmenter(), labelled).confusion, hand_confusion([(predicted, label)])
        )
    with pytest.raises(ValueError, match="outside its own folder"):
        labelled_zip(zipped({"../evil.png": png(image)}), tmp_path / "evil")
    assert not (tmp_path / "evil.png").exists()
    with pytest.raises(ValueError, match="limit"):
        labelled_zip(folders, tmp_path / "small", max_bytes=100)
    with pytest.raises(ValueError, match="not a zip"):
        labelled_zip(b"PK but not really", tmp_path / "bad")
    with pytest.raises(ValueError, match="no image .* has a label"):
        labelled_zip(zipped({"a.png": png(image)}), tmp_path / "alone")


def test_evaluations_of_several_data_sets_and_protocols_live_side_by_side(tmp_path):
    folder = tmp_path / "ck"
    torch.manual_seed(0)
    save_checkpoint(build_model("bisenet"), folder, default_metadata("bisenet", input_size=[32, 64]))
    segmenter = Segmenter.from_checkpoint(folder)
    data = procedural_val(2, (128, 64))
    for test_time in (TestTime(), TestTime(flip=True)):
        save_evaluation(folder, evaluate_set(segmenter, data, test_time))
    evaluations = read_metadata(folder)["evaluations"]
    assert len(evaluations) == 2 and all(e["eval_kind"] == "procedural" for e in evaluations.values())
    record = next(iter(evaluations.values()))
    assert np.asarray(record["confusion"]).shape == (19, 19) and record["images"] == 2


def test_the_cli_evaluates_folders_prints_the_table_and_writes_the_same_numbers(tmp_path, capsys):
    pairs = write_set(tmp_path / "data", "label ids")
    folder = tmp_path / "ck"
    torch.manual_seed(0)
    save_checkpoint(build_model("bisenet"), folder, default_metadata("bisenet", input_size=[32, 48]))
    args = [
        "evaluate",
        str(folder),
        "--images",
        str(tmp_path / "data/images"),
        "--labels",
        str(tmp_path / "data/labels"),
        "--device",
        "cpu",
        "--per-image",
        str(tmp_path / "scores.csv"),
    ]
    assert main([*args, "--tta", "flip", "--json", str(tmp_path / "result.json")]) == 0
    out = capsys.readouterr().out
    assert "labels read as label ids" in out and "| mIoU |" in out.replace("measured on | mIoU", "| mIoU")
    lines = (tmp_path / "scores.csv").read_text().splitlines()
    assert lines[0].startswith("image,mIoU,pixel accuracy,road") and len(lines) == 1 + len(pairs)
    expected = evaluate_set(
        Segmenter.from_checkpoint(folder),
        image_folders(tmp_path / "data/images", tmp_path / "data/labels"),
        TestTime(flip=True),
    )
    written = json.loads((tmp_path / "result.json").read_text())[0]
    assert np.array_equal(np.asarray(written["confusion"]), expected.confusion)
    assert main(args) == 0  # no TTA: a second entry beside the first
    assert len(read_metadata(folder)["evaluations"]) == 2
    assert main(["evaluate", str(folder), "--images", str(tmp_path), "--device", "cpu"]) == 2
    assert "--images and --labels go together" in capsys.readouterr().err
    assert main([*args, "--tta", "rotate"]) == 2


def test_the_report_command_refuses_an_unreadable_image_in_one_line(tmp_path, capsys):
    folder = tmp_path / "ck"
    save_checkpoint(build_model("bisenet"), folder, default_metadata("bisenet", input_size=[32, 64]))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    assert (
        main(
            [
                "report",
                str(folder),
                "--out",
                str(tmp_path / "s.html"),
                "--images",
                str(tmp_path / "broken.png"),
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.startswith("error: ") and not (tmp_path / "s.html").exists()
