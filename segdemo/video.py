"""Segmenting a video: the overlay of every frame's prediction, written to a file the browser can play.

This OpenCV build (opencv-python-headless, FFmpeg without libx264) has **no H.264 encoder**, so ``.mp4``
falls back to MPEG-4 Part 2 ("mp4v"), which browsers do not play. Write ``.webm`` (VP8, "VP80") for a
video the browser can show; :func:`browser_video_suffix` says which.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from segdemo.files import atomic_write
from segdemo.images import MAX_PIXELS, ImageError, check_dimensions
from segdemo.inference import Segmenter
from segdemo.viz import overlay

_VIDEO_CODECS = {
    # Tried in order. avc1 (H.264) plays everywhere but needs an encoder this build lacks;
    # mp4v always works but browsers do not play it; VP8/VP9 in WebM work here and in browsers.
    ".mp4": ("avc1", "mp4v"),
    ".webm": ("VP80", "VP90"),
    ".avi": ("MJPG",),
}


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
    segmenter: Segmenter,
    out_path: str | os.PathLike[str],
    alpha: float = 0.5,
    max_frames: int | None = None,
    progress: Callable[[int, int], None] | None = None,
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
            segmenter,
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
    segmenter: Segmenter,
    out_path: Path,
    encoding: tuple[str, float, tuple[int, int]],
    alpha: float,
    max_frames: int | None,
    reporting: tuple[int, Callable[[int, int], None] | None],
) -> int:
    """Predict, overlay and encode frames from ``frame`` on, into a temporary file renamed when complete."""
    fourcc, fps, (out_w, out_h) = encoding
    total, progress = reporting
    in_h, in_w = frame.shape[:2]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    count = 0

    def encode(tmp: str) -> None:
        nonlocal frame, count
        writer = cv2.VideoWriter(tmp, cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), fps, (out_w, out_h))
        try:
            if not writer.isOpened():
                raise ImageError(f"cannot open {out_path.name} for writing with the {fourcc} codec")
            ok = True
            while ok and frame is not None and (max_frames is None or count < max_frames):
                if frame.shape[:2] != (in_h, in_w):  # a stream that changes size mid-way: keep the first size
                    frame = cv2.resize(frame, (in_w, in_h), interpolation=cv2.INTER_AREA)
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                pred = segmenter.segment(rgb)
                blended = overlay(rgb, pred.train_ids, alpha)[:out_h, :out_w]
                writer.write(cv2.cvtColor(blended, cv2.COLOR_RGB2BGR))
                count += 1
                if progress is not None:
                    progress(count, total)
                ok, frame = capture.read()
        finally:
            writer.release()

    # the writer picks the container from the temporary name's suffix, which is the target's
    atomic_write(out_path, encode, durable=False)
    return count
