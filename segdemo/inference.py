"""Everything between an uploaded file and a label map: decoding, prediction, video.

* :func:`load_image` turns whatever the user uploads (bytes, a path, a file object, a PIL image)
  into an upright 8-bit RGB :class:`PIL.Image.Image`, or raises :class:`ImageError` with one
  sentence the app can show as is.
* :func:`predict` / :func:`predict_many` run checkpoints (from :func:`segdemo.checkpoints.load_model`)
  and return a :class:`Prediction` at the original image size.
* :func:`segment_video` overlays the prediction on every frame of a video.

Decisions worth knowing:

* Transparency is composited on **white** (as an image viewer on a white page shows it); the
  colour stored under fully transparent pixels is often garbage and should not reach the model.
* 16-bit images are scaled to 8 bits (``v / 257``, so 65535 -> 255), not clipped.
* Only common photo formats are opened (:data:`ACCEPTED_FORMATS`); PIL's exotic plugins
  (EPS runs Ghostscript, for instance) are never tried on uploads.
* Videos: this OpenCV build (opencv-python-headless, FFmpeg without libx264) has **no H.264
  encoder**, so ``.mp4`` falls back to MPEG-4 Part 2 ("mp4v"), which browsers do not play. Write
  ``.webm`` (VP8, "VP80") for a video the browser can show; :func:`browser_video_suffix` says which.
"""

from __future__ import annotations

import functools
import io
import math
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn

from segdemo.models.fast import runner_for
from segdemo.viz import overlay

__all__ = [
    "ACCEPTED_FORMATS",
    "EXACT_UPSAMPLE_MAX_PIXELS",
    "MAX_ASPECT_RATIO",
    "MAX_PIXELS",
    "MAX_UPLOAD_BYTES",
    "ImageError",
    "Prediction",
    "browser_video_suffix",
    "check_dimensions",
    "load_image",
    "predict",
    "predict_many",
    "preprocess",
    "segment_video",
    "to_rgb",
    "video_codec",
]

MAX_PIXELS = 40_000_000
"""Largest image (width x height) that is decoded; checked from the header, before decoding."""
MAX_UPLOAD_BYTES = 50 * 2**20
"""Largest file accepted, in bytes."""
MAX_ASPECT_RATIO = 20.0
"""Long side / short side beyond which an image is refused: squeezed to the model's input size it
would be a few pixels thick and the prediction meaningless."""
EXACT_UPSAMPLE_MAX_PIXELS = 2**19
"""Up to this many original pixels (0.5 MP, e.g. 1024 x 512) the logits are upsampled before the
argmax (exact); above it only the class map and confidence are (see :func:`predict`). Measured on
2 CPU cores, 2048 x 1024 photo, BiSeNet at 128 x 256: 0.78 s exact vs 0.13 s cheap, 99.7 % equal labels."""
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "PPM", "AVIF")
"""PIL format names tried on uploads, where this Pillow build has them (JPEG includes the MPO files
of phone cameras)."""

_MB = 2**20
_INTEGER_16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
_VIDEO_CODECS = {
    # Tried in order. avc1 (H.264) plays everywhere but needs an encoder this build lacks;
    # mp4v always works but browsers do not play it; VP8/VP9 in WebM work here and in browsers.
    ".mp4": ("avc1", "mp4v"),
    ".webm": ("VP80", "VP90"),
    ".avi": ("MJPG",),
}


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
            f"the image is {width} x {height} pixels ({_mp(width * height)}), "
            f"the limit is {_mp(max_pixels)}; scale it down first"
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
        f"the image is too large to decode safely{size}, the limit is {_mp(max_pixels)} "
        "(a decompression bomb?)"
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


# ---------------------------------------------------------------------------------------------
# Prediction
# ---------------------------------------------------------------------------------------------


@dataclass
class Prediction:
    """One model's answer for one image, at the image's original size."""

    train_ids: np.ndarray
    """H x W uint8 trainIds 0-18."""
    confidence: np.ndarray
    """H x W float32, the largest softmax probability of each pixel (1/19 .. 1)."""
    seconds: float
    """Wall time of :func:`predict`: preprocessing, forward pass and postprocessing."""
    input_size: tuple[int, int]
    """(H, W) the model ran at."""
    device: str = "cpu"
    """Where the forward pass ran."""
    backend: str = "plain"
    """What ran the network (see :data:`segdemo.models.fast.BACKENDS`): "onnxruntime", "eager" or "plain"."""


