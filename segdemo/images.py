"""Decoding what users upload (bytes, a path, a file object, a PIL image) into an upright 8-bit RGB image.

:func:`load_image` returns a :class:`PIL.Image.Image` or raises :class:`ImageError` with one sentence the
app can show as is. Decisions worth knowing:

* Transparency is composited on **white** (as an image viewer on a white page shows it); the
  colour stored under fully transparent pixels is often garbage and should not reach the model.
* 16-bit images are scaled to 8 bits (``v / 257``, so 65535 -> 255), not clipped.
* Only common photo formats are opened (:data:`ACCEPTED_FORMATS`); PIL's exotic plugins
  (EPS runs Ghostscript, for instance) are never tried on uploads.
* Every size is checked from the header before anything is decoded (:data:`MAX_PIXELS`,
  :data:`MAX_UPLOAD_BYTES`, :data:`MAX_ASPECT_RATIO`).
"""

from __future__ import annotations

import functools
import io
import os
import re
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000
"""Largest image (width x height) that is decoded; checked from the header, before decoding."""
MAX_UPLOAD_BYTES = 50 * 2**20
"""Largest file accepted, in bytes."""
MAX_ASPECT_RATIO = 20.0
"""Long side / short side beyond which an image is refused: squeezed to the model's input size it
would be a few pixels thick and the prediction meaningless."""
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "PPM", "AVIF")
"""PIL format names tried on uploads, where this Pillow build has them (JPEG includes the MPO files
of phone cameras)."""

_MB = 2**20
_INTEGER_16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")


class ImageError(ValueError):
    """An upload that cannot be used; the message is one sentence for the user, no traceback."""


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _mb(n_bytes: int) -> str:
    # Small limits (tests, tight deployments) would all read "0.0 MB"; give bytes there.
    return f"{n_bytes / _MB:.1f} MB" if n_bytes >= _MB // 10 else f"{n_bytes:,} bytes"


def _mp(n_pixels: int) -> str:
    return f"{n_pixels / 1e6:.1f} megapixels" if n_pixels >= 100_000 else f"{n_pixels:,} pixels"


def _too_big(size: int, max_bytes: int) -> ImageError:
    return ImageError(f"the file is {_mb(size)}, the limit is {_mb(max_bytes)}")


def check_dimensions(
    width: int, height: int, max_pixels: int = MAX_PIXELS, max_aspect: float = MAX_ASPECT_RATIO
) -> None:
    """Raise :class:`ImageError` unless ``width x height`` is non-empty, small and not too elongated."""
    if width < 1 or height < 1:
        raise ImageError(f"the image is {width} x {height} pixels, i.e. empty")
    if width * height > max_pixels:
        raise ImageError(
            f"the image is {width} x {height} pixels ({_mp(width * height)}), the limit is "
            f"{_mp(max_pixels)}; scale it down first"
        )
    ratio = max(width, height) / min(width, height)
    if ratio > max_aspect:
        raise ImageError(
            f"the image is {width} x {height} pixels, an aspect ratio of {ratio:.0f}:1; images more "
            f"elongated than {max_aspect:g}:1 cannot be segmented meaningfully, crop it first"
        )


def _read_stream(stream: BinaryIO, max_bytes: int) -> bytes:
    """Read a file object from its current position, refusing more than ``max_bytes``.

    Seekable streams are put back where they were, so a Streamlit upload can be read again.
    """
    seekable = False
    try:
        seekable = bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        pass
    if seekable:
        start = stream.tell()
        size = stream.seek(0, os.SEEK_END) - start
        stream.seek(start)
        if size > max_bytes:
            raise _too_big(size, max_bytes)
        try:
            return stream.read()
        finally:
            stream.seek(start)
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        # Count the rest without keeping it, to give the real size in the message.
        size = len(data)
        while chunk := stream.read(_MB):
            size += len(chunk)
        raise _too_big(size, max_bytes)
    return data


def _read_bytes(source: Any, max_bytes: int) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > max_bytes:
            raise _too_big(len(data), max_bytes)
        return data
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        try:
            if not path.is_file():
                raise ImageError(f"{path.name or path} does not exist or is not a file")
            size = path.stat().st_size
            if size > max_bytes:
                raise _too_big(size, max_bytes)
            return path.read_bytes()  # opens and closes the file; no handle outlives this call
        except OSError as exc:
            raise ImageError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    if hasattr(source, "read"):
        try:
            data = _read_stream(source, max_bytes)
        except OSError as exc:
            raise ImageError(f"cannot read the upload: {exc}") from exc
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError("the upload must be opened in binary mode ('rb'), not as text")
        return bytes(data)
    raise ImageError(f"cannot read an image from a {type(source).__name__}")


@functools.cache
def _available_formats() -> tuple[str, ...]:
    # PIL registers its plugins lazily; init() loads them all so we can see which ones exist
    # (an AVIF-less build would otherwise fail with KeyError inside Image.open).
    Image.init()
    return tuple(f for f in ACCEPTED_FORMATS if f in Image.OPEN)


