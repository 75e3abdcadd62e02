"""Pictures for the app: overlays, legends, disagreement maps, Fourier spectra, PNG export.

Pure numpy / Pillow / OpenCV, no Streamlit, so every picture the app shows can be tested pixel by
pixel. Images are ``H x W x 3`` uint8 RGB arrays; label maps are ``H x W`` trainId arrays
(0-18 = the Cityscapes classes, 255 = ignore / unlabelled).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from segdemo.files import PNG_COMPRESS_LEVEL
from segdemo.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, PALETTE

__all__ = [
    "DISAGREEMENT_COLOR",
    "WINDOW_COLOR",
    "disagreement",
    "disagreement_image",
    "label_png_bytes",
    "legend",
    "overlay",
    "side_by_side",
    "spectrum_image",
    "to_png_bytes",
    "written_by_segdemo",
]

OVERLAY_ALPHA = 0.55
"""The default opacity of a label overlay (app pages, ``segdemo.segment``)."""

DISAGREEMENT_COLOR = (255, 0, 255)
"""Magenta: absent from the Cityscapes palette, so it never reads as a class."""
WINDOW_COLOR = (255, 0, 0)
"""Red: contrasts with every colour of the viridis map (dark blue ... yellow)."""


def _rgb_image(image: Any, name: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be an H x W x 3 uint8 RGB array, got {image.dtype} {image.shape}")
    return image


def _label_map(train_ids: Any, shape: tuple[int, ...] | None = None, name: str = "train_ids") -> np.ndarray:
    train_ids = np.asarray(train_ids)
    if train_ids.ndim != 2 or not np.issubdtype(train_ids.dtype, np.integer):
        raise ValueError(f"{name} must be an H x W integer array, got {train_ids.dtype} {train_ids.shape}")
    if shape is not None and train_ids.shape != shape:
        raise ValueError(
            f"{name} is {train_ids.shape[0]} x {train_ids.shape[1]} but the image is {shape[0]} x {shape[1]}"
        )
    return train_ids


def _class_mask(train_ids: np.ndarray) -> np.ndarray:
    """Pixels holding one of the 19 classes (ignore and any other value are 'unlabelled')."""
    return (train_ids >= 0) & (train_ids < NUM_CLASSES)


def overlay(image: np.ndarray, train_ids: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the class colours over the photo: ``(1 - alpha) * photo + alpha * colour``.

    Pixels that hold no class (255 or anything outside 0-18) keep the photo exactly. ``alpha`` 0
    returns the photo, 1 the pure palette colours on labelled pixels. Returns a new uint8 array.
    """
    image = _rgb_image(image)
    train_ids = _label_map(train_ids, image.shape[:2])
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    out = image.copy()
    mask = _class_mask(train_ids)
    photo = image[mask].astype(np.float32)
    colour = PALETTE[train_ids[mask].astype(np.intp)].astype(np.float32)
    out[mask] = np.clip(np.rint((1.0 - alpha) * photo + alpha * colour), 0, 255).astype(np.uint8)
    return out


def legend(train_ids: np.ndarray) -> list[dict[str, Any]]:
    """The classes present in a label map, largest first.

    Each entry: ``name``, ``train_id``, ``color`` ("#rrggbb") and ``share`` = its pixels / *all*
    pixels. Ignore pixels get no entry but count in the total, so the shares sum to
    ``1 - (ignore fraction)``. Ties are broken by trainId so the order is deterministic.
    """
    train_ids = _label_map(train_ids)
    total = train_ids.size
    if total == 0:
        return []
    labelled = train_ids[_class_mask(train_ids)].astype(np.intp)
    counts = np.bincount(labelled, minlength=NUM_CLASSES)
    present = [int(c) for c in np.flatnonzero(counts)]
    present.sort(key=lambda c: (-counts[c], c))
    return [
        {
            "name": CLASS_NAMES[c],
            "train_id": c,
            "color": "#{:02x}{:02x}{:02x}".format(*(int(v) for v in PALETTE[c])),
            "share": float(counts[c]) / total,
        }
        for c in present
    ]


