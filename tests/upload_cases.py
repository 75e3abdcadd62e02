"""The awkward uploads of issue 6, as bytes, with what a user must see for each.

Shared by the CLI tests (``tests/test_uploads.py``) and the app tests (``tests/test_app_uploads.py``), so
both front ends are held to the same catalogue. Every picture is small: the model runs on the usable ones.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

OVER_LIMIT_BYTES = 3 * 2**19  # 1.5 MB: over a configured limit of 1 MB


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes
    mime: str
    error: str | None = None
    """A regular expression the message must match; None: the image is usable."""
    size: tuple[int, int] | None = None
    """(width, height) of the usable image, upright."""
    top_right_red: bool = False
    """The upright picture has a red block at its top right (EXIF rotation applied), elsewhere not."""


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` RGB pixels but that holds no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def photo(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _rotated_jpeg() -> bytes:
    """Stored 80 x 40 with a red block at the stored top left; EXIF orientation 6 (turn 90 degrees
    clockwise)."""
    stored = np.full((40, 80, 3), 90, dtype=np.uint8)
    stored[:16, :16] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (20, 10), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _palette_png() -> bytes:
    image = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8) % 4)
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 250, 250, 250] + [0] * 756)
    return encode(image, "PNG")


def uploads() -> list[Upload]:
    png = encode(photo(), "PNG")
    jpeg = encode(photo(), "JPEG", quality=90)
    gradient = (np.arange(24 * 32, dtype=np.uint32).reshape(24, 32) * 85).astype(np.uint16)  # 0 .. 65195
    rgba = np.dstack([np.asarray(photo(30, 20)), np.tile(np.arange(30, dtype=np.uint8) * 8, (20, 1))])
    return [
        Upload("empty.png", b"", "image/png", error=r"the file is empty \(0 bytes\)"),
        Upload(
            "notes.png",
            b"these are my notes, not a picture\n" * 20,
            "image/png",
            error="this file is not an image PIL can read",
        ),
        Upload("cut.png", png[: len(png) // 2], "image/png", error="the image file is truncated"),
        Upload("cut.jpg", jpeg[: len(jpeg) // 2], "image/jpeg", error="the image file is truncated"),
        Upload(
            "bomb.png",
            png_header_only(30000, 30000),
            "image/png",
            error=r"too large to decode safely \(900\.0 megapixels\).*decompression bomb",
        ),
        Upload(
            "strip.png",
            encode(Image.new("RGB", (20000, 100), (80, 80, 80)), "PNG"),
            "image/png",
            error=r"20000 x 100 pixels, an aspect ratio of 200:1",
        ),
        Upload(
            "oversized.png",
            png + b"\0" * (OVER_LIMIT_BYTES - len(png)),
            "image/png",
            error=r"the file is 1\.5 MB, the limit is 1\.0 MB",
        ),
        Upload("deep.png", encode(Image.fromarray(gradient), "PNG"), "image/png", size=(32, 24)),
        Upload("cmyk.jpg", encode(photo(40, 30).convert("CMYK"), "JPEG"), "image/jpeg", size=(40, 30)),
        Upload("rgba.png", encode(Image.fromarray(rgba, "RGBA"), "PNG"), "image/png", size=(30, 20)),
        Upload("grey.png", encode(photo(36, 18).convert("L"), "PNG"), "image/png", size=(36, 18)),
        Upload("palette.png", _palette_png(), "image/png", size=(8, 6)),
        Upload("rotated.jpg", _rotated_jpeg(), "image/jpeg", size=(40, 80), top_right_red=True),
        Upload("one.png", encode(Image.new("RGB", (1, 1), (9, 8, 7)), "PNG"), "image/png", size=(1, 1)),
        Upload("animated.gif", _animated_gif(), "image/gif", size=(20, 10)),
    ]


def red_corners(picture: np.ndarray) -> list[str]:
    """Which corners of an RGB picture are red (for the EXIF case)."""
    corners = {
        "top_left": picture[2, 2],
        "top_right": picture[2, -3],
        "bottom_left": picture[-3, 2],
        "bottom_right": picture[-3, -3],
    }
    return [name for name, px in corners.items() if px[0] > 200 and px[1] < 60 and px[2] < 60]