def _bomb_message(exc: BaseException, max_pixels: int) -> str:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f" ({_mp(int(found.group(1)))})" if found else ""
    return (
        f"the image is too large to decode safely{size}, the limit is {_mp(max_pixels)} (a decompression "
        "bomb?)"
    )


def load_image(
    source: bytes | str | os.PathLike[str] | BinaryIO | Image.Image,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_UPLOAD_BYTES,
    *,
    max_aspect: float = MAX_ASPECT_RATIO,
) -> Image.Image:
    """Decode an upload into an upright 8-bit RGB image, or raise :class:`ImageError`.

    ``source``: raw bytes, a path, a binary file object (read from its current position; left
    open and, if seekable, rewound there) or a PIL image (never closed or modified). Size limits
    are checked before decoding: ``max_bytes`` on the file, ``max_pixels`` and ``max_aspect`` on
    the dimensions in the header. The whole image is then decoded, so truncated files fail here
    and not later. EXIF orientation is applied; animations give their first frame; every colour
    mode is converted as described in :func:`to_rgb`.
    """
    data = None if isinstance(source, Image.Image) else _read_bytes(source, max_bytes)
    if data is not None and not data:
        raise ImageError("the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # PIL only *warns* between 1x and 2x its own pixel limit; treat that as the bomb it is.
            # (catch_warnings is process-wide; at worst another thread briefly shares the filter.)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # PIL warns about damaged metadata (corrupt EXIF, ...); we decode the pixels or raise.
            warnings.simplefilter("ignore", UserWarning)
            if data is None:
                return _finish(source, max_pixels, max_aspect)
            with Image.open(io.BytesIO(data), formats=_available_formats()) as image:
                return _finish(image, max_pixels, max_aspect)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(_bomb_message(exc, max_pixels)) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"this file is not an image PIL can read (accepted formats: {', '.join(_available_formats())})"
        ) from exc
    except Exception as exc:  # PIL decoders raise OSError, SyntaxError, ValueError, struct.error, ...
        raise ImageError(_decode_failure(exc)) from exc


def _decode_failure(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
    # PIL messages may name "<_io.BytesIO object at 0x...>"; the user never saw that object.
    text = re.sub(r"<[^<>]*>", "the file", text)[:160]
    if "truncated" in text.lower() or isinstance(exc, EOFError):
        return "the image file is truncated (an incomplete download or copy?); it cannot be decoded"
    return f"the image could not be decoded ({text}); the file may be damaged"


def _finish(image: Image.Image, max_pixels: int, max_aspect: float) -> Image.Image:
    """Check the header size, decode frame 0, turn upright, convert to RGB: a new, detached image."""
    check_dimensions(*image.size, max_pixels=max_pixels, max_aspect=max_aspect)
    try:
        image.load()  # full decode: truncation and decoder errors surface now, not in the app
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise
    except Exception as exc:
        raise ImageError(_decode_failure(exc)) from exc
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - PIL's EXIF parser fails in many ways, none of them fatal
        # Broken EXIF is metadata damage, not image damage: keep the pixels as stored.
        upright = image
    return to_rgb(upright)


def to_rgb(image: Image.Image) -> Image.Image:
    """A new 8-bit RGB copy of ``image``, whatever its mode.

    * ``I;16*`` (16-bit grey) -> ``v / 257`` rounded, so the full 16-bit range maps to 0..255.
    * ``I`` (32-bit int): the same if all values lie in 0..65535 (16-bit data), else min..max stretch.
    * ``F`` (float): min..max stretch (NaN -> black).
    * Alpha (RGBA, LA, PA, P/L/RGB with a transparency key): composited on white.
    * Everything else (L, 1, P, CMYK, YCbCr, HSV, ...) via PIL's own conversion.
    """
    mode = image.mode
    if mode in _INTEGER_16_MODES or mode in ("I", "F"):
        values = np.asarray(image).astype(np.float32)  # float32: exact for 16-bit values, half of float64
        if mode in _INTEGER_16_MODES or (
            mode == "I" and values.size and 0 <= values.min() and values.max() <= 65535
        ):
            grey = values / 257.0
        else:
            values = np.where(np.isfinite(values), values, np.nan)
            lo, hi = (np.nanmin(values), np.nanmax(values)) if np.isfinite(values).any() else (0.0, 0.0)
            grey = (values - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(values)
            grey = np.nan_to_num(grey, nan=0.0)
        grey8 = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(grey8[:, :, None], 3, axis=2))
    try:
        if mode in _ALPHA_MODES or "transparency" in image.info:
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return image.convert("RGB")  # a copy even when already RGB, so the caller's image is untouched
    except ValueError as exc:  # e.g. "conversion from LAB to RGB not supported"
        raise ImageError(f"images in colour mode {mode} are not supported ({exc})") from exc


def rgb_image(image: Image.Image | np.ndarray) -> Image.Image:
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else to_rgb(image)
    array = np.asarray(image)
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))):
        raise ImageError(
            f"expected an H x W (x 3) uint8 RGB image, got an array of {array.dtype} with shape {array.shape}"
        )
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageError(f"the image is {array.shape[1]} x {array.shape[0]} pixels, i.e. empty")
    return to_rgb(Image.fromarray(np.ascontiguousarray(array)))
