"""Uploads through the command line (``python -m segdemo.segment``): every awkward file of issue 6 gets one
clear line and the others are still segmented; random bytes and random valid images of random sizes and
modes go through the same decode-and-segment path (hypothesis)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from upload_cases import encode, photo, red_corners, uploads

from segdemo.checkpoints import default_metadata, load_model, save_checkpoint
from segdemo.images import ImageError
from segdemo.inference import Segmenter
from segdemo.models import build_model
from segdemo.segment import main, segment_file

LABEL_VALUES = set(range(19))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ck") / "bisenet_small"
    save_checkpoint(build_model("bisenet").eval(), folder, default_metadata("bisenet", input_size=[64, 128]))
    return folder


@pytest.fixture(scope="module")
def bisenet(checkpoint):
    return load_model(checkpoint)


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


def test_cli_reports_each_bad_file_in_one_line_and_segments_the_rest(checkpoint, tmp_path, capsys):
    cases = uploads()
    folder = tmp_path / "in"
    folder.mkdir()
    for case in cases:
        (folder / case.name).write_bytes(case.data)
    out = tmp_path / "out"
    # --max-mb 1 is the configured limit here; --alpha 0 makes the overlay the decoded picture itself.
    code = main(
        [
            *(str(folder / c.name) for c in cases),
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            "--max-mb",
            "1",
            "--alpha",
            "0",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    errors = captured.err.strip().splitlines()
    bad = [c for c in cases if c.error]
    assert errors[-1] == f"{len(bad)} of {len(cases)} files could not be segmented"
    for case in cases:
        stem = Path(case.name).stem
        if case.error:
            line = next(e for e in errors if e.startswith(f"{folder / case.name}: "))
            assert re.search(case.error, line), line
            assert "Traceback" not in line and "BytesIO" not in line
            assert not list(out.glob(f"{stem}_*"))  # nothing written for a bad file
            continue
        width, height = case.size
        mask = read_png(out / f"{stem}_mask.png")
        assert mask.shape == (height, width) and set(np.unique(mask).tolist()) <= LABEL_VALUES
        picture = read_png(out / f"{stem}_overlay.png")
        assert picture.shape == (height, width, 3)
        if case.top_right_red:
            assert red_corners(picture) == ["top_right"]  # shown upright
        if case.name == "animated.gif":
            assert (np.abs(picture.astype(int) - [255, 0, 0]) <= 2).all()  # the first frame
        assert f"{folder / case.name}: {width} x {height} -> " in captured.out
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temporary file left


def test_cli_with_a_bad_checkpoint_or_arguments(checkpoint, tmp_path, capsys):
    image = tmp_path / "street.png"
    photo().save(image)
    assert main([str(image), "--checkpoint", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "error: checkpoint" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert (
        main([str(image), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"), "--alpha", "2"]) == 2
    )
    assert "--alpha must be in [0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(image), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"), "--max-mb", "-1"])
    assert "must be positive" in capsys.readouterr().err
    # Two inputs with the same stem do not overwrite each other.
    (tmp_path / "b").mkdir()
    photo(20, 10).save(tmp_path / "b" / "street.png")
    assert (
        main(
            [
                str(image),
                str(tmp_path / "b" / "street.png"),
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    assert read_png(tmp_path / "o" / "street_mask.png").shape == (48, 64)
    assert read_png(tmp_path / "o" / "street-2_mask.png").shape == (10, 20)


def test_cli_never_writes_over_an_input_or_a_file_it_did_not_make(checkpoint, tmp_path, capsys):
    folder = tmp_path / "D"
    folder.mkdir()
    photo().save(folder / "street.png")
    photo(20, 10).save(folder / "street_mask.png")  # the user's own file, also given as an input
    inputs = {p.name: p.read_bytes() for p in folder.iterdir()}
    args = [
        str(folder / "street.png"),
        str(folder / "street_mask.png"),
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(folder),
    ]
    for extra in ([], ["--overwrite"]):  # an input is never written over, not even with --overwrite
        assert main([*args, *extra]) == 2
        err = capsys.readouterr().err
        assert (
            f"error: {folder / 'street_mask.png'} is one of the input images" in err
            and "Traceback" not in err
        )
        assert "nothing was written" in err
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == inputs

    # An existing file the tool did not write: refused, named, and replaced only with --overwrite.
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "street_overlay.png"
    photo(8, 8).save(mine)
    single = [str(folder / "street.png"), "--checkpoint", str(checkpoint), "--out", str(out)]
    assert main(single) == 2
    err = capsys.readouterr().err
    assert f"{mine} already exists and was not written by this tool" in err and "--overwrite" in err
    assert read_png(mine).shape == (8, 8, 3) and not (out / "street_mask.png").exists()
    assert main([*single, "--overwrite"]) == 0
    assert read_png(mine).shape == (48, 64, 3)
    # Its own outputs from an earlier run are replaced without asking.
    assert main(single) == 0


def test_cli_names_a_bad_device_in_one_line(checkpoint, tmp_path, capsys):
    image = tmp_path / "street.png"
    photo().save(image)
    for device, message in (("bogus", "unknown device 'bogus'"), ("cuda:7", "device 'cuda:7'")):
        if device.startswith("cuda") and torch.cuda.device_count() > 7:
            continue
        assert (
            main(
                [
                    str(image),
                    "--checkpoint",
                    str(checkpoint),
                    "--out",
                    str(tmp_path / "o"),
                    "--device",
                    device,
                ]
            )
            == 2
        )
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err and "Traceback" not in err


# --- the same decode-and-segment path, with hypothesis
# --------------------------------------------------------

_PREFIXES = [
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff\xe0",
    b"GIF89a",
    b"RIFF\x10\0\0\0WEBPVP8 ",
    b"BM",
    b"II*\0",
]


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory) -> Path:
    """One folder for all the examples of a hypothesis test (function-scoped tmp_path would be shared
    anyway)."""
    return tmp_path_factory.mktemp("segmented")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=st.sampled_from(_PREFIXES), body=st.binary(max_size=800))
def test_random_bytes_are_refused_in_one_sentence_or_segmented(bisenet, out_dir, prefix, body):
    out = out_dir / "bytes"
    for old in out.glob("*"):
        old.unlink()
    try:
        prediction, mask_path, _ = segment_file(prefix + body, Segmenter(*bisenet), out, "x")
    except ImageError as exc:
        assert str(exc) and "\n" not in str(exc) and "BytesIO" not in str(exc)
        assert not out.exists() or not list(out.iterdir())  # nothing written
    else:
        mask = read_png(mask_path)
        assert mask.shape == prediction.train_ids.shape and set(np.unique(mask).tolist()) <= LABEL_VALUES


def _valid_image(mode: str, width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    if mode == "I;16":
        return encode(Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16)), "PNG")
    if mode == "CMYK":
        return encode(Image.frombytes("CMYK", (width, height), pixels.tobytes()), "JPEG")
    if mode == "P":
        image = Image.fromarray(pixels[..., 0])
        image.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tolist())
        return encode(image, "GIF" if seed % 2 else "PNG")
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    array = pixels[..., 0] if channels == 1 else np.ascontiguousarray(pixels[..., :channels])
    fmt = (
        "JPEG"
        if mode in ("L", "RGB") and seed % 3 == 0
        else "WEBP"
        if mode == "RGBA" and seed % 3 == 1
        else "PNG"
    )
    return encode(Image.fromarray(array, mode), fmt)


@st.composite
def sizes(draw) -> tuple[int, int]:
    width = draw(st.integers(1, 400))
    height = draw(st.integers(max(1, -(-width // 20)), min(400, width * 20)))  # within the 20:1 aspect limit
    return width, height


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mode=st.sampled_from(["RGB", "RGBA", "L", "LA", "P", "I;16", "CMYK"]),
    size=sizes(),
    seed=st.integers(0, 2**16),
    as_file=st.booleans(),
)
def test_random_valid_images_are_segmented_at_their_size(bisenet, out_dir, mode, size, seed, as_file):
    width, height = size
    data = _valid_image(mode, width, height, seed)
    source = io.BytesIO(data) if as_file else data  # an open upload or its bytes
    prediction, mask_path, overlay_path = segment_file(source, Segmenter(*bisenet), out_dir / "valid", "x")
    assert prediction.train_ids.shape == (height, width)
    mask = read_png(mask_path)
    assert mask.shape == (height, width) and set(np.unique(mask).tolist()) <= LABEL_VALUES
    assert read_png(overlay_path).shape == (height, width, 3)