def disagreement(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """Where two label maps differ: ``(H x W bool mask, fraction of pixels that differ)``."""
    a = _label_map(a, name="a")
    b = _label_map(b, a.shape, name="b")
    mask = a != b
    return mask, float(mask.mean()) if mask.size else 0.0


def disagreement_image(
    image: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    darken: float = 0.35,
    color: tuple[int, int, int] = DISAGREEMENT_COLOR,
) -> np.ndarray:
    """The photo darkened to ``darken`` of its brightness, pixels where ``a != b`` painted ``color``."""
    image = _rgb_image(image)
    mask, _ = disagreement(_label_map(a, image.shape[:2], "a"), _label_map(b, image.shape[:2], "b"))
    if not 0.0 <= darken <= 1.0:
        raise ValueError(f"darken must be in [0, 1], got {darken!r}")
    out = np.rint(image.astype(np.float32) * darken).astype(np.uint8)
    out[mask] = np.asarray(color, dtype=np.uint8)
    return out


RIGHT_COLOR, WRONG_COLOR, IGNORED_COLOR = (40, 170, 70), (220, 40, 40), (40, 40, 40)
"""The error map's colours: the prediction is right, wrong, or the label says ignore (not scored)."""
ONLY_A_COLOR, ONLY_B_COLOR = (40, 120, 230), (240, 160, 20)
"""Where only checkpoint A (blue) or only checkpoint B (orange) is right."""


def error_map(prediction: np.ndarray, label: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8: green where ``prediction`` equals the label, red where not, dark grey where the label
    is ignore (255)."""
    label = _label_map(label, name="label")
    prediction = _label_map(prediction, label.shape, "prediction")
    out = np.empty((*label.shape, 3), np.uint8)
    out[...] = np.where((prediction == label)[..., None], RIGHT_COLOR, WRONG_COLOR)
    out[label == IGNORE_INDEX] = IGNORED_COLOR
    return out


def comparison_map(a: np.ndarray, b: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Where one prediction is right and the other wrong: ``(H x W x 3 uint8, share only A is right, share
    only B is right)``, shares of the scored pixels. Blue: only A; orange: only B; grey: both right or
    both wrong; dark: ignore."""
    label = _label_map(label, name="label")
    right_a = _label_map(a, label.shape, "a") == label
    right_b = _label_map(b, label.shape, "b") == label
    scored = label != IGNORE_INDEX
    out = np.full((*label.shape, 3), 128, np.uint8)
    out[right_a & ~right_b] = ONLY_A_COLOR
    out[right_b & ~right_a] = ONLY_B_COLOR
    out[~scored] = IGNORED_COLOR
    n = max(int(scored.sum()), 1)
    return out, float((right_a & ~right_b & scored).sum()) / n, float((right_b & ~right_a & scored).sum()) / n


def viridis_image(values: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 of an H x W map of values in [0, 1] (clipped): viridis, 0 dark blue, 1 yellow."""
    import cv2

    grey = np.clip(np.rint(np.asarray(values, np.float32) * 255.0), 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)


def confidence_image(confidence: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 of a confidence map (max softmax, 1/19 .. 1): dark = unsure, bright = sure
    (viridis)."""
    return viridis_image((np.asarray(confidence, np.float32) - 1 / 19) / (1 - 1 / 19))


def split_view(before: np.ndarray, after: np.ndarray, fraction: float, line: int = 2) -> np.ndarray:
    """``before`` left of a vertical line at ``fraction`` of the width, ``after`` right of it (a before/after
    slider's picture); the line is white."""
    before, after = _rgb_image(before, "before"), _rgb_image(after, "after")
    if before.shape != after.shape:
        raise ValueError(f"before is {before.shape} but after is {after.shape}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    cut = round(before.shape[1] * fraction)
    out = after.copy()
    out[:, :cut] = before[:, :cut]
    out[:, max(cut - line // 2, 0) : cut + (line + 1) // 2] = 255
    return out


def spectrum_image(
    log_amplitude: np.ndarray,
    window: Sequence[int] | None = None,
    thickness: int = 1,
    colormap: int = cv2.COLORMAP_VIRIDIS,
) -> np.ndarray:
    """A log-amplitude spectrum (H x W float, e.g. from :func:`segdemo.fda.amplitude_spectra`) as RGB.

    Values are stretched linearly from their min..max to 0..255 (a constant input gives the lowest
    colour) and coloured with a perceptually uniform map (viridis by default). ``window`` =
    ``(top, left, bottom, right)``, bottom/right exclusive, is outlined in :data:`WINDOW_COLOR` by a
    ring ``thickness`` pixels wide drawn just *outside* the window, so the swapped frequencies
    themselves stay visible even when the window is a single pixel. An empty window draws nothing.
    """
    spec = np.asarray(log_amplitude, dtype=np.float64)
    if spec.ndim != 2 or spec.size == 0:
        raise ValueError(f"log_amplitude must be a non-empty H x W array, got shape {spec.shape}")
    finite = np.isfinite(spec)
    if not finite.all():
        # NaN/inf (e.g. log of an exact zero) would poison the stretch; show them as the minimum.
        spec = np.where(finite, spec, np.min(spec[finite]) if finite.any() else 0.0)
    lo, hi = float(spec.min()), float(spec.max())
    scaled = (spec - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(spec)
    grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    out = cv2.cvtColor(cv2.applyColorMap(grey, colormap), cv2.COLOR_BGR2RGB)
    if window is not None:
        _draw_ring(out, window, thickness)
    return out


def _draw_ring(out: np.ndarray, window: Sequence[int], thickness: int) -> None:
    if len(window) != 4:
        raise ValueError(f"window must be (top, left, bottom, right), got {window!r}")
    if thickness < 1:
        raise ValueError(f"thickness must be at least 1, got {thickness}")
    top, left, bottom, right = (int(v) for v in window)
    if bottom <= top or right <= left:
        return
    height, width = out.shape[:2]
    ring = np.zeros((height, width), dtype=bool)
    # Outer box clipped to the image, then the window itself cut out again.
    outer_rows = slice(max(top - thickness, 0), max(min(bottom + thickness, height), 0))
    outer_cols = slice(max(left - thickness, 0), max(min(right + thickness, width), 0))
    ring[outer_rows, outer_cols] = True
    ring[max(top, 0) : max(min(bottom, height), 0), max(left, 0) : max(min(right, width), 0)] = False
    out[ring] = np.asarray(WINDOW_COLOR, dtype=np.uint8)


def to_png_bytes(array: np.ndarray) -> bytes:
    """Encode an ``H x W`` (grey), ``H x W x 3`` (RGB) or ``H x W x 4`` (RGBA) uint8 array as PNG."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ValueError(
            f"expected an H x W, H x W x 3 or H x W x 4 uint8 array, got {array.dtype} {array.shape}"
        )
    if array.size == 0:
        raise ValueError(f"cannot encode an empty image of shape {array.shape}")
    buf = io.BytesIO()
    # fromarray picks L / RGB / RGBA from the shape of a uint8 array.
    Image.fromarray(np.ascontiguousarray(array)).save(
        buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, pnginfo=_signature()
    )
    return buf.getvalue()


PNG_SOFTWARE = "segdemo"
"""The PNG ``Software`` text of every PNG this project writes: how ``segdemo.segment`` knows its own files."""
PNG_LABELS_KEY = "segdemo-labels"
"""A label PNG's text entry saying how its values are meant ("trainIds"), so that reading it back is never
a guess."""


def _signature(labels: str | None = None) -> PngInfo:
    info = PngInfo()
    info.add_text("Software", PNG_SOFTWARE)
    if labels is not None:
        info.add_text(PNG_LABELS_KEY, labels)
    return info


def written_by_segdemo(path: str | Path) -> bool:
    """True for a PNG this project wrote (its ``Software`` text says so); False for anything else."""
    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.info.get("Software") == PNG_SOFTWARE
    except (OSError, ValueError, SyntaxError):
        return False


def _label_palette() -> list[int]:
    """256 RGB entries: index i < 19 is class i's colour, everything else (255 = ignore) black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[:NUM_CLASSES] = PALETTE
    return table.reshape(-1).tolist()


def label_png_bytes(train_ids: np.ndarray) -> bytes:
    """The label map as a palette ("P") PNG: pixel values are the trainIds, palette index = trainId.

    Image viewers show the Cityscapes colours (ignore black) while ``np.array(Image.open(f))``
    gives back the exact trainIds. Values must be 0-18 or 255.
    """
    train_ids = _label_map(train_ids)
    if train_ids.size == 0:
        raise ValueError(f"cannot encode an empty label map of shape {train_ids.shape}")
    valid = _class_mask(train_ids) | (train_ids == IGNORE_INDEX)
    if not valid.all():
        bad = sorted({int(v) for v in np.unique(train_ids[~valid])[:5]})
        raise ValueError(
            f"label map values must be trainIds 0-{NUM_CLASSES - 1} or {IGNORE_INDEX}; found {bad}"
        )
    image = Image.fromarray(np.ascontiguousarray(train_ids, dtype=np.uint8))
    # putpalette turns the "L" image into "P" keeping every value as its palette index (convert("P")
    # would instead quantise the values to a web palette and change them).
    image.putpalette(_label_palette())
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, pnginfo=_signature("trainIds"))
    return buf.getvalue()


def side_by_side(
    images: Sequence[np.ndarray], gap: int = 4, height: int | None = None, fill: int = 255
) -> np.ndarray:
    """Put images in a row, each scaled to a common height (default: the tallest), ``gap`` px apart.

    Grey ``H x W`` images become RGB; widths keep each image's aspect ratio. Shrinking uses area
    averaging (no aliasing), enlarging bilinear. The gaps are ``fill`` (white by default).
    """
    if len(images) == 0:
        raise ValueError("side_by_side needs at least one image")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    rgb: list[np.ndarray] = []
    for i, image in enumerate(images):
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        rgb.append(_rgb_image(image, f"images[{i}]"))
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"images[{i}] is empty ({image.shape})")
    target = int(height) if height is not None else max(im.shape[0] for im in rgb)
    if target < 1:
        raise ValueError(f"height must be >= 1, got {height}")
    scaled = []
    for image in rgb:
        h, w = image.shape[:2]
        if h != target:
            new_w = max(1, math.floor(w * target / h + 0.5))
            interp = cv2.INTER_AREA if target < h else cv2.INTER_LINEAR
            image = cv2.resize(image, (new_w, target), interpolation=interp)
        scaled.append(image)
    width = sum(im.shape[1] for im in scaled) + gap * (len(scaled) - 1)
    out = np.full((target, width, 3), fill, dtype=np.uint8)
    x = 0
    for image in scaled:
        out[:, x : x + image.shape[1]] = image
        x += image.shape[1] + gap
    return out
