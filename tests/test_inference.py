import io
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn

from segdemo.checkpoints import CheckpointError, default_metadata, load_model, save_checkpoint
from segdemo.images import MAX_UPLOAD_BYTES, ImageError, load_image, to_rgb
from segdemo.inference import Prediction, Segmenter, predict, predict_many, preprocess
from segdemo.labels import PALETTE
from segdemo.models import build_model
from segdemo.video import browser_video_suffix, segment_video, video_codec

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SKY, VEGETATION, CAR, PERSON = 10, 8, 13, 11  # classes whose colours are far apart and not R/B-symmetric


# --- helpers and fixtures ------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width x height`` RGB but that holds no pixel data at all."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def noise_photo(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


class ColourModel(nn.Module):
    """Logit of class c = -distance^2 of the pixel colour to PALETTE[c]: it 'segments' painted images.

    Its predictions follow the image exactly, so resizing mistakes (H/W swapped, misaligned
    upsampling, BGR fed as RGB) show up as wrong labels.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("colours", torch.tensor(PALETTE, dtype=torch.float32).view(1, 19, 3, 1, 1) / 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -500.0 * ((x.unsqueeze(1) - self.colours) ** 2).sum(dim=2)


COLOUR_META = {"model": "colour", "input_size": [32, 48], "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}


def painted(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """An RGB picture painted in four class colours, and its true trainIds (boundaries off-centre)."""
    ids = np.empty((height, width), dtype=np.uint8)
    r, c = height * 2 // 5, width * 2 // 3
    ids[:r, :c], ids[:r, c:], ids[r:, :c], ids[r:, c:] = SKY, VEGETATION, CAR, PERSON
    return PALETTE[ids], ids


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bisenet(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ck") / "bisenet_small"
    save_checkpoint(build_model("bisenet").eval(), folder, default_metadata("bisenet", input_size=[64, 128]))
    return load_model(folder)


@pytest.fixture(scope="module")
def colour_model():
    return ColourModel().eval(), dict(COLOUR_META)


# --- load_image: bad inputs ----------------------------------------------------------------------


def test_empty_file(tmp_path):
    with pytest.raises(ImageError, match="the file is empty"):
        load_image(b"")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="the file is empty"):
        load_image(tmp_path / "empty.jpg")


def test_text_file_renamed_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n" * 20)
    with pytest.raises(ImageError, match="not an image PIL can read") as info:
        load_image(path)
    assert "Traceback" not in str(info.value) and "BytesIO" not in str(info.value)


def test_formats_outside_the_allow_list_are_not_tried():
    # PIL can open EPS (by running Ghostscript); uploads must never reach that plugin.
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"
    with pytest.raises(ImageError, match="not an image PIL can read"):
        load_image(eps)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files(fmt):
    data = encode(noise_photo(), fmt)
    assert load_image(data).size == (64, 48)
    with pytest.raises(ImageError, match="truncated"):
        load_image(data[: len(data) // 2])


def test_header_size_is_checked_before_decoding():
    # 49 MP is below PIL's own limit, so only our check can catch it; the file has no pixel data,
    # so a decode attempt would report truncation instead of the size.
    with pytest.raises(ImageError, match=r"7000 x 7000 pixels \(49\.0 megapixels\), the limit is 40\.0"):
        load_image(png_header_only(7000, 7000))
    with pytest.raises(ImageError, match=r"64 x 48 pixels \(3,072 pixels\), the limit is 1,000 pixels"):
        load_image(encode(noise_photo(), "PNG"), max_pixels=1000)


def test_decompression_bomb_30000_squared():
    with pytest.raises(ImageError, match=r"too large.*900\.0 megapixels.*limit is 40\.0 megapixels"):
        load_image(png_header_only(30000, 30000))


def test_pil_bomb_warning_is_an_error():
    # With our limit raised above PIL's (89 MP), PIL only *warns* for 100 MP; that must still refuse.
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(png_header_only(10000, 10000), max_pixels=200_000_000)


def test_extreme_aspect_ratio_is_refused_but_small_images_pass():
    with pytest.raises(ImageError, match="200:1"):
        load_image(encode(Image.new("RGB", (20000, 100)), "PNG"))
    with pytest.raises(ImageError, match="aspect ratio"):
        load_image(encode(Image.new("RGB", (1, 21)), "PNG"))
    assert load_image(encode(Image.new("RGB", (20, 1)), "PNG")).size == (20, 1)
    one = load_image(encode(Image.new("RGB", (1, 1), (9, 8, 7)), "PNG"))
    assert one.mode == "RGB" and one.size == (1, 1) and one.getpixel((0, 0)) == (9, 8, 7)


def test_files_over_the_byte_limit(tmp_path):
    data = encode(noise_photo(), "PNG") + b"\0" * (3 * 2**20)
    message = r"the file is 3\.0 MB, the limit is 1\.0 MB"
    with pytest.raises(ImageError, match=message):
        load_image(data, max_bytes=2**20)
    path = tmp_path / "big.png"
    path.write_bytes(data)
    with pytest.raises(ImageError, match=message):
        load_image(path, max_bytes=2**20)
    with pytest.raises(ImageError, match=message):
        load_image(io.BytesIO(data), max_bytes=2**20)

    class Pipe(io.RawIOBase):  # a non-seekable stream: the size is only known by reading it
        def __init__(self, payload: bytes) -> None:
            self._inner = io.BytesIO(payload)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            chunk = self._inner.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    with pytest.raises(ImageError, match=message):
        load_image(io.BufferedReader(Pipe(data)), max_bytes=2**20)
    assert load_image(data, max_bytes=MAX_UPLOAD_BYTES).size == (64, 48)  # the default allows it


def test_missing_path_and_unsupported_source(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="cannot read an image from a int"):
        load_image(42)  # type: ignore[arg-type]


def _fds_on(path: Path) -> list[str]:
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                fds.append(fd)
        except OSError:
            pass
    return fds


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to list open files")
def test_no_file_handle_stays_open(tmp_path):
    good, bad = tmp_path / "good.jpg", tmp_path / "bad.jpg"
    good.write_bytes(encode(noise_photo(), "JPEG"))
    bad.write_bytes(good.read_bytes()[:300])
    image = load_image(good)
    with pytest.raises(ImageError):
        load_image(bad)
    assert _fds_on(good) == [] and _fds_on(bad) == []
    assert image.size == (64, 48) and np.asarray(image).shape == (48, 64, 3)  # pixels still usable


def test_file_objects_are_left_open_and_rewound():
    stream = io.BytesIO(b"junk" + encode(noise_photo(), "PNG"))
    stream.seek(4)
    first, second = load_image(stream), load_image(stream)
    assert not stream.closed and stream.tell() == 4
    assert np.array_equal(np.asarray(first), np.asarray(second))


# --- load_image: modes and orientation ---------------------------------------------------------------


def test_16_bit_png_keeps_its_gradient():
    ramp = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (16, 1))
    data = encode(Image.fromarray(ramp), "PNG")
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.mode.startswith("I")  # really a 16-bit file
    out = np.asarray(load_image(data))
    assert out.shape == (16, 256, 3) and out.dtype == np.uint8
    assert np.array_equal(out[..., 0], out[..., 2])
    assert np.array_equal(out[0, :, 0], np.rint(ramp[0] / 257).astype(np.uint8))
    assert out[0, 0, 0] == 0 and out[0, -1, 0] == 255 and len(np.unique(out)) == 256  # not clipped


def test_to_rgb_32_bit_and_float_modes():
    as_int = to_rgb(Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.int32)))
    assert np.asarray(as_int)[0, :, 0].tolist() == [0, 128, 255]
    wide = to_rgb(Image.fromarray(np.array([[-10, 0, 10]], dtype=np.int32)))  # not 16-bit data: stretch
    assert np.asarray(wide)[0, :, 1].tolist() == [0, 128, 255]
    floats = to_rgb(Image.fromarray(np.array([[0.5, 0.75, 1.0]], dtype=np.float32)))
    assert np.asarray(floats)[0, :, 2].tolist() == [0, 128, 255]


def test_cmyk_jpeg():
    red = Image.new("RGB", (32, 24), (255, 0, 0)).convert("CMYK")
    data = encode(red, "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.mode == "CMYK"
    out = np.asarray(load_image(data)).astype(int)
    assert out.shape == (24, 32, 3)
    assert np.abs(out - [255, 0, 0]).max() <= 8


def test_transparency_is_composited_on_white():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque: unchanged
    rgba[0, 1] = (0, 0, 0, 0)  # fully transparent black: white
    rgba[1, 0] = (200, 0, 0, 128)  # half: 200 * 128/255 + 255 * 127/255
    out = np.asarray(load_image(encode(Image.fromarray(rgba), "PNG"))).astype(int)
    assert out[0, 0].tolist() == [10, 20, 30] and out[0, 1].tolist() == [255, 255, 255]
    assert np.abs(out[1, 0] - [227, 127, 127]).max() <= 1

    la = np.array([[[50, 255], [50, 0]]], dtype=np.uint8)  # grey + alpha
    out = np.asarray(load_image(encode(Image.fromarray(la), "PNG")))
    assert out[0, 0].tolist() == [50, 50, 50] and out[0, 1].tolist() == [255, 255, 255]


def test_grey_and_palette_images():
    grey = load_image(encode(Image.fromarray(np.array([[0, 100, 255]], dtype=np.uint8)), "PNG"))
    assert np.asarray(grey)[0].tolist() == [[0, 0, 0], [100, 100, 100], [255, 255, 255]]
    pal = Image.fromarray(np.array([[0, 1]], dtype=np.uint8))
    pal.putpalette([1, 2, 3, 200, 100, 50] + [0] * 762)
    assert np.asarray(load_image(encode(pal, "PNG")))[0].tolist() == [[1, 2, 3], [200, 100, 50]]
    pal.info["transparency"] = 1  # index 1 transparent -> white
    assert np.asarray(load_image(encode(pal, "PNG", transparency=1)))[0, 1].tolist() == [255, 255, 255]


def test_exif_orientation_6_is_shown_upright():
    stored = np.zeros((40, 80, 3), dtype=np.uint8)  # stored landscape, 80 wide
    stored[:16, :16] = (255, 0, 0)  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())
    out = np.asarray(load_image(data)).astype(int)
    assert out.shape == (80, 40, 3)  # portrait once upright
    corners = {
        "top_left": out[2, 2],
        "top_right": out[2, -3],
        "bottom_left": out[-3, 2],
        "bottom_right": out[-3, -3],
    }
    reds = [name for name, px in corners.items() if px[0] > 200 and px[1] < 60 and px[2] < 60]
    assert reds == ["top_right"]  # clockwise rotation carries the top-left corner to the top-right


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_files_give_their_first_frame(fmt):
    frames = [Image.new("RGB", (20, 10), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    data = encode(
        frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, lossless=True
    )
    with Image.open(io.BytesIO(data)) as raw:
        assert getattr(raw, "n_frames", 1) == 3
    out = np.asarray(load_image(data))
    assert out.shape == (10, 20, 3) and (np.abs(out.astype(int) - [255, 0, 0]) <= 2).all()


def test_pil_image_input_is_copied_not_consumed():
    pal = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4))
    pal.putpalette(list(range(256)) * 3)
    out = load_image(pal)
    assert out.mode == "RGB" and out is not pal and pal.mode == "P" and pal.getpixel((1, 0)) == 1
    rgb = noise_photo(8, 8)
    before = np.asarray(rgb).copy()
    copy = load_image(rgb)
    copy.putpixel((0, 0), (1, 2, 3))
    assert np.array_equal(np.asarray(rgb), before) and np.asarray(copy)[0, 0].tolist() == [1, 2, 3]


# --- load_image: properties ----------------------------------------------------------------------

_VALID_PREFIXES = [
    b"",
    PNG_SIGNATURE,
    b"\xff\xd8\xff\xe0",
    b"GIF89a",
    b"RIFF\x10\0\0\0WEBPVP8 ",
    b"BM",
    b"II*\0",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.sampled_from(_VALID_PREFIXES), body=st.binary(max_size=600))
def test_random_bytes_only_ever_raise_image_error(prefix, body):
    try:
        image = load_image(prefix + body)
    except ImageError as exc:
        assert str(exc) and "\n" not in str(exc) and "BytesIO" not in str(exc)
    else:
        assert image.mode == "RGB"


_REAL_FILES = {
    fmt: encode(noise_photo(24, 16, seed=3), fmt) for fmt in ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
}


@settings(max_examples=40, deadline=None)
@given(
    fmt=st.sampled_from(sorted(_REAL_FILES)),
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8),
    keep=st.floats(0.05, 1.0),
)
def test_damaged_real_files_only_ever_raise_image_error(fmt, edits, keep):
    data = bytearray(_REAL_FILES[fmt])
    for where, value in edits:
        data[int(where * len(data))] = value
    try:
        image = load_image(bytes(data[: max(1, int(keep * len(data)))]))
    except ImageError:
        return
    assert image.mode == "RGB" and image.size[0] >= 1 and image.size[1] >= 1


def _make_image(mode: str, width: int, height: int, seed: int) -> tuple[bytes, str]:
    rng = np.random.default_rng(seed)
    u8 = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    if mode == "RGB":
        return encode(Image.fromarray(u8[..., :3]), "PNG" if seed % 2 else "JPEG"), mode
    if mode == "RGBA":
        return encode(Image.fromarray(u8), "PNG"), mode
    if mode == "L":
        return encode(Image.fromarray(u8[..., 0]), "PNG"), mode
    if mode == "LA":
        return encode(Image.fromarray(np.ascontiguousarray(u8[..., :2])), "PNG"), mode
    if mode == "P":
        image = Image.fromarray(u8[..., 0])
        image.putpalette(rng.integers(0, 256, 768).tolist())
        return encode(image, "PNG"), mode
    if mode == "I;16":
        return encode(Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16)), "PNG"), mode
    if mode == "CMYK":
        return encode(Image.frombytes("CMYK", (width, height), u8.tobytes()), "JPEG"), mode
    raise AssertionError(mode)


@st.composite
def image_sizes(draw) -> tuple[int, int]:
    width = draw(st.integers(1, 300))
    height = draw(st.integers(max(1, -(-width // 20)), min(300, width * 20)))
    return width, height


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mode=st.sampled_from(["RGB", "RGBA", "L", "LA", "P", "I;16", "CMYK"]),
    size=image_sizes(),
    seed=st.integers(0, 2**16),
)
def test_any_valid_image_loads_and_predicts_at_its_size(bisenet, mode, size, seed):
    width, height = size
    data, _ = _make_image(mode, width, height, seed)
    image = load_image(data)
    assert image.mode == "RGB" and image.size == (width, height)
    pred = predict(*bisenet, image)
    assert pred.train_ids.shape == (height, width) and pred.train_ids.dtype == np.uint8
    assert pred.train_ids.max() <= 18
    assert pred.confidence.shape == (height, width) and pred.confidence.dtype == np.float32


# --- preprocess and predict ----------------------------------------------------------------------


def test_preprocess_resizes_and_normalises():
    flat = Image.new("RGB", (100, 50), (51, 102, 204))
    x = preprocess(flat, (32, 48), mean=[0.1, 0.2, 0.3], std=[0.5, 0.25, 2.0])
    assert x.shape == (1, 3, 32, 48) and x.dtype == torch.float32
    expected = [(0.2 - 0.1) / 0.5, (0.4 - 0.2) / 0.25, (0.8 - 0.3) / 2.0]
    assert torch.allclose(x[0].mean(dim=(1, 2)), torch.tensor(expected), atol=1e-6)
    assert torch.allclose(x, preprocess(np.asarray(flat), [32, 48], [0.1, 0.2, 0.3], [0.5, 0.25, 2.0]))
    with pytest.raises(ValueError, match="std"):
        preprocess(flat, (32, 48), [0, 0, 0], [1, 0, 1])


@pytest.mark.parametrize("exact_max_pixels", [0, 10**9], ids=["cheap", "exact"])
def test_predict_follows_the_picture_at_original_size(colour_model, exact_max_pixels):
    picture, truth = painted(200, 300)
    pred = predict(*colour_model, picture, exact_max_pixels=exact_max_pixels)
    assert isinstance(pred, Prediction) and pred.input_size == (32, 48) and pred.device == "cpu"
    assert pred.train_ids.shape == (200, 300) and pred.seconds > 0
    assert (pred.train_ids == truth).mean() > 0.97
    # Away from the region boundaries (rows 80, cols 200) every pixel must be right.
    interior = np.ones_like(truth, dtype=bool)
    interior[80 - 12 : 80 + 12] = False
    interior[:, 200 - 12 : 200 + 12] = False
    assert np.array_equal(pred.train_ids[interior], truth[interior])
    assert pred.confidence[interior].min() > 0.99
    assert (pred.confidence >= 1 / 19 - 1e-6).all() and (pred.confidence <= 1 + 1e-6).all()


def test_cheap_and_exact_paths_agree(colour_model):
    picture, _ = painted(120, 90)
    blurred = cv2.GaussianBlur(picture, (0, 0), 6)  # soft boundaries: real work for the upsampling
    cheap = predict(*colour_model, blurred, exact_max_pixels=0)
    exact = predict(*colour_model, blurred, exact_max_pixels=10**9)
    assert (cheap.train_ids == exact.train_ids).mean() > 0.95
    assert np.abs(cheap.confidence - exact.confidence).mean() < 0.05


def test_predict_with_a_saved_bisenet_checkpoint(bisenet):
    model, meta = bisenet
    pred = predict(model, meta, noise_photo(90, 70))
    assert pred.input_size == (64, 128) and pred.train_ids.shape == (70, 90)
    assert pred.train_ids.max() <= 18 and 0 < pred.seconds < 30
    tiny = predict(model, meta, np.full((1, 1, 3), 128, dtype=np.uint8))
    assert tiny.train_ids.shape == (1, 1) and tiny.confidence.shape == (1, 1)


def test_predict_many_compares_checkpoints(bisenet, colour_model):
    picture, truth = painted(60, 80)
    preds = predict_many([bisenet, colour_model], Image.fromarray(picture))
    assert [p.input_size for p in preds] == [(64, 128), (32, 48)]
    assert all(p.train_ids.shape == (60, 80) for p in preds)
    assert (preds[1].train_ids == truth).mean() > 0.9


def test_predict_refuses_misuse(colour_model, bisenet):
    model, meta = colour_model
    with pytest.raises(ImageError, match="uint8"):
        predict(model, meta, np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="multiple of 8"):
        predict(bisenet[0], {**bisenet[1], "input_size": [60, 100]}, noise_photo())
    training = ColourModel().train()
    with pytest.raises(ValueError, match="eval"):
        predict(training, meta, noise_photo())


# --- video ---------------------------------------------------------------------------------------


def write_video(path: Path, frames: list[np.ndarray], fourcc: str = "MJPG", fps: float = 10.0) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def read_video(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def test_codec_choice_here():
    assert video_codec(".webm") in {"VP80", "VP90"}
    assert video_codec(".mp4") in {"avc1", "mp4v"}
    assert video_codec(".nope") is None
    if video_codec(".mp4") != "avc1":
        assert browser_video_suffix() == ".webm"


@pytest.mark.parametrize("suffix", [".webm", ".mp4"])
def test_segment_video_writes_every_frame(tmp_path, bisenet, suffix):
    src = tmp_path / "clip.avi"
    write_video(src, [np.asarray(noise_photo(64, 48, seed=i)) for i in range(8)])
    calls = []
    out, count = segment_video(
        src, Segmenter(*bisenet), tmp_path / f"out{suffix}", progress=lambda i, n: calls.append((i, n))
    )
    assert out == tmp_path / f"out{suffix}" and count == 8
    frames = read_video(out)
    assert len(frames) == 8 and all(f.shape == (48, 64, 3) for f in frames)
    assert calls == [(i, 8) for i in range(1, 9)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["clip.avi", f"out{suffix}"])  # no temp left


def test_segment_video_overlays_the_right_colours(tmp_path, colour_model):
    picture, truth = painted(48, 64)
    src = tmp_path / "painted.avi"
    write_video(src, [picture] * 4)
    out, count = segment_video(src, Segmenter(*colour_model), tmp_path / "out.webm", alpha=1.0, max_frames=3)
    assert count == 3
    frames = read_video(out)
    assert len(frames) == 3
    # alpha 1 paints the predicted classes; a colour model sees the painted classes, so the output
    # looks like the input. A BGR/RGB mix-up would turn sky into a brown and car into red.
    for cls in (SKY, VEGETATION, CAR, PERSON):
        inner = cv2.erode((truth == cls).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        mean = frames[1][inner].astype(float).mean(axis=0)
        assert np.abs(mean - PALETTE[cls]).max() < 20, (cls, mean)


def test_segment_video_odd_size_is_trimmed_to_even(tmp_path, colour_model):
    src = tmp_path / "odd.avi"
    write_video(src, [np.asarray(noise_photo(63, 47, seed=i)) for i in range(3)])
    out, count = segment_video(src, Segmenter(*colour_model), tmp_path / "odd.webm")
    frames = read_video(out)
    assert count == 3 and len(frames) == 3 and frames[0].shape == (46, 62, 3)


def test_segment_video_bad_inputs(tmp_path, colour_model):
    fake = tmp_path / "clip.mp4"
    fake.write_text("not a video at all\n" * 50)
    with pytest.raises(ImageError, match="^this is not a video OpenCV can read") as info:
        segment_video(fake, Segmenter(*colour_model), tmp_path / "out.webm")
    assert "clip.mp4" not in str(info.value)  # the caller names the user's file, not the name it was saved as
    empty = tmp_path / "zero.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match=r"^the file is empty \(0 bytes\)$"):
        segment_video(empty, Segmenter(*colour_model), tmp_path / "out.webm")
    with pytest.raises(ImageError, match="does not exist"):
        segment_video(tmp_path / "missing.mp4", Segmenter(*colour_model), tmp_path / "out.webm")
    src = tmp_path / "ok.avi"
    write_video(src, [np.asarray(noise_photo(32, 24))] * 2)
    with pytest.raises(ImageError, match=r"\.xyz"):
        segment_video(src, Segmenter(*colour_model), tmp_path / "out.xyz")
    with pytest.raises(ValueError, match="alpha"):
        segment_video(src, Segmenter(*colour_model), tmp_path / "out.webm", alpha=2)
    assert not (tmp_path / "out.webm").exists()


def test_segment_video_failure_leaves_no_partial_file(tmp_path, colour_model):
    src = tmp_path / "ok.avi"
    write_video(src, [np.asarray(noise_photo(32, 24, seed=i)) for i in range(5)])

    def stop(i: int, n: int) -> None:
        if i == 2:
            raise KeyboardInterrupt  # e.g. the user closed the page

    with pytest.raises(KeyboardInterrupt):
        segment_video(src, Segmenter(*colour_model), tmp_path / "out.webm", progress=stop)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.avi"]


# --- Segmenter: the public entry ------------------------------------------------------------------


def test_segmenter_from_checkpoint_segments_as_predict_does(tmp_path, bisenet):
    model, meta = bisenet
    folder = tmp_path / "ck"
    save_checkpoint(model, folder, meta)
    segmenter = Segmenter.from_checkpoint(folder)
    assert segmenter.input_size == (64, 128) and segmenter.meta["model"] == "bisenet"
    photo = np.asarray(noise_photo(200, 90, seed=3))
    prediction = segmenter.segment(photo)
    expected = predict(model, meta, photo)
    assert prediction.train_ids.shape == (90, 200) and prediction.backend == expected.backend
    assert (prediction.train_ids == expected.train_ids).mean() > 0.999  # the same inference form, same ids
    segmenter.warm_up()  # builds nothing new and changes nothing
    assert np.array_equal(segmenter.segment(photo).train_ids, prediction.train_ids)
    with pytest.raises(CheckpointError, match="does not exist"):
        Segmenter.from_checkpoint(tmp_path / "missing")