def _rgb_pil(image: Image.Image | np.ndarray) -> Image.Image:
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


def _input_size(value: Any) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"input_size must be [height, width], got {value!r}") from exc
    if height < 1 or width < 1:
        raise ValueError(f"input_size must be positive, got {value!r}")
    return height, width


def preprocess(
    image: Image.Image | np.ndarray, input_size: Sequence[int], mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """``1 x 3 x H x W`` float32 tensor: resized to ``input_size`` = (H, W), ``(x/255 - mean) / std``.

    Resizing uses Pillow's bilinear filter (antialiased when shrinking), as the training data
    pipeline does, so the model sees images like those it was trained on.
    """
    height, width = _input_size(input_size)
    if len(mean) != 3 or len(std) != 3 or any(float(s) == 0 for s in std):
        raise ValueError(f"mean and std must be 3 numbers each (std non-zero), got {mean!r} / {std!r}")
    rgb = _rgb_pil(image)
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1) / 255.0
    mean_t = torch.tensor([float(m) for m in mean], dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor([float(s) for s in std], dtype=torch.float32).view(3, 1, 1)
    return ((x - mean_t) / std_t).unsqueeze(0).contiguous()


def _model_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        device = torch.device(device)
        model.to(device)  # in place; a no-op when the model is already there
        return device
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _labels_at_size(
    logits: torch.Tensor, size: tuple[int, int], exact_max_pixels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(class map uint8, max softmax probability float32), both ``size``, from ``1 x C x h x w`` logits."""
    height, width = size
    exact = tuple(logits.shape[-2:]) != size and height * width <= exact_max_pixels
    if exact:
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    top, ids = logits.max(dim=1)
    # max softmax = exp(0) / sum(exp(l - max)); avoids materialising the full softmax.
    confidence = 1.0 / torch.exp(logits - top.unsqueeze(1)).sum(dim=1)
    if tuple(ids.shape[-2:]) != size:
        # Cheap path: only 1 + 1 channels are resized instead of C. Nearest keeps class ids valid
        # (never a blend of two ids); boundaries get the model-resolution staircase, whose steps
        # are as wide as the ratio of the two sizes. Resized as uint8, a quarter of float32.
        ids = F.interpolate(ids.unsqueeze(1).to(torch.uint8), size=size, mode="nearest-exact").squeeze(1)
        confidence = F.interpolate(confidence.unsqueeze(1), size=size, mode="bilinear", align_corners=False)
        confidence = confidence.squeeze(1)
    return ids[0].to(torch.uint8), confidence[0].to(torch.float32)


def predict(
    model: nn.Module,
    meta: Mapping[str, Any],
    image: Image.Image | np.ndarray,
    device: str | torch.device | None = None,
    *,
    exact_max_pixels: int = EXACT_UPSAMPLE_MAX_PIXELS,
    backend: str = "auto",
) -> Prediction:
    """Segment one image with a model in eval mode and its checkpoint metadata.

    The image (PIL in any mode, or an ``H x W x 3`` uint8 RGB array) is resized to
    ``meta["input_size"]``, normalised with ``meta["mean"]``/``meta["std"]`` and run under
    ``torch.inference_mode``. Back at the original size:

    * up to ``exact_max_pixels`` original pixels the logits are upsampled bilinearly and then
      arg-maxed (exact);
    * above that, a C-channel full-resolution tensor (19 x 4 bytes per pixel, 3 GB at 40 MP) is
      too costly, so argmax and max probability are taken at model resolution and only those are
      resized: the class map with nearest neighbour, the confidence bilinearly.

    ``device``: where to run; ``None`` = where the model's weights are. Passing a device moves
    the model there (in place).

    ``backend``: how the network runs (:func:`segdemo.models.fast.runner_for`). The default
    ``"auto"`` runs BiSeNet and DeepLabV2 in their exact inference form (BN folded, BiSeNet's
    classifier at 1/8 resolution), in ONNX Runtime on the CPU: the same logits within 1e-3, about 3x
    faster on the CPU. The first call per model and input size builds that form (about a second
    for BiSeNet, a few for DeepLabV2); ``"plain"`` runs ``model`` itself; ``"bfloat16"`` is a faster
    approximate form, opt-in (its mIoU change is in ``docs/benchmarks.md``).
    """
    start = time.perf_counter()
    if model.training:
        raise ValueError("the model is in training mode; call model.eval() first (load_model does)")
    rgb = _rgb_pil(image)
    width, height = rgb.size
    input_size = _input_size(meta["input_size"])
    if meta.get("model") == "bisenet" and (input_size[0] % 8 or input_size[1] % 8):
        raise ValueError(
            f"BiSeNet needs an input size that is a multiple of 8, the checkpoint says {input_size}"
        )
    dev = _model_device(model, device)
    runner, used = runner_for(model, input_size, dev, backend)
    x = preprocess(rgb, input_size, meta["mean"], meta["std"]).to(dev)
    with torch.inference_mode():
        out = runner(x)
        logits = (out[0] if isinstance(out, (tuple, list)) else out).float()
        ids, confidence = _labels_at_size(logits, (height, width), exact_max_pixels)
        train_ids = ids.cpu().numpy()  # .cpu() also waits for the GPU, so the timing is honest
        conf = confidence.cpu().numpy()
    return Prediction(
        train_ids=train_ids,
        confidence=conf,
        seconds=time.perf_counter() - start,
        input_size=input_size,
        device=str(dev),
        backend=used,
    )


def predict_many(
    models_with_meta: Sequence[tuple[nn.Module, Mapping[str, Any]]],
    image: Image.Image | np.ndarray,
    device: str | torch.device | None = None,
    backend: str = "auto",
) -> list[Prediction]:
    """:func:`predict` with each ``(model, meta)`` on the same image, in order (for side-by-side views)."""
    rgb = _rgb_pil(image)  # convert once, not once per model
    return [predict(model, meta, rgb, device, backend=backend) for model, meta in models_with_meta]


# ---------------------------------------------------------------------------------------------
# Video
# ---------------------------------------------------------------------------------------------


def _codec_works(fourcc: str, suffix: str) -> bool:
    """Write one frame with ``fourcc`` into a throw-away ``suffix`` file and see if it appears."""
    logging = cv2.utils.logging
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"probe{suffix}"
        level = logging.getLogLevel()
        # A missing encoder makes OpenCV log errors; the probe expects some to fail. (FFmpeg's own
        # "[h264_v4l2m2m] Could not find a valid device" lines bypass this and print once per process.)
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)
        try:
            writer = cv2.VideoWriter(
                str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), 10.0, (16, 16)
            )
            try:
                if not writer.isOpened():
                    return False
                writer.write(np.zeros((16, 16, 3), dtype=np.uint8))
            finally:
                writer.release()
        finally:
            logging.setLogLevel(level)
        return path.is_file() and path.stat().st_size > 0


@functools.cache
def video_codec(suffix: str) -> str | None:
    """The first FourCC that can write ``suffix`` (".mp4", ".webm", ".avi") here, or ``None``.

    Probed once per suffix by writing a tiny file. In this environment: ".mp4" -> "mp4v" (no
    H.264 encoder), ".webm" -> "VP80", ".avi" -> "MJPG".
    """
    for fourcc in _VIDEO_CODECS.get(suffix.lower(), ()):
        if _codec_works(fourcc, suffix.lower()):
            return fourcc
    return None


def browser_video_suffix() -> str:
    """The container to write for playback in a browser: ".mp4" with H.264 if available, else ".webm"."""
    if video_codec(".mp4") == "avc1":
        return ".mp4"
    return ".webm" if video_codec(".webm") else ".mp4"


def segment_video(
    in_path: str | os.PathLike[str],
    model: nn.Module,
    meta: Mapping[str, Any],
    out_path: str | os.PathLike[str],
    alpha: float = 0.5,
    max_frames: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    device: str | torch.device | None = None,
    max_pixels: int = MAX_PIXELS,
) -> tuple[Path, int]:
    """Segment every frame of a video and write the overlays (see :func:`segdemo.viz.overlay`).

    The codec follows ``out_path``'s suffix (:func:`video_codec`): use ".webm" for browsers.
    The output keeps the frame rate (25 fps if the file does not say) and the frame size, trimmed
    to even width and height because the 4:2:0 encoders need them. ``progress(i, n)`` is called
    after frame ``i`` (1-based) of ``n`` (the container's frame count capped by ``max_frames``;
    0 when unknown). The file is written under a temporary name and renamed when complete.

    Returns ``(out_path, number of frames written)``. An unreadable video raises :class:`ImageError`.
    """
    in_path, out_path = Path(in_path), Path(out_path)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be at least 1 (or None for all), got {max_frames}")
    # The messages name no file: the caller names the user's file (a page saves an upload under its own name).
    if not in_path.is_file():
        raise ImageError("the video does not exist")
    if in_path.stat().st_size == 0:
        raise ImageError("the file is empty (0 bytes)")
    fourcc = video_codec(out_path.suffix)
    if fourcc is None:
        known = ", ".join(s for s in _VIDEO_CODECS if video_codec(s))
        raise ImageError(
            f"cannot write {out_path.suffix or 'files without a suffix'} videos here; use one of {known}"
        )

    capture = cv2.VideoCapture(str(in_path), cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            raise ImageError("this is not a video OpenCV can read (mp4, webm, avi, mov, mkv)")
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if math.isfinite(fps) and 0 < fps <= 1000 else 25.0
        total = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
        if max_frames is not None:
            total = min(total, max_frames) if total else max_frames
        ok, frame = capture.read()
        if not ok or frame is None:
            raise ImageError("the video has no frame OpenCV can decode (damaged, or an unsupported codec)")
        height, width = frame.shape[:2]
        check_dimensions(width, height, max_pixels=max_pixels)
        out_w, out_h = width - width % 2, height - height % 2
        if out_w < 2 or out_h < 2:
            raise ImageError(f"the video frames are {width} x {height} pixels, too small to encode")
        count = _write_overlays(
            capture,
            frame,
            (model, meta, device),
            out_path,
            (fourcc, fps, (out_w, out_h)),
            alpha,
            max_frames,
            (total, progress),
        )
        return out_path, count
    finally:
        capture.release()


def _write_overlays(
    capture: cv2.VideoCapture,
    frame: np.ndarray,
    runner: tuple[nn.Module, Mapping[str, Any], str | torch.device | None],
    out_path: Path,
    encoding: tuple[str, float, tuple[int, int]],
    alpha: float,
    max_frames: int | None,
    reporting: tuple[int, Callable[[int, int], None] | None],
) -> int:
    """Predict, overlay and encode frames from ``frame`` on; write to a temporary file, then rename."""
    model, meta, device = runner
    fourcc, fps, (out_w, out_h) = encoding
    total, progress = reporting
    in_h, in_w = frame.shape[:2]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.stem}.", suffix=out_path.suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    writer = cv2.VideoWriter(str(tmp), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), fps, (out_w, out_h))
    count = 0
    try:
        if not writer.isOpened():
            raise ImageError(f"cannot open {out_path.name} for writing with the {fourcc} codec")
        ok = True
        while ok and frame is not None and (max_frames is None or count < max_frames):
            if frame.shape[:2] != (in_h, in_w):  # a stream that changes size mid-way: keep the first size
                frame = cv2.resize(frame, (in_w, in_h), interpolation=cv2.INTER_AREA)
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            pred = predict(model, meta, rgb, device)
            blended = overlay(rgb, pred.train_ids, alpha)[:out_h, :out_w]
            writer.write(cv2.cvtColor(blended, cv2.COLOR_RGB2BGR))
            count += 1
            if progress is not None:
                progress(count, total)
            ok, frame = capture.read()
        writer.release()
        os.replace(tmp, out_path)
    except BaseException:
        writer.release()
        tmp.unlink(missing_ok=True)
        raise
    return count
